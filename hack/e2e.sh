#!/usr/bin/env bash
# End-to-end suites on the cluster in a box.
#
#   hack/e2e.sh [SUITE...]            bring the cluster up (hack/cluster.sh up), run the suites
#                                     (e2e/tests/e2e_*.rs, or only the SUITEs named, e.g.
#                                     e2e_rollback), always tear the cluster down
#   hack/e2e.sh --running [SUITE...]  run against the cluster that is already up; leave it up
#
# Prints each suite's pass count and wall time; exits non-zero when a suite failed or the box did
# not come up. The processes' logs (the box kubelet's, and each pod's) are copied to
# target/e2e-logs/ (with KNMSTATE_CLUSTER_DIR set: <that dir>-e2e-logs/) before the teardown.
# Run as root.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

running=0
if [[ ${1:-} == --running ]]; then
    running=1
    shift
fi
suites=("$@")
if ((${#suites[@]} == 0)); then
    for f in e2e/tests/e2e_*.rs; do
        suites+=("$(basename "$f" .rs)")
    done
fi

STATE="${KNMSTATE_CLUSTER_DIR:-$REPO/target/cluster}"
# Beside the box's own state dir when it has one of its own, so that boxes do not mix logs.
if [[ -n ${KNMSTATE_CLUSTER_DIR:-} ]]; then
    LOGS_OUT="$STATE-e2e-logs"
else
    LOGS_OUT="$REPO/target/e2e-logs"
fi
box_status=0

save_logs() {
    if [[ -d "$STATE/logs" ]]; then
        rm -rf "$LOGS_OUT"
        cp -r "$STATE/logs" "$LOGS_OUT"
        echo "e2e.sh: process logs copied to $LOGS_OUT/"
    fi
}

if ((running == 0)); then
    trap 'save_logs; hack/cluster.sh down' EXIT
    start=$SECONDS
    hack/cluster.sh up || box_status=$?
    echo "e2e.sh: cluster up in $((SECONDS - start)) s (status $box_status)"
    # 3: everything runs but linux-bridge did not become Available; the suites still say why.
    if ((box_status != 0 && box_status != 3)); then
        echo "e2e.sh: the cluster did not come up" >&2
        exit 1
    fi
fi

[[ -s "$STATE/e2e.env" ]] || { echo "e2e.sh: no cluster is up ($STATE/e2e.env missing)" >&2; exit 1; }
while IFS='=' read -r k v; do
    [[ -n $k ]] && export "$k=$v"
done <"$STATE/e2e.env"
export RUST_BACKTRACE=0
# Against the box every test must run: a skip is a failure.
export KNMSTATE_REQUIRE_E2E=1

echo "e2e.sh: building the suites"
# Build once, then run the test executables directly: cargo would hold the build directory lock
# for the whole run otherwise.
declare -A exe
while IFS=$'\t' read -r name path; do
    exe[$name]="$path"
done < <(cargo test -q -p knmstate-e2e --no-run --message-format=json \
    $(printf -- '--test %s ' "${suites[@]}") |
    sed -n 's/.*"target":{[^}]*"name":"\([^"]*\)".*"executable":"\([^"]*\)".*/\1\t\2/p')
summary=()
failed=0
total_start=$SECONDS
for s in "${suites[@]}"; do
    echo
    echo "== $s =="
    start=$SECONDS
    out="$(mktemp)"
    rc=0
    if [[ -z ${exe[$s]:-} ]]; then
        echo "e2e.sh: suite $s was not built" | tee "$out"
        rc=1
    else
        (cd "$REPO/e2e" && "${exe[$s]}" --test-threads=1) 2>&1 | tee "$out" || rc=$?
    fi
    secs=$((SECONDS - start))
    line="$(grep -E '^test result:' "$out" | tail -1 || true)"
    passed="$(sed -n 's/.* \([0-9]*\) passed.*/\1/p' <<<"$line")"
    nfailed="$(sed -n 's/.* \([0-9]*\) failed.*/\1/p' <<<"$line")"
    rm -f "$out"
    if ((rc != 0)); then
        failed=1
    fi
    summary+=("$(printf '%-18s %s passed, %s failed, %4d s' "$s" "${passed:-0}" "${nfailed:-?}" "$secs")")
done

echo
echo "== end-to-end summary ($((SECONDS - total_start)) s) =="
printf '%s\n' "${summary[@]}"
if ((box_status == 3)); then
    echo "cluster in a box: linux-bridge did NOT become Available"
    failed=1
fi
exit "$failed"
