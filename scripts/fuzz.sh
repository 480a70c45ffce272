#!/usr/bin/env bash
# Long property-based fuzzing of every protocol parser (line codec, request parser, server
# lines, UDP datagrams, the replay window). CI runs the same properties with 256 cases each as
# part of `cargo test`; this runs many more, optimized.
#
#   scripts/fuzz.sh                 100,000 cases per property (a few minutes)
#   CASES=2000000 scripts/fuzz.sh   longer
#
# A failure prints the smallest input that breaks the property; proptest also saves it under
# crates/proto/proptest-regressions/ so it is tried first on every later run (commit that file).
# Coverage-guided fuzzing with cargo-fuzz needs a nightly toolchain, which this project does
# not assume; these properties run on stable.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PROPTEST_CASES="${CASES:-100000}"
echo "fuzzing with PROPTEST_CASES=$PROPTEST_CASES"
cargo test --release -p tlschat-proto --test never_panics
cargo test --release -p tlschat-proto --lib replay
