//! Orphans: enactments whose policy or node is gone, or whose node the policy no longer
//! selects, and NodeNetworkStates of deleted nodes. Handlers delete their own enactments when
//! they can; the controller removes what is left (a node that was down when its policy was
//! deleted, a node deleted without garbage collection, ...).
//!
//! Candidates come from cached objects ([`find_orphans`]); the caller confirms each with
//! fresh reads ([`still_orphan`]) before deleting it. Nothing younger than a grace period is
//! a candidate, so a cache that lags behind a just-created policy or node never condemns a
//! live object.
//!
//! ```
//! use knmstate_state_engine::orphans::{OrphanReason, still_orphan};
//! use knmstate_api::v1::NodeNetworkConfigurationPolicy;
//!
//! // The node reappeared since the cache said it was gone: not an orphan any more.
//! let node = k8s_openapi::api::core::v1::Node::default();
//! assert!(!still_orphan(OrphanReason::NodeGone, Some(&node), None));
//! assert!(still_orphan(OrphanReason::NodeGone, None, None));
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::{NodeNetworkConfigurationEnactment, NodeNetworkState};

use crate::aggregate::policy_selects_node;

/// Why an object is an orphan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrphanReason {
    /// The enactment's policy does not exist.
    PolicyGone,
    /// The enactment's or state's node does not exist.
    NodeGone,
    /// The node exists but the policy no longer selects it.
    NodeNotMatching,
}

/// What kind of object an orphan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrphanKind {
    /// A NodeNetworkConfigurationEnactment.
    Enactment,
    /// A NodeNetworkState.
    State,
}

impl OrphanKind {
    /// The Kubernetes kind, for logs and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enactment => "NodeNetworkConfigurationEnactment",
            Self::State => "NodeNetworkState",
        }
    }
}

/// One object to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// Its kind.
    pub kind: OrphanKind,
    /// Its name.
    pub name: String,
    /// Its UID (delete precondition).
    pub uid: Option<String>,
    /// Its node.
    pub node: String,
    /// Its policy (enactments only).
    pub policy: Option<String>,
    /// Why it is an orphan.
    pub reason: OrphanReason,
}

/// What a sweep decided from the caches.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Candidates {
    /// Orphans old enough to delete.
    pub orphans: Vec<Orphan>,
    /// The shortest remaining grace of orphans too young to delete yet.
    pub retry_after: Option<Duration>,
}

impl Candidates {
    /// Keep `orphan` if it is at least `grace` old at `now`, else remember when it will be.
    fn consider(
        &mut self,
        orphan: Orphan,
        created: Option<&Time>,
        now: Timestamp,
        grace: Duration,
    ) {
        let age = created.map_or(Duration::MAX, |t| now.duration_since(t.0).unsigned_abs());
        if age >= grace {
            self.orphans.push(orphan);
        } else {
            let left = grace.checked_sub(age).unwrap();
            self.retry_after = Some(self.retry_after.map_or(left, |r| r.min(left)));
        }
    }
}

fn name_of(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

/// Whether `policy` still selects `node`; an invalid selection is reported on the policy,
/// never acted upon here, so it counts as selecting.
fn still_selected(policy: &NodeNetworkConfigurationPolicy, node: &Node) -> bool {
    policy_selects_node(policy, node).unwrap_or(true)
}

/// Orphans among the cached objects at `now`; objects younger than `grace` are left for a
/// later sweep (`retry_after`).
pub fn find_orphans<'a>(
    policies: impl IntoIterator<Item = &'a NodeNetworkConfigurationPolicy>,
    nodes: impl IntoIterator<Item = &'a Node>,
    enactments: impl IntoIterator<Item = &'a NodeNetworkConfigurationEnactment>,
    states: impl IntoIterator<Item = &'a NodeNetworkState>,
    now: Timestamp,
    grace: Duration,
) -> Candidates {
    let policies: BTreeMap<String, &NodeNetworkConfigurationPolicy> = policies
        .into_iter()
        .map(|p| (name_of(&p.metadata), p))
        .collect();
    let nodes: BTreeMap<String, &Node> = nodes
        .into_iter()
        .map(|n| (name_of(&n.metadata), n))
        .collect();
    let mut out = Candidates::default();
    for e in enactments {
        let (Some(node), Some(policy)) = (e.node_name(), e.policy_name()) else {
            continue;
        };
        let reason = match (policies.get(policy), nodes.get(node)) {
            (None, _) => OrphanReason::PolicyGone,
            (_, None) => OrphanReason::NodeGone,
            (Some(p), Some(n)) if still_selected(p, n) => continue,
            (Some(_), Some(_)) => OrphanReason::NodeNotMatching,
        };
        let orphan = Orphan {
            kind: OrphanKind::Enactment,
            name: name_of(&e.metadata),
            uid: e.metadata.uid.clone(),
            node: node.to_owned(),
            policy: Some(policy.to_owned()),
            reason,
        };
        out.consider(orphan, e.metadata.creation_timestamp.as_ref(), now, grace);
    }
    for s in states {
        let name = name_of(&s.metadata);
        if nodes.contains_key(&name) {
            continue;
        }
        let orphan = Orphan {
            kind: OrphanKind::State,
            uid: s.metadata.uid.clone(),
            node: name.clone(),
            name,
            policy: None,
            reason: OrphanReason::NodeGone,
        };
        out.consider(orphan, s.metadata.creation_timestamp.as_ref(), now, grace);
    }
    out
}

