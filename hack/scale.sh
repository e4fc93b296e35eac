#!/usr/bin/env bash
# The scale harness (testkit, feature `scale`): N real handlers over in-memory networks against
# the API stand-in and the controller, each of those two a process of its own
# (knmstate-apiserver, knmstate-controller), one rollout per scenario, release build.
# Prints one Markdown row per scenario (see docs/benchmarks.md). Arguments go to the runner:
#   hack/scale.sh                                   # N = 100, 300, 1000 × maxUnavailable 10 %, 50 %
#   hack/scale.sh --nodes 100 --max-unavailable 10% --apply-seconds 2 --verbose
# Every handler keeps about 10 connections open: 1,000 nodes need about 10,000 file descriptors
# in the harness's process and as many in the stand-in's.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build -q --release --locked -p knmstate-controller --bin knmstate-controller
cargo build -q --release --locked -p knmstate-testkit --no-default-features --features scale \
    --bin knmstate-scale --bin knmstate-apiserver
exec "${CARGO_TARGET_DIR:-target}/release/knmstate-scale" "$@"
