//! Drift: whether a node still satisfies the desired state a policy applied there, and where
//! it departs from it.
//!
//! The rule is nmstate's verification rule, the one [`crate::plan`] already uses to decide
//! that a node satisfies a policy: **desired ⊆ current**. Every key the desired state writes
//! must hold on the node (objects compared key by key, lists as a whole and order-insensitive,
//! MAC addresses case-insensitive, kernel IPv6 link-local addresses and the implicit main
//! route table ignored); keys it does not write may differ. So a node is drifted exactly when
//! the plan of its desired state over its current state is not empty, and the differing paths
//! are the plan's changes, followed down to the deepest key that differs:
//!
//! | plan entry | path |
//! |---|---|
//! | interface to create (gone from the node) | `interfaces[br1]` |
//! | interface to remove (back on the node) | `interfaces[dummy0]` |
//! | interface field that differs | `interfaces[br1].bridge.port` |
//! | route to add (gone) or to remove (back) | `routes.config[198.19.0.0/24]` |
//! | DNS configuration | `dns-resolver.config` |
//!
//! Only enactments that reached `Available` by applying their policy's current generation are
//! watched ([`watched`]); a dry run's `Available` is not an apply.
//!
//! ```
//! use knmstate_state_engine::drift::differing_paths;
//! use serde_json::json;
//!
//! let desired = json!({"interfaces": [{"name": "br1", "type": "linux-bridge", "state": "up",
//!     "bridge": {"port": [{"name": "eth1"}]}}]});
//! let current = json!({"interfaces": [{"name": "br1", "type": "linux-bridge", "state": "up",
//!     "bridge": {"options": {"stp": {"enabled": false}}, "port": []}}]});
//! assert_eq!(differing_paths(&desired, &current), ["interfaces[br1].bridge.port"]);
//! ```

use knmstate_api::names::enactment as e;
use knmstate_api::shared::{DriftReport, NodeNetworkConfigurationEnactmentStatus};
use knmstate_api::v1beta1::NodeNetworkConfigurationEnactment;
use serde_json::{Map, Value, json};

use crate::concurrency::SlotState;
use crate::plan::{self, InterfaceChangeKind};

