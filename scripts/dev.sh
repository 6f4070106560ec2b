#!/usr/bin/env bash
# Starts the server on http://127.0.0.1:3000 with demo data: makes sure PostgreSQL and
# Redis answer, builds the release binary, seeds DEMO_BUSINESSES businesses (default 1000)
# into an empty database, then serves until Ctrl-C. Environment variables of the server
# (DATABASE_URL, REDIS_URL, CACHE_BACKEND, PORT, ...) pass through.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/services.sh
cargo build --release -p letip-server
./target/release/letip seed --businesses "${DEMO_BUSINESSES:-1000}" --seed 42 --if-empty
exec ./target/release/letip serve
