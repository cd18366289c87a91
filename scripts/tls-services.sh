#!/usr/bin/env bash
# Start a TLS-only MariaDB (127.0.0.1:3310) and a TLS RabbitMQ (amqps on 127.0.0.1:5671), separate
# from the shared plain ones on 3306 and 5672, with a throw-away CA in /tmp/perry-tls (or
# $PERRY_TEST_TLS_DIR). Idempotent: a server already listening is used as it is, and a stale
# socket or pid file from a killed run is cleared first.
#
# Prints the variables the TLS tests read (tests/tests/it/foundation/tls.rs) on stdout; everything
# else goes to stderr, and a server that does not come up fails the script with its log.
set -euo pipefail
# A short fixed path: the MariaDB socket lives here, and a Unix socket path must stay under 108
# bytes whatever TMPDIR a CI runner sets.
dir="${PERRY_TEST_TLS_DIR:-/tmp/perry-tls}"
mkdir -p "$dir"
cd "$dir"

log() { printf '[tls-services] %s\n' "$*" >&2; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
fail() { # message, log file
  log "error: $1"
  if [ -f "$2" ]; then
    log "last lines of $2:"
    tail -n 40 "$2" >&2
  fi
  exit 1
}

for tool in openssl mariadb-install-db mariadb; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool not found (scripts/ensure-services.sh installs it)" /dev/null
done
mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)
rabbitmq_server=$(command -v rabbitmq-server || echo /usr/sbin/rabbitmq-server)

if [ ! -f server.pem ]; then
  log "making a throw-away CA and a server certificate for localhost in $dir"
  cat > san.cnf <<'CNF'
[req]
distinguished_name = dn
[dn]
[ext]
subjectAltName = DNS:localhost, IP:127.0.0.1
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
CNF
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=perry-test-ca" \
    -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key \
    -out server.csr 2>/dev/null
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
    -extfile san.cnf -extensions ext -out server.pem 2>/dev/null
  chmod 644 server.key
fi

# MariaDB: its own data directory, TCP 3310 only, every connection must use TLS. root reaches it
# through its socket only.
sock="$dir/mysql.sock"
root_sql() { mariadb --no-defaults --socket="$sock" -uroot "$@"; }
if ! listening 3310; then
  rm -f "$sock" "$sock.lock" mysql.pid
  if [ ! -d mysql-data/mysql ]; then
    log "initialising the TLS MariaDB data directory"
    rm -rf mysql-data
    mariadb-install-db --no-defaults --datadir="$dir/mysql-data" \
      --auth-root-authentication-method=normal --user="$(id -un)" >mysql-install.log 2>&1 \
      || fail "mariadb-install-db failed" mysql-install.log
  fi
  log "starting the TLS MariaDB on 127.0.0.1:3310"
  "$mariadbd" --no-defaults --datadir="$dir/mysql-data" --port=3310 --bind-address=127.0.0.1 \
    --socket="$sock" --pid-file="$dir/mysql.pid" --user="$(id -un)" \
    --ssl-ca="$dir/ca.pem" --ssl-cert="$dir/server.pem" --ssl-key="$dir/server.key" \
    --require-secure-transport=ON --log-error="$dir/mysql.err" >"$dir/mysql.log" 2>&1 &
fi
# A new data directory on a slow disk can take a while (InnoDB creates its redo log first).
for _ in $(seq 1 360); do
  root_sql -e 'SELECT 1' >/dev/null 2>&1 && break
  sleep 0.5
done
root_sql -e 'SELECT 1' >/dev/null 2>&1 || fail "the TLS MariaDB did not accept connections within 180 s" mysql.err
# The anonymous users mariadb-install-db creates would shadow perry@% from localhost.
root_sql <<'SQL'
DROP USER IF EXISTS ''@'localhost';
DROP USER IF EXISTS ''@'127.0.0.1';
DROP DATABASE IF EXISTS perry_tls;
CREATE DATABASE perry_tls;
CREATE USER IF NOT EXISTS 'perry'@'%' IDENTIFIED BY 'perry' REQUIRE SSL;
CREATE USER IF NOT EXISTS 'perry'@'localhost' IDENTIFIED BY 'perry' REQUIRE SSL;
GRANT ALL ON *.* TO 'perry'@'%';
GRANT ALL ON *.* TO 'perry'@'localhost';
SQL

# RabbitMQ: a second node with only a TLS listener.
if ! listening 5671; then
  cat > rabbit-tls.conf <<CONF
listeners.tcp = none
listeners.ssl.default = 5671
ssl_options.cacertfile = $dir/ca.pem
ssl_options.certfile = $dir/server.pem
ssl_options.keyfile = $dir/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
loopback_users = none
CONF
  # rabbitmq-server drops to the rabbitmq user when started as root: give it its directories.
  mkdir -p rabbit-mnesia rabbit-log
  touch rabbit-plugins
  rm -f rabbit.pid
  if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1; then
    chown -R rabbitmq: rabbit-mnesia rabbit-log rabbit-plugins
  fi
  chmod 755 "$dir"
  chmod 644 ca.pem server.pem server.key rabbit-tls.conf
  log "starting the TLS RabbitMQ node on 127.0.0.1:5671"
  RABBITMQ_NODENAME=perry-tls@localhost RABBITMQ_NODE_PORT=5671 RABBITMQ_DIST_PORT=25671 \
    RABBITMQ_CONFIG_FILE="$dir/rabbit-tls" RABBITMQ_MNESIA_BASE="$dir/rabbit-mnesia" \
    RABBITMQ_LOG_BASE="$dir/rabbit-log" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/rabbit-plugins" \
    RABBITMQ_PID_FILE="$dir/rabbit.pid" \
    "$rabbitmq_server" -detached >rabbit-start.log 2>&1 || true
  for _ in $(seq 1 360); do
    listening 5671 && break
    sleep 0.5
  done
  if ! listening 5671; then
    cat rabbit-start.log >&2 || true
    fail "the TLS RabbitMQ did not listen on 5671 within 180 s" "$(ls -t rabbit-log/*.log 2>/dev/null | head -n 1)"
  fi
fi

echo "export PERRY_TEST_TLS_CA=$dir/ca.pem"
echo "export PERRY_TEST_MYSQL_TLS_URL=mysql://perry:perry@127.0.0.1:3310/perry_tls"
echo "export PERRY_TEST_AMQPS_URL=amqps://guest:guest@localhost:5671/%2f"
