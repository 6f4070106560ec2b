#!/usr/bin/env bash
# Runs every test of the workspace against real PostgreSQL and Redis, starting them from
# the installed packages first when nothing answers on their ports, and installing the
# Socket.IO client and chromium the end-to-end tests drive; then schemathesis against the
# server's OpenAPI document. Extra arguments go to the test runner (for example a test
# name filter) and skip schemathesis.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/services.sh
bash scripts/test-deps.sh

status=0
# What an embedder reads first: the cache crate's doc example, and the example service on
# the leased near tier in front of the Redis the tests use (it checks its own answers).
cargo test -p letip-cache --doc || status=$?
REDIS_URL="redis://127.0.0.1:${REDIS_PORT:-6379}" cargo run -q -p letip-cache --example embed \
    || status=$?

if command -v cargo-nextest >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
    echo "test: cargo-nextest is not installed; running cargo test" >&2
    cargo test --workspace --no-fail-fast "$@" || status=$?
fi

# The API against its own OpenAPI document (scripts/schemathesis.sh), on the whole run
# only: a filtered run (`scripts/test.sh -E 'test(x)'`) or SKIP_SCHEMATHESIS=1 skips it.
if [ "$#" -eq 0 ] && [ "${SKIP_SCHEMATHESIS:-0}" != 1 ]; then
    bash scripts/schemathesis.sh || status=$?
fi
exit "$status"
