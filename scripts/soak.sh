#!/usr/bin/env bash
# The soak of docs/benchmarks.md: builds the release binaries, then runs `imlogin-bench soak` (default 30 minutes;
# `scripts/soak.sh 5` for five) and writes a JSON line a minute to target/bench/soak.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
mkdir -p target/bench
./target/release/imlogin-bench soak --minutes "${1:-30}" | tee target/bench/soak.jsonl
