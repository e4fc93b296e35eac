#!/usr/bin/env bash
# Runs the fuzz targets with cargo-fuzz (libFuzzer) on the nightly toolchain.
#
#   hack/fuzz.sh                 every target for $FUZZ_SECONDS seconds each (default 180)
#   hack/fuzz.sh TARGET [ARGS]   one target; ARGS go to libFuzzer (e.g. -max_total_time=600)
#   hack/fuzz.sh --list          the targets
#
# Targets: admission_review and capture_expression (webhook/fuzz), nns_filter
# (state-engine/fuzz). Corpora and crash artifacts stay in each fuzz crate's corpus/ and
# artifacts/ (ignored by git); a crash found is fixed and its input kept as a regression test.
# The fuzz crates are workspaces of their own, built into target/fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="$root/target/fuzz"

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

declare -A crate_of=(
  [admission_review]=webhook
  [capture_expression]=webhook
  [nns_filter]=state-engine
)

# Seeds: the fixture reviews (a leading byte picks the admission path: 0 = validate), the
# capture expressions of the fixtures, a small node state.
seed() {
  local dir=$root/$2/fuzz/corpus/$1
  [[ -d $dir ]] && return
  mkdir -p "$dir"
  case $1 in
  admission_review)
    for f in "$root"/webhook/tests/fixtures/*/*.json; do
      { printf '\0'; cat "$f"; } >"$dir/$(basename "$f")"
    done
    ;;
  capture_expression)
    printf '%s' 'routes.running.destination=="0.0.0.0/0"' >"$dir/gw"
    printf '%s' 'interfaces.name==capture.gw.routes.running.0.next-hop-interface' >"$dir/gw-iface"
    printf '%s' 'capture.base-iface | interfaces.name := "br1"' >"$dir/replace"
    ;;
  nns_filter)
    printf '\x00\x04%s' '{"interfaces":[{"name":"eth0","type":"ethernet","state":"up","ipv4":{"enabled":true,"address":[{"ip":"198.18.0.2","prefix-length":24}]}},{"name":"veth1","type":"veth","state":"up"}],"routes":{"running":[{"destination":"0.0.0.0/0","next-hop-interface":"eth0"}],"config":[]},"dns-resolver":{"running":{"server":["198.18.0.1"]}}}' >"$dir/node"
    ;;
  esac
}

run() {
  local target=$1
  shift
  local crate=${crate_of[$target]:?unknown target $target (see --list)}
  seed "$target" "$crate"
  (cd "$root/$crate" && cargo +nightly fuzz run "$target" -- "$@")
}

case "${1:-}" in
--list) printf '%s\n' "${!crate_of[@]}" | sort ;;
"")
  for target in $(printf '%s\n' "${!crate_of[@]}" | sort); do
    echo "== $target (${FUZZ_SECONDS:-180} s) =="
    run "$target" -max_total_time="${FUZZ_SECONDS:-180}"
  done
  ;;
*) run "$@" ;;
esac
