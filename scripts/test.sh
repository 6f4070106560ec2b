#!/usr/bin/env bash
# Runs every test of the workspace against real PostgreSQL and Redis, starting them from
# the installed packages first when nothing answers on their ports, and installing the
# Socket.IO client and chromium the end-to-end tests drive. Extra arguments go to the test
# runner (for example a test name filter).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/services.sh
bash scripts/test-deps.sh

if command -v cargo-nextest >/dev/null 2>&1; then
    exec cargo nextest run --workspace --no-fail-fast "$@"
else
    echo "test: cargo-nextest is not installed; running cargo test" >&2
    exec cargo test --workspace --no-fail-fast "$@"
fi
