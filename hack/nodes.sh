#!/usr/bin/env bash
# NetworkManager "nodes" on one machine.
#
#   hack/nodes.sh [--state-dir DIR] [--prefix P] up N     create N nodes (tears down leftovers first)
#   hack/nodes.sh [--state-dir DIR] [--prefix P] down     remove every namespace, process and dir made
#   hack/nodes.sh [--state-dir DIR] [--prefix P] exec NODE CMD...   run CMD on node NODE (node1..nodeN)
#   hack/nodes.sh [--state-dir DIR] [--prefix P] switch CMD...   run CMD in the switch namespace
#                                                          (host mounts; reaches every node's eth0)
#   hack/nodes.sh [--state-dir DIR] [--prefix P] status   list nodes and their addresses
#   hack/nodes.sh [--state-dir DIR] [--prefix P] restart NODE [SECONDS]
#                      reboot node NODE: every process in it killed (NetworkManager, D-Bus and
#                      whatever runs there, e.g. a handler), every link but its NICs deleted and
#                      the NICs reset (down, unaddressed, so their routes go), down SECONDS (default 1), then D-Bus and NetworkManager
#                      started again on the node's persisted keyfiles and /var/lib/NetworkManager
#
# Layout:
#   netns "<P>-sw"     the switch: bridge br0 (gateway 198.18.0.1/24, 2001:db8::1/64, dnsmasq for
#                      DHCPv4, DHCPv6+RA and DNS), bridge br1 (198.19.0.254/24, 2001:db8:1::fe/64)
#                      and one standalone veth end per node eth2.
#   netns "<P>-nodeI"  node I: eth0 (into br0), eth1 (into br1), eth2 (peer up, alone in the switch),
#                      its own mount and UTS namespaces (hostname nodeI), an overlay over /etc,
#                      a tmpfs over /run, a private /var/lib/NetworkManager, /sys read-only, a private
#                      system D-Bus and NetworkManager (keyfile, internal DHCP, rc-manager=file).
#
# Nothing is configured in the host namespaces: every link is created inside a node or switch
# namespace and every mount lives in a node's private mount namespace. Addresses come only from
# 198.18.0.0/15 and 2001:db8::/32. DNS: dnsmasq answers gw.knmstate.test and an NS record for
# root-servers.net; it has no upstream.
set -euo pipefail

STATE_DIR="${KNMSTATE_NODES_DIR:-/run/knmstate-nodes}"
PREFIX="${KNMSTATE_NODES_PREFIX:-knm}"

die() { echo "nodes.sh: $*" >&2; exit 1; }
log() { echo "nodes.sh: $*" >&2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --state-dir) STATE_DIR="$2"; shift 2 ;;
        --state-dir=*) STATE_DIR="${1#*=}"; shift ;;
        --prefix) PREFIX="$2"; shift 2 ;;
        --prefix=*) PREFIX="${1#*=}"; shift ;;
        *) break ;;
    esac
done
[[ "$PREFIX" =~ ^[a-z][a-z0-9]{0,7}$ ]] || die "prefix must be 1-8 lowercase letters/digits"

SW="${PREFIX}-sw"
RUN="${STATE_DIR}/${PREFIX}"
PACKAGES=(network-manager dbus dnsmasq-base iproute2 iputils-ping util-linux)

need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root"; }

