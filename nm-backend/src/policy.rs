//! nmpolicy capture resolution and nmstate feature statistics: pure functions over states.
//!
//! They run nmstate's code in the caller's task, so a panic in it is caught and returned as
//! [`BackendError::NmstatePanic`] instead of unwinding through the caller (a reconcile task).

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};

use nmstate::{NetworkPolicy, NetworkState};
use serde_json::Value;

use crate::{
    FeatureStatistics, ResolvedPolicy,
    error::{BackendError, Result},
};

fn parse_state(value: &Value, what: &str) -> Result<NetworkState> {
    serde_json::from_value(value.clone())
        .map_err(|e| BackendError::ResolvePolicy(format!("{what} is not an nmstate state: {e}")))
}

/// Run `job` (nmstate code over values it owns or only reads), turning a panic into
/// [`BackendError::NmstatePanic`] for `operation`.
///
/// Unwind safety holds: `job` shares no state with the caller that a panic could leave broken
/// (its inputs are only read, its output is dropped with the panic).
fn catch_panic<T>(operation: &'static str, job: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(job)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        tracing::error!(operation, %message, "nmstate panicked");
        Err(BackendError::NmstatePanic { operation, message })
    })
}

/// Resolve an nmpolicy (`{capture: {name: expr}, desiredState: template}`) against `current`.
///
/// Captures whose names are in `cache` are taken from it unchanged (as upstream reuses the
/// `capturedStates` of an enactment); the others are captured from `current`. A policy without
/// captures passes its `desiredState` through untouched.
///
/// A panic in nmstate's nmpolicy code is returned as [`BackendError::NmstatePanic`].
pub fn resolve_policy(
    policy: &Value,
    current: &Value,
    cache: &BTreeMap<String, Value>,
) -> Result<ResolvedPolicy> {
    catch_panic("resolve the policy captures", || {
        resolve_unguarded(policy, current, cache)
    })
}

fn resolve_unguarded(
    policy: &Value,
    current: &Value,
    cache: &BTreeMap<String, Value>,
) -> Result<ResolvedPolicy> {
    let desired = policy.get("desiredState").cloned().unwrap_or(Value::Null);
    let has_captures = policy
        .get("capture")
        .and_then(Value::as_object)
        .is_some_and(|c| !c.is_empty());
    // Without captures the desired state passes as it is — unless it refers to one: nmpolicy
    // then refuses it here, naming the missing capture, where nmstate would only fail later on
    // an interface literally named `{{ capture.… }}`.
    if !has_captures && !refers_to_a_capture(&desired) {
        return Ok(ResolvedPolicy {
            desired_state: desired,
            captured_states: BTreeMap::new(),
        });
    }
    let parsed: NetworkPolicy = serde_json::from_value(serde_json::json!({
        "capture": policy.get("capture").cloned().unwrap_or_else(|| serde_json::json!({})),
        "desiredState": desired,
    }))
    .map_err(|e| BackendError::ResolvePolicy(e.to_string()))?;

    let names: Vec<&str> = parsed
        .capture
        .cmds
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    let mut captured: HashMap<String, NetworkState> = HashMap::new();
    if !names.iter().all(|n| cache.contains_key(*n)) {
        let current = parse_state(current, "the current state")?;
        captured = parsed
            .capture
            .execute(&current)
            .map_err(|e| BackendError::ResolvePolicy(e.to_string()))?;
    }
    for name in &names {
        if let Some(cached) = cache.get(*name) {
            captured.insert(
                (*name).to_string(),
                parse_state(cached, "a cached capture")?,
            );
        }
    }
    let filled = parsed
        .desired
        .fill_with_captured_data(&captured)
        .map_err(|e| BackendError::ResolvePolicy(e.to_string()))?;
    let to_value = |s: &NetworkState| {
        serde_json::to_value(s).map_err(|e| BackendError::ResolvePolicy(e.to_string()))
    };
    let mut captured_states = BTreeMap::new();
    for name in names {
        if let Some(cached) = cache.get(name) {
            captured_states.insert(name.to_string(), cached.clone());
        } else if let Some(state) = captured.get(name) {
            captured_states.insert(name.to_string(), to_value(state)?);
        }
    }
    Ok(ResolvedPolicy {
        desired_state: to_value(&filled)?,
        captured_states,
    })
}

/// Whether a string of `state` holds a capture reference (`{{ capture.… }}`).
fn refers_to_a_capture(state: &Value) -> bool {
    match state {
        Value::String(s) => s.contains("{{") && s.contains("capture."),
        Value::Array(a) => a.iter().any(refers_to_a_capture),
        Value::Object(o) => o.values().any(refers_to_a_capture),
        _ => false,
    }
}

/// nmstate's feature statistics (topology and features) of `desired` applied over `current`.
///
/// A panic in nmstate's statistics code is returned as [`BackendError::NmstatePanic`].
pub fn feature_statistics(desired: &Value, current: &Value) -> Result<FeatureStatistics> {
    catch_panic("compute the nmstate feature statistics", || {
        statistics_unguarded(desired, current)
    })
}

