#!/usr/bin/env bash
# The Redis Cluster figures of docs/benchmarks.md: starts a local Redis Cluster (scripts/redis-cluster.sh),
# runs imlogin-bench's cluster group on it (known-user logins paired with the baseline, with each process's CPU
# per login; cross-node kick; three nodes holding sessions with Redis's memory per online instance), then the
# known-user logins alone on other shapes (one Redis, one master in cluster mode, three masters without
# replicas) to show what the cluster's processes cost on this machine, then the failover test five times (the
# time from a master's SIGKILL to logins succeeding again on its slots).
# Usage: scripts/bench-redis-cluster.sh [extra imlogin-bench suite flags, e.g. --cluster-hold-sessions 5000]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
out=${BENCH_OUT:-target/bench}
mkdir -p "$out"
bench=./target/release/imlogin-bench

seeds=$(scripts/redis-cluster.sh start 7101)
trap 'scripts/redis-cluster.sh stop 7101' EXIT
$bench suite --groups cluster --redis-cluster-nodes "$seeds" "$@" \
  > "$out/redis-cluster.jsonl" 2> "$out/redis-cluster.txt"
scripts/redis-cluster.sh stop 7101
cat "$out/redis-cluster.txt"
echo "JSON lines: $out/redis-cluster.jsonl" >&2

echo "== known-user logins on other shapes" >&2
$bench suite --groups cluster --cluster-logins-only "$@" > "$out/shapes.jsonl" 2> "$out/shapes.txt"
for shape in "1 0" "3 0"; do
  # shellcheck disable=SC2086
  seeds=$(scripts/redis-cluster.sh start 7201 $shape)
  # shellcheck disable=SC2086
  $bench suite --groups cluster --cluster-logins-only --redis-cluster-nodes "$seeds" "$@" \
    >> "$out/shapes.jsonl" 2>> "$out/shapes.txt"
  # shellcheck disable=SC2086
  scripts/redis-cluster.sh stop 7201 $shape
done
grep -h paired "$out/shapes.txt" >&2 || true
echo "JSON lines: $out/shapes.jsonl (one Redis, 1 master, 3 masters without replicas)" >&2

echo "== failover (tests/api/failover.rs, 5 runs)" >&2
for _ in 1 2 3 4 5; do
  cargo test --quiet --test api -- failover::a_master_killed --nocapture 2>&1 | grep -o 'failover: .*' || true
done
