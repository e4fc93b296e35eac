//! How many nodes can run the webhook: the input of its replica count and disruption budget.
//!
//! Upstream counts nodes that match the infra node selector **and carry a taint equal to one
//! of the infra tolerations** (so a cluster without tainted control-plane nodes always gets
//! one replica). Here a node counts when it matches the selector and every `NoSchedule` or
//! `NoExecute` taint it has is tolerated: the nodes the scheduler can really use.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Taint, Toleration};

use crate::Knobs;

/// Whether `toleration` tolerates `taint` (the scheduler's rule).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect_ok = toleration
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    let key_ok = match toleration.key.as_deref() {
        None | Some("") => toleration.operator.as_deref() == Some("Exists"),
        Some(k) => k == taint.key,
    };
    let value_ok = match toleration.operator.as_deref() {
        Some("Exists") => true,
        _ => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
    };
    effect_ok && key_ok && value_ok
}

fn matches(selector: &BTreeMap<String, String>, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn schedulable(tolerations: &[Toleration], node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| tolerations.iter().any(|tol| tolerates(tol, t)))
}

/// The nodes among `nodes` the webhook can be scheduled on.
pub fn infra_node_count(knobs: &Knobs, nodes: &[Node]) -> usize {
    nodes
        .iter()
        .filter(|n| {
            matches(&knobs.infra_node_selector, n) && schedulable(&knobs.infra_tolerations, n)
        })
        .count()
}
