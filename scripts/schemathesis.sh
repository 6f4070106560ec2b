#!/usr/bin/env bash
# Tests the API against its own OpenAPI document with schemathesis (property-based API
# testing, installed from PyPI into .dev/schemathesis-venv): the server runs on a fresh
# database seeded with demo data, and every check runs but `unsupported_method` (a method a
# path lacks answers the NestJS-style 404, deliberately), with a fixed seed and a bounded
# number of examples per operation, then the stateful phase that follows the document's
# links. Exits non-zero on any failure.
#
#   bash scripts/schemathesis.sh          # CI: 300 examples per operation, seed 42
#   bash scripts/schemathesis.sh --long   # 1,000 per operation within 20 minutes, not CI
#
# LETIP_PROFILE=release uses the release build (default: debug, which the tests built).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SCHEMATHESIS_VERSION=4.32.5
mode=ci
if [[ "${1:-}" == "--long" ]]; then mode=long; fi
profile="${LETIP_PROFILE:-debug}"
venv=.dev/schemathesis-venv
report_dir=.dev/schemathesis-report

log() { echo "schemathesis: $*" >&2; }

# The tool, pinned, in a virtual environment of its own.
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION\$"; then
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
            log "installing python3-venv"
            apt-get install -y -q python3-venv >/dev/null
        fi
    fi
    log "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

bash scripts/services.sh >/dev/null

if [ "$profile" = release ]; then
    cargo build --release -p letip-server
else
    cargo build -p letip-server
fi
bin="target/$profile/letip"

# A fresh database, dropped on exit with the server.
pg="postgres://postgres@127.0.0.1:${PGPORT:-5432}"
db="letip_schemathesis_$$"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

export DATABASE_URL="$pg/$db"
export HOST=127.0.0.1 PORT="$port" RUST_LOG="${RUST_LOG:-warn}"
# The Redis cache takes part, under a namespace of its own.
export CACHE_BACKEND=redis CACHE_NAMESPACE="letip:schemathesis:$$"
mkdir -p "$report_dir"
"$bin" seed --businesses 300 --seed 42 >/dev/null
"$bin" serve >"$report_dir/server.log" 2>&1 &
server_pid=$!

base="http://127.0.0.1:$port"
for _ in $(seq 1 60); do
    if python3 -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=2)" \
        "$base/health" 2>/dev/null; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        log "the server did not start:"; cat "$report_dir/server.log" >&2; exit 1
    fi
    sleep 0.5
done

if [ "$mode" = long ]; then
    limits=(--max-examples 1000 --max-time 1200)
else
    limits=(--max-examples 300)
fi

log "testing $base/api/openapi.json ($mode)"
PYTHONPATH=scripts SCHEMATHESIS_HOOKS=schemathesis_hooks \
    "$venv/bin/st" --config-file scripts/schemathesis.toml run "$base/api/openapi.json" \
    --exclude-checks unsupported_method \
    --exclude-path /ws \
    --exclude-path /socket.io/ \
    --seed 42 \
    --generation-database none \
    --workers 2 \
    --request-timeout 30 \
    --report junit --report-dir "$report_dir" \
    --no-color \
    "${limits[@]}"
