#!/usr/bin/env bash
# Several sessions per person, measured: fan-out of 64 B messages from one sender to 100
# connections, as 100 verified people with one session each, and as 50 people with two
# sessions each (a laptop and a phone). Both runs have the same connections and deliveries;
# the server CPU per delivery should be the same within noise. A fresh server per run, the two
# shapes alternating (ROUNDS, default 4); the medians and their ratio at the end.
#
#   scripts/bench-sessions.sh
#   ROUNDS=6 MESSAGES=50000 scripts/bench-sessions.sh
#
# Loopback only; every run is bounded (60 s).
set -euo pipefail
source "$(dirname "$0")/lib/bench-common.sh"
ids="$work/identities"
mkdir -p "$ids"
args=()
for i in $(seq 0 99); do args+=(--client "sub$i"); done
# The subscribers' certificates, from the same CA as the server's.
cp "$work"/ca.pem "$work"/ca-key.pem "$ids"/
"$bin/tlschat-certgen" --out "$ids" "${args[@]}" >/dev/null
messages="${MESSAGES:-20000}"
declare -A results
for _ in $(seq "${ROUNDS:-4}"); do
  for shape in single double; do
    extra=(--identities "$ids")
    [[ "$shape" == double ]] && extra+=(--sessions-per-person 2)
    start_tlschat
    cost="$("$bin/tlschat-bench" --target tlschat --server "$server_addr" --ca "$work/ca.pem" \
      --server-pid "$server_pid" --deadline 60s --json \
      fanout --subscribers 100 --messages "$messages" --size 64 "${extra[@]}" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin).get("server_cpu_us_per_op"))')"
    results[$shape]+=" $cost"
    stop_server
  done
done
echo "server CPU per delivery, µs (fan-out 1 sender -> 100 connections, 64 B, $messages messages):"
echo "  100 people x 1 session: ${results[single]}"
echo "  50 people x 2 sessions: ${results[double]}"
python3 - "${results[single]}" "${results[double]}" <<'PY'
import statistics, sys
single = [float(x) for x in sys.argv[1].split()]
double = [float(x) for x in sys.argv[2].split()]
a, b = statistics.median(single), statistics.median(double)
print(f"  medians: {a:.4f} vs {b:.4f}; 2 sessions / 1 session = {b / a:.3f}")
PY
