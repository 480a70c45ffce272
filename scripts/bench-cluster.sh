#!/usr/bin/env bash
# The cluster (--cluster on NATS JetStream), measured side by side in one run with one server
# on its embedded store (loopback only, every run bounded):
#
# - fan-out 50x1 64 B: one server with its embedded store; one node of a cluster; two nodes
#   with the subscribers spread over both (the sender on the first). Server CPU is the sum of
#   every process serving (the tlschat nodes and nats-server), per delivery; p99 latency.
# - acknowledged messages, 10 connections each waiting for its OK: the embedded store
#   (--fsync never, which is what JetStream's acknowledgement matches) and a cluster node.
#
# On one machine with few cores this measures what the cluster costs, not what it gains: the
# nodes and NATS share the cores. docs/PERFORMANCE.md says what grows with nodes on paper.
#
#   scripts/bench-cluster.sh           one pass
#   RUNS=3 scripts/bench-cluster.sh    three passes, interleaved; medians
#   SCALE=0.2 scripts/bench-cluster.sh smaller runs
#
# Installs nats-server with apt-get when missing (root only).
source "$(dirname "${BASH_SOURCE[0]}")/lib/bench-common.sh"
need nats-server:nats-server
results="$work/results.jsonl"

# start_cluster N: nats-server with JetStream (plain, loopback) and N nodes; sets $server_pid
# (the nodes, then NATS) and $server_addr (the nodes, comma-separated).
start_cluster() {
  local port i pids="" addrs=""
  port="$(free_port)"
  rm -rf "$work/js"
  nats-server -a 127.0.0.1 -p "$port" -js -sd "$work/js" >"$work/nats.log" 2>&1 &
  local nats=$!
  wait_port "$port"
  for i in $(seq "$1"); do
    "${on_server_core[@]}" "$bin/tlschat-server" --config "$work/tlschat-bench.toml" \
      --cluster "nats://127.0.0.1:$port" --node-name "node$i" >"$work/node$i.ready" 2>"$work/node$i.log" &
    pids+="$! "
    for _ in $(seq 200); do grep -q '^tlschat-server listening on' "$work/node$i.ready" && break; sleep 0.05; done
    local addr; addr="$(sed -n 's/^tlschat-server listening on //p' "$work/node$i.ready")"
    [[ -n "$addr" ]] || { cat "$work/node$i.log" >&2; return 1; }
    addrs+="${addrs:+,}$addr"
  done
  server_pid="$pids$nats"
  server_addr="$addrs"
}

fanout() { case="fanout 50x1 64 B"; bench tlschat "$server_addr" fanout --subscribers 50 --messages "$(n 50000)" --size 64; }
durable() { case="acked messages 10 conns 64 B"; bench tlschat "${server_addr%%,*}" durable --connections 10 --messages "$(n 20000)" --size 64; }
for _ in $(seq "${RUNS:-1}"); do
  label=one-server; start_tlschat --fsync never
  fanout; durable
  stop_server
  label=cluster-1-node; start_cluster 1
  fanout; durable
  stop_server
  label=cluster-2-nodes; start_cluster 2
  fanout
  stop_server
  label=
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB; nats-server $(nats-server --version | awk '{print $2}'); CPU: tlschat nodes + nats-server"
python3 "$root/scripts/lib/bench-table.py" "$results"
cp "$results" "${RESULTS_OUT:-/dev/null}" 2>/dev/null || true
