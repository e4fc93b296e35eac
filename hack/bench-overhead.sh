#!/usr/bin/env bash
# What a policy costs over a raw nmstate apply, on the cluster in a box built in release mode.
#
#   hack/bench-overhead.sh [--rounds N] [--node NODE] [--nodes N] [--changes N] [--running] [--keep]
#
#   --rounds N   measured rounds (default 10), after one unmeasured warm-up round
#   --node NODE  the node measured (default node2)
#   --nodes N    nodes of the box brought up (default 3, as `hack/cluster.sh up`)
#   --changes N  out-of-band link changes made on the node after the rounds (default 1000,
#                one every 0.2 s; 0: none), for the memory figures below
#   --running    use the box that is already up (it must have been built with
#                KNMSTATE_CLUSTER_PROFILE=release) and leave it up
#   --keep       leave the box this script brought up running
#
# Without --running it brings up a box with KNMSTATE_CLUSTER_PROFILE=release hack/cluster.sh up
# (the box identity variables KNMSTATE_CLUSTER_DIR, KNMSTATE_CLUSTER_PREFIX, KNMSTATE_WEBHOOK_PORT,
# KNMSTATE_METRICS_PORT apply as there) and takes it down at the end. Run as root.
#
# The same desired state on both paths: a linux bridge brbench over eth2 with 198.18.90.2/24 and
# a route 198.19.90.0/24 via 198.18.90.254. Each round, in alternating order:
#   raw     `nmstatectl apply` of that state inside the node (hack/cluster.sh exec), timed
#           around nmstatectl there; nmstatectl (the version of the nmstate crate in Cargo.lock)
#           is installed with `cargo install --locked` into <target dir>/tools when missing;
#   policy  a NodeNetworkConfigurationPolicy with that state and a nodeSelector for the node,
#           timed from `kubectl apply` to `kubectl wait --for condition=Available` returning.
# After each path the policy is deleted (and its enactment gone), the bridge removed with
# nmstatectl (`state: absent`) and the node checked clean: no brbench, eth2 without a controller,
# neither the address nor the route.
#
# Prints one line per round, then the medians of both paths, the median of the per-round ratios
# policy/raw, and the breakdown the handler reports in the enactment's status.lastApply (apply
# duration from checkpoint to commit, each probe's duration, and any other number it holds:
# lastApply.steps times each step of the handler's reconcile — render and apply decision, slot
# claim, Progressing write with the probes' selection, apply, probes, commit), with "outside the
# apply" = policy time - lastApply.durationSeconds and "outside the steps" = policy time - the
# sum of lastApply.steps (kubectl, the handler seeing the policy and creating its enactment, the
# status write of the result, the controller's aggregation). Each policy round also times
# kubectl alone right after it: the same `kubectl apply` (now unchanged) and `kubectl wait` (now
# already true). The apply's cost comes before the handler can see the policy; the wait's
# overlaps with the handler's work. The script prints both medians and the median of
# (policy - kubectl apply alone) / raw.
#
# Memory: the resident set (VmRSS) and its peak (VmHWM) of the node's handler process and of the
# controller processes, from /proc, after the box came up (before the warm-up), after the rounds
# (every round applied and removed one policy), and after N out-of-band link changes on the node
# (a bridge `kmem` added and deleted N/2 times, 0.2 s apart: each change is one the handler
# reports in the NodeNetworkState, about an hour of changes at one a few seconds).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${KNMSTATE_CLUSTER_DIR:-$REPO/target/cluster}"
ROUNDS=10
NODE=node2
NODES=3
CHANGES=1000
RUNNING=0
KEEP=0
POLICY=bench-overhead
BRIDGE=brbench
ADDRESS=198.18.90.2
ROUTE=198.19.90.0/24
NEXT_HOP=198.18.90.254
WAIT_TIMEOUT=180

die() { echo "bench-overhead.sh: $*" >&2; exit 1; }
log() { echo "bench-overhead.sh: $*" >&2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --node) NODE="$2"; shift 2 ;;
        --nodes) NODES="$2"; shift 2 ;;
        --changes) CHANGES="$2"; shift 2 ;;
        --running) RUNNING=1; shift ;;
        --keep) KEEP=1; shift ;;
        *) die "usage: bench-overhead.sh [--rounds N] [--node NODE] [--nodes N] [--changes N] [--running] [--keep]" ;;
    esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive number"
