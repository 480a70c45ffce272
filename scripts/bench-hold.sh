#!/usr/bin/env bash
# Many idle TLS connections on one tlschat server (default 50,000): opens them, reports the
# server's memory per connection and a round trip on a fresh connection, then runs a fan-out
# (50 subscribers, 64 B) while they all stay open. Loopback only; bounded by --deadline.
#
#   scripts/bench-hold.sh                       50,000 connections
#   CONNECTIONS=19000 scripts/bench-hold.sh     fewer (what a 20,000-file limit allows)
#   MESSAGES=20000 DEADLINE=600s JSON=1         the fan-out's messages, the run's bound, JSON out
#
# Each connection is an open file in the server and another in the load generator, so both
# need an open-file limit above CONNECTIONS. The script raises the soft limit (`ulimit -n`) for
# both; it cannot raise the hard limit, which only root with CAP_SYS_RESOURCE can (limits.conf,
# systemd's LimitNOFILE=, `docker run --ulimit nofile=N:N`). It says so and stops when the hard
# limit is too low. Connections are spread over several loopback source addresses, since one
# source address has about 28,000 ephemeral ports.
set -euo pipefail
connections="${CONNECTIONS:-50000}"
[[ "$connections" =~ ^[1-9][0-9]*$ ]] || { echo "bench-hold: CONNECTIONS must be a positive number" >&2; exit 2; }
# Held connections, the fan-out's 51, the probe, and the files a process has anyway.
files=$((connections + 1000))
hard="$(ulimit -Hn)"
if [[ "$hard" != unlimited ]] && ((hard < files)); then
  cat >&2 <<EOF
bench-hold: $connections connections need $files open files in the server and in the load
generator, but this shell's hard limit is $hard, and only root with CAP_SYS_RESOURCE can raise
a hard limit (limits.conf, systemd LimitNOFILE=, docker run --ulimit nofile=$files:$files).
Raise it, or run fewer: CONNECTIONS=$((hard - 1000)) $0
EOF
  exit 2
fi
ulimit -n "$files"

source "$(dirname "${BASH_SOURCE[0]}")/lib/bench-common.sh"
sources=()
for i in $(seq 2 $((2 + connections / 20000))); do sources+=(--source "127.0.0.$i"); done

start_tlschat
echo "bench-hold: $(ulimit -n) open files allowed; $connections connections from $((${#sources[@]} / 2)) source addresses" >&2
"$bin/tlschat-bench" --target tlschat --server "$server_addr" --ca "$work/ca.pem" \
  --cert "$work/bench.pem" --key "$work/bench-key.pem" --server-pid "$server_pid" \
  "${sources[@]}" --deadline "${DEADLINE:-600s}" ${JSON:+--json} \
  hold --connections "$connections" --fanout 50 --fanout-messages "${MESSAGES:-20000}"
if grep -q 'accept failed' "$work/tlschat.log"; then
  echo "bench-hold: the server failed to accept some connections:" >&2
  grep -m3 'accept failed' "$work/tlschat.log" >&2
  exit 1
fi
