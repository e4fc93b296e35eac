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

/// The first linux-bridge of `desired` (not being removed) whose configuration needs bridge
/// VLAN filtering, with what needs it: a port with a non-empty `vlan`, or the bridge's
/// `vlan-filtering`, `vlan-protocol` or `vlan-default-pvid` option.
///
/// ```
/// use knmstate_state_engine::render::bridge_vlan_filtering_needed;
/// let desired = serde_json::json!({"interfaces": [{"name": "br1", "type": "linux-bridge",
///     "bridge": {"port": [{"name": "eth1", "vlan": {"mode": "trunk"}}]}}]});
/// assert_eq!(
///     bridge_vlan_filtering_needed(&desired),
///     Some(("br1".to_owned(), "port vlan configuration"))
/// );
/// ```
pub fn bridge_vlan_filtering_needed(desired: &Value) -> Option<(String, &'static str)> {
    let ifaces = desired.get("interfaces")?.as_array()?;
    ifaces.iter().find_map(|i| {
        let bridge = (i.get("type")?.as_str()? == "linux-bridge"
            && i.get("state").and_then(Value::as_str) != Some("absent"))
        .then(|| i.get("bridge"))
        .flatten()?;
        let name = i.get("name").and_then(Value::as_str).unwrap_or_default();
        let port_vlan = bridge
            .get("port")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|p| {
                p.get("vlan")
                    .and_then(Value::as_object)
                    .is_some_and(|v| !v.is_empty())
            });
        if port_vlan {
            return Some((name.to_owned(), "port vlan configuration"));
        }
        let options = bridge.get("options");
        let filtering = [
            bridge.get("vlan-filtering"),
            options.and_then(|o| o.get("vlan-filtering")),
        ]
        .into_iter()
        .flatten()
        .any(|v| v.as_bool() == Some(true));
        if filtering {
            return Some((name.to_owned(), "vlan-filtering"));
        }
        ["vlan-protocol", "vlan-default-pvid"]
            .into_iter()
            .find_map(|k| {
                options
                    .and_then(|o| o.get(k))
                    .filter(|v| !v.is_null())
                    .map(|_| (name.to_owned(), k))
            })
    })
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

    #[test]
    fn bridge_vlan_configuration_needing_vlan_filtering_is_found() {
        let bridge = |bridge: Value, state: &str| {
            json!({"interfaces": [
                {"name": "eth1", "type": "ethernet", "state": "up"},
                {"name": "br1", "type": "linux-bridge", "state": state, "bridge": bridge},
            ]})
        };
        let port = |vlan: Value| json!({"port": [{"name": "eth1", "vlan": vlan}]});
        let trunk = json!({"mode": "trunk", "trunk-tags": [{"id": 101}]});
        assert_eq!(
            bridge_vlan_filtering_needed(&bridge(port(trunk.clone()), "up")),
            Some(("br1".to_owned(), "port vlan configuration"))
        );
        assert_eq!(
            bridge_vlan_filtering_needed(&bridge(port(trunk), "absent")),
            None
        );
        assert_eq!(
            bridge_vlan_filtering_needed(&bridge(port(json!({})), "up")),
            None
        );
        assert_eq!(
            bridge_vlan_filtering_needed(&bridge(port(Value::Null), "up")),
            None
        );
        assert_eq!(
            bridge_vlan_filtering_needed(&bridge(
                json!({"options": {"vlan-filtering": true}, "port": []}),
                "up"
            )),
            Some(("br1".to_owned(), "vlan-filtering"))
        );
        assert_eq!(
            bridge_vlan_filtering_needed(&bridge(
                json!({"options": {"vlan-default-pvid": 1, "stp": {"enabled": false}}}),
                "up"
            )),
            Some(("br1".to_owned(), "vlan-default-pvid"))
        );
        assert_eq!(
            bridge_vlan_filtering_needed(&bridge(
                json!({"options": {"stp": {"enabled": false}}}),
                "up"
            )),
            None
        );
    }
}
