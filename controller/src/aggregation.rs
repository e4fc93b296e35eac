//! Which nodes count for a policy and what its conditions become: pure functions over the
//! cached Nodes, NodeNetworkStates and enactments, so they are unit-tested without a cluster.
//!
//! A node counts when it matches the policy's selection and runs a handler; a handler proves
//! it runs by keeping its NodeNetworkState (named after the node). Nodes whose `Ready`
//! condition is not `True` are counted as matching but not ready: state-engine reports them
//! with the "nodes ignored due to NotReady state" suffix instead of waiting for them.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use knmstate_api::ConditionList;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::NodeNetworkConfigurationEnactment;
use knmstate_state_engine::aggregate::aggregate_policy;
use knmstate_state_engine::conditions::PolicyVerdict;
use knmstate_state_engine::selector::policy_matches_node;

/// The nodes that count for a policy: matching its selection and running a handler
/// (`has_handler(node name)`); and the ready ones among them.
pub fn select_nodes<'a>(
    policy: &NodeNetworkConfigurationPolicy,
    nodes: impl IntoIterator<Item = &'a Node>,
    has_handler: impl Fn(&str) -> bool,
) -> Result<(BTreeSet<String>, BTreeSet<String>), knmstate_state_engine::Error> {
    let empty = Default::default();
    let mut matching = BTreeSet::new();
    let mut ready = BTreeSet::new();
    for node in nodes {
        let Some(name) = node.metadata.name.as_deref() else {
            continue;
        };
        if !has_handler(name) {
            continue;
        }
        let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
        if !policy_matches_node(&policy.spec, labels)? {
            continue;
        }
        matching.insert(name.to_owned());
        if knmstate_state_engine::node::is_ready(node) {
            ready.insert(name.to_owned());
        }
    }
    Ok((matching, ready))
}

/// A policy's verdict from the nodes that count and its enactments (of any generation; only
/// those of the policy's current generation and of counting nodes are counted).
pub fn policy_verdict(
    policy: &NodeNetworkConfigurationPolicy,
    enactments: &[NodeNetworkConfigurationEnactment],
    matching: &BTreeSet<String>,
    ready: &BTreeSet<String>,
) -> PolicyVerdict {
    let generation = policy.metadata.generation.unwrap_or(1);
    aggregate_policy(generation, enactments, matching, ready)
}

/// The conditions to write, or `None` when `current` already says the same thing: the
/// verdict is applied over `current` with `ConditionList::set`, so `lastTransitionTime` moves
/// only on a real transition.
///
/// ```
/// use knmstate_api::ConditionList;
/// use knmstate_controller::aggregation::next_conditions;
/// use knmstate_state_engine::conditions::{PolicyConditionKind, PolicyVerdict};
/// use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
/// use k8s_openapi::jiff::Timestamp;
///
/// let t = |s| Time(Timestamp::from_second(s).unwrap());
/// let v = PolicyVerdict { kind: PolicyConditionKind::Success, message: "1/1 nodes successfully configured".into() };
/// let first = next_conditions(&ConditionList::default(), &v, t(1)).unwrap();
/// assert!(next_conditions(&first, &v, t(2)).is_none()); // nothing new: no write
/// ```
pub fn next_conditions(
    current: &ConditionList,
    verdict: &PolicyVerdict,
    now: Time,
) -> Option<ConditionList> {
    let mut next = current.clone();
    verdict.apply(&mut next, now);
    (!next.same_meaning(current)).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};
    use k8s_openapi::jiff::Timestamp;
    use knmstate_api::shared::NodeNetworkConfigurationEnactmentStatus;
    use knmstate_state_engine::conditions::{EnactmentTransition, PolicyConditionKind};
    use pretty_assertions::assert_eq;
    use std::collections::BTreeMap;

    fn t(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    fn node(name: &str, labels: &[(&str, &str)], ready: bool) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        n.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        );
        n.status = Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        n
    }

    fn policy(selector: &[(&str, &str)], generation: i64) -> NodeNetworkConfigurationPolicy {
        let mut p: NodeNetworkConfigurationPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
            "metadata": {"name": "p", "generation": generation},
            "spec": {}
        }))
        .unwrap();
        if !selector.is_empty() {
            p.spec.node_selector = Some(
                selector
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
        }
        p
    }

    fn nnce(
        node: &str,
        generation: i64,
        tr: EnactmentTransition,
    ) -> NodeNetworkConfigurationEnactment {
        let mut conditions = ConditionList::default();
        tr.apply(&mut conditions, t(0));
        let mut e =
            NodeNetworkConfigurationEnactment::new(&format!("{node}.p"), Default::default());
        e.status = Some(NodeNetworkConfigurationEnactmentStatus {
            policy_generation: Some(generation),
            conditions,
            ..Default::default()
        });
        e
    }

    #[test]
    fn only_nodes_with_a_handler_and_matching_labels_count() {
        let nodes = [
            node("a", &[("role", "w")], true),
            node("b", &[("role", "w")], false),
            node("c", &[("role", "m")], true),
            node("d", &[("role", "w")], true), // no NNS: no handler
        ];
        let (m, r) = select_nodes(&policy(&[("role", "w")], 1), &nodes, |n| n != "d").unwrap();
        assert_eq!(m, BTreeSet::from(["a".to_string(), "b".to_string()]));
        assert_eq!(r, BTreeSet::from(["a".to_string()]));
    }

    #[test]
    fn verdict_uses_upstream_messages_and_the_current_generation() {
        let nodes = [
            node("a", &[], true),
            node("b", &[], true),
            node("c", &[], false),
        ];
        let p = policy(&[], 2);
        let (m, r) = select_nodes(&p, &nodes, |_| true).unwrap();
        let es = vec![
            nnce("a", 2, EnactmentTransition::Success),
            nnce("b", 1, EnactmentTransition::Success),
        ];
        let v = policy_verdict(&p, &es, &m, &r);
        assert_eq!(v.kind, PolicyConditionKind::Progressing);
        assert_eq!(
            v.message,
            "Policy is progressing 1/2 nodes finished, 1 nodes ignored due to NotReady state"
        );
        let es = vec![
            nnce("a", 2, EnactmentTransition::Success),
            nnce("b", 2, EnactmentTransition::Success),
        ];
        let v = policy_verdict(&p, &es, &m, &r);
        assert_eq!(
            (v.kind, v.message.as_str()),
            (
                PolicyConditionKind::Success,
                "2/3 nodes successfully configured, 1 nodes ignored due to NotReady state"
            )
        );
    }

    #[test]
    fn no_matching_node_is_ignored() {
        let p = policy(&[("role", "gpu")], 1);
        let (m, r) = select_nodes(&p, &[node("a", &[], true)], |_| true).unwrap();
        let v = policy_verdict(&p, &[], &m, &r);
        assert_eq!(v.kind, PolicyConditionKind::NotMatching);
        assert_eq!(v.message, "Policy does not match any node");
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let progressing = |k| PolicyVerdict {
            kind: PolicyConditionKind::Progressing,
            message: format!("Policy is progressing {k}/3 nodes finished"),
        };
        let first = next_conditions(&ConditionList::default(), &progressing(0), t(1)).unwrap();
        let second = next_conditions(&first, &progressing(1), t(2)).unwrap();
        let c = second.find("Progressing").unwrap();
        assert_eq!(c.last_transition_time, Some(t(1)));
        assert_eq!(c.message, "Policy is progressing 1/3 nodes finished");
        assert!(next_conditions(&second, &progressing(1), t(3)).is_none());
    }
}
