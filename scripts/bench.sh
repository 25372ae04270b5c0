#!/usr/bin/env bash
# Reproduces every figure of docs/benchmarks.md: builds the release binaries, then runs the whole suite
# (baseline and imlogin in turn, medians of 3) unpinned, and pinned (servers on core 0, generator on core 1).
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust) for the new-user run on PostgreSQL.
# Usage: scripts/bench.sh [extra imlogin-bench suite flags, e.g. --repeats 5]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
out=${BENCH_OUT:-target/bench}
mkdir -p "$out"
for mode in unpinned pinned; do
  flag=()
  [ "$mode" = pinned ] && flag=(--pin)
  echo "== $mode" >&2
  ./target/release/imlogin-bench suite "${flag[@]}" "$@" > "$out/$mode.jsonl" 2> "$out/$mode.txt"
  cat "$out/$mode.txt"
done
echo "JSON lines: $out/unpinned.jsonl $out/pinned.jsonl" >&2
