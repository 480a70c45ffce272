# Shared by scripts/bench.sh and scripts/bench-peers.sh: build, certificates, server start/stop,
# one benchmark run. Source it; it sets $bin, $work and a cleanup trap.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

cargo build --quiet --release -p tlschat-server -p tlschat-certgen -p tlschat-bench
bin="$root/target/release"
work="$(mktemp -d)"
server_pid=""
# $server_pid: the server's process, or several separated by spaces (a cluster's nodes and
# its nats-server, stopped in that order); their CPU is summed.
stop_server() {
  local pid
  for pid in $server_pid; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  server_pid=""
}
trap 'stop_server; rm -rf "$work"' EXIT
"$bin/tlschat-certgen" --out "$work" --client bench >/dev/null

# Settings for benchmarks: the per-connection limits that protect a real deployment (request
# and byte rates, connections and handshakes per address, queue depth, room size, idle
# timeout) are lifted so they do not cap what is measured. Everything else is the default.
cat >"$work/tlschat-bench.toml" <<TOML
cert = "$work/server.pem"
key = "$work/server-key.pem"
ca = "$work/ca.pem"
listen = "127.0.0.1:0"
rate = 10000000
rate-burst = 10000000
rate-bytes = 1000000000000
rate-bytes-burst = 1000000000000
max-connections = 100000
max-connections-per-ip = 100000
max-handshakes-per-ip = 100000
max-pending-bytes = 67108864
max-room-members = 100000
idle-timeout = "1h"
store = "$work/store.redb"
max-history-page = 10000
TOML

# PIN=1: the server on core 0, the load generator on core 1 (taskset), so neither steals the
# other's core. Latency tails then show the server rather than the scheduler.
on_server_core=(env)
on_bench_core=(env)
if [[ "${PIN:-0}" == 1 ]]; then
  on_server_core=(taskset -c 0)
  on_bench_core=(taskset -c 1)
fi

# SCALE (default 1) scales the runs: n COUNT is COUNT times SCALE, at least 1.
scale="${SCALE:-1}"
n() { python3 -c "print(max(1, int($1 * $scale)))"; }

# need COMMAND:PACKAGE...: installs the Debian packages of the commands that are missing
# (apt-get, root only).
need() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_tlschat [FLAGS...]: sets $server_pid and $server_addr. Flags override the file
# (--store none, --fsync never). Each start gets a fresh store.
start_tlschat() {
  rm -f "$work/store.redb" "$work/store.redb-journal"
  "${on_server_core[@]}" "$bin/tlschat-server" --config "$work/tlschat-bench.toml" --udp 127.0.0.1:0 "$@" >"$work/tlschat.ready" 2>"$work/tlschat.log" &
  server_pid=$!
  for _ in $(seq 200); do grep -q '^tlschat-server listening on' "$work/tlschat.ready" && break; sleep 0.05; done
  server_addr="$(sed -n 's/^tlschat-server listening on //p' "$work/tlschat.ready")"
  udp_addr="$(sed -n 's/^tlschat-server udp listening on //p' "$work/tlschat.ready")"
  [[ -n "$server_addr" ]] || { cat "$work/tlschat.log" >&2; return 1; }
}

# The floor: a bare tokio + rustls server with tlschat's TLS setup (tlschat-floor), labelled
# "floor" in the results.
start_floor() {
  "${on_server_core[@]}" "$bin/tlschat-floor" --cert "$work/server.pem" --key "$work/server-key.pem" \
    --ca "$work/ca.pem" >"$work/floor.ready" 2>"$work/floor.log" &
  server_pid=$!
  for _ in $(seq 200); do grep -q '^tlschat-floor listening on' "$work/floor.ready" && break; sleep 0.05; done
  server_addr="$(sed -n 's/^tlschat-floor listening on //p' "$work/floor.ready")"
  [[ -n "$server_addr" ]] || { cat "$work/floor.log" >&2; return 1; }
}

wait_port() { # port
  for _ in $(seq 200); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# start_nats VERIFY(true|false) [jetstream]: with "jetstream", file storage in a fresh folder.
start_nats() {
  local port; port="$(free_port)"
  local js=""
  if [[ "${2:-}" == jetstream ]]; then
    rm -rf "$work/js"
    js="jetstream { store_dir: \"$work/js\" }"
  fi
  cat >"$work/nats.conf" <<CONF
$js
listen: 127.0.0.1:$port
max_connections: 100000
max_pending: 67108864
max_payload: 1048576
write_deadline: "10s"
tls {
  cert_file: "$work/server.pem"
  key_file: "$work/server-key.pem"
  ca_file: "$work/ca.pem"
  verify: $1
  timeout: 5
}
CONF
  "${on_server_core[@]}" nats-server -c "$work/nats.conf" >"$work/nats.log" 2>&1 &
  server_pid=$!
  server_addr="127.0.0.1:$port"
  wait_port "$port"
}

start_ncat() {
  local port; port="$(free_port)"
  "${on_server_core[@]}" ncat --listen --chat --ssl --ssl-cert "$work/server.pem" --ssl-key "$work/server-key.pem" \
    --max-conns 100000 127.0.0.1 "$port" >"$work/ncat.log" 2>&1 &
  server_pid=$!
  server_addr="127.0.0.1:$port"
  wait_port "$port"
}

# bench TARGET ADDR MODE ARGS... : one JSON report line appended to $results (failures noted).
bench() {
  local target="$1" addr="$2"; shift 2
  local out pid pids=()
  for pid in $server_pid; do pids+=(--server-pid "$pid"); done
  if out="$("${on_bench_core[@]}" "$bin/tlschat-bench" --target "$target" --server "$addr" --ca "$work/ca.pem" \
      --cert "$work/bench.pem" --key "$work/bench-key.pem" "${pids[@]}" \
      --source 127.0.0.2 --source 127.0.0.3 --source 127.0.0.4 --deadline 120s --json "$@" 2>"$work/bench.err")"; then
    printf '%s\n' "$out" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); r["case"]=sys.argv[1]; r["target"]=sys.argv[2] or r["target"]; print(json.dumps(r))' "$case" "${label:-}" >>"$results"
  else
    echo "  $target $* failed: $(tail -1 "$work/bench.err")" >&2
    printf '{"case":"%s","target":"%s","failed":true}\n' "$case" "${label:-$target}" >>"$results"
  fi
}
