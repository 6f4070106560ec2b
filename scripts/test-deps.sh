#!/usr/bin/env bash
# Installs what the Socket.IO end-to-end tests drive: the dashboard's own client library
# and a headless browser driver (`npm ci` in tests/node, whenever its lock file is newer
# than what is installed), and Debian's chromium (apt-get, when root) for the browser
# test, and Debian's redis-sentinel for the failover tests. PostgreSQL's server programs
# (initdb, pg_basebackup) come with the PostgreSQL the tests run on. Node.js and npm must
# be installed. Progress goes to stderr.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { echo "test-deps: $*" >&2; }
die() { echo "test-deps: error: $*" >&2; exit 1; }

command -v node >/dev/null 2>&1 || die "Node.js is not installed (the tests run socket.io-client on it)"
command -v npm >/dev/null 2>&1 || die "npm is not installed"

stamp=tests/node/node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ tests/node/package-lock.json -nt "$stamp" ]; then
    log "installing socket.io-client and playwright-core in tests/node (npm ci)"
    # playwright-core drives the system's chromium: it downloads no browser.
    (cd tests/node && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund >&2)
fi

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "missing: ${missing[*]}; install them (apt-get install -y ${missing[*]}) as root"
    log "installing ${missing[*]}"
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2
fi
