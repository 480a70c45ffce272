#!/usr/bin/env bash
# Builds tlschat, makes dev certificates if certs/ has none, and starts the server in the
# foreground.
#
#   scripts/serve.sh                       listens on 127.0.0.1:6254
#   scripts/serve.sh --client-auth required --listen 0.0.0.0:6254
#
# Every flag is passed to tlschat-server (see `tlschat-server --help`). Stop it with Ctrl-C.
# Closing the terminal stops it too: for the server itself SIGHUP means "reload the
# certificates" (what a daemon wants), so this script turns the terminal's hangup into a stop.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# TLSCHAT_BIN_DIR: use binaries already built there instead of building.
bin_dir="${TLSCHAT_BIN_DIR:-}"
if [[ -z "$bin_dir" ]]; then
  echo "building tlschat (release; the first build takes a few minutes)…" >&2
  cargo build --release --bins
  bin_dir="$root/target/release"
  export TLSCHAT_BIN_DIR="$bin_dir"
fi
# Dev certificates, unless the certificate files are given.
own_certs=false
for arg in "$@"; do
  case "$arg" in --cert|--cert=*|--key|--key=*|--ca|--ca=*|--config|--config=*) own_certs=true ;; esac
done
if ! $own_certs && [[ ! -f certs/ca.pem || ! -f certs/server.pem || ! -f certs/server-key.pem ]]; then
  scripts/gen-certs.sh
fi

# Where clients connect: the --listen address, with a wildcard replaced by loopback.
listen="127.0.0.1:6254"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --listen) listen="${args[$((i + 1))]:-$listen}" ;;
    --listen=*) listen="${args[$i]#--listen=}" ;;
  esac
done
connect="$listen"
case "$listen" in
  0.0.0.0*) connect="127.0.0.1${listen#0.0.0.0}" ;;
  "[::]"*) connect="[::1]${listen#\[::\]}" ;;
esac
echo "connect with: $bin_dir/tlschat --server $connect   (or: $bin_dir/tlschat --server $connect exec TIME)" >&2

"$bin_dir/tlschat-server" "$@" &
server=$!
trap 'kill -TERM "$server" 2>/dev/null || true' HUP TERM
trap 'kill -INT "$server" 2>/dev/null || true' INT
# `wait` returns early when a trapped signal arrives; wait again for the server's own status.
status=0
while kill -0 "$server" 2>/dev/null; do
  wait "$server" && status=0 || status=$?
done
exit "$status"
