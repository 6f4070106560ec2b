#!/usr/bin/env bash
# Runs the benchmarks and rewrites docs/benchmarks.md: makes sure PostgreSQL and Redis
# answer, installs wrk when missing, builds the release binaries, then runs letip-bench
# (arguments pass through; `--help` lists them). All load goes to 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/services.sh
if ! command -v wrk >/dev/null 2>&1; then
    echo "bench: installing wrk" >&2
    apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }
fi
cargo build --release -p letip-server -p letip-bench
exec ./target/release/letip-bench "$@"
