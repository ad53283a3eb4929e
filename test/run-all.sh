#!/usr/bin/env bash
# make test: unit tests, then the integration tests against the embedded
# Kafka, then the reliability suite (real Apache Kafka). Every stage runs
# even when an earlier one failed, so one run shows everything. The last
# line is always "tests: N passed, M failed"; the exit code is non-zero
# if any test failed or any stage broke.
#
#   test/run-all.sh BUILD
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}

total_passed=0
total_failed=0
status=0
summary=()
start=$SECONDS

# stage NAME RESULTS-FILE COMMAND...
stage() {
  local name=$1 results=$2; shift 2
  local t0=$SECONDS rc p f
  rm -f "$results"
  echo
  echo "##### $name"
  "$@"
  rc=$?
  p=0; f=0
  if [ -f "$results" ]; then
    p=$(sed -n 's/^passed=//p' "$results"); f=$(sed -n 's/^failed=//p' "$results")
    p=${p:-0}; f=${f:-0}
  fi
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1   # the stage broke without counting a failure: count it as one
  fi
  [ "$rc" -ne 0 ] && status=1
  [ "$f" -gt 0 ] && status=1
  total_passed=$((total_passed + p))
  total_failed=$((total_failed + f))
  summary+=("$(printf '%-26s %4d passed, %d failed  (%ds, exit %d)' "$name" "$p" "$f" $((SECONDS - t0)) "$rc")")
}

stage "unit" "$build/unit-results.txt" bash test/run-unit.sh "$build/test"
stage "integration (embedded)" "$build/integration-embedded-results.txt" \
  bash test/run-integration.sh "$build" embedded
stage "integration (reliability)" "$build/integration-reliability-results.txt" \
  bash test/run-integration.sh "$build" reliability

echo
echo "##### summary ($((SECONDS - start))s)"
for line in "${summary[@]}"; do echo "  $line"; done
echo "tests: $total_passed passed, $total_failed failed"
exit "$status"
