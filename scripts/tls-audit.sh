#!/usr/bin/env bash
# Audits the server's TLS policy with a real scanner (sslscan), against a server started on
# loopback with fresh certificates: once with the defaults (TLS 1.3 only) and once with
# --tls12. Fails on any protocol below TLS 1.2, TLS 1.2 offered by default, a weak cipher
# (under 128 bits, RC4, DES, NULL, export, MD5, anonymous, CBC or SHA-1 MAC suites), TLS
# compression, insecure renegotiation or Heartbleed. Takes a few seconds; CI runs it.
#
#   scripts/tls-audit.sh                 builds debug binaries (or uses TLSCHAT_BIN_DIR)
#
# Installs sslscan with apt-get when it is missing (root only).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! command -v sslscan >/dev/null; then
  echo "installing sslscan" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sslscan >/dev/null
fi
bin="${TLSCHAT_BIN_DIR:-}"
if [[ -z "$bin" ]]; then
  cargo build --quiet -p tlschat-server -p tlschat-certgen
  bin="$root/target/debug"
fi

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
"$bin/tlschat-certgen" --out "$work" >/dev/null

# Starts a server (not in a subshell, so its pid is remembered for cleanup); sets $addr.
start() { # name, extra flags...
  local name="$1"; shift
  "$bin/tlschat-server" --listen 127.0.0.1:0 --cert "$work/server.pem" --key "$work/server-key.pem" \
    --ca "$work/ca.pem" --store "$work/$name.redb" "$@" >"$work/$name.ready" 2>"$work/$name.log" &
  pids+=($!)
  for _ in $(seq 200); do
    grep -q '^tlschat-server listening on' "$work/$name.ready" && break
    sleep 0.05
  done
  addr="$(sed -n 's/^tlschat-server listening on //p' "$work/$name.ready")"
}

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

audit() { # name, address, tls12_allowed
  local name="$1" addr="$2" tls12="$3"
  local out="$work/$name.scan"
  sslscan --no-colour "$addr" >"$out" 2>&1 || true
  echo "== $name ($addr)"
  sed -n '/SSL\/TLS Protocols:/,/^$/p; /TLS renegotiation:/,/^$/p; /TLS Compression:/,/^$/p; /Supported Server Cipher/,/^$/p' "$out"
  for old in SSLv2 SSLv3 TLSv1.0 TLSv1.1; do
    grep -Eq "^$old +disabled" "$out" || fail "$name: $old is not disabled"
  done
  grep -Eq '^TLSv1.3 +enabled' "$out" || fail "$name: TLS 1.3 is not enabled"
  if [[ "$tls12" == no ]]; then
    grep -Eq '^TLSv1.2 +disabled' "$out" || fail "$name: TLS 1.2 is offered without --tls12"
  fi
  grep -q 'Insecure session renegotiation' "$out" && fail "$name: insecure renegotiation"
  grep -q 'Compression enabled' "$out" && fail "$name: TLS compression"
  grep -E 'vulnerable to heartbleed' "$out" | grep -vq 'not vulnerable' && fail "$name: heartbleed"
  while read -r _ proto bits _ cipher _; do
    [[ "$bits" -lt 128 ]] && fail "$name: $proto $cipher has only $bits bits"
    [[ "$cipher" =~ (RC4|DES|NULL|EXP|MD5|ADH|AECDH|anon|CBC)|-SHA$ ]] && fail "$name: weak cipher $proto $cipher"
  done < <(grep -E '^(Preferred|Accepted) ' "$out")
  grep -Eq '^(Preferred|Accepted) ' "$out" || fail "$name: the scanner saw no cipher at all"
}

start default
audit default "$addr" no
start tls12 --tls12
audit tls12 "$addr" yes

if ((failures)); then
  echo "tls-audit: $failures problem(s)"
  exit 1
fi
echo "tls-audit: passed (no protocol below TLS 1.2, TLS 1.2 only with --tls12, no weak cipher, no compression, no renegotiation)"
