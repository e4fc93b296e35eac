//! Rendering of a desired state before it is applied: upstream's default linux-bridge VLAN
//! trunk. Capture (nmpolicy) resolution runs nmstate's code in nm-backend
//! (`knmstate_nm_backend::resolve_policy`); this module holds what is pure around it: its
//! input ([`nmpolicy`]), the captures a rendering may reuse ([`reusable_captures`]) and the
//! last touches to its output ([`finish`]), so the handler and `kubectl nmstate plan` render
//! alike.
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

use std::collections::BTreeMap;

use knmstate_api::State;
use knmstate_api::shared::NodeNetworkConfigurationEnactmentStatus;
use knmstate_api::v1::NodeNetworkConfigurationPolicySpec;
use serde_json::{Value, json};

use crate::secrets;

/// The input of capture resolution: `{capture, desiredState}` of a policy's spec (`{}` for
/// each one the spec leaves out).
pub fn nmpolicy(spec: &NodeNetworkConfigurationPolicySpec) -> Value {
    json!({
        "capture": spec.capture.clone().unwrap_or_default(),
        "desiredState": spec.desired_state.as_ref().map(State::to_value).unwrap_or(json!({})),
    })
}

/// The captured states of an enactment a new rendering reuses instead of capturing again (as
/// upstream does): none before the enactment was rendered once, and never one that holds a
/// secret (stored hidden, it would fill the desired state with the placeholder).
pub fn reusable_captures(
    stored: &NodeNetworkConfigurationEnactmentStatus,
) -> BTreeMap<String, Value> {
    if stored.policy_generation.is_none() {
        return BTreeMap::new();
    }
    stored
        .captured_states
        .iter()
        .filter_map(|(k, v)| v.state.as_ref().map(|s| (k.clone(), s.to_value())))
        .filter(|(_, v)| secrets::secret_values(v).is_empty())
        .collect()
}

/// The desired state to apply from the one capture resolution gave: `{}` for none, with the
/// default bridge VLAN trunk injected when `inject_bridge_vlan`.
pub fn finish(resolved: Value, inject_bridge_vlan: bool) -> Value {
    let mut desired = if resolved.is_null() {
        json!({})
    } else {
        resolved
    };
    if inject_bridge_vlan {
        inject_default_bridge_vlan(&mut desired);
    }
    desired
}

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
    fn captures_are_reused_only_once_rendered_and_without_secrets() {
        use knmstate_api::shared::NodeNetworkConfigurationEnactmentCapturedState as Captured;
        let captured = |v: Value| Captured {
            state: State::try_from(v).ok(),
            meta_info: None,
        };
        let mut stored = NodeNetworkConfigurationEnactmentStatus::default();
        stored.captured_states.insert(
            "gw".into(),
            captured(json!({"routes": {"running": [{"destination": "0.0.0.0/0"}]}})),
        );
        stored.captured_states.insert(
            "wifi".into(),
            captured(json!({"interfaces": [{"name": "w", "802.1x": {"password": "x"}}]})),
        );
        assert!(reusable_captures(&stored).is_empty());
        stored.policy_generation = Some(1);
        let reused = reusable_captures(&stored);
        assert_eq!(reused.keys().collect::<Vec<_>>(), ["gw"]);
    }

    #[test]
    fn nmpolicy_and_finish_fill_what_is_left_out() {
        let spec: NodeNetworkConfigurationPolicySpec = serde_json::from_value(json!({
            "desiredState": {"interfaces": [{"name": "br1", "type": "linux-bridge", "state": "up",
                "bridge": {"port": [{"name": "eth1"}]}}]}
        }))
        .unwrap();
        let input = nmpolicy(&spec);
        assert_eq!(input["capture"], json!({}));
        let desired = finish(input["desiredState"].clone(), true);
        assert_eq!(
            desired["interfaces"][0]["bridge"]["port"][0]["vlan"],
            default_bridge_port_vlan()
        );
        assert_eq!(
            finish(input["desiredState"].clone(), false),
            input["desiredState"]
        );
        assert_eq!(finish(Value::Null, true), json!({}));
        let empty = NodeNetworkConfigurationPolicySpec::default();
        assert_eq!(nmpolicy(&empty), json!({"capture": {}, "desiredState": {}}));
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
