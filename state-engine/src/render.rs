//! Rendering of a desired state before it is applied: upstream's default linux-bridge VLAN
//! trunk. Capture (nmpolicy) resolution needs the node's current state and happens on the
//! node, in nm-backend; this module only does what is pure.
//!
//! Every `linux-bridge` interface with `state: up` gets, on each port **without** a `vlan` key,
//! `vlan: {mode: trunk, trunk-tags: [{id-range: {min: 2, max: 4094}}]}`. A port that says
//! `vlan: {}` opts out (upstream #1429).
//!
//! ```
//! use knmstate_state_engine::render::inject_default_bridge_vlan;
//! use serde_json::json;
//!
//! let mut desired = json!({"interfaces": [{
//!     "name": "br1", "type": "linux-bridge", "state": "up",
//!     "bridge": {"port": [{"name": "eth1"}, {"name": "eth2", "vlan": {}}]}
//! }]});
//! let injected = inject_default_bridge_vlan(&mut desired);
//! assert_eq!(injected, [("br1".to_string(), "eth1".to_string())]);
//! assert_eq!(desired["interfaces"][0]["bridge"]["port"][0]["vlan"]["mode"], "trunk");
//! assert_eq!(desired["interfaces"][0]["bridge"]["port"][1]["vlan"], json!({}));
//! ```

use serde_json::{Value, json};

/// The VLAN configuration injected on linux-bridge ports that do not say otherwise.
pub fn default_bridge_port_vlan() -> Value {
    json!({"mode": "trunk", "trunk-tags": [{"id-range": {"min": 2, "max": 4094}}]})
}

/// Inject the default trunk in place; returns the `(bridge, port)` pairs that received it.
/// Anything that is not shaped as expected (no `interfaces` list, a port that is not an
/// object) is left untouched.
pub fn inject_default_bridge_vlan(desired: &mut Value) -> Vec<(String, String)> {
    let mut injected = Vec::new();
    let Some(ifaces) = desired.get_mut("interfaces").and_then(Value::as_array_mut) else {
        return injected;
    };
    for iface in ifaces {
        let is_up_bridge = iface.get("type").and_then(Value::as_str) == Some("linux-bridge")
            && iface.get("state").and_then(Value::as_str) == Some("up");
        if !is_up_bridge {
            continue;
        }
        let bridge = iface
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let Some(ports) = iface
            .get_mut("bridge")
            .and_then(|b| b.get_mut("port"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            if !port.contains_key("vlan") {
                port.insert("vlan".to_owned(), default_bridge_port_vlan());
                let name = port.get("name").and_then(Value::as_str).unwrap_or_default();
                injected.push((bridge.clone(), name.to_owned()));
            }
        }
    }
    injected
}

/// [`inject_default_bridge_vlan`] on a copy.
pub fn rendered(desired: &Value) -> Value {
    let mut v = desired.clone();
    inject_default_bridge_vlan(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn only_up_linux_bridges_are_touched() {
        let mut d = json!({"interfaces": [
            {"name": "br0", "type": "linux-bridge", "state": "down", "bridge": {"port": [{"name": "a"}]}},
            {"name": "br1", "type": "linux-bridge", "bridge": {"port": [{"name": "b"}]}},
            {"name": "ovs0", "type": "ovs-bridge", "state": "up", "bridge": {"port": [{"name": "c"}]}},
            {"name": "br2", "type": "linux-bridge", "state": "up", "bridge": {"port": [
                {"name": "d"}, {"name": "e", "vlan": {"mode": "access", "tag": 10}}]}},
            {"name": "br3", "type": "linux-bridge", "state": "up"}
        ]});
        let before = d.clone();
        let got = inject_default_bridge_vlan(&mut d);
        assert_eq!(got, [("br2".to_string(), "d".to_string())]);
        let mut want = before;
        want["interfaces"][3]["bridge"]["port"][0]["vlan"] = default_bridge_port_vlan();
        assert_eq!(d, want);
    }

    #[test]
    fn injection_is_idempotent() {
        let d = json!({"interfaces": [{"name": "br1", "type": "linux-bridge", "state": "up",
            "bridge": {"port": [{"name": "eth1"}]}}]});
        let once = rendered(&d);
        assert_eq!(rendered(&once), once);
    }

    #[test]
    fn odd_shapes_are_left_alone() {
        for mut v in [
            json!(null),
            json!({"interfaces": 3}),
            json!({"interfaces": [1, "x"]}),
        ] {
            let before = v.clone();
            assert!(inject_default_bridge_vlan(&mut v).is_empty());
            assert_eq!(v, before);
        }
    }
}
