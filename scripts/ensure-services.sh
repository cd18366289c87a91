#!/usr/bin/env bash
# Ensure the services the hub needs are running on this machine, idempotently.
#
#   scripts/ensure-services.sh          MariaDB + RabbitMQ (what `make run` needs)
#   scripts/ensure-services.sh --s3     ... plus a local S3 server, headless Chromium with
#                                       chromium-driver (the dashboard's browser test) and
#                                       promtool (the alert rules' tests): what `make test` needs
#
# Anything already listening on its usual port is used as it is. Otherwise the Debian package
# is installed (apt-get) and started without systemd. The S3 server is s3s-fs from crates.io.
set -euo pipefail

WANT_S3=0
for arg in "$@"; do
  case "$arg" in
    --s3) WANT_S3=1 ;;
    *) echo "usage: $0 [--s3]" >&2; exit 2 ;;
  esac
done

DB_USER="${PERRY_DB_USER:-perry}"
DB_PASSWORD="${PERRY_DB_PASSWORD:-perry}"
DB_NAME="${PERRY_DB_NAME:-perry_hub}"
S3_PORT="${PERRY_TEST_S3_PORT:-8014}"
S3_DIR="${PERRY_TEST_S3_DIR:-${TMPDIR:-/tmp}/perry-hub-s3}"
S3S_VERSION="0.14.1"

log() { printf '\033[1;34m[services]\033[0m %s\n' "$*"; }

listening() { # port
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" -eq 0 ]; then
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for() { # description, seconds, command...
  local what="$1" secs="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "error: $what did not become ready within ${secs}s" >&2
      return 1
    fi
    sleep 0.2
  done
}

ensure_mariadb() {
  if listening 3306; then
    log "MySQL/MariaDB already listening on 3306"
  else
    if [ ! -x /usr/sbin/mariadbd ]; then
      log "installing mariadb-server (Debian package)"
      apt_install mariadb-server
    fi
    log "starting MariaDB"
    as_root install -d -o mysql -g mysql /run/mysqld
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    wait_for "MariaDB" 60 listening 3306
  fi
  # The application user. root reaches MariaDB only through its socket, so this step needs a
  # local server; with a remote one, create the user yourself and set PERRY_DB_*.
  if command -v mariadb >/dev/null 2>&1 && as_root mariadb -e 'SELECT 1' >/dev/null 2>&1; then
    as_root mariadb <<SQL
CREATE DATABASE IF NOT EXISTS \`${DB_NAME}\`;
CREATE USER IF NOT EXISTS '${DB_USER}'@'localhost' IDENTIFIED BY '${DB_PASSWORD}';
CREATE USER IF NOT EXISTS '${DB_USER}'@'127.0.0.1' IDENTIFIED BY '${DB_PASSWORD}';
GRANT ALL PRIVILEGES ON \`${DB_NAME}\`.* TO '${DB_USER}'@'localhost', '${DB_USER}'@'127.0.0.1';
GRANT ALL PRIVILEGES ON \`perry\_test\_%\`.* TO '${DB_USER}'@'localhost', '${DB_USER}'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
    log "database '${DB_NAME}' and user '${DB_USER}' ready"
  else
    log "no local root socket access; assuming user '${DB_USER}' and database '${DB_NAME}' exist"
  fi
}

ensure_rabbitmq() {
  if listening 5672; then
    log "RabbitMQ already listening on 5672"
    return
  fi
  if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
    log "installing rabbitmq-server (Debian package)"
    apt_install rabbitmq-server
  fi
  log "starting RabbitMQ"
  as_root rabbitmq-plugins enable --offline rabbitmq_management >/dev/null 2>&1 || true
  as_root rabbitmq-server -detached >/dev/null 2>&1 || true
  # The node registers with epmd a moment after -detached returns; await_startup fails fast
  # until then, so retry it.
  wait_for "RabbitMQ node" 120 as_root rabbitmqctl -q await_startup --timeout 30
  wait_for "RabbitMQ" 60 listening 5672
}

ensure_s3() {
  if listening "$S3_PORT"; then
    log "S3 server already listening on $S3_PORT"
  else
    local bin="${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs"
    if [ ! -x "$bin" ] || ! "$bin" --version 2>/dev/null | grep -q "$S3S_VERSION"; then
      log "installing s3s-fs $S3S_VERSION from crates.io (about two minutes)"
      cargo install "s3s-fs@${S3S_VERSION}" --features binary --locked --quiet
    fi
    mkdir -p "$S3_DIR"
    log "starting s3s-fs on 127.0.0.1:$S3_PORT (data in $S3_DIR)"
    # Start from / so the server never depends on the caller's working directory (it resolves
    # object paths against it, and a removed checkout would break every request).
    cd /
    nohup setsid "$bin" --host 127.0.0.1 --port "$S3_PORT" \
      --access-key "${PERRY_TEST_S3_ACCESS_KEY:-perry}" \
      --secret-key "${PERRY_TEST_S3_SECRET_KEY:-perrysecret}" \
      "$S3_DIR" >"$S3_DIR.log" 2>&1 < /dev/null &
    wait_for "s3s-fs" 30 listening "$S3_PORT"
  fi
}

# Debian's chromium and chromium-driver for the dashboard's browser test, and promtool (in
# Debian's prometheus; only the binary is used, no server is started) for the alert rules.
ensure_test_tools() {
  local missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  if [ "${#missing[@]}" -eq 0 ]; then
    log "chromium, chromedriver and promtool present"
  else
    log "installing ${missing[*]} (Debian)"
    apt_install --no-install-recommends "${missing[@]}"
  fi
}

ensure_mariadb
ensure_rabbitmq
if [ "$WANT_S3" -eq 1 ]; then
  ensure_s3
  ensure_test_tools
fi
log "ready"
