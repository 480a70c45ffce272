#!/usr/bin/env bash
# Makes development certificates for tlschat with one command.
#
#   scripts/gen-certs.sh                      CA, server, demo users alice and bob, admin "admin"
#   scripts/gen-certs.sh --client carol       adds carol (existing files are kept)
#   scripts/gen-certs.sh --host chat.lan --ip 192.0.2.10   server reachable by that name/address
#   scripts/gen-certs.sh --force              replaces everything (new CA)
#   scripts/gen-certs.sh --out DIR            writes to DIR instead of certs/
#
# Every flag is passed to tlschat-certgen (see `tlschat-certgen --help`). With no --client or
# --admin flag, the demo users are made. Existing files are kept unless --force, or unless they
# no longer say what was asked (a new --host reissues only the server certificate).
# TLSCHAT_BIN_DIR=DIR uses a tlschat-certgen already built in DIR.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
caller="$PWD"

# A relative --out is the caller's, not the repository's: resolve it before moving there.
args=()
has_out=false
has_users=false
while (($#)); do
  case "$1" in
    --out)
      has_out=true
      out="${2:?--out needs a folder}"
      [[ "$out" == /* ]] || out="$caller/$out"
      args+=(--out "$out")
      shift 2
      continue
      ;;
    --out=*)
      has_out=true
      out="${1#--out=}"
      [[ "$out" == /* ]] || out="$caller/$out"
      args+=(--out "$out")
      ;;
    --client|--client=*|--admin|--admin=*) has_users=true; args+=("$1") ;;
    *) args+=("$1") ;;
  esac
  shift
done
cd "$root"
$has_out || args=(--out certs "${args[@]}")
$has_users || args+=(--client alice --client bob --admin admin)

# TLSCHAT_BIN_DIR: use binaries already built there (the test suite does) instead of building.
bin_dir="${TLSCHAT_BIN_DIR:-}"
if [[ -z "$bin_dir" ]]; then
  cargo build --quiet --release -p tlschat-certgen
  bin_dir="$root/target/release"
fi
exec "$bin_dir/tlschat-certgen" "${args[@]}"
