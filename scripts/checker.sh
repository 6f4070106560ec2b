#!/usr/bin/env bash
# Runs the freshness checker (tests/checker): writers and readers on three instances
# while Redis is killed, stalled and cut off from one instance, PostgreSQL connections
# are dropped, PostgreSQL is unreachable, and its read replica lags or stops
# (CHECKER_REDIS=sentinel: Redis behind Sentinel, failed over and its primary killed).
# Prints operations, operations per second, stale reads, violations, 5xx and transport
# errors; fails unless the last three are zero.
#
#   --seconds N      run for N seconds (60 by default)
#   --operations N   run until N reads and writes were checked instead (a whole number
#                    of 6-second fault slots is not guaranteed: the run ends mid-slot)
#   --release        build the servers and the checker with optimisations (for long runs)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=60
operations=""
profile=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --operations) operations="$2"; shift 2 ;;
        --release) profile=(--release); shift ;;
        *) echo "usage: $0 [--seconds N | --operations N] [--release]" >&2; exit 2 ;;
    esac
done
bash scripts/services.sh
export CHECKER_SECONDS="$seconds"
if [[ -n "$operations" ]]; then export CHECKER_OPERATIONS="$operations"; fi
exec cargo nextest run "${profile[@]}" -p letip-tests -E 'binary(checker)' --no-capture
