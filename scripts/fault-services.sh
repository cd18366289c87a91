#!/usr/bin/env bash
# Start a private RabbitMQ node (amqp on 127.0.0.1:5673) for the fault scenarios that stop and
# start their broker (tests/tests/it/faults/), so they never disturb the shared one on 5672.
# Each call starts it afresh, with an empty data directory (about 15 s).
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

# The node's process, found by its name in the environment it was started with.
node_pids() {
  for env in /proc/[0-9]*/environ; do
    if { tr '\0' '\n' < "$env"; } 2>/dev/null | grep -qx "RABBITMQ_NODENAME=$node"; then
      pid=${env#/proc/}
      echo "${pid%/environ}"
    fi
  done
}

# A fresh node for every run: the scenarios restart it, and a node that has to recover the
# queues and messages of many earlier runs (or of one killed mid-write) can take minutes to
# start again, or hang. So whatever runs is stopped (killed if it does not stop) and its data
# directory wiped.
if listening "$port" || [ -n "$(node_pids)" ]; then
  log "stopping the previous private RabbitMQ node"
  timeout 30 rabbitmqctl -q -n "$node" stop >/dev/null 2>&1 || true
  for pid in $(node_pids); do kill -9 "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 60); do
    listening "$port" || break
    sleep 0.5
  done
fi
rm -rf mnesia logs plugins rabbit.pid
cat > rabbit.conf <<CONF
listeners.tcp.default = $port
loopback_users = none
CONF
# rabbitmq-server drops to the rabbitmq user when started as root: give it its directories.
mkdir -p mnesia logs
touch plugins
if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1; then
  chown -R rabbitmq: mnesia logs plugins
fi
chmod 755 "$dir"
chmod 644 rabbit.conf
log "starting the private RabbitMQ node $node on 127.0.0.1:$port"
RABBITMQ_NODENAME=$node RABBITMQ_NODE_PORT=$port RABBITMQ_DIST_PORT=25673 \
  RABBITMQ_CONFIG_FILE="$dir/rabbit" RABBITMQ_MNESIA_BASE="$dir/mnesia" \
  RABBITMQ_LOG_BASE="$dir/logs" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/plugins" \
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

echo "export PERRY_TEST_FAULT_AMQP_URL=amqp://guest:guest@127.0.0.1:$port/%2f"
echo "export PERRY_TEST_FAULT_RABBITMQ_NODE=$node"
