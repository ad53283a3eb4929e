#!/usr/bin/env bash
# Profile the services on a reduced benchmark run (not part of make bench):
#   bash test/bench/profile.sh BUILD
#
# perf's hardware counters are not available on most VMs (perf stat -e
# instructions says <not supported>), so this uses valgrind's callgrind:
# instruction counts are exact and repeatable, whatever else the machine is
# doing. mes-producer and erp-consumer run under callgrind through the
# ingest and apply scenarios with small N (BENCH_N, BENCH_N_RT and
# BENCH_N_INGEST may be overridden); per process, bench/results/profile-<time>/
# gets the raw callgrind.*.out (open with kcachegrind or callgrind_annotate),
# *.self.txt (exclusive top entries), *.ours.txt (inclusive cost of invsync's
# own functions) and *.tree.txt (callers/callees of every function).
# Expect 5-15 minutes: everything runs ~50x slower under valgrind.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=${1:-build}
command -v valgrind >/dev/null || { echo "profile.sh: valgrind is not installed" >&2; exit 2; }
out="$repo/bench/results/profile-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
BENCH_WRAP=callgrind BENCH_PROFILE_DIR="$out" \
  BENCH_N=${BENCH_N:-20000} BENCH_N_RT=${BENCH_N_RT:-5000} BENCH_N_INGEST=${BENCH_N_INGEST:-20000} \
  BENCH_ONLY=${BENCH_ONLY:-ingest,apply} python3 "$here/bench.py" "$build" || true
for f in "$out"/callgrind.*.out; do
  [ -f "$f" ] || continue
  base=${f%.out}
  # Exclusive cost (where the instructions are spent, libraries included) and
  # inclusive cost of our own functions only (which code path spends them).
  callgrind_annotate --auto=no --inclusive=no "$f" 2>/dev/null | head -n 60 > "$base.self.txt" || true
  callgrind_annotate --auto=no --threshold=100 --inclusive=yes "$f" 2>/dev/null |
    grep -E "PROGRAM TOTALS|\[[^]]*/bin/[a-z-]+\]" | sed 's/ \[.*//' | head -n 60 > "$base.ours.txt" || true
  callgrind_annotate --auto=no --threshold=100 --inclusive=yes --tree=calling "$f" 2>/dev/null \
    > "$base.tree.txt" || true
done
echo "profile: $out"
ls -1 "$out"
