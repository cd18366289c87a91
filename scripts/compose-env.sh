#!/usr/bin/env bash
# make compose-env: write .env for docker-compose.yml and docker-compose.single.yml from
# .env.example, with every required secret generated (hex, so it is safe inside AMQP_URL; the
# credentials key is 32 random bytes in base64). An existing .env is left alone: delete it to
# start over (new database and broker passwords do not apply to existing volumes).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/.env}

if [ -e "$OUT" ]; then
    echo "$OUT exists: left unchanged"
    exit 0
fi

hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
value_for() {
    case $1 in
    PERRY_HUB_CREDENTIALS_KEY) head -c 32 /dev/urandom | base64 ;;
    PERRY_S3_ACCESS_KEY_ID) echo "perry$(hex 6)" ;;
    *) hex 24 ;;
    esac
}

umask 077
tmp=$(mktemp "$OUT.XXXXXX")
while IFS= read -r line || [ -n "$line" ]; do
    if [[ $line =~ ^([A-Za-z_][A-Za-z0-9_]*)=$ ]]; then
        name=${BASH_REMATCH[1]}
        printf '%s=%s\n' "$name" "$(value_for "$name")"
    else
        printf '%s\n' "$line"
    fi
done <"$ROOT/.env.example" >"$tmp"
mv "$tmp" "$OUT"
echo "wrote $OUT with generated secrets (mode 600)"
