#!/usr/bin/env bash
# Mutation testing with cargo-mutants (installed when missing): changes the code one small way
# at a time (a `<` to `<=`, a function body to a default value…) and checks a test fails.
# A surviving ("missed") mutant is code no test pins down. Long: not part of CI.
#
#   scripts/mutants.sh proto            tlschat-proto: parsers, encoders, replay windows
#   scripts/mutants.sh security         the security-critical functions (UDP reply check, E2E,
#                                       certificate summaries, UDP drops, limits, outbox), tested
#                                       with their own crate and the end-to-end suite
#   SHARD=1/4 scripts/mutants.sh proto  one quarter of the mutants (a sample, or to split a run)
#   JOBS=2                              mutants built and tested at once (default 2)
#
# Results go to mutants.out/ (outcomes.json, caught.txt, missed.txt, timeout.txt, unviable.txt).
# Record them in docs/TESTING.md with the date and the command.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants
what="${1:-proto}"
args=(--jobs "${JOBS:-2}" --timeout-multiplier 3 --no-shuffle)
[[ -z "${SHARD:-}" ]] || args+=(--shard "$SHARD")
case "$what" in
  proto)
    exec cargo mutants "${args[@]}" -p tlschat-proto --features x509
    ;;
  security)
    # --baseline skip: cargo-mutants 27.1 ran its unmutated baseline for the mutated packages
    # only, ignoring --test-package (so a baseline with the end-to-end tests never ran); the
    # mutants themselves are tested with every package below. The suite is green in CI.
    exec cargo mutants "${args[@]}" --baseline skip \
      -f crates/client/src/udp.rs -f 'crates/client/src/e2e/*.rs' \
      -f crates/tls/src/signing.rs -f crates/tls/src/e2e.rs -f crates/proto/src/cert.rs \
      -f crates/server/src/udp.rs -f crates/server/src/limits.rs -f crates/server/src/chat/peer.rs \
      -f crates/server/src/server.rs \
      --test-package tlschat-proto --test-package tlschat-tls --test-package tlschat-client \
      --test-package tlschat-server --test-package tlschat-tests
    ;;
  *)
    echo "usage: scripts/mutants.sh proto|security" >&2
    exit 64
    ;;
esac
