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
# ROUNDS (default 4) sets the runs per binary. Loopback only; every run is bounded (60 s).
set -euo pipefail
[[ $# -ge 3 ]] || { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
old="$(realpath "$1")" new="$(realpath "$2")"; shift 2
source "$(dirname "$0")/lib/bench-common.sh"
declare -A results
for _ in $(seq "${ROUNDS:-4}"); do
  for which in old new; do
    binary="$old"; [[ "$which" == new ]] && binary="$new"
    # Each run starts from an empty store. (Binaries older than the store reject the
    # benchmark file's store settings: drop them from scripts/lib/bench-common.sh for those.)
    rm -f "$work/store.redb"
    "$binary" --config "$work/tlschat-bench.toml" >"$work/ab.ready" 2>/dev/null &
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
echo "old:${results[old]}"
echo "new:${results[new]}"
