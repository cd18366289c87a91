#!/usr/bin/env bash
# Start a private RabbitMQ node (amqp on 127.0.0.1:5673) for the fault scenarios that stop and
# start their broker (tests/tests/it/faults/), so they never disturb the shared one on 5672.
# Idempotent: a node already listening is used as it is.
#
# Prints the variables the fault scenarios read on stdout; everything else goes to stderr, and
# a node that does not come up fails the script with its log.
set -euo pipefail
dir="${PERRY_TEST_FAULTS_DIR:-/tmp/perry-faults}"
node=perry-faults@localhost
port=5673
mkdir -p "$dir"
cd "$dir"

log() { printf '[fault-services] %s\n' "$*" >&2; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
rabbitmq_server=$(command -v rabbitmq-server || echo /usr/sbin/rabbitmq-server)

if ! listening "$port"; then
  cat > rabbit.conf <<CONF
listeners.tcp.default = $port
loopback_users = none
CONF
  # rabbitmq-server drops to the rabbitmq user when started as root: give it its directories.
  mkdir -p mnesia logs
  touch plugins
  rm -f rabbit.pid
  if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1; then
    chown -R rabbitmq: mnesia logs plugins
  fi
  chmod 755 "$dir"
  chmod 644 rabbit.conf
  log "starting the private RabbitMQ node $node on 127.0.0.1:$port"
  RABBITMQ_NODENAME=$node RABBITMQ_NODE_PORT=$port RABBITMQ_DIST_PORT=25673 \
    RABBITMQ_CONFIG_FILE="$dir/rabbit" RABBITMQ_MNESIA_BASE="$dir/mnesia" \
    RABBITMQ_LOG_BASE="$dir/logs" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/plugins" \
    RABBITMQ_PID_FILE="$dir/rabbit.pid" \
    "$rabbitmq_server" -detached >start.log 2>&1 || true
  for _ in $(seq 1 360); do
    listening "$port" && break
    sleep 0.5
  done
  if ! listening "$port"; then
    cat start.log >&2 || true
    log "error: the private RabbitMQ did not listen on $port within 180 s"
    tail -n 40 "$(ls -t logs/*.log 2>/dev/null | head -n 1)" >&2 2>/dev/null || true
    exit 1
  fi
fi

echo "export PERRY_TEST_FAULT_AMQP_URL=amqp://guest:guest@127.0.0.1:$port/%2f"
echo "export PERRY_TEST_FAULT_RABBITMQ_NODE=$node"
