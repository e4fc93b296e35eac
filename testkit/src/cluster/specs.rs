//! Policies and desired states the suites apply, as a client writes them (free-form JSON).

use kube::api::DynamicObject;
use serde_json::{Value, json};

use super::nncp_resource;

/// A policy object: `spec` as given.
pub fn policy(name: &str, spec: Value) -> DynamicObject {
    let mut p = DynamicObject::new(name, &nncp_resource());
    p.data = Value::Object([("spec".to_owned(), spec)].into_iter().collect());
    p
}

/// A node selector matching exactly one node by its hostname label.
pub fn on_node(node: &str) -> Value {
    json!({ "kubernetes.io/hostname": node })
}

/// A linux-bridge without ports (so no VLAN filtering is involved) and without addresses.
pub fn bridge(name: &str) -> Value {
    json!({
        "name": name,
        "type": "linux-bridge",
        "state": "up",
        "ipv4": {"enabled": false},
        "ipv6": {"enabled": false},
        "bridge": {"options": {"stp": {"enabled": false}}, "port": []}
    })
}

/// An interface removed.
pub fn absent(name: &str) -> Value {
    json!({"name": name, "state": "absent"})
}

/// The interface of a node's IPv4 default route, as an nmpolicy capture expression.
const GW_IFACE: &str = "{{ capture.gw.routes.running.0.next-hop-interface }}";

/// A policy spec that breaks connectivity: the node's default-route interface keeps its DHCP
/// address but its default route goes through 198.18.0.250, which does not answer. Portable:
/// the interface is found with a capture. The default-gateway probe fails and the handler must
/// roll back.
pub fn bad_gateway_spec() -> Value {
    json!({
        "capture": {"gw": "routes.running.destination==\"0.0.0.0/0\""},
        "desiredState": {
            "interfaces": [{
                "name": GW_IFACE, "type": "ethernet", "state": "up",
                "ipv4": {"enabled": true, "dhcp": true, "auto-gateway": false}
            }],
            "routes": {"config": [{
                "destination": "0.0.0.0/0",
                "next-hop-address": "198.18.0.250",
                "next-hop-interface": GW_IFACE
            }]}
        }
    })
}

/// A policy spec whose DNS servers do not answer: the default-route interface ignores the
/// servers DHCP and router advertisements give (`auto-dns: false` on both stacks) and the only
/// server is `servers` (none at all when empty), as upstream's rollback tests do. The DNS probe
/// fails and the handler must roll back.
pub fn bad_dns_spec(servers: &[&str]) -> Value {
    json!({
        "capture": {"gw": "routes.running.destination==\"0.0.0.0/0\""},
        "desiredState": {
            "interfaces": [{
                "name": GW_IFACE, "type": "ethernet", "state": "up",
                "ipv4": {"enabled": true, "dhcp": true, "auto-dns": false},
                "ipv6": {"enabled": true, "dhcp": true, "autoconf": true, "auto-dns": false}
            }],
            "dns-resolver": {"config": {"server": servers, "search": []}}
        }
    })
}

/// Undo [`bad_gateway_spec`] and [`bad_dns_spec`]: the default-route interface back on DHCP for
/// addresses, gateway and DNS on both stacks, no static DNS.
pub fn healthy_uplink_spec() -> Value {
    json!({
        "capture": {"gw": "routes.running.destination==\"0.0.0.0/0\""},
        "desiredState": {
            "interfaces": [{
                "name": GW_IFACE, "type": "ethernet", "state": "up",
                "ipv4": {"enabled": true, "dhcp": true, "auto-dns": true, "auto-gateway": true},
                "ipv6": {"enabled": true, "dhcp": true, "autoconf": true, "auto-dns": true,
                         "auto-gateway": true}
            }],
            "dns-resolver": {"config": {"server": [], "search": []}}
        }
    })
}
