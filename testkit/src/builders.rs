//! Typed test objects: Nodes, policies, enactments and node network states as the API types
//! build them, so that a test never spells an apiVersion or a field name by hand.
//!
//! ```
//! use knmstate_testkit::builders;
//! let n = builders::node("node1", &[("role", "worker")]);
//! assert_eq!(n.metadata.labels.unwrap()["kubernetes.io/hostname"], "node1");
//! let p = builders::policy("br1", &[("role", "worker")], builders::bridge_state("br1"));
//! assert_eq!(p.spec.node_selector.unwrap()["role"], "worker");
//! ```

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use knmstate_api::names::{NODE_LABEL, POLICY_LABEL, enactment_name};
use knmstate_api::shared::{NodeNetworkConfigurationEnactmentStatus, NodeNetworkStateStatus};
use knmstate_api::state::State;
use knmstate_api::v1::{NodeNetworkConfigurationPolicy, NodeNetworkConfigurationPolicySpec};
use knmstate_api::v1beta1::{NodeNetworkConfigurationEnactment, NodeNetworkState};
use serde_json::Value;

/// The label every Node carries with its own name.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// The current time as an API timestamp.
pub fn now() -> Time {
    Time(Timestamp::now())
}

/// The API timestamp `seconds` after the Unix epoch: a fixed time for tests that compare
/// condition times, creation timestamps or ages against a clock they pass in.
///
/// ```
/// use knmstate_testkit::builders::at;
/// assert!(at(1) < at(2));
/// assert_eq!(at(60).0.as_second(), 60);
/// ```
pub fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(seconds).expect("a timestamp within range"))
}

/// A label map from pairs.
pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A Node named `name` with `labels` plus `kubernetes.io/hostname: <name>`, without status.
pub fn node(name: &str, labels_: &[(&str, &str)]) -> Node {
    let mut n = Node::default();
    n.metadata.name = Some(name.to_owned());
    let mut l = labels(labels_);
    l.insert(HOSTNAME_LABEL.to_owned(), name.to_owned());
    n.metadata.labels = Some(l);
    n
}

/// A Node status whose only condition is `Ready` (`True` or `False`, reason `KubeletReady`),
/// with heartbeat and transition time now.
pub fn node_status(ready: bool) -> NodeStatus {
    NodeStatus {
        conditions: Some(vec![NodeCondition {
            type_: "Ready".to_owned(),
            status: if ready { "True" } else { "False" }.to_owned(),
            reason: Some("KubeletReady".to_owned()),
            last_heartbeat_time: Some(now()),
            last_transition_time: Some(now()),
            ..NodeCondition::default()
        }]),
        ..NodeStatus::default()
    }
}

/// A merge patch setting a Node's status to [`node_status`]`(ready)`.
pub fn node_status_patch(ready: bool) -> Value {
    let mut patch = serde_json::Map::new();
    patch.insert(
        "status".to_owned(),
        serde_json::to_value(node_status(ready)).expect("a NodeStatus serializes"),
    );
    Value::Object(patch)
}

/// A JSON object as an nmstate state; panics on anything else (a test's own mistake).
pub fn state(v: Value) -> State {
    State::try_from(v).unwrap_or_else(|v| panic!("an nmstate state is an object, not {v}"))
}

/// A desired state with one linux-bridge `name`, up, and nothing else.
pub fn bridge_state(name: &str) -> Value {
    serde_json::json!({"interfaces": [{"name": name, "type": "linux-bridge", "state": "up"}]})
}

/// A policy (`nmstate.io/v1`) selecting `selector` (empty: every node) with `desired_state`.
pub fn policy(
    name: &str,
    selector: &[(&str, &str)],
    desired_state: Value,
) -> NodeNetworkConfigurationPolicy {
    NodeNetworkConfigurationPolicy::new(
        name,
        NodeNetworkConfigurationPolicySpec {
            node_selector: (!selector.is_empty()).then(|| labels(selector)),
            desired_state: Some(state(desired_state)),
            ..NodeNetworkConfigurationPolicySpec::default()
        },
    )
}

/// The enactment of `policy` on `node`: named `<node>.<policy>`, with both relation labels and
/// no status.
pub fn enactment(node: &str, policy: &str) -> NodeNetworkConfigurationEnactment {
    let mut e =
        NodeNetworkConfigurationEnactment::new(&enactment_name(node, policy), Default::default());
    e.metadata.labels = Some(labels(&[(POLICY_LABEL, policy), (NODE_LABEL, node)]));
    e
}

/// The [`enactment`] of `policy` on `node` with a status reporting the nmstate `features` its
/// apply used, and no condition yet.
///
/// ```
/// use knmstate_testkit::builders;
/// let e = builders::enactment_with_features("n1", "p", &["static_route"]);
/// let status = e.status.unwrap();
/// assert_eq!(status.features, ["static_route"]);
/// assert!(status.conditions.0.is_empty());
/// ```
pub fn enactment_with_features(
    node: &str,
    policy: &str,
    features: &[&str],
) -> NodeNetworkConfigurationEnactment {
    let mut e = enactment(node, policy);
    e.status = Some(NodeNetworkConfigurationEnactmentStatus {
        features: features.iter().map(|f| (*f).to_owned()).collect(),
        ..NodeNetworkConfigurationEnactmentStatus::default()
    });
    e
}

/// The NodeNetworkState of `node` reporting `current_state`, updated now.
pub fn node_network_state(node: &str, current_state: Value) -> NodeNetworkState {
    let mut s = NodeNetworkState::new(node, Default::default());
    s.status = Some(NodeNetworkStateStatus {
        current_state: Some(state(current_state)),
        last_successful_update_time: Some(now()),
        ..NodeNetworkStateStatus::default()
    });
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_labelled_with_its_hostname_and_ready_when_asked() {
        let n = node("n1", &[("a", "b")]);
        assert_eq!(
            n.metadata.labels,
            Some(labels(&[("a", "b"), (HOSTNAME_LABEL, "n1")]))
        );
        let c = node_status(false).conditions.unwrap();
        assert_eq!(
            (c[0].type_.as_str(), c[0].status.as_str()),
            ("Ready", "False")
        );
    }

    #[test]
    fn objects_serialize_with_their_api_version() {
        let p = serde_json::to_value(policy("p", &[], bridge_state("br1"))).unwrap();
        assert_eq!(p["apiVersion"], "nmstate.io/v1");
        assert!(p["spec"].get("nodeSelector").is_none());
        let e = serde_json::to_value(enactment("n1", "p")).unwrap();
        assert_eq!(e["apiVersion"], "nmstate.io/v1beta1");
        assert_eq!(e["metadata"]["name"], "n1.p");
        assert_eq!(e["metadata"]["labels"][POLICY_LABEL], "p");
        let s = serde_json::to_value(node_network_state("n1", bridge_state("br1"))).unwrap();
        assert_eq!(s["kind"], "NodeNetworkState");
        assert_eq!(s["status"]["currentState"]["interfaces"][0]["name"], "br1");
    }
}
