//! The orphan sweep: enactments whose policy or node is gone, or whose node no longer
//! matches the policy, and NodeNetworkStates of deleted nodes. Handlers delete their own
//! enactments when they can; the controller removes what is left (a node that was down when
//! its policy was deleted, a node deleted without garbage collection, ...).
//!
//! Candidates come from the caches ([`find_orphans`], pure); each is confirmed with a fresh
//! read of its policy and node before it is deleted with a UID precondition, and nothing
//! younger than a grace period is touched, so a cache that lags behind a just-created policy
//! or node never deletes a live object.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::{NodeNetworkConfigurationEnactment, NodeNetworkState};
use knmstate_state_engine::selector::policy_matches_node;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::{Client, Resource, ResourceExt};

use crate::Error;

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
    fn as_str(self) -> &'static str {
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

fn age(
    meta_created: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    now: Timestamp,
) -> Duration {
    meta_created
        .map(|t| now.duration_since(t.0).unsigned_abs())
        .unwrap_or(Duration::MAX)
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
    let policies: BTreeMap<String, &NodeNetworkConfigurationPolicy> =
        policies.into_iter().map(|p| (p.name_any(), p)).collect();
    let nodes: BTreeMap<String, &Node> = nodes.into_iter().map(|n| (n.name_any(), n)).collect();
    let mut out = Candidates::default();
    let consider = |out: &mut Candidates, o: Orphan, created| {
        let a = age(created, now);
        if a >= grace {
            out.orphans.push(o);
        } else {
            let left = grace - a;
            out.retry_after = Some(out.retry_after.map_or(left, |r| r.min(left)));
        }
    };
    for e in enactments {
        let (Some(node), Some(policy)) = (e.node_name(), e.policy_name()) else {
            continue;
        };
        let reason = match (policies.get(policy), nodes.get(node)) {
            (None, _) => OrphanReason::PolicyGone,
            (_, None) => OrphanReason::NodeGone,
            (Some(p), Some(n)) => {
                let empty = BTreeMap::new();
                let labels = n.metadata.labels.as_ref().unwrap_or(&empty);
                // An invalid selection is reported on the policy, never acted upon here.
                if policy_matches_node(&p.spec, labels).unwrap_or(true) {
                    continue;
                }
                OrphanReason::NodeNotMatching
            }
        };
        let o = Orphan {
            kind: OrphanKind::Enactment,
            name: e.name_any(),
            uid: e.meta().uid.clone(),
            node: node.to_owned(),
            policy: Some(policy.to_owned()),
            reason,
        };
        consider(&mut out, o, e.meta().creation_timestamp.as_ref());
    }
    for s in states {
        let name = s.name_any();
        if nodes.contains_key(&name) {
            continue;
        }
        let o = Orphan {
            kind: OrphanKind::State,
            uid: s.meta().uid.clone(),
            node: name.clone(),
            name,
            policy: None,
            reason: OrphanReason::NodeGone,
        };
        consider(&mut out, o, s.meta().creation_timestamp.as_ref());
    }
    out
}