/// Where `current` departs from the partial `desired` state (both secrets-hidden alike),
/// sorted; empty when `current` satisfies `desired`.
pub fn differing_paths(desired: &Value, current: &Value) -> Vec<String> {
    let p = plan::plan(current, desired);
    let mut out = Vec::new();
    for change in &p.interfaces {
        let at = format!("interfaces[{}]", change.name);
        match &change.kind {
            InterfaceChangeKind::Create | InterfaceChangeKind::Remove => out.push(at),
            InterfaceChangeKind::Change { fields } => {
                let d = interface(desired, &change.name, change.r#type.as_deref());
                let c = interface(current, &change.name, change.r#type.as_deref());
                for field in fields {
                    let (dv, cv) = (d.get(field), c.get(field));
                    match (dv, cv) {
                        (Some(dv), Some(cv)) => {
                            descend(field, dv, cv, &format!("{at}.{field}"), &mut out);
                        }
                        _ => out.push(format!("{at}.{field}")),
                    }
                }
            }
        }
    }
    for route in p.routes_added.iter().chain(&p.routes_removed) {
        let dest = route
            .get("destination")
            .and_then(Value::as_str)
            .or_else(|| route.get("next-hop-interface").and_then(Value::as_str))
            .unwrap_or("*");
        out.push(format!("routes.config[{dest}]"));
    }
    if p.dns.is_some() {
        out.push("dns-resolver.config".to_owned());
    }
    out.sort();
    out.dedup();
    out
}

/// The interface of `state` named `name` (of type `ty` when one of that type exists).
fn interface<'a>(state: &'a Value, name: &str, ty: Option<&str>) -> &'a Map<String, Value> {
    static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
    let all: Vec<&Map<String, Value>> = state
        .get("interfaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .filter(|i| i.get("name").and_then(Value::as_str) == Some(name))
        .collect();
    all.iter()
        .find(|i| ty.is_none() || i.get("type").and_then(Value::as_str) == ty)
        .or(all.first())
        .copied()
        .unwrap_or(&EMPTY)
}

/// Whether `current` satisfies `desired` under `key` (the key decides the special rules:
/// link-local addresses, MAC case).
fn holds(key: &str, desired: &Value, current: &Value) -> bool {
    plan::satisfies(&json!({ key: desired }), &json!({ key: current }))
}

/// Push the deepest paths under `at` where `current` does not satisfy `desired`.
fn descend(key: &str, desired: &Value, current: &Value, at: &str, out: &mut Vec<String>) {
    if holds(key, desired, current) {
        return;
    }
    match (desired, current) {
        (Value::Object(dm), Value::Object(cm)) if !dm.is_empty() => {
            for (k, dv) in dm.iter().filter(|(_, v)| !v.is_null()) {
                match cm.get(k) {
                    Some(cv) => descend(k, dv, cv, &format!("{at}.{k}"), out),
                    None => out.push(format!("{at}.{k}")),
                }
            }
        }
        _ => out.push(at.to_owned()),
    }
}

/// Whether an enactment is watched for drift: `Available` by applying generation `generation`
/// (not by a dry run) with a desired state that writes something.
pub fn watched(status: Option<&NodeNetworkConfigurationEnactmentStatus>, generation: i64) -> bool {
    let Some(s) = status else {
        return false;
    };
    SlotState::of(status, generation) == SlotState::Available
        && !planned(s)
        && s.desired_state.as_ref().is_some_and(|d| !d.is_empty())
}

/// Whether the status is a dry run's: `Available` with reason `ConfigurationPlanned`.
pub fn planned(status: &NodeNetworkConfigurationEnactmentStatus) -> bool {
    status
        .conditions
        .find(e::AVAILABLE)
        .is_some_and(|c| c.reason == e::REASON_PLANNED)
}

/// The drift report to store when the node departs from the desired state at `paths` (empty:
/// not drifted), given the stored one: `since` is kept while the node stays drifted.
pub fn next_report(
    stored: Option<&DriftReport>,
    paths: Vec<String>,
    reapply: bool,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> Option<DriftReport> {
    if paths.is_empty() {
        return None;
    }
    Some(DriftReport {
        since: Some(
            stored
                .and_then(|r| r.since.clone())
                .unwrap_or_else(|| now.clone()),
        ),
        paths,
        reapply,
    })
}

/// Whether the stored report says something else than the node's `paths` now (the handler
/// then looks at the enactment again).
pub fn report_differs(stored: Option<&DriftReport>, paths: &[String]) -> bool {
    stored.map_or(&[][..], |r| r.paths.as_slice()) != paths
}

/// Whether the handler should look at an enactment again now that its node's state is
/// `current` (secrets hidden): a watched enactment whose stored report no longer says where
/// the node departs, or an enactment no longer watched that still carries a report (it goes
/// once the enactment is looked at).
pub fn needs_look(
    status: Option<&NodeNetworkConfigurationEnactmentStatus>,
    generation: i64,
    current: &Value,
) -> bool {
    let stored = status.and_then(|s| s.drift.as_ref());
    if !watched(status, generation) {
        return stored.is_some();
    }
    let desired = status
        .and_then(|s| s.desired_state.as_ref())
        .map(knmstate_api::State::to_value)
        .unwrap_or_default();
    report_differs(stored, &differing_paths(&desired, current))
}

/// The `(node, policy)` of every enactment carrying a drift report (the
/// `knmstate_enactments_drifted` gauge).
pub fn drifted<'a>(
    enactments: impl IntoIterator<Item = &'a NodeNetworkConfigurationEnactment>,
) -> impl Iterator<Item = (&'a str, &'a str)> {
    enactments.into_iter().filter_map(|e| {
        e.status.as_ref()?.drift.as_ref()?;
        Some((e.node_name()?, e.policy_name()?))
    })
}

#[cfg(test)]
mod tests;
