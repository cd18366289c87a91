#!/usr/bin/env bash
# Start a TLS-only MariaDB (127.0.0.1:3310) and a TLS RabbitMQ (amqps on 127.0.0.1:5671), separate
# from the shared plain ones on 3306 and 5672, with a throw-away CA under $TMPDIR/perry-tls.
# Idempotent. Prints the variables the TLS tests read (tests/tests/it/foundation/tls.rs).
set -euo pipefail
dir="${TMPDIR:-/tmp}/perry-tls"
mkdir -p "$dir"
cd "$dir"

if [ ! -f ca.pem ]; then
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

# MariaDB: its own data directory, TCP 3310 only, every connection must use TLS.
if ! (exec 3<>/dev/tcp/127.0.0.1/3310) 2>/dev/null; then
  if [ ! -d mysql-data/mysql ]; then
    mariadb-install-db --no-defaults --datadir="$dir/mysql-data" --auth-root-authentication-method=normal \
      --user="$(id -un)" >/dev/null
  fi
  mariadbd --no-defaults --datadir="$dir/mysql-data" --port=3310 --bind-address=127.0.0.1 \
    --socket="$dir/mysql.sock" --pid-file="$dir/mysql.pid" --user="$(id -un)" \
    --ssl-ca="$dir/ca.pem" --ssl-cert="$dir/server.pem" --ssl-key="$dir/server.key" \
    --require-secure-transport=ON --skip-log-error >"$dir/mysql.log" 2>&1 &
  for _ in $(seq 1 60); do
    [ -S "$dir/mysql.sock" ] && break
    sleep 0.5
  done
fi
# The anonymous users mariadb-install-db creates would shadow perry@% from localhost.
mariadb --no-defaults --socket="$dir/mysql.sock" -uroot <<'SQL'
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
if ! (exec 3<>/dev/tcp/127.0.0.1/5671) 2>/dev/null; then
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
  if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1; then
    chown -R rabbitmq: rabbit-mnesia rabbit-log rabbit-plugins
  fi
  chmod 755 "$dir"
  chmod 644 ca.pem server.pem server.key rabbit-tls.conf
  RABBITMQ_NODENAME=perry-tls@localhost RABBITMQ_NODE_PORT=5671 RABBITMQ_DIST_PORT=25671 \
    RABBITMQ_CONFIG_FILE="$dir/rabbit-tls" RABBITMQ_MNESIA_BASE="$dir/rabbit-mnesia" \
    RABBITMQ_LOG_BASE="$dir/rabbit-log" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/rabbit-plugins" \
    RABBITMQ_PID_FILE="$dir/rabbit.pid" \
    rabbitmq-server -detached >/dev/null 2>&1 || true
  for _ in $(seq 1 120); do
    (exec 3<>/dev/tcp/127.0.0.1/5671) 2>/dev/null && break
    sleep 0.5
  done
fi

echo "export PERRY_TEST_TLS_CA=$dir/ca.pem"
echo "export PERRY_TEST_MYSQL_TLS_URL=mysql://perry:perry@127.0.0.1:3310/perry_tls"
echo "export PERRY_TEST_AMQPS_URL=amqps://guest:guest@localhost:5671/%2f"
