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
#
# Run as root. What runs where:
#   host namespaces   knmstate-apiserver (the Kubernetes API stand-in, 127.0.0.1, random port),
#                     knmstate-webhook (HTTPS 127.0.0.1:$KNMSTATE_WEBHOOK_PORT, a CA made here),
#                     knmstate-controller (/metrics on 127.0.0.1:$KNMSTATE_METRICS_PORT),
#                     socat: Unix socket <state>/api.sock -> the API's TCP port
#   switch netns      socat: 198.18.0.1:6443 -> <state>/api.sock (the filesystem is shared across
#                     network namespaces, so the socket joins the two without any host link)
#   node netns nodeI  NetworkManager (hack/nodes.sh) and one handler, which reaches the API at
#                     http://198.18.0.1:6443 over the node's own eth0: a policy that cuts the
#                     node's network cuts the handler off, and its API-server probe is real.
# Nothing is configured in the host's network namespace: no link, address or route.
#
# Files: everything lives in the state dir ($KNMSTATE_CLUSTER_DIR, default target/cluster in the
# repository: visible inside the nodes, whose /run is private): binaries copied there (so a
# rebuild does not change a running cluster), kubeconfigs, certificates, pid files and one log
# per process under logs/.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${KNMSTATE_CLUSTER_DIR:-$REPO/target/cluster}"
PREFIX="${KNMSTATE_CLUSTER_PREFIX:-knmbox}"
WEBHOOK_PORT="${KNMSTATE_WEBHOOK_PORT:-19443}"
METRICS_PORT="${KNMSTATE_METRICS_PORT:-18089}"
# Handler timings: short, like upstream's e2e (NNCP_MAX_RETRIES=2, backoff 1-5 s), with short
# probe budgets so that a policy which breaks a node is rolled back within a minute.
HANDLER_ENV=(
    NNCP_MAX_RETRIES="${NNCP_MAX_RETRIES:-2}"
    NNCP_INITIAL_BACKOFF_SECONDS="${NNCP_INITIAL_BACKOFF_SECONDS:-1}"
    NNCP_MAX_BACKOFF_SECONDS="${NNCP_MAX_BACKOFF_SECONDS:-5}"
    PROBE_TIMEOUT_SECONDS="${PROBE_TIMEOUT_SECONDS:-15}"
    CHECKPOINT_TIMEOUT_SECONDS="${CHECKPOINT_TIMEOUT_SECONDS:-90}"
    PROBE_DNS_HOST="${PROBE_DNS_HOST:-root-servers.net}"
    POD_NAMESPACE=nmstate
    RUST_LOG="${KNMSTATE_HANDLER_LOG:-info,nispor=error}"
)
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
    for p in socat openssl; do
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
    log "building (cargo build, debug profile)"
    (cd "$REPO" && cargo build -q -p knmstate-testkit -p knmstate-handler \
        -p knmstate-controller -p knmstate-webhook --bins)
    local target_dir
    target_dir="$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
    mkdir -p "$BIN"
    local b
    for b in knmstate-apiserver knmstate-webhook knmstate-controller handler; do
        cp "$target_dir/debug/$b" "$BIN/$b.new"
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

# GET http://127.0.0.1:PORT/PATH answers 200 (bash's /dev/tcp: no curl needed).
http_ok() (
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
    timeout 5 head -1 <&3 | grep -q ' 200 '
)

start_apiserver() {
    spawn apiserver "$BIN/knmstate-apiserver" --listen 127.0.0.1:0 --kubeconfig "$STATE/kubeconfig"
    wait_for "the API stand-in's kubeconfig" 30 apiserver test -s "$STATE/kubeconfig"
    API_PORT="$(sed -n 's#.*server: http://127\.0\.0\.1:\([0-9]*\).*#\1#p' "$STATE/kubeconfig")"
    [[ -n $API_PORT ]] || die "no server address in $STATE/kubeconfig"
    wait_for "the API stand-in" 30 apiserver http_ok "$API_PORT" /readyz
    # Host side of the bridge into the switch namespace.
    spawn api-socket socat "UNIX-LISTEN:$STATE/api.sock,fork,unlink-early,mode=600" "TCP:127.0.0.1:$API_PORT"
    wait_for "the API socket" 10 api-socket test -S "$STATE/api.sock"
    sed "s#server: http://127\.0\.0\.1:$API_PORT#server: http://$GATEWAY:$NODE_API_PORT#" \
        "$STATE/kubeconfig" >"$STATE/kubeconfig-node"
}

make_certs() {
    local d="$STATE/certs"
    mkdir -p "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=knmstate-box-ca" \
        -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=nmstate-webhook.nmstate.svc" \
        -keyout "$d/tls.key" -out "$d/tls.csr" 2>/dev/null
    printf 'subjectAltName=DNS:nmstate-webhook.nmstate.svc,DNS:nmstate-webhook.nmstate.svc.cluster.local,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$d/ext.cnf"
    openssl x509 -req -in "$d/tls.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
        -days 30 -extfile "$d/ext.cnf" -out "$d/tls.crt" 2>/dev/null
}

