#!/usr/bin/env bash
# `make test`: install cargo-nextest if it is missing, run the one-box scenarios (no services),
# ensure MariaDB, RabbitMQ and the S3 test server, then run every other test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "[test] installing cargo-nextest from crates.io"
  cargo install cargo-nextest --locked --quiet
fi

# The one-box scenarios first: the embedded SQLite database, the in-process queue and
# filesystem blobs need no service, so a broken core shows before anything is installed.
one_box='test(/::one_box$/)'
cargo nextest run --workspace --locked --no-fail-fast -E "$one_box" "$@"

scripts/ensure-services.sh --s3

# Queues of earlier test runs (unique prefix `t<12 hex>.`) that a failed test left behind, via
# the management API when it is there (rabbitmqctl takes most of a second per call).
mgmt="http://127.0.0.1:15672/api/queues/%2f"
curl -sf -u guest:guest "$mgmt?columns=name" 2>/dev/null \
  | grep -oE '"name":"t[0-9a-f]{12}\.[a-z0-9.-]+"' | cut -d'"' -f4 \
  | while read -r q; do curl -sf -u guest:guest -X DELETE "$mgmt/$q" >/dev/null || true; done || true

# Databases of earlier runs (each test creates `perry_test_<time>_<random>`), dropped before the
# run rather than by the tests themselves, so no test waits on another's clean-up.
db_args=(-h 127.0.0.1 -P "${PERRY_DB_PORT:-3306}" -u "${PERRY_DB_USER:-perry}" "-p${PERRY_DB_PASSWORD:-perry}")
if command -v mariadb >/dev/null 2>&1; then
  mariadb "${db_args[@]}" -N -e "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'perry\\_test\\_%'" 2>/dev/null \
    | while read -r db; do mariadb "${db_args[@]}" -e "DROP DATABASE IF EXISTS \`$db\`" </dev/null 2>/dev/null || true; done || true
fi

export PERRY_DB_USER="${PERRY_DB_USER:-perry}"
export PERRY_DB_PASSWORD="${PERRY_DB_PASSWORD:-perry}"
export PERRY_DB_NAME="${PERRY_DB_NAME:-perry_hub}"
export PERRY_TEST_S3_ENDPOINT="${PERRY_TEST_S3_ENDPOINT:-http://127.0.0.1:${PERRY_TEST_S3_PORT:-8014}}"
export RUST_BACKTRACE=1

# TLS-only MariaDB (3310) and RabbitMQ (5671) beside the plain ones, for the TLS scenarios;
# with PERRY_TEST_REQUIRE_TLS they fail rather than pass when these are missing.
# A failure here stops the run with the servers' logs, rather than as two failing tests.
tls_vars="$(scripts/tls-services.sh)"
eval "$tls_vars"
export PERRY_TEST_REQUIRE_TLS=1

# A private RabbitMQ node (5673) for the fault suite, which stops and starts its broker.
fault_vars="$(scripts/fault-services.sh)"
eval "$fault_vars"
export PERRY_TEST_REQUIRE_FAULT_BROKER=1

# Only the job crate writes a job's lifecycle columns.
scripts/check-job-writes.sh

# Static checks of the container and Kubernetes files (offline validators from PyPI).
scripts/validate-deploy.sh

# Tests that restart RabbitMQ, and the fault suite's load runs, go on their own afterwards, so
# they never disturb the others.
alone='test(/broker_restart/) | test(/^faults::/)'
cargo nextest run --workspace --locked --no-fail-fast -E "not ($alone) and not $one_box" "$@"
cargo nextest run --workspace --locked --no-fail-fast --test-threads 1 -E "$alone" "$@"

# The image and both compose stacks for real: about 2 minutes when its images are cached, 6 on a
# new machine. PERRY_SKIP_COMPOSE_SMOKE=1 leaves it out.
if [ "${PERRY_SKIP_COMPOSE_SMOKE:-0}" != 1 ]; then
  scripts/compose-smoke.sh
fi