/// Confirm each candidate with fresh reads and delete it. Returns the names deleted.
pub async fn delete_orphans(client: &Client, orphans: &[Orphan]) -> Result<Vec<String>, Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let policies: Api<NodeNetworkConfigurationPolicy> = Api::all(client.clone());
    let mut node_cache: HashMap<String, Option<Node>> = HashMap::new();
    let mut policy_cache: HashMap<String, Option<NodeNetworkConfigurationPolicy>> = HashMap::new();
    let mut deleted = Vec::new();
    for o in orphans {
        let confirm = |source| Error::ConfirmOrphan {
            kind: o.kind.as_str(),
            name: o.name.clone(),
            source,
        };
        let node = match node_cache.get(&o.node) {
            Some(n) => n.clone(),
            None if o.reason == OrphanReason::PolicyGone => None,
            None => {
                let n = nodes.get_opt(&o.node).await.map_err(confirm)?;
                node_cache.insert(o.node.clone(), n.clone());
                n
            }
        };
        let policy = match &o.policy {
            None => None,
            Some(p) if o.reason == OrphanReason::NodeGone => policy_cache.get(p).cloned().flatten(),
            Some(p) => match policy_cache.get(p) {
                Some(cached) => cached.clone(),
                None => {
                    let fetched = policies.get_opt(p).await.map_err(confirm)?;
                    policy_cache.insert(p.clone(), fetched.clone());
                    fetched
                }
            },
        };
        let still_orphan = match o.reason {
            OrphanReason::NodeGone => node.is_none(),
            OrphanReason::PolicyGone => policy.is_none(),
            OrphanReason::NodeNotMatching => match (node, policy) {
                (Some(n), Some(p)) => {
                    let empty = BTreeMap::new();
                    let labels = n.metadata.labels.as_ref().unwrap_or(&empty);
                    !policy_matches_node(&p.spec, labels).unwrap_or(true)
                }
                // Gone meanwhile: an orphan either way.
                _ => true,
            },
        };
        if !still_orphan {
            continue;
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: o.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        let result = match o.kind {
            OrphanKind::Enactment => Api::<NodeNetworkConfigurationEnactment>::all(client.clone())
                .delete(&o.name, &params)
                .await
                .map(|_| ()),
            OrphanKind::State => Api::<NodeNetworkState>::all(client.clone())
                .delete(&o.name, &params)
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => {
                tracing::info!(kind = o.kind.as_str(), name = %o.name, reason = ?o.reason, "deleted orphan");
                deleted.push(o.name.clone());
            }
            // Already gone, or replaced by a new object with the same name.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(source) => {
                return Err(Error::DeleteOrphan {
                    kind: o.kind.as_str(),
                    name: o.name.clone(),
                    source,
                });
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use knmstate_api::names::{NODE_LABEL, POLICY_LABEL};
    use pretty_assertions::assert_eq;

    fn created(obj: &mut impl Resource, at: i64) {
        obj.meta_mut().creation_timestamp = Some(Time(Timestamp::from_second(at).unwrap()));
    }

    fn node(name: &str, role: &str) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        n.metadata.labels = Some([("role".to_string(), role.to_string())].into());
        n
    }

    fn nnce(node: &str, policy: &str, at: i64) -> NodeNetworkConfigurationEnactment {
        let mut e =
            NodeNetworkConfigurationEnactment::new(&format!("{node}.{policy}"), Default::default());
        e.metadata.labels = Some(
            [
                (NODE_LABEL.to_string(), node.to_string()),
                (POLICY_LABEL.to_string(), policy.to_string()),
            ]
            .into(),
        );
        created(&mut e, at);
        e
    }

    #[test]
    fn finds_each_kind_of_orphan_and_waits_for_young_ones() {
        let mut p = NodeNetworkConfigurationPolicy::new("workers", Default::default());
        p.spec.node_selector = Some([("role".to_string(), "w".to_string())].into());
        let nodes = [node("a", "w"), node("b", "m")];
        let es = [
            nnce("a", "workers", 0),  // fine
            nnce("a", "gone", 0),     // policy gone
            nnce("z", "workers", 0),  // node gone
            nnce("b", "workers", 0),  // no longer matches
            nnce("y", "workers", 95), // node gone, but only 5 s old
        ];
        let mut s_ok = NodeNetworkState::new("a", Default::default());
        created(&mut s_ok, 0);
        let mut s_gone = NodeNetworkState::new("x", Default::default());
        created(&mut s_gone, 0);
        let c = find_orphans(
            [&p],
            &nodes,
            &es,
            [&s_ok, &s_gone],
            Timestamp::from_second(100).unwrap(),
            Duration::from_secs(10),
        );
        let got: Vec<_> = c
            .orphans
            .iter()
            .map(|o| (o.name.as_str(), o.reason))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a.gone", OrphanReason::PolicyGone),
                ("z.workers", OrphanReason::NodeGone),
                ("b.workers", OrphanReason::NodeNotMatching),
                ("x", OrphanReason::NodeGone),
            ]
        );
        assert_eq!(c.retry_after, Some(Duration::from_secs(5)));
    }
}
