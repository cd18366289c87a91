# Perry Hub: one image, one binary. `perry-hub <role>` runs any role (all, ingest, dispatcher,
# finisher, download, migrate, check, import-legacy); `ingest`, `dispatcher`, `download` and
# `finisher` are symlinks to it for manifests that name the old binaries.
#
#   docker build -t perry-hub .
#   docker run --rm perry-hub perry-hub migrate
#
# No `# syntax=` line and no BuildKit-only features (cache mounts), so the classic builder
# (DOCKER_BUILDKIT=0, no registry for frontends) builds it too. Base images are build args so an
# offline machine can point them at locally imported images.
#
# Two ways to get the binary:
#   default            compiled in the `builder` stage (cargo-chef caches the dependencies).
#   --target prebuilt  copies dist/perry-hub, built on a Debian bookworm host
#                      (scripts/compose-smoke.sh does this: no Rust image can be pulled offline,
#                      and Debian's rustc is far older than the dependencies need).
# The classic builder builds every stage up to its target, so `prebuilt` comes before the Rust
# stages and never needs a Rust image.
#
# Dependencies need rustc >= 1.94 (aws-smithy-*); the builder must be Debian bookworm so the
# binary links against the runtime's glibc.
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# --- runtime-base: what the binary needs at run time -------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime-base
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="perry-hub" \
      org.opencontainers.image.description="Perry Hub, the build server behind perry publish: ingest, dispatcher, finisher and download in one binary" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.vendor="Perry" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# ca-certificates: TLS to S3, Azure and amqps/managed MySQL. tini: PID 1 that forwards SIGTERM
# (graceful shutdown drains WebSockets) and reaps zombies.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 perry \
 && useradd --system --uid 10001 --gid perry --home-dir /var/lib/perry-hub --no-create-home \
      --shell /usr/sbin/nologin perry \
 && install -d -o perry -g perry -m 0750 /var/lib/perry-hub \
 && for role in ingest dispatcher download finisher; do \
      ln -s perry-hub "/usr/local/bin/$role"; \
    done
# Defaults only; everything else comes from the environment (see .env.example / k8s ConfigMap).
# The filesystem blob store (single-box use) writes under /var/lib/perry-hub: mount a volume.
ENV PERRY_HUB_BIND=0.0.0.0 \
    PERRY_BLOB_DIR=/var/lib/perry-hub/blobs \
    LOG_FORMAT=json
WORKDIR /var/lib/perry-hub
# Numeric so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# perry-hub all: 3456 (HTTP + /ws), 3457 (legacy WS); ingest 3456, dispatcher 3458, download 3459,
# finisher 3460 (health and metrics only).
EXPOSE 3456 3457 3458 3459 3460
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["perry-hub"]

# --- prebuilt: the runtime with a binary built outside (dist/perry-hub) -------------------------
# The whole directory, so that a default build without dist/perry-hub (the classic builder builds
# this stage too) copies nothing instead of failing. Only perry-hub reaches the context
# (.dockerignore).
FROM runtime-base AS prebuilt
COPY dist/ /usr/local/bin/

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
RUN cargo chef cook --release --locked --recipe-path recipe.json -p standalone

# --- builder: our crates on top of the cached dependencies --------------------------------------
FROM chef AS builder
ENV SQLX_OFFLINE=true
COPY . .
COPY --from=cacher /app/target target
COPY --from=cacher /usr/local/cargo /usr/local/cargo
# The release profile keeps line tables (~130 MB); drop the DWARF but keep the symbols, so
# panics still name functions.
RUN cargo build --release --locked -p standalone --bin perry-hub \
 && strip --strip-debug -o /perry-hub target/release/perry-hub

# --- runtime (default): the runtime with the binary compiled above ------------------------------
FROM runtime-base AS runtime
COPY --from=builder /perry-hub /usr/local/bin/perry-hub