start_webhook() {
    make_certs
    spawn webhook "$BIN/knmstate-webhook" --listen "127.0.0.1:$WEBHOOK_PORT" \
        --tls-cert-file "$STATE/certs/tls.crt" --tls-key-file "$STATE/certs/tls.key"
    wait_for "the webhook" 30 webhook bash -c "exec 3<>/dev/tcp/127.0.0.1/$WEBHOOK_PORT"
}

apply_config() {
    local ns
    for ns in default nmstate kube-system; do
        kc get namespace "$ns" >/dev/null 2>&1 || kc create namespace "$ns" >/dev/null
    done
    for f in "$REPO"/config/crd/nmstate.io_*.yaml; do kc apply -f "$f" >/dev/null; done
    # The webhook Service: the stand-in sends a service clientConfig to the Service's clusterIP
    # (127.0.0.1 when unset) on the targetPort, with TLS server name <name>.<namespace>.svc.
    kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata:
  name: nmstate-webhook
  namespace: nmstate
spec:
  ports:
  - port: 443
    targetPort: $WEBHOOK_PORT
EOF
    local ca f
    ca="$(base64 -w0 "$STATE/certs/ca.crt")"
    for f in "$REPO"/config/webhook/*.yaml; do
        sed "s#^\( *\)clientConfig:\$#&\n\1  caBundle: $ca#" "$f" | kc apply -f - >/dev/null
    done
}

start_controller() {
    spawn controller env KUBECONFIG="$STATE/kubeconfig" RUST_LOG="${KNMSTATE_CONTROLLER_LOG:-info}" \
        "$BIN/knmstate-controller" --metrics-bind-address "127.0.0.1:$METRICS_PORT" \
        --identity box --orphan-grace-seconds 10 --sweep-interval-seconds 30
    wait_for "the controller's /readyz" 60 controller http_ok "$METRICS_PORT" /readyz
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

start_handler() {
    local name="$1"
    mkdir -p "$STATE/$name"
    rm -f "$STATE/$name/healthy"
    spawn "handler-$name" bash "$REPO/hack/nodes.sh" --prefix "$PREFIX" exec "$name" \
        env KUBECONFIG="$STATE/kubeconfig-node" NODE_NAME="$name" \
        NMSTATE_INSTANCE_NODE_LOCK_FILE="$STATE/$name/handler.lock" \
        READINESS_FILE="$STATE/$name/healthy" "${HANDLER_ENV[@]}" "$BIN/handler"
}

write_env() {
    cat >"$STATE/e2e.env" <<EOF
KUBECONFIG=$STATE/kubeconfig
KNMSTATE_E2E_METRICS_URL=http://127.0.0.1:$METRICS_PORT/metrics
KNMSTATE_E2E_NODE_EXEC=$REPO/hack/cluster.sh exec
KNMSTATE_E2E_PROBE_TIMEOUT_SECONDS=${PROBE_TIMEOUT_SECONDS:-15}
EOF
}

cmd_up() {
    need_root
    local n="${1:-3}"
    [[ "$n" =~ ^[1-9]$ ]] || die "usage: up [N] (1..9 nodes)"
    ensure_packages
    cmd_down quiet
    mkdir -p "$STATE" "$LOGS" "$PIDS"
    echo "$PREFIX" >"$STATE/prefix"
    build
    log "starting the API stand-in"
    start_apiserver
    log "starting the webhook"
    start_webhook
    apply_config
    log "starting $n NetworkManager node(s)"
    nodes up "$n" >"$LOGS/nodes.log" 2>&1 || { tail -n 30 "$LOGS/nodes.log" >&2; die "nodes did not come up"; }
    echo "$n" >"$STATE/nodes"
    start_node_api_forwarder
    create_nodes "$n"
    log "starting the controller"
    start_controller
    local i
    for ((i = 1; i <= n; i++)); do
        start_handler "node$i"
    done
    for ((i = 1; i <= n; i++)); do
        wait_for "the handler on node$i to be ready" 120 "handler-node$i" test -e "$STATE/node$i/healthy"
        wait_for "the NodeNetworkState of node$i" 60 "handler-node$i" kc get nns "node$i"
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
Controller metrics:       http://127.0.0.1:$METRICS_PORT/metrics
Logs:                     $LOGS/
EOF
}

# Processes started from this state dir that escaped their pid file (after a crash of this script):
# those running a binary copied into bin/, or a socat serving this state dir's socket.
stray_pids() {
    local p exe cmd
    for p in /proc/[0-9]*; do
        exe="$(readlink "$p/exe" 2>/dev/null || true)"
        cmd="$(tr '\0' ' ' 2>/dev/null <"$p/cmdline" || true)"
        if [[ $exe == "$BIN/"* ]] || [[ $cmd == *"$STATE/api.sock"* ]]; then
            echo "${p#/proc/}"
        fi
    done
}

cmd_down() {
    need_root
    local quiet="${1:-}" prefix="$PREFIX" f pid
    [[ -s "$STATE/prefix" ]] && prefix="$(cat "$STATE/prefix")"
    # Handlers first (SIGTERM rolls back an apply in flight), then the rest.
    for f in "$PIDS"/handler-*.pid "$PIDS"/*.pid; do
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
    *) die "usage: cluster.sh up [N] | down | status | exec NODE CMD... | env" ;;
esac
