#!/usr/bin/env bash
# The cluster in a box: the whole system on one machine, with real NetworkManager nodes.
#
#   hack/cluster.sh up [N]          build, start everything in the background, apply
#                                   examples/linux-bridge.yaml, wait until it is Available, print
#                                   how to use kubectl; N nodes (default 3). Exit status 3: all
#                                   runs but linux-bridge did not become Available.
#   hack/cluster.sh down            stop every process, remove every namespace and file made
#                                   (also after a crash)
#   hack/cluster.sh status          processes and nodes
#   hack/cluster.sh exec NODE CMD…  run CMD on a node (inside its network, mount and UTS namespaces)
#   hack/cluster.sh env             print the variables the end-to-end suites read
#   hack/cluster.sh restart-apiserver [SECONDS]
#                                   stop the API stand-in (SIGTERM: it writes its store to
#                                   <state>/apiserver.json), stay down SECONDS (default 1), start
#                                   it again from that file on the same address; every client
#                                   reconnects by itself (KNMSTATE_E2E_RESTART_APISERVER in e2e.env)
#   hack/cluster.sh restart-node NODE [SECONDS]
#                                   reboot a node (hack/nodes.sh restart): its processes killed,
#                                   its handler too, its links reset, down SECONDS (default 1),
#                                   NetworkManager started again on its persisted keyfiles; the box
#                                   kubelet restarts the handler (KNMSTATE_E2E_RESTART_NODE)
#
# Run as root. The box installs knmstate the way a user does: `kubectl apply -k` of the operator
# bundle (config/operator, through a kustomize overlay in the state dir that only shortens the
# handlers' retry and probe timings), then the NMState resource (config/samples/nmstate.yaml).
# Every knmstate process is then started by knmstate-boxlet, the box's kubelet, from the pod
# templates the operator wrote into the API (e2e/README.md says what it stands in for and how).
#
# What runs where:
#   host namespaces   knmstate-apiserver (the Kubernetes API stand-in, 127.0.0.1, random port),
#                     knmstate-boxlet (the kubelet; its Service forwarders on 127.0.0.1:
#                     $KNMSTATE_WEBHOOK_PORT -> the webhook pod, $KNMSTATE_METRICS_PORT -> the
#                     controller pod holding the leader Lease),
#                     socat: Unix socket <state>/api.sock -> the API's TCP port
#   switch netns      socat: 198.18.0.1:6443 -> <state>/api.sock (the filesystem is shared across
#                     network namespaces, so the socket joins the two without any host link)
#   node netns nodeI  NetworkManager (hack/nodes.sh) and the handler pod of the DaemonSet for
#                     nodeI, which reaches the API at http://198.18.0.1:6443 over the node's own
#                     eth0: a policy that cuts the node's network cuts the handler off.
#   pod netns <prefix>-pN  each other pod (operator, controller replicas, webhook) in a network
#                     namespace of its own, the API bridged in at 127.0.0.1:6443.
# Nothing is configured in the host's network namespace: no link, address or route.
#
# Identities: KNMSTATE_BOX_AUTH=1 (the default) makes the API stand-in serve HTTPS,
# authenticate bearer tokens and enforce RBAC (testkit/APISERVER.md), and every pod runs as its
# ServiceAccount with the token the box kubelet binds to its Pod (a handler's names its node),
# under the roles and admission policies of config/; kubectl here and in the end-to-end suites
# keeps the administrator's token (<state>/kubeconfig). With 0 the stand-in serves HTTP,
# refuses nothing, and every pod runs as the administrator (for debugging the box itself).
#
# Build profile: KNMSTATE_CLUSTER_PROFILE=debug (the default) or release; `up` builds the box's
# binaries with that cargo profile (release for measurements, e.g. hack/bench-overhead.sh) and
# records it in <state>/profile.
#
# Files: everything lives in the state dir ($KNMSTATE_CLUSTER_DIR, default target/cluster in the
# repository: visible inside the nodes, whose /run is private): binaries copied there (so a
# rebuild does not change a running cluster), kubeconfigs, pod directories (volumes, hostPaths
# remapped under hostpath/<node>/), pid files and one log per process under logs/.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${KNMSTATE_CLUSTER_DIR:-$REPO/target/cluster}"
PREFIX="${KNMSTATE_CLUSTER_PREFIX:-knmbox}"
WEBHOOK_PORT="${KNMSTATE_WEBHOOK_PORT:-19443}"
METRICS_PORT="${KNMSTATE_METRICS_PORT:-18089}"
PROFILE="${KNMSTATE_CLUSTER_PROFILE:-debug}"
AUTH="${KNMSTATE_BOX_AUTH:-1}"
# Handler timings: short, like upstream's e2e (NNCP_MAX_RETRIES=2, backoff 1-5 s), with short
# probe budgets so that a policy which breaks a node is rolled back within a minute. They are
# the operator's settings (its env), which it renders into the handler DaemonSet.
OPERATOR_ENV=(
    NNCP_MAX_RETRIES="${NNCP_MAX_RETRIES:-2}"
    NNCP_INITIAL_BACKOFF_SECONDS="${NNCP_INITIAL_BACKOFF_SECONDS:-1}"
    NNCP_MAX_BACKOFF_SECONDS="${NNCP_MAX_BACKOFF_SECONDS:-5}"
    PROBE_TIMEOUT_SECONDS="${PROBE_TIMEOUT_SECONDS:-15}"
    CHECKPOINT_TIMEOUT_SECONDS="${CHECKPOINT_TIMEOUT_SECONDS:-90}"
    # With enforcement the controller serves /metrics over TLS and authorizes each scrape
    # (TokenReview, SubjectAccessReview), as in production; the e2e suites scrape it with the
    # administrator's token. Without enforcement the stand-in has no reviews to ask, so the
    # controller stays on plain HTTP (docs/security.md, "Metrics").
    METRICS_SECURE="${METRICS_SECURE:-$([[ $AUTH == 1 ]] && echo true || echo false)}"
)
# The image the manifests name; the box runs its binaries from bin/ instead.
IMAGE=quay.io/knmstate/knmstate:latest
NS=nmstate
SW="${PREFIX}-sw"
GATEWAY=198.18.0.1
NODE_API_PORT=6443
BIN="$STATE/bin"
LOGS="$STATE/logs"
PIDS="$STATE/pids"

