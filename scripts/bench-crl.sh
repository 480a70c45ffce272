#!/usr/bin/env bash
# Full TLS handshakes with client certificates, against tlschat without a revocation list and
# with one of 10,000 revoked serials (REVOKED=N to change), side by side in one run: the server
# CPU per handshake the list costs. Loopback only; every run bounded.
#
#   scripts/bench-crl.sh              one pass each
#   RUNS=3 scripts/bench-crl.sh       three passes, interleaved; medians
source "$(dirname "${BASH_SOURCE[0]}")/lib/bench-common.sh"
results="$work/results.jsonl"
revoked="${REVOKED:-10000}"
# A revocation list of $revoked serials (none of them the benchmark client's), signed by the CA.
python3 - "$work/revoked.txt" "$revoked" <<'PY'
import sys, secrets, time
with open(sys.argv[1], "w") as f:
    for _ in range(int(sys.argv[2])):
        f.write(f"{secrets.token_hex(16)} {int(time.time())} unspecified -\n")
PY
"$bin/tlschat-certgen" --out "$work" revoke --refresh >/dev/null
for _ in $(seq "${RUNS:-1}"); do
  label=tlschat-no-crl; start_tlschat --client-auth required --crl none
  case="full handshake, client certificate"; bench tlschat "$server_addr" connect --count "$(n 2000)"
  stop_server
  label=tlschat-crl-$revoked; start_tlschat --client-auth required --crl "$work/crl.pem"
  case="full handshake, client certificate"; bench tlschat "$server_addr" connect --count "$(n 2000)"
  stop_server
  label=
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); revocation list: $revoked serials, $(wc -c <"$work/crl.pem") bytes"
python3 "$root/scripts/lib/bench-table.py" "$results"
