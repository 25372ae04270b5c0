#!/usr/bin/env bash
# The Redis Cluster figures of docs/benchmarks.md: starts a local Redis Cluster (scripts/redis-cluster.sh),
# runs imlogin-bench's cluster group on it (known-user logins paired with the baseline, cross-node kick, three
# nodes holding sessions with Redis's memory per online instance), then the failover test five times (the
# time from a master's SIGKILL to logins succeeding again on its slots), and stops the cluster.
# Usage: scripts/bench-redis-cluster.sh [extra imlogin-bench suite flags, e.g. --cluster-hold-sessions 5000]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
out=${BENCH_OUT:-target/bench}
mkdir -p "$out"
seeds=$(scripts/redis-cluster.sh start 7101)
trap 'scripts/redis-cluster.sh stop 7101' EXIT
./target/release/imlogin-bench suite --groups cluster --redis-cluster-nodes "$seeds" "$@" \
  > "$out/redis-cluster.jsonl" 2> "$out/redis-cluster.txt"
cat "$out/redis-cluster.txt"
echo "JSON lines: $out/redis-cluster.jsonl" >&2
echo "== failover (tests/api/failover.rs, 5 runs)" >&2
for _ in 1 2 3 4 5; do
  cargo test --quiet --test api -- failover::a_master_killed --nocapture 2>&1 | grep -o 'failover: .*' || true
done
