//! `kubectl nmstate plan`: what a policy would do to each node, computed the way the handler
//! computes it on the node — captures resolved by nm-backend's `resolve_policy` (reusing an
//! enactment's captured states as the handler does), finished by state-engine's `render`,
//! diffed by state-engine's `plan` (secrets hidden on both sides), probes chosen by
//! state-engine's `rollback::select_probes` — against each node's NodeNetworkState.
//!
//! Which nodes count is state-engine's `aggregate::select_nodes` (selected, and running a
//! handler: it has a NodeNetworkState); how many apply at once is
//! `concurrency::max_unavailable`.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_state_engine::plan::{self as engine, Plan};
use knmstate_state_engine::rollback::{self, ProbeKind, SkipReason};
use knmstate_state_engine::{aggregate, concurrency, render, secrets, selector};
use kube::ResourceExt;
use serde::Serialize;
use serde_json::Value;

use super::error::PluginError;
use super::settings::HandlerSettings;

/// What a plan may look at: the nodes (their labels and readiness; empty offline unless Node
/// objects were given) and each node's reported state.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    /// The nodes, when known.
    pub nodes: Vec<Node>,
    /// `status.currentState` of each node's NodeNetworkState.
    pub states: BTreeMap<String, Value>,
    /// Per node, the captured states its enactment of this policy lets the handler reuse.
    pub captures: BTreeMap<String, BTreeMap<String, Value>>,
}

/// Which of the nodes to show.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Focus {
    /// Every node the policy selects.
    #[default]
    Selected,
    /// This node, whether the policy selects it or not.
    Node(String),
    /// The selected nodes that also carry these labels.
    Labels(BTreeMap<String, String>),
}

/// How to plan.
#[derive(Debug, Clone)]
pub struct Options {
    /// Which nodes to show.
    pub focus: Focus,
    /// Whether the nodes' kernels filter bridge VLANs (the handlers in their default `auto`
    /// mode then inject the default linux-bridge VLAN trunk).
    pub bridge_vlan_filtering: bool,
    /// The settings the handlers run with (probe timeouts, DNS host, bridge VLAN default).
    pub handler: HandlerSettings,
}

/// The plan of one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePlan {
    /// The node.
    pub node: String,
    /// Whether the policy selects it and it runs a handler.
    pub selected: bool,
    /// Whether it is Ready (unknown offline without Node objects).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// What applying changes (none when it could not be computed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// Probes run after the apply, in order.
    pub probes: Vec<ProbeKind>,
    /// Probes not run, and why.
    pub skipped_probes: Vec<(ProbeKind, SkipReason)>,
    /// How long NetworkManager holds the checkpoint.
    pub checkpoint_timeout_seconds: u64,
    /// Why no plan could be made (no NodeNetworkState, a capture nmstate cannot resolve).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The plan of a policy over the fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPlan {
    /// The policy.
    pub policy: String,
    /// Its generation (a policy read from a file has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Whether node labels were known (offline plans without Node objects assume every
    /// given state is selected).
    pub labels_known: bool,
    /// The nodes that count: selected and running a handler, in name order.
    pub selected_nodes: Vec<String>,
    /// Nodes the policy selects that run no handler (no NodeNetworkState): not counted.
    pub without_handler: Vec<String>,
    /// `spec.maxUnavailable` as written (`"50%"` when absent).
    pub max_unavailable: String,
    /// How many of the selected nodes may apply at once.
    pub at_once: usize,
    /// The fewest rounds the rollout takes at that pace.
    pub rounds: usize,
    /// Where the handler settings the probes were chosen with came from.
    pub handler_settings: String,
    /// The nodes shown, in name order.
    pub nodes: Vec<NodePlan>,
}

