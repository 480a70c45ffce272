#!/usr/bin/env bash
# The test suite, several times in a row under a parallel CPU load: what the testing issue asks
# of a suite that must not flake on a loaded 2-core CI machine. Each run is `cargo test
# --workspace` as .ci/run runs it (CI=true), with `stress-ng --cpu 2` busy beside it; a summary
# line per run, and the failing tests of a run that failed. Installs stress-ng when missing
# (root only). Long (about 8 minutes a run on 2 cores): not part of CI.
#
#   scripts/stress-suite.sh          ten runs
#   RUNS=3 scripts/stress-suite.sh   three
#
# Exit status: 0 when every run passed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v stress-ng >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stress-ng >/dev/null
fi
runs="${RUNS:-10}"
logs="$(mktemp -d)"
CI=true cargo test --workspace --no-run >/dev/null 2>&1 || { echo "the suite does not build" >&2; exit 2; }
failed=0
for i in $(seq "$runs"); do
  stress-ng --cpu 2 --timeout 3600 >/dev/null 2>&1 &
  load=$!
  start=$(date +%s)
  CI=true timeout 1800 cargo test --workspace --no-fail-fast >"$logs/run-$i.log" 2>&1
  status=$?
  kill "$load" 2>/dev/null; wait "$load" 2>/dev/null
  passed=$(grep -E '^test result' "$logs/run-$i.log" | awk '{s+=$4} END {print s+0}')
  failures=$(grep -E '^test result' "$logs/run-$i.log" | awk '{s+=$6} END {print s+0}')
  echo "run $i of $runs: exit $status, $passed passed, $failures failed, $(( $(date +%s) - start )) s"
  if [[ $status -ne 0 ]]; then
    failed=$((failed + 1))
    grep -E '^test .* FAILED|panicked at' "$logs/run-$i.log" | head -10
  fi
done
echo "$((runs - failed)) of $runs runs passed (logs in $logs)"
[[ $failed -eq 0 ]]
