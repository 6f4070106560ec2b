#!/usr/bin/env bash
# Runs the NestJS + cache-manager peer of the businesses read API (bench/nest-peer), the
# baseline the benchmark measures beside letip. Installs its packages when missing, builds
# it when its sources changed, then runs it in the foreground. The environment passes
# through (see bench/nest-peer/README.md):
#
#   PORT (3000), HOST (127.0.0.1), DATABASE_URL, REDIS_URL (redis://127.0.0.1:6379),
#   KEY_PREFIX (nestpeer:), WORKERS (1), CACHE_TTL_STATS_SECS / _LIST_ / _DETAIL_ (30, 300, 600)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

(
    cd bench/nest-peer
    # npm ci leaves node_modules/.package-lock.json behind: older than the lock file means stale.
    if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
        npm ci --no-audit --no-fund --loglevel=error >/dev/null
    fi
    if [ ! -f dist/main.js ] ||
        [ -n "$(find src tsconfig.json node_modules/.package-lock.json -newer dist/main.js -print -quit)" ]; then
        rm -rf dist
        ./node_modules/.bin/tsc -p tsconfig.json
    fi
)
exec node bench/nest-peer/dist/main.js
