#!/usr/bin/env bash
# The standard suite against tlschat, nats-server and `ncat --chat --ssl`, in one run, with the
# same load generator (tlschat-bench), so every figure is a ratio taken side by side.
# Installs nats-server and ncat with apt-get when missing (root only). Loopback only.
#
#   scripts/bench-peers.sh                 one pass per server
#   RUNS=3 scripts/bench-peers.sh          three passes, interleaved; medians
#   SCALE=0.2 scripts/bench-peers.sh       smaller runs
#   PIN=1 RUNS=3 scripts/bench-peers.sh    servers on core 0, generator on core 1 (taskset)
#
# tlschat-floor (a bare tokio + rustls server with the same TLS setup) shows what the stack
# costs at the least, for request/response and handshakes.
# nats-server runs with TLS (verify off, as tlschat's fan-out clients present no certificate;
# a second instance with verify on measures CA-verified handshakes). ncat has no
# request/response and no client verification, so those rows are missing for it.
source "$(dirname "${BASH_SOURCE[0]}")/lib/bench-common.sh"
need nats-server:nats-server ncat:ncat
source "$root/scripts/lib/bench-suite.sh"
results="$work/results.jsonl"
for _ in $(seq "${RUNS:-1}"); do
  start_tlschat; suite tlschat; stop_server
  start_floor; label=floor
  case="request/response 10 conns"; bench tlschat "$server_addr" echo --connections 10 --requests "$(n 100000)"
  case="full handshake"; bench tlschat "$server_addr" connect --count "$(n 2000)"
  case="resumed handshake"; bench tlschat "$server_addr" connect --count "$(n 2000)" --resume
  label=; stop_server
  start_nats false; suite nats; stop_server
  start_nats true
  case="full handshake"; bench nats "$server_addr" connect --count "$(n 2000)"
  case="resumed handshake"; bench nats "$server_addr" connect --count "$(n 2000)" --resume
  stop_server
  start_ncat; suite ncat; stop_server
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB; nats-server $(nats-server --version | awk '{print $2}')$([[ "${PIN:-0}" == 1 ]] && echo "; pinned: servers on core 0, generator on core 1")"
python3 "$root/scripts/lib/bench-table.py" "$results"
cp "$results" "${RESULTS_OUT:-/dev/null}" 2>/dev/null || true
