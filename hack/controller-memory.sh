#!/usr/bin/env bash
# The controller's memory over a large cluster's objects (testkit, feature `scale`): N Nodes,
# P policies selecting every node and their N×P Available enactments in the API stand-in, the
# controller binary run against them; prints one Markdown row (see docs/benchmarks.md).
# Release builds. Arguments go to the runner:
#   hack/controller-memory.sh                               # 1,000 nodes, 100 policies
#   hack/controller-memory.sh --nodes 100 --policies 10 --settle-seconds 10
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release --locked -p knmstate-controller --bin knmstate-controller
cargo build -q --release --locked -p knmstate-testkit --no-default-features --features scale \
    --bin knmstate-controller-memory
target="${CARGO_TARGET_DIR:-target}/release"
exec "$target/knmstate-controller-memory" --controller "$target/knmstate-controller" "$@"
