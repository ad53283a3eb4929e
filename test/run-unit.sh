#!/usr/bin/env bash
# Run every cmocka unit-test binary in DIR (build/test/test_*), print each
# one's output, count passed and failed tests, and write the counts to
# DIR/../unit-results.txt (lines "passed=N" and "failed=N").
#
#   test/run-unit.sh build/test
#
# Counts come from cmocka's summary lines ("[  PASSED  ] N test(s)." and
# "[  FAILED  ] N test(s), listed below:"). A binary that exits non-zero
# without reporting a failed test (a crash, an abort outside a test, a
# timeout) counts as one failed test. Exits non-zero if anything failed.
set -uo pipefail

dir=${1:?usage: test/run-unit.sh DIR}
per_binary_timeout=${UNIT_TIMEOUT:-300}
results="$dir/../unit-results.txt"
rm -f "$results"

if [ ! -d "$dir" ]; then
  echo "run-unit: no directory '$dir' (build the unit tests first: make unit)" >&2
  printf 'passed=0\nfailed=1\n' >"$results" 2>/dev/null || true
  exit 1
fi

shopt -s nullglob
bins=()
for f in "$dir"/test_*; do
  [ -f "$f" ] && [ -x "$f" ] && bins+=("$f")
done
if [ ${#bins[@]} -eq 0 ]; then
  echo "run-unit: no unit-test binaries (test_*) in '$dir'" >&2
  printf 'passed=0\nfailed=1\n' >"$results"
  exit 1
fi

export CMOCKA_MESSAGE_OUTPUT=stdout
total_passed=0
total_failed=0
broken=()
out=$(mktemp)
trap 'rm -f "$out"' EXIT

for bin in "${bins[@]}"; do
  name=$(basename "$bin")
  echo "=== $name"
  # cmocka prints some summary lines on stderr: merge them.
  timeout --kill-after=10 "$per_binary_timeout" "$bin" >"$out" 2>&1
  rc=$?
  cat "$out"
  passed=$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test(s)\..*/\1/p' "$out" |
           awk '{s += $1} END {print s + 0}')
  failed=$(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test(s).*/\1/p' "$out" |
           awk '{s += $1} END {print s + 0}')
  reason=""
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
    case $rc in
      124|137) reason="timed out after ${per_binary_timeout}s" ;;
      *) if [ "$rc" -gt 128 ]; then reason="killed by signal $((rc - 128))"
         else reason="exited $rc without a cmocka failure line"; fi ;;
    esac
    failed=1
  elif [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then
    reason="ran no test (no cmocka summary line)"
    failed=1
  fi
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
  if [ -n "$reason" ]; then
    echo "--- $name: $reason"
    broken+=("$name: $reason")
  elif [ "$failed" -gt 0 ]; then
    broken+=("$name: $failed failed")
  fi
  echo "--- $name: $passed passed, $failed failed"
done

printf 'passed=%d\nfailed=%d\n' "$total_passed" "$total_failed" >"$results"
echo
echo "unit tests: ${#bins[@]} binaries, $total_passed passed, $total_failed failed"
for b in "${broken[@]}"; do echo "  FAILED  $b"; done
[ "$total_failed" -eq 0 ]
