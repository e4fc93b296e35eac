//! nmstate's offline validation of a desired state: what every node would refuse, whatever its
//! current state.
//!
//! A desired state goes through three steps:
//!
//! 1. nmstate's deserialiser; its error names the field it stopped at ([`parse_desired_state`]);
//! 2. nmstate's offline configuration generation, `NetworkState::gen_conf` (the library call
//!    behind `nmstatectl gc`), which runs the validation and merge a node runs before it applies:
//!    addresses and prefixes, route destinations and next hops, DNS servers, references between
//!    interfaces, nesting;
//! 3. when that refuses, the same generation again with the node's side supplied
//!    ([`with_node_supplied`]): `gen_conf` knows no node, so it refuses a route whose next-hop
//!    interface the state does not define, or DNS servers with no interface to carry them,
//!    although a node that has such an interface accepts them. A refusal stands only when every
//!    variant refuses; it is then located ([`crate::locate`]) so the denial names its field.
//!
//! nmstate panics are caught: a panic is a refusal, never a crash of the webhook.

use serde_json::{Map, Value, json};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::locate::{Probe, locate};

/// Where a desired state's field paths start.
pub const DESIRED_STATE: &str = "spec.desiredState";

/// A desired state every node would refuse, with the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Refusal {
    /// The field path, e.g. `spec.desiredState.routes.config[0].destination`.
    pub field: String,
    /// nmstate's reason.
    pub message: String,
}

/// What nmstate's offline configuration generation says about one desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generation {
    /// The configuration was generated.
    Accepted,
    /// The state does not deserialise; nmstate's message.
    Undecodable(String),
    /// nmstate refused it; its message.
    Refused(String),
    /// nmstate panicked on it.
    Panicked,
}

/// Runs nmstate's offline configuration generation on `state`; never panics.
pub fn generate(state: &Value) -> Generation {
    let parsed = match serde_json::from_value::<nmstate::NetworkState>(state.clone()) {
        Ok(s) => s,
        Err(e) => return Generation::Undecodable(e.to_string()),
    };
    match catch_unwind(AssertUnwindSafe(|| parsed.gen_conf())) {
        Ok(Ok(_)) => Generation::Accepted,
        Ok(Err(e)) => Generation::Refused(e.msg().to_owned()),
        Err(_) => Generation::Panicked,
    }
}

/// The full offline validation of a desired state (the value of `spec.desiredState`).
///
/// ```
/// use knmstate_webhook::offline::validate_desired_state;
/// let bad = serde_json::json!({"routes": {"config": [
///     {"destination": "not-a-cidr", "next-hop-interface": "eth1"}]}});
/// let err = validate_desired_state(&bad).unwrap_err();
/// assert_eq!(err.field, "spec.desiredState.routes.config[0].destination");
/// ```
pub fn validate_desired_state(state: &Value) -> Result<(), Refusal> {
    parse_desired_state_at(state)?;
    if generate(state) == Generation::Accepted {
        return Ok(());
    }
    let variants = with_node_supplied(state);
    let mut message = None;
    for v in &variants {
        match generate(v) {
            Generation::Accepted => return Ok(()),
            Generation::Refused(m) => {
                message.get_or_insert(m);
            }
            Generation::Panicked => {
                message
                    .get_or_insert_with(|| "nmstate panicked generating its configuration".into());
            }
            Generation::Undecodable(_) => {}
        }
    }
    let message = message.unwrap_or_else(|| "nmstate refused the desired state".into());
    let probe = |s: &Value| match generate(&supply_references(s)) {
        Generation::Accepted => Probe::Accepted,
        Generation::Refused(m) if m == message => Probe::Same,
        Generation::Panicked if message.contains("panicked") => Probe::Same,
        _ => Probe::Other,
    };
    let path = locate(state, &message, probe);
    Err(Refusal {
        field: format!("{DESIRED_STATE}{path}"),
        message: format!("failed to generate the configuration: {message}"),
    })
}

/// The desired state with what a node may supply: first every interface the state refers to
/// (a `base-iface`, a route's `next-hop-interface`, a rule's `iif`, a veth or HSR peer) but does
/// not define, as an IP-enabled ethernet, plus one IP-enabled uplink that can carry DNS; then, in
/// addition, IP settings on each defined interface that leaves them unsaid (a node keeps its
/// current ones). A refusal that goes away in one of them depends on the node.
pub fn with_node_supplied(state: &Value) -> Vec<Value> {
    let first = supply_references(state);
    let mut second = first.clone();
    if let Some(ifaces) = second.get_mut("interfaces").and_then(Value::as_array_mut) {
        for iface in ifaces.iter_mut().filter_map(Value::as_object_mut) {
            let up = iface
                .get("state")
                .and_then(Value::as_str)
                .is_none_or(|s| s == "up");
            if up {
                for (family, settings) in ip_enabled() {
                    iface.entry(family).or_insert(settings);
                }
            }
        }
    }
    vec![first, second]
}

