#!/usr/bin/env bash
# Starts a local cluster on loopback: one nats-server with JetStream (the history, and what
# carries messages between nodes) and N tlschat nodes, then says how to connect. Ctrl-C (or
# SIGTERM) stops everything. A demo and a development aid; for a real deployment see README.md
# "Running several servers" and docs/cluster/.
#
#   scripts/cluster.sh                 2 nodes: 127.0.0.1:6254 and 127.0.0.1:6255
#   NODES=3 scripts/cluster.sh         3 nodes: 6254, 6255, 6256
#   BASE_PORT=7000 NATS_PORT=4333 scripts/cluster.sh
#   BASE_PORT=0 NATS_PORT=-1 scripts/cluster.sh     ports the OS picks (printed)
#
# CERTS=DIR takes the certificates (ca.pem, server.pem, server-key.pem) from DIR instead of
# certs/ (made with scripts/gen-certs.sh when missing).
# Every extra argument goes to every node (`tlschat-server --help`). Data (the NATS store)
# lives in data/cluster/ (CLUSTER_DIR to change it); it survives a restart of the script.
# nats-server is Debian's package: installed with apt-get when missing (root or sudo).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

nodes="${NODES:-2}"
base_port="${BASE_PORT:-6254}"
nats_port="${NATS_PORT:-4222}"
dir="${CLUSTER_DIR:-$root/data/cluster}"
certs="${CERTS:-$root/certs}"
[[ "$nodes" =~ ^[1-9][0-9]?$ ]] || { echo "NODES must be 1 to 99, not $nodes" >&2; exit 2; }

if ! command -v nats-server >/dev/null; then
  echo "nats-server is missing: installing Debian's package…" >&2
  sudo_cmd=()
  [[ "$(id -u)" == 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
fi

# TLSCHAT_BIN_DIR: use binaries already built there instead of building.
bin_dir="${TLSCHAT_BIN_DIR:-}"
if [[ -z "$bin_dir" ]]; then
  echo "building tlschat (release; the first build takes a few minutes)…" >&2
  cargo build --release --bins
  bin_dir="$root/target/release"
fi
if [[ ! -f "$certs/ca.pem" || ! -f "$certs/server.pem" || ! -f "$certs/server-key.pem" ]]; then
  TLSCHAT_BIN_DIR="$bin_dir" scripts/gen-certs.sh --out "$certs"
fi

pids=()
stop_all() {
  trap - INT TERM HUP EXIT
  # Nodes first (they say goodbye to their clients and to the cluster), NATS last.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
}
trap 'stop_all; exit 0' INT TERM HUP
trap stop_all EXIT

# wait_for FILE TEXT: until FILE has a line starting with TEXT (20 s at most).
wait_for() {
  for _ in $(seq 400); do
    grep -q "^$2" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "no \"$2\" in $1 after 20 s:" >&2
  tail -20 "${1%.ready}.log" >&2 || true
  return 1
}

mkdir -p "$dir/nats"
nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$dir/nats" >"$dir/nats.log" 2>&1 &
pids+=($!)
for _ in $(seq 400); do grep -q "Server is ready" "$dir/nats.log" && break; sleep 0.05; done
grep -q "Server is ready" "$dir/nats.log" || { tail -20 "$dir/nats.log" >&2; exit 1; }
nats_addr="$(sed -n 's/.*Listening for client connections on //p' "$dir/nats.log" | tail -1)"
echo "nats-server with JetStream on nats://$nats_addr (store $dir/nats)" >&2

addrs=()
for i in $(seq "$nodes"); do
  port=0
  [[ "$base_port" == 0 ]] || port=$((base_port + i - 1))
  mkdir -p "$dir/node$i"
  (cd "$dir/node$i" && exec "$bin_dir/tlschat-server" --cert "$certs/server.pem" \
    --key "$certs/server-key.pem" --ca "$certs/ca.pem" --listen "127.0.0.1:$port" \
    --cluster "nats://$nats_addr" --node-name "node$i" "$@" \
    >"$dir/node$i.ready" 2>"$dir/node$i.log") &
  pids+=($!)
  wait_for "$dir/node$i.ready" "tlschat-server listening on"
  addr="$(sed -n 's/^tlschat-server listening on //p' "$dir/node$i.ready")"
  addrs+=("$addr")
  echo "node$i on $addr (log $dir/node$i.log)" >&2
done
servers="$(IFS=,; echo "${addrs[*]}")"
echo "cluster ready: $nodes nodes" >&2
echo "connect with: $bin_dir/tlschat --server $servers   (each client tries the nodes in order)" >&2

# Until a signal, or until a part of the cluster stops by itself.
while true; do
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "a part of the cluster stopped (pid $pid); stopping the rest" >&2
      exit 1
    fi
  done
  sleep 1 &
  wait $! || true
done