die() { echo "cluster.sh: $*" >&2; exit 1; }
log() { echo "cluster.sh: $*" >&2; }
need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces, mounts)"; }
nodes() { bash "$REPO/hack/nodes.sh" --prefix "$PREFIX" "$@"; }
kc() { KUBECONFIG="$STATE/kubeconfig" kubectl "$@"; }

ensure_packages() {
    bash "$REPO/hack/install-deps.sh"
    local missing=() p
    for p in socat openssl curl; do
        command -v "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    command -v kubectl >/dev/null 2>&1 || die "kubectl is needed (https://kubernetes.io/docs/tasks/tools/)"
    command -v cargo >/dev/null 2>&1 || die "cargo is needed (rustup; the toolchain is pinned in rust-toolchain.toml)"
}

build() {
    local profile_flag=()
    [[ $PROFILE == release ]] && profile_flag=(--release)
    log "building (cargo build, $PROFILE profile)"
    (cd "$REPO" && cargo build -q "${profile_flag[@]}" -p knmstate-testkit -p knmstate-handler \
        -p knmstate-controller -p knmstate-webhook --bins)
    local target_dir
    target_dir="$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
    mkdir -p "$BIN"
    local b
    for b in knmstate-apiserver knmstate-boxlet knmstate-webhook knmstate-controller handler; do
        cp "$target_dir/$PROFILE/$b" "$BIN/$b.new"
        mv "$BIN/$b.new" "$BIN/$b"
    done
}

# Start "$@" in the background in its own session, logs to logs/NAME.log, pid to pids/NAME.pid.
spawn() {
    local name="$1"
    shift
    setsid "$@" </dev/null >"$LOGS/$name.log" 2>&1 &
    echo $! >"$PIDS/$name.pid"
}

alive() { [[ -s "$PIDS/$1.pid" ]] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }

# wait_for DESCRIPTION SECONDS PROCESS-NAME-OR-EMPTY CMD...: poll CMD until it succeeds.
wait_for() {
    local what="$1" secs="$2" proc="$3"
    shift 3
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if [[ -n $proc ]] && ! alive "$proc"; then
            tail -n 30 "$LOGS/$proc.log" >&2 || true
            die "$proc exited while waiting for $what (log: $LOGS/$proc.log)"
        fi
        [[ $SECONDS -lt $deadline ]] || die "timed out after ${secs}s waiting for $what"
        sleep 0.3
    done
}

# The stand-in's flags: its store, and with KNMSTATE_BOX_AUTH=1 (recorded in <state>/auth at
# `up`) HTTPS and enforced authentication and RBAC; it logs every refusal (401, 403) as a
# warning to logs/apiserver.log.
apiserver_args() {
    APISERVER_ENV=(env NO_COLOR=1 RUST_LOG="${KNMSTATE_APISERVER_LOG:-warn}")
    APISERVER_ARGS=(--data-file "$STATE/apiserver.json")
    if [[ "$(cat "$STATE/auth" 2>/dev/null)" == 1 ]]; then
        APISERVER_ARGS+=(--tls --enforce-auth)
    fi
}

# The scheme and port of the stand-in in the administrator's kubeconfig.
api_address() {
    API_SCHEME="$(sed -n 's#.*server: \(https\{0,1\}\)://127\.0\.0\.1:[0-9]*.*#\1#p' "$STATE/kubeconfig")"
    API_PORT="$(sed -n 's#.*server: https\{0,1\}://127\.0\.0\.1:\([0-9]*\).*#\1#p' "$STATE/kubeconfig")"
    [[ -n $API_PORT && -n $API_SCHEME ]] || die "no server address in $STATE/kubeconfig"
}

# The stand-in answers /readyz (anonymous; over HTTPS its own certificate is not checked here).
api_ready() { curl -fsk -o /dev/null "$API_SCHEME://127.0.0.1:$API_PORT/readyz"; }

# The administrator's kubeconfig with the server at $1:$2 (its certificate names 127.0.0.1 and
# localhost, so a node's address is checked as localhost).
kubeconfig_at() {
    local name=""
    [[ $API_SCHEME == https && $1 != 127.0.0.1 ]] && name='\n\1tls-server-name: localhost'
    sed "s#^\( *\)server: $API_SCHEME://127\.0\.0\.1:$API_PORT#\1server: $API_SCHEME://$1:$2$name#" \
        "$STATE/kubeconfig"
}

start_apiserver() {
    apiserver_args
    spawn apiserver "${APISERVER_ENV[@]}" "$BIN/knmstate-apiserver" --listen 127.0.0.1:0 \
        --kubeconfig "$STATE/kubeconfig" "${APISERVER_ARGS[@]}"
    wait_for "the API stand-in's kubeconfig" 30 apiserver test -s "$STATE/kubeconfig"
    api_address
    wait_for "the API stand-in" 30 apiserver api_ready
    # Host side of the bridge into the switch namespace.
    spawn api-socket socat "UNIX-LISTEN:$STATE/api.sock,fork,unlink-early,mode=600" "TCP:127.0.0.1:$API_PORT"
    wait_for "the API socket" 10 api-socket test -S "$STATE/api.sock"
    # The box kubelet gives each pod these with the pod's own token in place of the admin's.
    kubeconfig_at "$GATEWAY" "$NODE_API_PORT" >"$STATE/kubeconfig-node"
    # Pods with a network namespace of their own reach the API at 127.0.0.1:6443 there.
    kubeconfig_at 127.0.0.1 "$NODE_API_PORT" >"$STATE/kubeconfig-pod"
}

# The stand-in stopped and started again from its persisted store on the port it had.
cmd_restart_apiserver() {
    need_root
    local down="${1:-1}" pid
    [[ "$down" =~ ^[0-9]+$ ]] || die "usage: restart-apiserver [SECONDS]"
    alive apiserver || die "the API stand-in is not running"
    api_address
    apiserver_args
    pid="$(cat "$PIDS/apiserver.pid")"
    kill -TERM "$pid"
    wait_for "the API stand-in to stop" 30 "" bash -c "! kill -0 $pid 2>/dev/null"
    sleep "$down"
    mv "$LOGS/apiserver.log" "$LOGS/apiserver.log.$(date +%s)"
    spawn apiserver "${APISERVER_ENV[@]}" "$BIN/knmstate-apiserver" --listen "127.0.0.1:$API_PORT" \
        "${APISERVER_ARGS[@]}"
    wait_for "the API stand-in" 30 apiserver api_ready
}

node_ip() { nodes exec "$1" ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1 | head -1; }

create_nodes() {
    local n="$1" i name role now ip
    now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    for ((i = 1; i <= n; i++)); do
        name="node$i"
        if [[ $i -eq 1 ]]; then role=control-plane; else role=worker; fi
        kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $name
  labels:
    kubernetes.io/hostname: $name
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node-role.kubernetes.io/$role: ""
EOF
        ip="$(node_ip "$name")"
        kc patch node "$name" --subresource=status --type=merge -p "{\"status\":{
            \"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"KubeletReady\",
              \"message\":\"harness node with NetworkManager\",
              \"lastHeartbeatTime\":\"$now\",\"lastTransitionTime\":\"$now\"}],
            \"addresses\":[{\"type\":\"InternalIP\",\"address\":\"$ip\"},{\"type\":\"Hostname\",\"address\":\"$name\"}],
            \"nodeInfo\":{\"operatingSystem\":\"linux\",\"architecture\":\"amd64\",\"kubeletVersion\":\"none\",
              \"kernelVersion\":\"$(uname -r)\",\"osImage\":\"knmstate harness node\",\"containerRuntimeVersion\":\"none\",
              \"kubeProxyVersion\":\"none\",\"machineID\":\"\",\"systemUUID\":\"\",\"bootID\":\"\"}}}" >/dev/null
    done
}

start_node_api_forwarder() {
    spawn switch-api ip netns exec "$SW" socat \
        "TCP-LISTEN:$NODE_API_PORT,bind=$GATEWAY,reuseaddr,fork" "UNIX-CONNECT:$STATE/api.sock"
    wait_for "the API at $GATEWAY:$NODE_API_PORT in the switch" 10 switch-api \
        ip netns exec "$SW" bash -c "exec 3<>/dev/tcp/$GATEWAY/$NODE_API_PORT"
}

start_boxlet() {
    local identity=()
    [[ "$(cat "$STATE/auth")" == 1 ]] && identity=(--pod-identity)
    spawn boxlet env RUST_LOG="${KNMSTATE_BOXLET_LOG:-info}" "$BIN/knmstate-boxlet" \
        --kubeconfig "$STATE/kubeconfig" --state "$STATE" --logs "$LOGS" \
        --nodes-script "$REPO/hack/nodes.sh" --prefix "$PREFIX" --api-socket "$STATE/api.sock" \
        --node-kubeconfig "$STATE/kubeconfig-node" --pod-kubeconfig "$STATE/kubeconfig-pod" \
        --image "$IMAGE=$BIN" \
        --expose "$NS/nmstate-webhook:443=$WEBHOOK_PORT" \
        --expose "$NS/nmstate-monitor:8089=$METRICS_PORT" \
        --leader-lease "$NS/nmstate-controller" "${identity[@]}"
}

# The operator bundle as a user applies it, through an overlay that only adds the box's
# handler timings to the operator's environment.
install_operator() {
    local dir="$STATE/install" e name value
    mkdir -p "$dir"
    {
        echo "apiVersion: kustomize.config.k8s.io/v1beta1"
        echo "kind: Kustomization"
        echo "resources:"
        echo "- $(realpath --relative-to="$dir" "$REPO/config/operator")"
        echo "patches:"
        echo "- target: {kind: Deployment, name: nmstate-operator}"
        echo "  patch: |-"
        for e in "${OPERATOR_ENV[@]}"; do
            name="${e%%=*}"
            value="${e#*=}"
            echo "    - {op: add, path: /spec/template/spec/containers/0/env/-, value: {name: $name, value: \"$value\"}}"
        done
    } >"$dir/kustomization.yaml"
    kc apply -k "$dir" >"$LOGS/install.log"
}

deployment_ready() {
    [[ "$(kc -n "$NS" get deployment "$1" -o jsonpath='{.status.availableReplicas}')" -ge 1 ]]
}

# The scheme of the controller's metrics endpoint, from the operator's METRICS_SECURE.
metrics_scheme() {
    local e
    for e in "${OPERATOR_ENV[@]}"; do
        [[ $e == METRICS_SECURE=true ]] && { echo https; return; }
    done
    echo http
}

write_env() {
    cat >"$STATE/e2e.env" <<EOF
KUBECONFIG=$STATE/kubeconfig
KNMSTATE_E2E_METRICS_URL=$(metrics_scheme)://127.0.0.1:$METRICS_PORT/metrics
KNMSTATE_E2E_NODE_EXEC=env KNMSTATE_CLUSTER_DIR=$STATE $REPO/hack/cluster.sh exec
KNMSTATE_E2E_PROBE_TIMEOUT_SECONDS=${PROBE_TIMEOUT_SECONDS:-15}
KNMSTATE_E2E_RESTART_APISERVER=env KNMSTATE_CLUSTER_DIR=$STATE $REPO/hack/cluster.sh restart-apiserver
KNMSTATE_E2E_RESTART_NODE=env KNMSTATE_CLUSTER_DIR=$STATE $REPO/hack/cluster.sh restart-node
KNMSTATE_E2E_SWITCH_EXEC=bash $REPO/hack/nodes.sh --prefix $PREFIX switch
KNMSTATE_E2E_HANDLER_ENV=$(printf '%s ' "${OPERATOR_ENV[@]}")
KNMSTATE_E2E_LOGS=$LOGS
KNMSTATE_E2E_AUTH=$AUTH
EOF
}

cmd_up() {
    need_root
    local n="${1:-3}"
    [[ "$n" =~ ^[1-9]$ ]] || die "usage: up [N] (1..9 nodes)"
    [[ $PROFILE == debug || $PROFILE == release ]] ||
        die "KNMSTATE_CLUSTER_PROFILE must be debug or release, not '$PROFILE'"
    [[ $AUTH == 0 || $AUTH == 1 ]] || die "KNMSTATE_BOX_AUTH must be 0 or 1, not '$AUTH'"
    ensure_packages
    cmd_down quiet
    mkdir -p "$STATE" "$LOGS" "$PIDS"
    echo "$PREFIX" >"$STATE/prefix"
    echo "$PROFILE" >"$STATE/profile"
    echo "$AUTH" >"$STATE/auth"
    build
    log "starting the API stand-in"
    start_apiserver
    log "starting $n NetworkManager node(s)"
    nodes up "$n" >"$LOGS/nodes.log" 2>&1 || { tail -n 30 "$LOGS/nodes.log" >&2; die "nodes did not come up"; }
    echo "$n" >"$STATE/nodes"
    start_node_api_forwarder
    create_nodes "$n"
    log "starting the box kubelet"
    start_boxlet
    log "installing the operator (kubectl apply -k config/operator)"
    install_operator
    wait_for "the operator Deployment to be available" 120 boxlet deployment_ready nmstate-operator
    log "creating the NMState resource (config/samples/nmstate.yaml)"
    kc apply -f "$REPO/config/samples/nmstate.yaml" >/dev/null
    if ! kc wait nmstate nmstate --for condition=Available --timeout=240s >/dev/null; then
        kc get nmstate nmstate -o yaml >&2 || true
        die "NMState nmstate did not become Available (logs: $LOGS)"
    fi
    local i
    for ((i = 1; i <= n; i++)); do
        wait_for "the NodeNetworkState of node$i" 120 boxlet kc get nns "node$i"
    done
    write_env
    log "applying examples/linux-bridge.yaml"
    kc apply -f "$REPO/examples/linux-bridge.yaml"
    if ! kc wait nncp linux-bridge --for condition=Available --timeout=180s; then
        kc get nncp,nnce >&2 || true
        kc get nnce -o custom-columns='NAME:.metadata.name,MESSAGE:.status.conditions[?(@.status=="True")].message' >&2 || true
        log "linux-bridge did not become Available (logs: $LOGS); the cluster stays up"
        exit 3
    fi
    echo
    kc get nncp,nnce,nns
    cat <<EOF

The cluster is up ($n nodes) and stays up until: hack/cluster.sh down
Use kubectl against it:
  export KUBECONFIG=$STATE/kubeconfig
  kubectl get nncp,nnce,nns
Run a command on a node:  hack/cluster.sh exec node1 nmcli device
Controller metrics:       $(metrics_scheme)://127.0.0.1:$METRICS_PORT/metrics
Processes (pods):         hack/cluster.sh status
Logs:                     $LOGS/
EOF
}

# Processes started from this state dir that escaped their pid file (after a crash of this script):
# those running a binary copied into bin/, or a helper (socat, a pod's mount script) of this
# state dir.
stray_pids() {
    local p exe cmd
    for p in /proc/[0-9]*; do
        exe="$(readlink "$p/exe" 2>/dev/null || true)"
        cmd="$(tr '\0' ' ' 2>/dev/null <"$p/cmdline" || true)"
        if [[ $exe == "$BIN/"* ]] || [[ $cmd == *"$STATE/"* && $cmd != *cluster.sh* ]]; then
            echo "${p#/proc/}"
        fi
    done
}

cmd_down() {
    need_root
    local quiet="${1:-}" prefix="$PREFIX" f pid
    [[ -s "$STATE/prefix" ]] && prefix="$(cat "$STATE/prefix")"
    # The box kubelet first: it stops every pod (SIGTERM, the grace period, then SIGKILL; a
    # handler rolls back an apply in flight), then the rest.
    if [[ -s "$PIDS/boxlet.pid" ]]; then
        pid="$(cat "$PIDS/boxlet.pid")"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 200); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
    fi
    for f in "$PIDS"/*.pid; do
        [[ -s $f ]] || continue
        pid="$(cat "$f")"
        kill -TERM "$pid" 2>/dev/null || true
    done
    local i
    for i in $(seq 1 30); do
        [[ -z "$(stray_pids)" ]] && break
        sleep 0.2
    done
    for pid in $(stray_pids); do
        [[ $pid == "$$" ]] && continue
        kill -KILL "$pid" 2>/dev/null || true
    done
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${prefix}-p[0-9]+$" || true); do
        ip netns del "$ns" 2>/dev/null || true
    done
    bash "$REPO/hack/nodes.sh" --prefix "$prefix" down
    rm -rf "$STATE"
    [[ -n $quiet ]] || log "down"
}

cmd_status() {
    need_root
    [[ -d $STATE ]] || { echo "down"; return 0; }
    local f name
    for f in "$PIDS"/*.pid; do
        [[ -s $f ]] || continue
        name="$(basename "$f" .pid)"
        if alive "$name"; then echo "$name running pid=$(cat "$f")"; else echo "$name dead"; fi
    done
    # The pods' processes, started by the box kubelet: binary, pod (HOSTNAME) and node.
    local p exe envs
    for p in /proc/[0-9]*; do
        exe="$(readlink "$p/exe" 2>/dev/null || true)"
        [[ $exe == "$BIN/"* && $exe != */knmstate-apiserver && $exe != */knmstate-boxlet ]] || continue
        envs="$(tr '\0' '\n' <"$p/environ" 2>/dev/null || true)"
        printf 'pod-process pid=%s %s pod=%s node=%s\n' "${p#/proc/}" "$(basename "$exe")" \
            "$(sed -n 's/^HOSTNAME=//p' <<<"$envs")" "$(sed -n 's/^NODE_NAME=//p' <<<"$envs")"
    done
    nodes status
}

cmd_exec() {
    need_root
    local prefix="$PREFIX"
    [[ -s "$STATE/prefix" ]] && prefix="$(cat "$STATE/prefix")"
    exec bash "$REPO/hack/nodes.sh" --prefix "$prefix" exec "$@"
}

sub="${1:-}"
[[ $# -gt 0 ]] && shift
case "$sub" in
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    exec) cmd_exec "$@" ;;
    env) [[ -s "$STATE/e2e.env" ]] || die "the cluster is not up"; cat "$STATE/e2e.env" ;;
    restart-apiserver) cmd_restart_apiserver "$@" ;;
    restart-node)
        need_root
        [[ -s "$STATE/prefix" ]] && PREFIX="$(cat "$STATE/prefix")"
        nodes restart "$@"
        ;;
    *) die "usage: cluster.sh up [N] | down | status | exec NODE CMD... | env | restart-apiserver [SECONDS] | restart-node NODE [SECONDS]" ;;
esac