[[ $CHANGES =~ ^[0-9]+$ ]] || die "--changes must be a number"
[[ $(id -u) -eq 0 ]] || die "must run as root (the box)"

cluster() { bash "$REPO/hack/cluster.sh" "$@"; }
kc() { KUBECONFIG="$STATE/kubeconfig" kubectl "$@"; }
on_node() { cluster exec "$NODE" "$@"; }

TARGET_DIR="$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
TOOLS="$TARGET_DIR/tools"
NMSTATECTL="$TOOLS/bin/nmstatectl"

ensure_nmstatectl() {
    [[ -x $NMSTATECTL ]] && return 0
    local version
    version="$(awk '/^name = "nmstate"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' "$REPO/Cargo.lock")"
    [[ -n $version ]] || die "no nmstate crate in Cargo.lock"
    log "installing nmstatectl $version into $TOOLS (cargo install, a few minutes)"
    cargo install --locked --quiet nmstatectl --version "$version" --root "$TOOLS"
}

brought_up=0
cleanup() {
    if [[ -s "$STATE/kubeconfig" ]]; then
        kc delete nncp "$POLICY" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    fi
    if ((brought_up && !KEEP)); then
        log "taking the box down"
        cluster down || true
    elif [[ -d "$STATE/bench" ]]; then
        on_node "$NMSTATECTL" apply "$STATE/bench/absent.yaml" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

ensure_nmstatectl
if ((RUNNING)); then
    [[ -s "$STATE/kubeconfig" ]] || die "no box is up at $STATE"
else
    log "bringing up a release box ($NODES nodes) at $STATE"
    brought_up=1
    KNMSTATE_CLUSTER_PROFILE=release cluster up "$NODES" >&2 || die "the box did not come up"
fi
profile="$(cat "$STATE/profile" 2>/dev/null || echo unknown)"
[[ $profile == release ]] || die "the box at $STATE was built with the '$profile' profile, not release"

DIR="$STATE/bench"
mkdir -p "$DIR"
bridge_state() {
    cat <<EOF
interfaces:
- name: $BRIDGE
  type: linux-bridge
  state: up
  ipv4:
    enabled: true
    dhcp: false
    address:
    - ip: $ADDRESS
      prefix-length: 24
  ipv6:
    enabled: false
  bridge:
    options:
      stp:
        enabled: false
    port:
    - name: eth2
routes:
  config:
  - destination: $ROUTE
    next-hop-address: $NEXT_HOP
    next-hop-interface: $BRIDGE
EOF
}
bridge_state >"$DIR/desired.yaml"
cat >"$DIR/absent.yaml" <<EOF
interfaces:
- name: $BRIDGE
  type: linux-bridge
  state: absent
EOF
{
    cat <<EOF
apiVersion: nmstate.io/v1
kind: NodeNetworkConfigurationPolicy
metadata:
  name: $POLICY
spec:
  nodeSelector:
    kubernetes.io/hostname: $NODE
  desiredState:
EOF
    bridge_state | sed 's/^/    /'
} >"$DIR/policy.yaml"

node_clean() {
    ! on_node ip link show "$BRIDGE" >/dev/null 2>&1 &&
        ! on_node ip -o link show eth2 | grep -q ' master ' &&
        ! on_node ip -4 -o addr show | grep -q " $ADDRESS/" &&
        [[ -z "$(on_node ip -4 route show "$ROUTE")" ]]
}

# Delete the policy (waiting for its enactment to go), remove the bridge, check the node clean.
reset_node() {
    kc delete nncp "$POLICY" --ignore-not-found --wait=true >/dev/null
    kc wait nnce "$NODE.$POLICY" --for=delete --timeout=60s >/dev/null 2>&1 || true
    on_node "$NMSTATECTL" apply "$DIR/absent.yaml" >"$DIR/absent.log" 2>&1 ||
        { cat "$DIR/absent.log" >&2; die "nmstatectl could not remove $BRIDGE"; }
    local i
    for i in $(seq 1 50); do
        node_clean && return 0
        sleep 0.2
    done
    on_node ip -o addr show >&2 || true
    die "$NODE is not clean after removing $BRIDGE"
}

# Seconds, raw nmstatectl apply timed inside the node.
time_raw() {
    local out
    out="$(on_node bash -c 's=$EPOCHREALTIME; "$1" apply "$2" >"$3" 2>&1 || exit 1; e=$EPOCHREALTIME
        echo "$s $e"' _ "$NMSTATECTL" "$DIR/desired.yaml" "$DIR/raw.log")" ||
        { cat "$DIR/raw.log" >&2; die "nmstatectl apply failed on $NODE"; }
    awk '{ printf "%.3f\n", $2 - $1 }' <<<"$out"
}

# "<policy> <apply floor> <wait floor>": seconds from kubectl apply to kubectl wait --for
# condition=Available returning; then kubectl's own cost, timed right after: the same two
# commands when there is nothing to do (an unchanged apply, a wait on a condition already true).
time_policy() {
    local s e fs fm fe
    s=$EPOCHREALTIME
    kc apply -f "$DIR/policy.yaml" >/dev/null
    if ! kc wait nncp "$POLICY" --for condition=Available --timeout="${WAIT_TIMEOUT}s" >/dev/null; then
        kc get nnce "$NODE.$POLICY" -o yaml >&2 || true
        die "policy $POLICY did not become Available within ${WAIT_TIMEOUT}s"
    fi
    e=$EPOCHREALTIME
    fs=$EPOCHREALTIME
    kc apply -f "$DIR/policy.yaml" >/dev/null
    fm=$EPOCHREALTIME
    kc wait nncp "$POLICY" --for condition=Available --timeout=10s >/dev/null
    fe=$EPOCHREALTIME
    awk -v s="$s" -v e="$e" -v fs="$fs" -v fm="$fm" -v fe="$fe" \
        'BEGIN { printf "%.3f %.3f %.3f\n", e - s, fm - fs, fe - fm }'
}

# "step seconds" lines from the enactment's status.lastApply: the apply, each probe by name,
# any other number it holds (by its path).
last_apply_steps() {
    kc get nnce "$NODE.$POLICY" -o json | jq -r '
        (.status.lastApply // {}) as $a
        | (if $a.durationSeconds then "apply(checkpoint->commit) \($a.durationSeconds)" else empty end),
          ($a.probes // [] | .[] | "probe:\(.name) \(.durationSeconds)"),
          ($a | paths(numbers) as $p
              | select($p[0] != "probes" and $p != ["durationSeconds"])
              | "\($p | map(tostring) | join(".")) \(getpath($p))")'
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) printf "%.3f\n", v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# "VmRSS VmHWM" in MiB of process PID.
rss_of() { awk '/^VmRSS/ { r = $2 } /^VmHWM/ { h = $2 } END { printf "%.1f %.1f\n", r / 1024, h / 1024 }' "/proc/$1/status"; }
# One line per measured process: "<what> <rss MiB> <peak MiB>" (the node's handler, each
# controller replica), after the phase named $1.
memory() {
    local phase="$1" line pid bin node pod
    while read -r line; do
        pid="$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$line")"
        bin="$(awk '{ print $3 }' <<<"$line")"
        node="$(sed -n 's/.* node=\(.*\)$/\1/p' <<<"$line")"
        pod="$(sed -n 's/.* pod=\([^ ]*\).*/\1/p' <<<"$line")"
        if [[ $bin == handler && $node == "$NODE" ]]; then
            echo "$phase handler($NODE) $(rss_of "$pid")"
        elif [[ $bin == knmstate-controller && $pod == *controller* ]]; then
            echo "$phase controller($pod) $(rss_of "$pid")"
        fi
    done < <(cluster status | grep '^pod-process') >>"$DIR/memory.txt"
}
: >"$DIR/memory.txt"
memory after-start

log "node $NODE, $ROUNDS rounds (+1 warm-up), nmstatectl $("$NMSTATECTL" --version 2>/dev/null | awk '{print $2}'), box profile $profile"
reset_node
: >"$DIR/raw.txt"
: >"$DIR/policy.txt"
: >"$DIR/ratio.txt"
: >"$DIR/floor-apply.txt"
: >"$DIR/floor-wait.txt"
: >"$DIR/ratio-beyond-apply.txt"
: >"$DIR/steps.txt"
for ((r = 0; r <= ROUNDS; r++)); do
    raw="" pol=""
    for path in raw policy; do
        # Alternate the order: odd rounds start with the policy.
        if ((r % 2)); then [[ $path == raw ]] && path=policy || path=raw; fi
        if [[ $path == raw ]]; then
            raw="$(time_raw)"
        else
            timed="$(time_policy)"
            read -r pol floor_apply floor_wait <<<"$timed"
            steps="$(last_apply_steps)"
        fi
        reset_node
    done
    ratio="$(awk -v p="$pol" -v r="$raw" 'BEGIN { printf "%.2f\n", p / r }')"
    beyond="$(awk -v p="$pol" -v f="$floor_apply" -v r="$raw" 'BEGIN { printf "%.2f\n", (p - f) / r }')"
    apply="$(awk '$1 ~ /^apply/ { print $2 }' <<<"$steps")"
    outside="$(awk -v p="$pol" -v a="${apply:-0}" 'BEGIN { printf "%.3f\n", p - a }')"
    beside="$(awk -v p="$pol" '$1 ~ /^steps\./ { s += $2 } END { printf "%.3f\n", p - s }' <<<"$steps")"
    breakdown="$(awk '{ printf "%s%s %.3f", (NR > 1 ? ", " : ""), $1, $2 }' <<<"$steps")"
    if ((r == 0)); then
        label="warm-up"
    else
        label="round $r/$ROUNDS"
        echo "$raw" >>"$DIR/raw.txt"
        echo "$pol" >>"$DIR/policy.txt"
        echo "$ratio" >>"$DIR/ratio.txt"
        echo "$floor_apply" >>"$DIR/floor-apply.txt"
        echo "$floor_wait" >>"$DIR/floor-wait.txt"
        echo "$beyond" >>"$DIR/ratio-beyond-apply.txt"
        { echo "$steps"; echo "outside-the-apply $outside"; echo "outside-the-steps $beside"; } >>"$DIR/steps.txt"
    fi
    printf '%s: raw %.3f s, policy %.3f s, ratio %.2fx (kubectl alone: apply %.3f s, wait %.3f s) | lastApply: %s | outside the apply %.3f s, outside the steps %.3f s\n' \
        "$label" "$raw" "$pol" "$ratio" "$floor_apply" "$floor_wait" "${breakdown:-(none)}" "$outside" "$beside"
done

memory after-rounds
if ((CHANGES > 0)); then
    log "$CHANGES out-of-band link changes on $NODE (one every 0.2 s)"
    on_node bash -c "for i in \$(seq $((CHANGES / 2))); do ip link add kmem type bridge; sleep 0.2; ip link del kmem; sleep 0.2; done"
    sleep 5
    memory "after-$CHANGES-link-changes"
fi

echo
echo "node $NODE, $ROUNDS rounds, release box, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$REPO" rev-parse --short HEAD)"
printf 'median raw nmstatectl apply:          %s s\n' "$(median <"$DIR/raw.txt")"
printf 'median policy apply -> Available:     %s s\n' "$(median <"$DIR/policy.txt")"
printf 'median of the pairwise ratios:        %sx (goal <= 1.10x)\n' "$(median <"$DIR/ratio.txt")"
printf 'median kubectl apply alone:           %s s (the same apply, unchanged)\n' "$(median <"$DIR/floor-apply.txt")"
printf 'median kubectl wait alone:            %s s (the same wait, already true)\n' "$(median <"$DIR/floor-wait.txt")"
printf 'median ratio after kubectl apply:     %sx ((policy - kubectl apply alone) / raw)\n' "$(median <"$DIR/ratio-beyond-apply.txt")"
echo "median per step (status.lastApply of the enactment; outside the apply = policy - apply, outside the steps = policy - sum of steps.*):"
awk '{ print $1 }' "$DIR/steps.txt" | awk '!seen[$0]++' | while read -r step; do
    printf '  %-36s %s s\n' "$step" "$(awk -v s="$step" '$1 == s { print $2 }' "$DIR/steps.txt" | median)"
done
echo "memory (MiB: resident, peak resident):"
awk '{ printf "  %-32s %-40s %7s %7s\n", $1, $2, $3, $4 }' "$DIR/memory.txt"
