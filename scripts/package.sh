#!/usr/bin/env bash
# Builds the Debian package, target/debian/tlschat_<version>_<arch>.deb: the three binaries,
# their manual pages and shell completions (generated from the binaries themselves, so they
# always match --help), /etc/tlschat/server.toml and the sandboxed tlschat-server.service.
#
#   scripts/package.sh          build it (installs cargo-deb with cargo when missing)
#   scripts/package.sh --test   build it, then check it on this machine: the manual pages render
#                               without warnings, the completions load in bash, the unit passes
#                               systemd-analyze verify with an exposure of 2.0 or less, and the
#                               package installs (dpkg -i), passes --check-config with
#                               certificates made for it, and removes without touching
#                               /var/lib/tlschat. Needs root (CI runs it); installs the Debian
#                               tools it uses (man-db, systemd, bash-completion) when missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! command -v cargo-deb >/dev/null; then
  echo "==> installing cargo-deb"
  cargo install --quiet --locked cargo-deb
fi

echo "==> building"
cargo build --quiet --release -p tlschat-server -p tlschat-client -p tlschat-certgen
bin="$root/target/release"
out="$root/target/package"
rm -rf "$out"
mkdir -p "$out"/{man,bash,zsh,fish}
for name in tlschat tlschat-server tlschat-certgen; do
  "$bin/$name" manpage | gzip -9n >"$out/man/$name.1.gz"
  "$bin/$name" completions bash >"$out/bash/$name"
  "$bin/$name" completions zsh >"$out/zsh/_$name"
  "$bin/$name" completions fish >"$out/fish/$name.fish"
done
{
  cat <<'TOML'
# /etc/tlschat/server.toml: the settings of tlschat-server.service. Keys are the long flag
# names (tlschat-server --help, man tlschat-server). After a change: systemctl restart
# tlschat-server (certificates and the revocation list only: systemctl reload tlschat-server).
#
# Make the certificates for this host once (as root), then let the service read the key:
#   tlschat-certgen --out /etc/tlschat/certs --host chat.example.org --admin YOURNAME
#   chgrp tlschat /etc/tlschat/certs/server-key.pem && chmod 0640 /etc/tlschat/certs/server-key.pem

# Loopback only until you decide otherwise: "0.0.0.0" (or a host name/address) for the network.
listen = "127.0.0.1:6254"
cert = "/etc/tlschat/certs/server.pem"
key = "/etc/tlschat/certs/server-key.pem"
ca = "/etc/tlschat/certs/ca.pem"
store = "/var/lib/tlschat/tlschat.redb"
# Once you revoke a certificate (tlschat-certgen --out /etc/tlschat/certs revoke NAME):
# crl = "/etc/tlschat/certs/crl.pem"

# Everything else, at its default:
TOML
  "$bin/tlschat-server" default-config | grep -v -E '^# (listen|cert|key|ca|store|crl) = ' \
    | sed -e '1,2d'
} >"$out/server.toml"

echo "==> packaging"
cargo deb --quiet --no-build -p tlschat-server
deb="$(ls -t "$root"/target/debian/tlschat_*.deb | head -1)"
echo "built $deb"

[[ "${1:-}" == "--test" ]] || exit 0

echo "==> checking the package"
fail() { echo "package check failed: $*" >&2; exit 1; }
need=()
command -v man >/dev/null || need+=(man-db)
command -v systemd-analyze >/dev/null || need+=(systemd)
[[ -f /usr/share/bash-completion/bash_completion ]] || need+=(bash-completion)
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

contents="$(dpkg-deb --contents "$deb")"
for file in usr/bin/tlschat usr/bin/tlschat-server usr/bin/tlschat-certgen \
  usr/share/man/man1/tlschat.1.gz usr/share/man/man1/tlschat-server.1.gz \
  usr/share/man/man1/tlschat-certgen.1.gz usr/share/bash-completion/completions/tlschat \
  usr/share/zsh/vendor-completions/_tlschat-server usr/share/fish/vendor_completions.d/tlschat-certgen.fish \
  etc/tlschat/server.toml lib/systemd/system/tlschat-server.service; do
  grep -q " ./$file\$" <<<"$contents" || fail "$file is not in the package"
done
echo "contents: every file is there"

for page in "$out"/man/*.1.gz; do
  warnings="$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)"
  [[ -z "$warnings" ]] || fail "man -l $(basename "$page"): $warnings"
done
echo "manual pages: render without warnings"

for name in tlschat tlschat-server tlschat-certgen; do
  bash -c "source /usr/share/bash-completion/bash_completion 2>/dev/null; source '$out/bash/$name' && complete -p $name >/dev/null" \
    || fail "the bash completion of $name does not load"
done
echo "completions: load in bash"

unit="$root/packaging/tlschat-server.service"
exposure="$(systemd-analyze security --offline=true "$unit" 2>&1 | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')"
[[ -n "$exposure" ]] || fail "systemd-analyze security printed no exposure"
python3 -c "import sys; sys.exit(0 if float('$exposure') <= 2.0 else 1)" || fail "exposure $exposure is above 2.0"
echo "systemd-analyze security: exposure $exposure"

dpkg -i "$deb" >/dev/null
getent passwd tlschat >/dev/null || fail "no tlschat user after install"
systemd-analyze verify /lib/systemd/system/tlschat-server.service || fail "systemd-analyze verify"
echo "systemd-analyze verify: OK"
certs=/etc/tlschat/certs
tlschat-certgen --out "$certs" --client check >/dev/null
chgrp tlschat "$certs/server-key.pem" && chmod 0640 "$certs/server-key.pem"
tlschat-server --config /etc/tlschat/server.toml --check-config || fail "--check-config"
mkdir -p /var/lib/tlschat && echo kept >/var/lib/tlschat/canary
dpkg -r tlschat >/dev/null
[[ -f /var/lib/tlschat/canary ]] || fail "removing the package deleted /var/lib/tlschat"
[[ ! -e /usr/bin/tlschat-server ]] || fail "the binaries stayed after removal"
rm -f /var/lib/tlschat/canary
echo "install, --check-config, remove (keeping /var/lib/tlschat): OK"
echo "package check passed"