/// The name of the interface [`with_node_supplied`] adds to carry DNS servers.
const UPLINK: &str = "nodeuplink0";

/// Keys whose string value names another interface.
const REFERENCE_KEYS: &[&str] = &[
    "base-iface",
    "next-hop-interface",
    "iif",
    "peer",
    "port1",
    "port2",
];

fn ip_enabled() -> [(String, Value); 2] {
    [
        ("ipv4".into(), json!({"enabled": true, "dhcp": true})),
        (
            "ipv6".into(),
            json!({"enabled": true, "dhcp": true, "autoconf": true}),
        ),
    ]
}

fn supply_references(state: &Value) -> Value {
    let mut out = state.clone();
    let Some(root) = out.as_object_mut() else {
        return out;
    };
    let defined: Vec<String> = root
        .get("interfaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| i.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let mut wanted = Vec::new();
    referenced_names(&Value::Object(root.clone()), &mut wanted);
    wanted.push(UPLINK.to_owned());
    wanted.retain(|n| !defined.contains(n));
    wanted.sort();
    wanted.dedup();
    let Some(ifaces) = root
        .entry("interfaces")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
    else {
        return out;
    };
    for name in wanted {
        let mut stub = Map::new();
        stub.insert("name".into(), name.into());
        stub.insert("type".into(), "ethernet".into());
        stub.insert("state".into(), "up".into());
        stub.extend(ip_enabled());
        ifaces.push(Value::Object(stub));
    }
    out
}

fn referenced_names(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match v.as_str() {
                    Some(name) if REFERENCE_KEYS.contains(&k.as_str()) && !name.is_empty() => {
                        out.push(name.to_owned());
                    }
                    _ => referenced_names(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| referenced_names(v, out)),
        _ => {}
    }
}

/// Parses a desired state with nmstate's deserialiser only; the error names the field path.
///
/// ```
/// use knmstate_webhook::offline::parse_desired_state;
/// let bad = serde_json::json!({"interfaces": [{"name": "eth1", "type": "ethernet", "mtu": "big"}]});
/// let err = parse_desired_state(&bad).unwrap_err();
/// assert!(err.starts_with("spec.desiredState.interfaces"), "{err}");
/// ```
pub fn parse_desired_state(state: &Value) -> Result<(), String> {
    parse_desired_state_at(state).map_err(|r| r.to_string())
}

fn parse_desired_state_at(state: &Value) -> Result<(), Refusal> {
    let Err(e) = serde_path_to_error::deserialize::<_, nmstate::NetworkState>(state) else {
        return Ok(());
    };
    let mut path = e.path().to_string();
    let mut message = e.inner().to_string();
    // nmstate picks an interface's type from its `type` key, so errors inside one interface
    // stop at `interfaces[i]`; parse its keys one at a time to name the field at fault.
    if let Some(i) = path
        .strip_prefix("interfaces[")
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|i| i.parse::<usize>().ok())
        && let Some(iface) = state
            .pointer(&format!("/interfaces/{i}"))
            .and_then(Value::as_object)
    {
        let keep = ["name", "type"];
        // The identity first, each key beside a placeholder for the other.
        for (key, placeholder) in [("name", ("type", "ethernet")), ("type", ("name", "eth0"))] {
            let Some(value) = iface.get(key) else {
                continue;
            };
            let one = json!({ "interfaces": [{ key: value, placeholder.0: placeholder.1 }] });
            if let Err(inner) = serde_path_to_error::deserialize::<_, nmstate::NetworkState>(&one) {
                return Err(Refusal {
                    field: format!("{DESIRED_STATE}.{path}.{key}"),
                    message: inner.inner().to_string(),
                });
            }
        }
        for (key, value) in iface.iter().filter(|(k, _)| !keep.contains(&k.as_str())) {
            let mut probe: Map<String, Value> = iface
                .iter()
                .filter(|(k, _)| keep.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            probe.insert(key.clone(), value.clone());
            let one = json!({ "interfaces": [probe] });
            if let Err(inner) = serde_path_to_error::deserialize::<_, nmstate::NetworkState>(&one) {
                path = format!("{path}.{key}");
                message = inner.inner().to_string();
                break;
            }
        }
    }
    let mut at = if path == "." {
        String::new()
    } else {
        format!(".{path}")
    };
    // nmstate reads some sections (`ipv4`, `bridge`, ...) through an intermediate value, which
    // loses the path below them: take the section apart to name the field inside it.
    let inside = locate(state, &message, |s| {
        match serde_json::from_value::<nmstate::NetworkState>(s.clone()) {
            Ok(_) => Probe::Accepted,
            Err(e) if e.to_string() == message => Probe::Same,
            Err(_) => Probe::Other,
        }
    });
    if inside.len() > at.len() && inside.starts_with(&at) {
        at = inside;
    }
    Err(Refusal {
        field: format!("{DESIRED_STATE}{at}"),
        message,
    })
}
