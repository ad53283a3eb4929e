#!/usr/bin/env bash
# make bench: bash test/bench/run.sh BUILD
#
# Runs every benchmark scenario of docs/PERFORMANCE.md in one go against the
# binaries in BUILD/bin (the Makefile's `bench` target builds them first),
# prints the table and writes JSON under bench/results/ (git-ignored).
# Knobs are environment variables, documented in test/bench/bench.py
# (BENCH_N, BENCH_KAFKA=real, BENCH_ONLY, ...). A profile run is separate:
# test/bench/profile.sh BUILD.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
for b in mes-producer erp-consumer kafka-mock mes-sim bench-kit bench-load; do
  [ -x "$build/bin/$b" ] || { echo "run.sh: $build/bin/$b is missing: run make first" >&2; exit 2; }
done
exec python3 "$here/bench.py" "$build"
