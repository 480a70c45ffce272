#!/usr/bin/env bash
# The standard benchmark suite against tlschat alone: builds release binaries, makes
# certificates, starts tlschat-server with the benchmark settings (limits lifted, listed in
# scripts/lib/bench-common.sh) and prints a markdown table. Loopback only; every run bounded.
#
#   scripts/bench.sh                 one pass
#   RUNS=3 scripts/bench.sh          three passes (report medians)
#   SCALE=0.2 scripts/bench.sh       fewer messages per run (quicker, noisier)
#
# scripts/bench-peers.sh runs the same suite against nats-server and ncat too.
source "$(dirname "${BASH_SOURCE[0]}")/lib/bench-common.sh"
source "$root/scripts/lib/bench-suite.sh"
results="$work/results.jsonl"
for _ in $(seq "${RUNS:-1}"); do
  start_tlschat
  suite tlschat
  stop_server
done
python3 "$root/scripts/lib/bench-table.py" "$results"
