#!/usr/bin/env bash
# Compares the same request/response over TLS-TCP and over signed UDP, on loopback.
#
#   scripts/udp-vs-tcp.sh                  10,000 requests per run, 3 runs per mode
#   REQUESTS=50000 RUNS=5 scripts/udp-vs-tcp.sh
#   REQUEST="ECHO hello" scripts/udp-vs-tcp.sh
#
# Builds release binaries, makes certificates in a temporary folder, starts one server with
# --udp, and runs tlschat-bench against it: `echo` over TLS, then `udp`, alternating, RUNS
# times each. Prints every run and the medians as a markdown table. Loopback only; bounded by
# REQUESTS and a 60 s deadline per run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
requests="${REQUESTS:-10000}"
runs="${RUNS:-3}"
request="${REQUEST:-PING}"
connections="${CONNECTIONS:-1}"

cargo build --quiet --release -p tlschat-server -p tlschat-certgen -p tlschat-bench
bin="$root/target/release"
work="$(mktemp -d)"
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/tlschat-certgen" --out "$work" --client bench >/dev/null
"$bin/tlschat-server" --listen 127.0.0.1:0 --udp 127.0.0.1:0 \
  --cert "$work/server.pem" --key "$work/server-key.pem" --ca "$work/ca.pem" --store "$work/store.redb" \
  >"$work/ready" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do
  grep -q '^tlschat-server listening on' "$work/ready" && break
  sleep 0.05
done
tcp="$(sed -n 's/^tlschat-server listening on //p' "$work/ready")"
udp="$(sed -n 's/^tlschat-server udp listening on //p' "$work/ready")"
[[ -n "$tcp" && -n "$udp" ]] || { echo "server did not start" >&2; cat "$work/server.log" >&2; exit 1; }

bench() {
  "$bin/tlschat-bench" --server "$1" --ca "$work/ca.pem" --cert "$work/bench.pem" --key "$work/bench-key.pem" \
    --requests "$requests" --connections "$connections" --request "$request" --json "$2"
}

results="$work/results.jsonl"
for _ in $(seq "$runs"); do
  bench "$tcp" echo >>"$results"
  bench "$udp" udp >>"$results"
done

python3 - "$results" "$request" "$connections" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print(f"request `{sys.argv[2]}`, {sys.argv[3]} connection(s), closed loop, loopback\n")
print("| run | mode | requests | failed | req/s | p50 ms | p90 ms | p99 ms | max ms |")
print("|---|---|---|---|---|---|---|---|---|")
for i, r in enumerate(rows):
    l = r["latency_us"]
    print(f"| {i // 2 + 1} | {r['mode']} | {r['requests']} | {r['failed']} | {r['per_second']:.0f} | "
          f"{l['p50']/1000:.3f} | {l['p90']/1000:.3f} | {l['p99']/1000:.3f} | {l['max']/1000:.3f} |")
print("\nmedians:\n")
print("| mode | req/s | p50 ms | p99 ms |")
print("|---|---|---|---|")
med = {}
for mode in ("echo", "udp"):
    rs = [r for r in rows if r["mode"] == mode]
    med[mode] = (statistics.median(r["per_second"] for r in rs),
                 statistics.median(r["latency_us"]["p50"] for r in rs) / 1000,
                 statistics.median(r["latency_us"]["p99"] for r in rs) / 1000)
    print(f"| {'TLS (echo)' if mode == 'echo' else 'signed UDP'} | {med[mode][0]:.0f} | {med[mode][1]:.3f} | {med[mode][2]:.3f} |")
print(f"\nratio UDP/TLS: req/s {med['udp'][0] / med['echo'][0]:.2f}x, p50 latency {med['udp'][1] / med['echo'][1]:.2f}x")
PY