/// Whether a candidate found for `reason` is still an orphan given fresh reads of its node
/// and policy (`None`: not found, or not read because `reason` does not need it).
pub fn still_orphan(
    reason: OrphanReason,
    node: Option<&Node>,
    policy: Option<&NodeNetworkConfigurationPolicy>,
) -> bool {
    match reason {
        OrphanReason::NodeGone => node.is_none(),
        OrphanReason::PolicyGone => policy.is_none(),
        OrphanReason::NodeNotMatching => match (node, policy) {
            (Some(n), Some(p)) => !still_selected(p, n),
            // Gone meanwhile: an orphan either way.
            _ => true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use knmstate_testkit::builders::{self, at};
    use pretty_assertions::assert_eq;
    use rstest::rstest;

    fn node(name: &str, role: &str) -> Node {
        builders::node(name, &[("role", role)])
    }

    fn workers() -> NodeNetworkConfigurationPolicy {
        builders::policy("workers", &[("role", "w")], serde_json::json!({}))
    }

    fn nnce(node: &str, policy: &str, created: i64) -> NodeNetworkConfigurationEnactment {
        let mut e = builders::enactment(node, policy);
        e.metadata.creation_timestamp = Some(at(created));
        e
    }

    fn nns(name: &str, created: i64) -> NodeNetworkState {
        let mut s = builders::node_network_state(name, serde_json::json!({}));
        s.metadata.creation_timestamp = Some(at(created));
        s
    }

    #[test]
    fn finds_each_kind_of_orphan_and_waits_for_young_ones() {
        let p = workers();
        let nodes = [node("a", "w"), node("b", "m")];
        let es = [
            nnce("a", "workers", 0),  // fine
            nnce("a", "gone", 0),     // policy gone
            nnce("z", "workers", 0),  // node gone
            nnce("b", "workers", 0),  // no longer matches
            nnce("y", "workers", 95), // node gone, but only 5 s old
        ];
        let c = find_orphans(
            [&p],
            &nodes,
            &es,
            &[nns("a", 0), nns("x", 0)],
            Timestamp::from_second(100).unwrap(),
            Duration::from_secs(10),
        );
        let got: Vec<_> = c
            .orphans
            .iter()
            .map(|o| (o.name.as_str(), o.kind, o.reason))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a.gone", OrphanKind::Enactment, OrphanReason::PolicyGone),
                ("z.workers", OrphanKind::Enactment, OrphanReason::NodeGone),
                (
                    "b.workers",
                    OrphanKind::Enactment,
                    OrphanReason::NodeNotMatching
                ),
                ("x", OrphanKind::State, OrphanReason::NodeGone),
            ]
        );
        assert_eq!(c.retry_after, Some(Duration::from_secs(5)));
    }

    #[rstest]
    #[case::node_still_gone(OrphanReason::NodeGone, None, None, true)]
    #[case::node_back(OrphanReason::NodeGone, Some("w"), None, false)]
    #[case::policy_still_gone(OrphanReason::PolicyGone, None, None, true)]
    #[case::policy_back(OrphanReason::PolicyGone, None, Some(()), false)]
    #[case::still_not_matching(OrphanReason::NodeNotMatching, Some("m"), Some(()), true)]
    #[case::matches_again(OrphanReason::NodeNotMatching, Some("w"), Some(()), false)]
    #[case::node_gone_meanwhile(OrphanReason::NodeNotMatching, None, Some(()), true)]
    #[case::policy_gone_meanwhile(OrphanReason::NodeNotMatching, Some("w"), None, true)]
    fn fresh_reads_confirm_or_spare(
        #[case] reason: OrphanReason,
        #[case] node_role: Option<&str>,
        #[case] policy: Option<()>,
        #[case] orphan: bool,
    ) {
        let n = node_role.map(|role| node("a", role));
        let p = policy.map(|()| workers());
        assert_eq!(still_orphan(reason, n.as_ref(), p.as_ref()), orphan);
    }
}
