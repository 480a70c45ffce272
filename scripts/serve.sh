#!/usr/bin/env bash
# Builds tlschat, makes dev certificates if certs/ has none, and starts the server.
#
#   scripts/serve.sh                       listens on 127.0.0.1:6254
#   scripts/serve.sh --client-auth required --listen 0.0.0.0:6254
#
# Every flag is passed to tlschat-server (see `tlschat-server --help`). Stop it with Ctrl-C.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# TLSCHAT_BIN_DIR: use binaries already built there instead of building.
bin_dir="${TLSCHAT_BIN_DIR:-}"
if [[ -z "$bin_dir" ]]; then
  cargo build --quiet --release --bins
  bin_dir="$root/target/release"
  export TLSCHAT_BIN_DIR="$bin_dir"
fi
if [[ ! -f certs/ca.pem || ! -f certs/server.pem || ! -f certs/server-key.pem ]]; then
  scripts/gen-certs.sh
fi
echo "connect with: $bin_dir/tlschat   (or: $bin_dir/tlschat exec TIME)" >&2
exec "$bin_dir/tlschat-server" "$@"
