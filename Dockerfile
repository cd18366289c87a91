# Perry Hub: one image, five binaries (perry-hub, ingest, dispatcher, download, finisher).
#
#   docker build -t perry-hub .
#   docker run --rm perry-hub perry-hub migrate     # or: ingest, dispatcher, download, finisher
#
# No `# syntax=` line and no BuildKit-only features (cache mounts), so the classic builder
# (DOCKER_BUILDKIT=0, no registry for frontends) builds it too. Base images are build args so an
# offline machine can point them at locally imported images.
#
# Dependencies need rustc >= 1.94 (aws-smithy-*); the builder must be Debian bookworm so the
# binaries link against the runtime's glibc.
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# --- chef: the toolchain plus cargo-chef, shared by the three build stages -------------------
FROM ${RUST_IMAGE} AS chef
ARG CARGO_CHEF_VERSION=0.1.78
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /app

# --- planner: reduce the workspace to a recipe (manifests + lockfile) --------------------------
# The recipe only changes when dependencies do, so the cacher layer below survives code edits.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# --- cacher: build every dependency once --------------------------------------------------------
FROM chef AS cacher
# Queries are checked at run time; never let a build try to reach a database.
ENV SQLX_OFFLINE=true
COPY --from=planner /app/recipe.json recipe.json
# Same package selection as the final build, so feature unification (and thus the cache) matches.
RUN cargo chef cook --release --locked --recipe-path recipe.json \
      -p standalone -p ingest -p dispatcher -p download -p finisher

# --- builder: our crates on top of the cached dependencies --------------------------------------
FROM chef AS builder
ENV SQLX_OFFLINE=true
COPY . .
COPY --from=cacher /app/target target
COPY --from=cacher /usr/local/cargo /usr/local/cargo
# The release profile keeps line tables (~130 MB per binary here); drop the DWARF but keep the
# symbols, so panics still name functions and the image stays ~35 MB per binary.
RUN cargo build --release --locked \
      -p standalone -p ingest -p dispatcher -p download -p finisher \
 && mkdir -p /out \
 && for bin in perry-hub ingest dispatcher download finisher; do \
      strip --strip-debug -o "/out/$bin" "target/release/$bin"; \
    done

# --- runtime ------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
# ca-certificates: TLS to S3, Azure and amqps/managed MySQL. tini: PID 1 that forwards SIGTERM
# (graceful shutdown drains WebSockets) and reaps zombies.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 perry \
 && useradd --system --uid 10001 --gid perry --home-dir /var/lib/perry-hub --no-create-home \
      --shell /usr/sbin/nologin perry \
 && install -d -o perry -g perry -m 0750 /var/lib/perry-hub

COPY --from=builder /out/ /usr/local/bin/

# Defaults only; everything else comes from the environment (see .env.example / k8s ConfigMap).
# The filesystem blob store (single-box use) writes under /var/lib/perry-hub: mount a volume.
ENV PERRY_HUB_BIND=0.0.0.0 \
    PERRY_BLOB_DIR=/var/lib/perry-hub/blobs \
    LOG_FORMAT=json
WORKDIR /var/lib/perry-hub
# Numeric so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001

# perry-hub: 3456 (HTTP + /ws), 3457 (legacy WS); ingest 3456, dispatcher 3458, download 3459,
# finisher 3460 (health and metrics only).
EXPOSE 3456 3457 3458 3459 3460
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["perry-hub"]
