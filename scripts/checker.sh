#!/usr/bin/env bash
# Runs the freshness checker (tests/checker): writers and readers on two instances while
# Redis is killed, stalled and cut off from one instance, and PostgreSQL connections are
# dropped. `--seconds N` sets the length (60 by default). Prints operations, stale reads,
# violations and 5xx; fails unless violations and 5xx are zero.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=60
if [[ "${1:-}" == "--seconds" ]]; then seconds="$2"; fi
bash scripts/services.sh
CHECKER_SECONDS="$seconds" exec cargo nextest run -p letip-tests -E 'binary(checker)' --no-capture
