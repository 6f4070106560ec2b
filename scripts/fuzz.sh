#!/usr/bin/env bash
# Fuzzes the request parsers (fuzz/fuzz_targets/parsers.rs) with cargo fuzz for a bounded
# time: `--seconds N` (60 by default). Not part of CI. Installs cargo-fuzz when missing;
# RUSTC_BOOTSTRAP lets the stable toolchain take the sanitizer flags cargo fuzz passes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=60
if [[ "${1:-}" == "--seconds" ]]; then seconds="$2"; fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
cd fuzz
RUSTC_BOOTSTRAP=1 exec cargo fuzz run parsers -- -max_total_time="$seconds" -max_len=4096