fn statistics_unguarded(desired: &Value, current: &Value) -> Result<FeatureStatistics> {
    let err = |e: String| BackendError::FeatureStatistics(e);
    let desired: NetworkState =
        serde_json::from_value(desired.clone()).map_err(|e| err(e.to_string()))?;
    let current: NetworkState =
        serde_json::from_value(current.clone()).map_err(|e| err(e.to_string()))?;
    let stats = desired
        .statistic(&current)
        .map_err(|e| err(e.to_string()))?;
    let features = stats
        .features
        .iter()
        .map(|f| match serde_json::to_value(f) {
            Ok(Value::String(s)) => s,
            _ => format!("{f:?}"),
        })
        .collect();
    Ok(FeatureStatistics {
        topology: stats.topology,
        features,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn current() -> Value {
        json!({
            "interfaces": [
                {"name": "eth0", "type": "ethernet", "state": "up", "mtu": 1500,
                 "ipv4": {"enabled": true, "dhcp": true,
                          "address": [{"ip": "198.18.0.100", "prefix-length": 24}]}},
                {"name": "eth1", "type": "ethernet", "state": "up"}
            ],
            "routes": {
                "running": [{"destination": "0.0.0.0/0", "next-hop-address": "198.18.0.1",
                             "next-hop-interface": "eth0", "metric": 100, "table-id": 254}],
                "config": []
            }
        })
    }

    fn bridge_policy() -> Value {
        json!({
            "capture": {
                "default-gw": "routes.running.destination==\"0.0.0.0/0\"",
                "base-iface": "interfaces.name==capture.default-gw.routes.running.0.next-hop-interface"
            },
            "desiredState": {
                "interfaces": [{
                    "name": "br1", "type": "linux-bridge", "state": "up",
                    "ipv4": "{{ capture.base-iface.interfaces.0.ipv4 }}",
                    "bridge": {"options": {"stp": {"enabled": false}},
                               "port": [{"name": "{{ capture.base-iface.interfaces.0.name }}"}]}
                }]
            }
        })
    }

    #[test]
    fn captures_default_gateway_interface_into_a_bridge() {
        let out = resolve_policy(&bridge_policy(), &current(), &BTreeMap::new()).expect("resolved");
        let br = &out.desired_state["interfaces"][0];
        assert_eq!(br["bridge"]["port"][0]["name"], "eth0");
        assert_eq!(br["ipv4"]["dhcp"], true);
        assert_eq!(
            out.captured_states["default-gw"]["routes"]["running"][0]["next-hop-interface"],
            "eth0"
        );
        assert_eq!(
            out.captured_states["base-iface"]["interfaces"][0]["name"],
            "eth0"
        );
    }

    #[test]
    fn cached_captures_win_over_the_current_state() {
        let first = resolve_policy(&bridge_policy(), &current(), &BTreeMap::new()).expect("first");
        // The node changed since: eth0 is now a bridge port and has no default route.
        let moved = json!({"interfaces": [{"name": "br1", "type": "linux-bridge", "state": "up"}],
                           "routes": {"running": [], "config": []}});
        let again =
            resolve_policy(&bridge_policy(), &moved, &first.captured_states).expect("again");
        assert_eq!(again, first);
        // Without the cache the same policy no longer resolves.
        assert!(resolve_policy(&bridge_policy(), &moved, &BTreeMap::new()).is_err());
    }

    #[test]
    fn policy_without_capture_passes_through() {
        let p = json!({"desiredState": {"interfaces": [{"name": "eth1", "mtu": 1400}]}});
        let out = resolve_policy(&p, &current(), &BTreeMap::new()).expect("resolved");
        assert_eq!(out.desired_state, p["desiredState"]);
        assert!(out.captured_states.is_empty());
    }

    #[test]
    fn a_capture_reference_without_its_capture_is_refused() {
        let policy = json!({"desiredState": {"interfaces": [{
            "name": "{{ capture.base-iface.interfaces.0.name }}", "type": "ethernet",
            "state": "up"}]}});
        let err = resolve_policy(&policy, &current(), &BTreeMap::new()).unwrap_err();
        assert!(matches!(err, BackendError::ResolvePolicy(_)), "{err:?}");
        assert!(err.to_string().contains("base-iface"), "{err}");
    }

    #[test]
    fn a_panic_becomes_a_typed_error() {
        let out: Result<()> = catch_panic("compute something", || panic!("index out of bounds"));
        let err = out.expect_err("the panic is an error");
        assert_eq!(err.category(), "nmstate-panicked");
        assert_eq!(
            err.to_string(),
            "failed to compute something: nmstate panicked: index out of bounds"
        );
        let formatted: Result<()> = catch_panic("compute", || panic!("value {}", 7));
        assert!(formatted.is_err_and(|e| e.to_string().ends_with("nmstate panicked: value 7")));
        assert_eq!(catch_panic("compute", || Ok(3)).ok(), Some(3));
    }

    #[test]
    fn statistics_name_features() {
        let desired = json!({
            "dns-resolver": {"config": {"server": ["198.18.0.1"]}},
            "routes": {"config": [{"destination": "198.19.5.0/24", "next-hop-address": "198.18.0.1",
                                   "next-hop-interface": "eth0"}]}
        });
        let stats = feature_statistics(&desired, &current()).expect("stats");
        assert!(
            stats
                .features
                .contains(&"static-dns-name-server".to_string()),
            "{stats:?}"
        );
        assert!(
            stats.features.contains(&"static-route".to_string()),
            "{stats:?}"
        );
    }
}