# Install the Debian packages the nodes need; keep any service start on the host away while doing so.
ensure_packages() {
    local missing=0 bin
    for bin in NetworkManager dbus-daemon dnsmasq ip ping nsenter unshare nm-online; do
        command -v "$bin" >/dev/null 2>&1 || [[ -x "/usr/sbin/$bin" ]] || missing=1
    done
    [[ $missing -eq 0 ]] && return 0
    command -v apt-get >/dev/null || die "missing tools and no apt-get to install ${PACKAGES[*]}"
    log "installing ${PACKAGES[*]}"
    local rcd=/usr/sbin/policy-rc.d made_rcd=0
    if [[ ! -e $rcd ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$rcd"
        chmod 755 "$rcd"
        made_rcd=1
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null || rc=$?
    if [[ $rc -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${PACKAGES[@]}" >/dev/null || rc=$?
    fi
    if [[ $made_rcd -eq 1 ]]; then rm -f "$rcd"; fi
    [[ $rc -eq 0 ]] || die "installing ${PACKAGES[*]} failed"
}

# Whether a NetworkManager runs in the host's network namespace (the nodes' share the PID space).
host_nm_running() {
    local pid host_net
    host_net="$(readlink /proc/1/ns/net)"
    for pid in $(pgrep -x NetworkManager || true); do
        [[ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" == "$host_net" ]] && return 0
    done
    return 1
}

node_ns() { echo "${PREFIX}-$1"; }
node_dir() { echo "${RUN}/$1"; }
node_pid() {
    local f
    f="$(node_dir "$1")/nm.pid"
    [[ -s $f ]] || die "node $1 is not up (no $f)"
    local pid
    pid="$(cat "$f")"
    kill -0 "$pid" 2>/dev/null || die "node $1: NetworkManager (pid $pid) is not running"
    echo "$pid"
}

# Kill every process inside a network namespace, politely first.
kill_netns_pids() {
    local ns="$1" pids i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        pids="$(ip netns pids "$ns" 2>/dev/null || true)"
        [[ -z $pids ]] && return 0
        if [[ $i -lt 6 ]]; then
            # shellcheck disable=SC2086
            kill -TERM $pids 2>/dev/null || true
        else
            # shellcheck disable=SC2086
            kill -KILL $pids 2>/dev/null || true
        fi
        sleep 0.3
    done
}

# `ip netns add` turns /run/netns into a mount point (and may create it); remember whether the
# harness did, so the last `down` can undo it.
note_netns_mount() {
    mkdir -p "$STATE_DIR"
    [[ -e "$STATE_DIR/netns-made" ]] && return 0
    if [[ ! -e /run/netns ]]; then
        echo dir >"$STATE_DIR/netns-made"
    elif ! grep -q ' /run/netns ' /proc/self/mounts; then
        echo mount >"$STATE_DIR/netns-made"
    fi
}

undo_netns_mount() {
    local made
    [[ -s "$STATE_DIR/netns-made" ]] || return 0
    [[ -z "$(ip netns list 2>/dev/null)" ]] || return 0
    made="$(cat "$STATE_DIR/netns-made")"
    while grep -q ' /run/netns ' /proc/self/mounts; do
        umount -n /run/netns 2>/dev/null || break
    done
    [[ $made == dir ]] && rmdir /run/netns 2>/dev/null
    rm -f "$STATE_DIR/netns-made"
}

cmd_down() {
    need_root
    local ns
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${PREFIX}-(sw|node[0-9]+)$" || true); do
        kill_netns_pids "$ns"
    done
    # dnsmasq and nodes were all inside those namespaces; pid files catch a process that escaped.
    local f pid
    for f in "$RUN"/*.pid "$RUN"/*/*.pid; do
        [[ -s $f ]] || continue
        pid="$(cat "$f")"
        kill -KILL "$pid" 2>/dev/null || true
    done
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${PREFIX}-(sw|node[0-9]+)$" || true); do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$RUN"
    undo_netns_mount
    rmdir "$STATE_DIR" 2>/dev/null || true
}

# write_node_init NAME DIR [reboot]: with `reboot`, the keyfiles the node persisted are kept.
write_node_init() {
    local name="$1" dir="$2" fresh=1
    [[ ${3:-} == reboot ]] && fresh=0
    cat >"$dir/init.sh" <<EOF
#!/usr/bin/env bash
# Runs as: ip netns exec $(node_ns "$name") unshare -m -u --propagation private bash init.sh
set -euo pipefail
D="$dir"
# The state dir may sit under /run, which the tmpfs below hides: open the pid file first.
exec 3>"\$D/dbus.pid"
# -n: no userspace mount table (it would be written to the host's /run before the tmpfs hides it).
mount -n -t overlay overlay -o "lowerdir=/etc,upperdir=\$D/etc-upper,workdir=\$D/etc-work" /etc
mount -n --bind "\$D/varlib" /var/lib/NetworkManager
mount -n -t tmpfs -o mode=755 tmpfs /run
mount -n -o remount,ro /sys
hostname "$name"
echo "$name" >/etc/hostname
mkdir -p /run/dbus /run/NetworkManager /etc/NetworkManager/conf.d /etc/NetworkManager/system-connections
[[ $fresh -eq 0 ]] || rm -f /etc/NetworkManager/system-connections/*
rm -f /etc/NetworkManager/conf.d/*
cat >/etc/NetworkManager/NetworkManager.conf <<'CONF'
[main]
plugins=keyfile
dhcp=internal
rc-manager=file
dns=default
hostname-mode=none
no-auto-default=*

[keyfile]
unmanaged-devices=none

[logging]
level=INFO

[device-knmstate-nodes]
match-device=interface-name:eth0;interface-name:eth1;interface-name:eth2
managed=1
CONF
# Mask distribution snippets that would leave devices unmanaged.
for f in /usr/lib/NetworkManager/conf.d/*.conf; do
    [[ -e \$f ]] && : >"/etc/NetworkManager/conf.d/\$(basename "\$f")"
done
[[ $fresh -eq 0 ]] || cat >/etc/NetworkManager/system-connections/eth0.nmconnection <<'CONF'
[connection]
id=eth0
type=ethernet
interface-name=eth0
autoconnect=true

[ipv4]
method=auto

[ipv6]
method=auto
addr-gen-mode=eui64
CONF
chmod 600 /etc/NetworkManager/system-connections/* 2>/dev/null || true
dbus-daemon --system --fork --print-pid=3
exec 3>&-
exec NetworkManager --no-daemon
EOF
}

# root-servers.net NS a.root-servers.net, in DNS wire format for dnsmasq --dns-rr.
NS_RDATA="01610c726f6f742d73657276657273036e657400"

start_switch() {
    mkdir -p "$RUN"
    ip netns add "$SW"
    ip -n "$SW" link set lo up
    ip -n "$SW" link add br0 type bridge
    ip -n "$SW" link add br1 type bridge
    ip netns exec "$SW" sysctl -qw net.ipv6.conf.all.forwarding=0 net.ipv6.conf.br0.accept_ra=0
    ip -n "$SW" addr add 198.18.0.1/24 dev br0
    ip -n "$SW" addr add 2001:db8::1/64 dev br0 nodad
    ip -n "$SW" addr add 198.19.0.254/24 dev br1
    ip -n "$SW" addr add 2001:db8:1::fe/64 dev br1 nodad
    ip -n "$SW" link set br0 up
    ip -n "$SW" link set br1 up
    : >"$RUN/dnsmasq.leases"
    ip netns exec "$SW" dnsmasq -k --conf-file=/dev/null --user=root --group=root \
        --pid-file="$RUN/dnsmasq.pid" --dhcp-leasefile="$RUN/dnsmasq.leases" \
        --no-resolv --no-hosts --no-poll --bind-interfaces --interface=br0 \
        --listen-address=198.18.0.1 --listen-address=2001:db8::1 \
        --dhcp-range=198.18.0.100,198.18.0.199,255.255.255.0,1h \
        --dhcp-option=option:router,198.18.0.1 --dhcp-option=option:dns-server,198.18.0.1 \
        --dhcp-range=2001:db8::1000,2001:db8::1fff,64,1h --enable-ra \
        --dhcp-option=option6:dns-server,[2001:db8::1] \
        --domain=knmstate.test --local=/knmstate.test/ \
        --host-record=gw.knmstate.test,198.18.0.1,2001:db8::1 \
        --dns-rr=root-servers.net,2,"$NS_RDATA" \
        --log-facility="$RUN/dnsmasq.log" >"$RUN/dnsmasq.out" 2>&1 &
    echo $! >"$RUN/dnsmasq.pid"
}

start_node() {
    local i="$1" name="node$1"
    local ns dir
    ns="$(node_ns "$name")"
    dir="$(node_dir "$name")"
    mkdir -p "$dir/etc-upper" "$dir/etc-work" "$dir/varlib"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # Created inside the switch namespace with the peer placed straight into the node: the host
    # namespace never sees these links.
    ip -n "$SW" link add "n${i}e0" type veth peer name eth0 netns "$ns"
    ip -n "$SW" link add "n${i}e1" type veth peer name eth1 netns "$ns"
    ip -n "$SW" link add "n${i}e2" type veth peer name eth2 netns "$ns"
    ip -n "$SW" link set "n${i}e0" master br0 up
    ip -n "$SW" link set "n${i}e1" master br1 up
    ip -n "$SW" link set "n${i}e2" up
    write_node_init "$name" "$dir"
    ip netns exec "$ns" unshare -m -u --propagation private bash "$dir/init.sh" >"$dir/nm.log" 2>&1 &
    echo $! >"$dir/nm.pid"
}

wait_node() {
    local name="$1" pid deadline
    pid="$(cat "$(node_dir "$name")/nm.pid")"
    deadline=$((SECONDS + 60))
    while :; do
        kill -0 "$pid" 2>/dev/null || { tail -20 "$(node_dir "$name")/nm.log" >&2; die "$name: NetworkManager exited"; }
        if nsenter -t "$pid" -n -m -u -- ip -4 -o addr show 2>/dev/null | grep -q 'inet 198\.18\.0\.' &&
            nsenter -t "$pid" -n -m -u -- ip -4 route show default 2>/dev/null | grep -q 'via 198\.18\.0\.1' &&
            nsenter -t "$pid" -n -m -u -- nm-online -s -q -t 1 2>/dev/null; then
            return 0
        fi
        [[ $SECONDS -lt $deadline ]] || { tail -20 "$(node_dir "$name")/nm.log" >&2; die "$name: no DHCP lease after 60 s"; }
        sleep 0.2
    done
}

cmd_up() {
    need_root
    local n="${1:-}"
    [[ "$n" =~ ^[1-9][0-9]?$ ]] || die "usage: up N (1..99)"
    ensure_packages
    cmd_down
    if host_nm_running; then
        log "note: a NetworkManager runs in the host namespaces; the nodes use their own"
    fi
    note_netns_mount
    mkdir -p "$RUN"
    echo "$n" >"$RUN/nodes"
    start_switch
    local i
    for ((i = 1; i <= n; i++)); do
        start_node "$i"
    done
    for ((i = 1; i <= n; i++)); do
        wait_node "node$i"
    done
    log "up: $n node(s) in $RUN"
}

# A reboot: power off (every process of the node killed, the kernel's network state reset to
# bare NICs), stay down, boot (D-Bus and NetworkManager on the persisted configuration).
cmd_restart() {
    need_root
    local name="${1:-}" down="${2:-1}" ns dir link
    [[ "$name" =~ ^node[0-9]+$ && "$down" =~ ^[0-9]+$ ]] || die "usage: restart NODE [SECONDS]"
    ns="$(node_ns "$name")"
    dir="$(node_dir "$name")"
    [[ -s "$dir/nm.pid" ]] || die "node $name is not up"
    kill_netns_pids "$ns"
    for link in $(ip -n "$ns" -o link show | awk -F': ' '{print $2}' | cut -d@ -f1); do
        case "$link" in
            lo) ;;
            eth[0-2])
                ip -n "$ns" link set "$link" nomaster down mtu 1500
                ip -n "$ns" addr flush dev "$link"
                ;;
            *) ip -n "$ns" link del "$link" 2>/dev/null || true ;;
        esac
    done
    sleep "$down"
    write_node_init "$name" "$dir" reboot
    ip netns exec "$ns" unshare -m -u --propagation private bash "$dir/init.sh" >>"$dir/nm.log" 2>&1 &
    echo $! >"$dir/nm.pid"
    wait_node "$name"
    log "restarted $name"
}

cmd_exec() {
    need_root
    local name="${1:-}"
    [[ -n "$name" ]] || die "usage: exec NODE CMD..."
    shift
    [[ $# -gt 0 ]] || die "usage: exec NODE CMD..."
    local pid
    pid="$(node_pid "$name")"
    exec nsenter -t "$pid" -n -m -u --wd="$PWD" -- "$@"
}

cmd_switch() {
    need_root
    [[ $# -gt 0 ]] || die "usage: switch CMD..."
    ip netns list | awk '{print $1}' | grep -qx "$SW" || die "switch $SW is not up"
    exec ip netns exec "$SW" "$@"
}

cmd_status() {
    need_root
    [[ -s "$RUN/nodes" ]] || { echo "down"; return 0; }
    local n i pid
    n="$(cat "$RUN/nodes")"
    for ((i = 1; i <= n; i++)); do
        pid="$(cat "$(node_dir "node$i")/nm.pid" 2>/dev/null || echo 0)"
        if kill -0 "$pid" 2>/dev/null; then
            echo "node$i up nm-pid=$pid $(nsenter -t "$pid" -n -- ip -4 -o addr show dev eth0 | awk '{print $4}' | head -1)"
        else
            echo "node$i dead"
        fi
    done
}

sub="${1:-}"
[[ $# -gt 0 ]] && shift
case "$sub" in
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    exec) cmd_exec "$@" ;;
    switch) cmd_switch "$@" ;;
    status) cmd_status ;;
    restart) cmd_restart "$@" ;;
    *) die "usage: nodes.sh [--state-dir DIR] [--prefix P] up N | down | exec NODE CMD... | switch CMD... | status | restart NODE [SECONDS]" ;;
esac
