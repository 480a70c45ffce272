#!/usr/bin/env bash
# A/B comparison of two tlschat-server binaries on one benchmark: runs them alternately, a fresh
# server per run, with the same load generator and settings as scripts/bench.sh, and prints the
# server CPU per operation of every run. Alternating runs is what makes a difference of a few
# percent visible on a noisy machine; compare the two lists, not single numbers.
#
#   cp target/release/tlschat-server /tmp/old      # before the change
#   ...change, cargo build --release...
#   scripts/bench-ab.sh /tmp/old target/release/tlschat-server fanout --subscribers 50 --messages 100000 --size 64
#
# ROUNDS (default 4) sets the runs per binary. OLD_FLAGS / NEW_FLAGS add server flags to one
# side, so one binary can be compared with itself, e.g. the cost of the metrics:
#
#   NEW_FLAGS="--metrics 127.0.0.1:0" scripts/bench-ab.sh target/release/tlschat-server target/release/tlschat-server echo --connections 10 --requests 100000
#
# Loopback only; every run is bounded (60 s).
set -euo pipefail
[[ $# -ge 3 ]] || { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
old="$(realpath "$1")" new="$(realpath "$2")"; shift 2
source "$(dirname "$0")/lib/bench-common.sh"
declare -A results
for _ in $(seq "${ROUNDS:-4}"); do
  for which in old new; do
    binary="$old" flags="${OLD_FLAGS:-}"
    [[ "$which" == new ]] && binary="$new" flags="${NEW_FLAGS:-}"
    # Each run starts from an empty store. (Binaries older than the store reject the
    # benchmark file's store settings: drop them from scripts/lib/bench-common.sh for those.)
    rm -f "$work/store.redb" "$work/store.redb-journal"
    # shellcheck disable=SC2086 # the flags are separate words
    "$binary" --config "$work/tlschat-bench.toml" $flags >"$work/ab.ready" 2>/dev/null &
    server_pid=$!
    for _ in $(seq 200); do grep -q '^tlschat-server listening on' "$work/ab.ready" && break; sleep 0.05; done
    addr="$(sed -n 's/^tlschat-server listening on //p' "$work/ab.ready")"
    [[ -n "$addr" ]] || { echo "the $which server did not start" >&2; exit 1; }
    cost="$("$bin/tlschat-bench" --target tlschat --server "$addr" --ca "$work/ca.pem" \
      --cert "$work/bench.pem" --key "$work/bench-key.pem" --server-pid "$server_pid" \
      --source 127.0.0.2 --source 127.0.0.3 --deadline 60s --json "$@" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin).get("server_cpu_us_per_op"))')"
    results[$which]+=" $cost"
    stop_server
    : >"$work/ab.ready"
  done
done
echo "server CPU µs per operation, $*"
echo "old${OLD_FLAGS:+ ($OLD_FLAGS)}:${results[old]}"
echo "new${NEW_FLAGS:+ ($NEW_FLAGS)}:${results[new]}"
python3 - "${results[old]}" "${results[new]}" <<'PY'
import statistics, sys
old, new = ([float(x) for x in arg.split()] for arg in sys.argv[1:3])
print(f"medians: old {statistics.median(old):.4f}, new {statistics.median(new):.4f}, new/old {statistics.median(new) / statistics.median(old):.3f}")
PY
