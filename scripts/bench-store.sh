#!/usr/bin/env bash
# The message store, measured side by side in one run (loopback only, every run bounded):
#
# - fan-out 50x1 64 B with the store on (the default) and off (--store none): the server CPU
#   per delivery the store adds;
# - acknowledged messages: 10 connections, each waiting for its acknowledgement, against
#   tlschat with --fsync always (the default: on disk) and --fsync never (handed to the OS),
#   and nats-server JetStream (file storage, publish with acknowledgement). JetStream
#   acknowledges before its periodic sync to disk, so it is matched against --fsync never;
# - the same acknowledged round trip with --store none (tlschat answers at once) and against
#   tlschat-floor (a bare tokio + rustls server answering PING): what no store can go below;
# - HISTORY of 1,000 messages as one page, and catching up 10,000 messages missed while away.
#
#   scripts/bench-store.sh            one pass
#   RUNS=3 scripts/bench-store.sh     three passes, interleaved; medians
#   SCALE=0.2 scripts/bench-store.sh  smaller runs
#   PIN=1 RUNS=3 ...                  servers on core 0, generator on core 1
#
# Installs nats-server with apt-get when missing (root only).
source "$(dirname "${BASH_SOURCE[0]}")/lib/bench-common.sh"
need nats-server:nats-server
results="$work/results.jsonl"
fanout() { case="fanout 50x1 64 B"; bench tlschat "$server_addr" fanout --subscribers 50 --messages "$(n 100000)" --size 64; }
durable() { case="acked messages 10 conns 64 B"; bench "$1" "$server_addr" durable --connections 10 --messages "$(n 20000)" --size 64; }
for _ in $(seq "${RUNS:-1}"); do
  label=tlschat; start_tlschat
  fanout; durable tlschat
  case="HISTORY 1000 messages"; bench tlschat "$server_addr" history --stored 1000 --pages "$(n 200)"
  case="catch up 10000 missed"; bench tlschat "$server_addr" catchup --missed 10000
  stop_server
  label=tlschat-fsync-never; start_tlschat --fsync never
  fanout; durable tlschat
  stop_server
  label=tlschat-no-store; start_tlschat --store none
  fanout; durable tlschat
  stop_server
  # The stack's floor for the same round trip: a bare tokio + rustls server answering a line.
  label=floor; start_floor
  case="acked messages 10 conns 64 B"; bench tlschat "$server_addr" echo --connections 10 --requests "$(n 20000)"
  stop_server
  label=nats-jetstream; start_nats false jetstream
  durable nats
  stop_server
  label=
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB; disk under $work: $(df -T "$work" | awk 'NR==2{print $2}'); nats-server $(nats-server --version | awk '{print $2}')$([[ "${PIN:-0}" == 1 ]] && echo "; pinned: servers on core 0, generator on core 1")"
python3 "$root/scripts/lib/bench-table.py" "$results"
cp "$results" "${RESULTS_OUT:-/dev/null}" 2>/dev/null || true