/// Plan `policy` over `fleet`: the nodes that count, the pace of the rollout, and a plan for
/// each node of `options.focus`.
pub fn plan_policy(
    policy: &NodeNetworkConfigurationPolicy,
    fleet: &Fleet,
    options: &Options,
) -> Result<PolicyPlan, PluginError> {
    let select_failed = |e: knmstate_state_engine::Error| PluginError::SelectNodes(e.to_string());
    let labels_known = !fleet.nodes.is_empty();
    let selected: BTreeSet<String> = if labels_known {
        aggregate::select_nodes(policy, &fleet.nodes, |n| fleet.states.contains_key(n))
            .map_err(select_failed)?
            .0
    } else {
        fleet.states.keys().cloned().collect()
    };
    let mut without_handler = Vec::new();
    for node in &fleet.nodes {
        if aggregate::policy_selects_node(policy, node).map_err(select_failed)?
            && !fleet.states.contains_key(&node.name_any())
        {
            without_handler.push(node.name_any());
        }
    }
    let limit = concurrency::max_unavailable(policy.spec.max_unavailable.as_ref(), selected.len());
    let shown: Vec<String> = match &options.focus {
        Focus::Selected => selected.iter().cloned().collect(),
        Focus::Node(n) => vec![n.clone()],
        Focus::Labels(wanted) => {
            if !labels_known {
                return Err(PluginError::SelectNodes(
                    "--selector needs node labels: give Node objects with --state".into(),
                ));
            }
            let empty = BTreeMap::new();
            fleet
                .nodes
                .iter()
                .filter(|n| selected.contains(&n.name_any()))
                .filter(|n| {
                    selector::matches_labels(
                        Some(wanted),
                        n.metadata.labels.as_ref().unwrap_or(&empty),
                    )
                })
                .map(ResourceExt::name_any)
                .collect()
        }
    };
    let nodes = shown
        .into_iter()
        .map(|node| {
            let mut p = node_plan(policy, fleet, &node, options);
            p.selected = selected.contains(&node);
            p.ready = labels_known.then(|| {
                fleet
                    .nodes
                    .iter()
                    .any(|n| n.name_any() == node && knmstate_state_engine::node::is_ready(n))
            });
            p
        })
        .collect();
    Ok(PolicyPlan {
        policy: policy.name_any(),
        generation: policy.metadata.generation,
        labels_known,
        without_handler,
        max_unavailable: match &policy.spec.max_unavailable {
            None => "50%".to_owned(),
            Some(IntOrString::Int(i)) => i.to_string(),
            Some(IntOrString::String(s)) => s.clone(),
        },
        at_once: limit.value,
        rounds: selected.len().div_ceil(limit.value),
        selected_nodes: selected.into_iter().collect(),
        handler_settings: options.handler.source.clone(),
        nodes,
    })
}

/// The plan of one node: rendered, diffed and probed as the handler would.
fn node_plan(
    policy: &NodeNetworkConfigurationPolicy,
    fleet: &Fleet,
    node: &str,
    options: &Options,
) -> NodePlan {
    let mut out = NodePlan {
        node: node.to_owned(),
        selected: false,
        ready: None,
        plan: None,
        probes: Vec::new(),
        skipped_probes: Vec::new(),
        checkpoint_timeout_seconds: 0,
        error: None,
    };
    let Some(current) = fleet.states.get(node) else {
        out.error = Some("no NodeNetworkState: no handler runs on this node".into());
        return out;
    };
    let no_cache = BTreeMap::new();
    let cache = fleet.captures.get(node).unwrap_or(&no_cache);
    let resolved = match knmstate_nm_backend::resolve_policy(
        &render::nmpolicy(&policy.spec),
        current,
        cache,
    ) {
        Ok(r) => r,
        Err(e) => {
            out.error = Some(secrets::scrub(
                &e.to_string(),
                &render::nmpolicy(&policy.spec),
            ));
            return out;
        }
    };
    let inject = options
        .handler
        .inject_bridge_vlan(options.bridge_vlan_filtering);
    let desired = render::finish(resolved.desired_state, inject);
    let plan = engine::plan(&secrets::hidden(current), &secrets::hidden(&desired));
    let probes = rollback::select_probes(
        &plan,
        current,
        policy.spec.probes.as_ref(),
        &options.handler.defaults,
    );
    out.probes = probes.probes.iter().map(|p| p.kind).collect();
    out.skipped_probes = probes.skipped;
    out.checkpoint_timeout_seconds = probes.checkpoint_timeout.as_secs();
    out.plan = Some(plan);
    out
}
