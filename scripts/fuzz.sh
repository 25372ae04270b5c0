#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each): scripts/fuzz.sh [SECONDS] [TARGET…]
#
# Needs the nightly toolchain and cargo-fuzz (`rustup toolchain install nightly`, `cargo install cargo-fuzz`).
# Each target starts from its committed seeds (fuzz/seeds/TARGET) and grows a working corpus in fuzz/corpus/TARGET
# (not committed). A crash or a hang leaves its input in fuzz/artifacts/TARGET and makes this script fail: add it
# to fuzz/seeds/TARGET with a name saying what it was, and a regression test (tests/api/fuzz_seeds.rs replays
# every seed on stable).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build -O
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t: ${secs} s"
  # -timeout: an input that takes over 10 s is a hang; -rss_limit_mb: one that needs 2 GB is a leak or a bomb.
  set +e
  cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  grep -E "^#[0-9]+[[:space:]]+(INITED|DONE)|stat::(number_of_executed_units|peak_rss_mb)|^==[0-9]+==|^SUMMARY|panicked|Test unit written" "$log" || true
  if [ $rc -ne 0 ] || [ -n "$(ls -A "artifacts/$t" 2>/dev/null)" ]; then
    echo "!! $t failed (exit $rc); its input is in fuzz/artifacts/$t"
    status=1
  fi
done
exit $status
