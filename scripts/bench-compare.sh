#!/usr/bin/env bash
# Side-by-side benchmark of two builds of the server: runs `imlogin-bench suite --groups GROUPS` against the
# imlogin of BEFORE_DIR and of AFTER_DIR in turn, ROUNDS times (alternating which goes first, so neither always
# meets a warmer machine), with the same benchmark client (AFTER_DIR's imlogin-bench), then prints the medians.
# Usage: scripts/bench-compare.sh BEFORE_DIR AFTER_DIR [ROUNDS=5] [GROUPS=core]
#   (each *_DIR holds a release `imlogin`; AFTER_DIR also `imlogin-bench`: `cargo build --release --workspace
#   --bins` and copy target/release/imlogin{,-bench}). JSON lines go to $BENCH_OUT (target/bench-compare).
set -euo pipefail
before=$(realpath "$1") after=$(realpath "$2") rounds=${3:-5} groups=${4:-core}
out=$(realpath -m "${BENCH_OUT:-target/bench-compare}")
mkdir -p "$out/before" "$out/after"
# The suite starts the imlogin that sits beside the benchmark binary: one copy of the client per side.
cp "$after/imlogin-bench" "$out/before/imlogin-bench"
cp "$before/imlogin" "$out/before/imlogin"
cp "$after/imlogin-bench" "$out/after/imlogin-bench"
cp "$after/imlogin" "$out/after/imlogin"
for round in $(seq 1 "$rounds"); do
  order=(before after)
  [ $((round % 2)) = 0 ] && order=(after before)
  for side in "${order[@]}"; do
    echo "== round $round: $side" >&2
    "$out/$side/imlogin-bench" suite --groups "$groups" > "$out/$side-$round.jsonl" 2> "$out/$side-$round.txt"
  done
done
python3 - "$out" <<'PY'
import glob, json, statistics, sys
out = sys.argv[1]
sides = {}
for side in ("before", "after"):
    m = sides[side] = {}
    for f in sorted(glob.glob(f"{out}/{side}-*.jsonl")):
        rows = [json.loads(l) for l in open(f) if l.startswith("{")]
        base = {r["scenario"]: r for r in rows if r.get("server") == "baseline"}
        for r in rows:
            if r.get("server") != "imlogin":
                continue
            d = m.setdefault(r["scenario"], {})
            add = lambda k, v: d.setdefault(k, []).append(v)
            if "per_second" in r:
                add("per second", r["per_second"])
                # Closed-loop logins against the closed-loop baseline of the same run (the ratio the targets use).
                if r["scenario"].startswith("logins_") and "80pct" not in r["scenario"] and "logins_known" in base:
                    add("x baseline", r["per_second"] / base["logins_known"]["per_second"])
            n = r.get("logins") or r.get("rounds") or r.get("sessions")
            if n and r.get("server_cpu_s") is not None:
                add("server CPU us per op", r["server_cpu_s"] / n * 1e6)
            if "latency" in r:
                add("p99 ms", r["latency"]["p99_ms"])
            if "bytes_per_session" in r:
                add("RSS bytes per session", r["bytes_per_session"])
print(f"{'scenario':28} {'median of':22} {'before':>10} {'after':>10}")
for s, d in sides["after"].items():
    for k, xs in d.items():
        b = sides["before"].get(s, {}).get(k)
        if b:
            print(f"{s:28} {k:22} {statistics.median(b):10.2f} {statistics.median(xs):10.2f}")
PY
