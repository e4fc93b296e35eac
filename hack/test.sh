#!/usr/bin/env bash
# The project's test command: everything CI checks, in the order a failure is cheapest to see.
# Run as root (the NetworkManager node tests create network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n== %s ==\n' "$*"; }

step "install Debian packages"
hack/install-deps.sh

step "format"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "generated CRDs are fresh"
cargo run -q --locked -p knmstate-api --bin crdgen -- --check

step "tests"
cargo test --workspace --locked
