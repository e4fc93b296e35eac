//! `kubectl nmstate status POLICY`: the rollout on one screen — the policy's verdict, then per
//! node its enactment's active condition, reason, time in that condition, the last apply's
//! probe results and rollback reason. Status fields this view does not lay out (added by
//! newer handlers) are listed under the table, so nothing the enactment holds is hidden.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::jiff::Timestamp;
use knmstate_api::names::{enactment as e, policy as p};
use knmstate_api::shared::{DriftReport, EnactmentPlan, ProbeReport};
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::NodeNetworkConfigurationEnactment;
use knmstate_api::{Condition, ConditionList};
use kube::ResourceExt;
use serde::Serialize;
use serde_json::Value;

use super::output::{Table, human_duration};

/// Enactment status fields laid out in the table; any other is listed as it is.
const LAID_OUT: [&str; 10] = [
    "conditions",
    "plan",
    "drift",
    "lastApply",
    "policyGeneration",
    "desiredState",
    "desiredStateMetaInfo",
    "capturedStates",
    "features",
    "retryCount",
];

/// Longest message shown in the text view (the full one is in `-o yaml`).
const MESSAGE_CAP: usize = 160;

/// One node's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// The node.
    pub node: String,
    /// The policy generation the enactment speaks for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_generation: Option<i64>,
    /// The active (first True) condition, or `Unknown`.
    pub condition: String,
    /// Its reason.
    pub reason: String,
    /// Its message.
    pub message: String,
    /// Seconds since it became true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub for_seconds: Option<f64>,
    /// How long the last apply took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apply_seconds: Option<f64>,
    /// The last apply's probes.
    pub probes: Vec<ProbeReport>,
    /// Why the last apply was rolled back (empty when it was not).
    pub rollback_reason: String,
    /// Whether the enactment is done with the policy's generation.
    pub settled: bool,
    /// A dry run's plan for this node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<EnactmentPlan>,
    /// How the node departs from what it applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftReport>,
    /// Other status fields, as the enactment holds them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub other: BTreeMap<String, Value>,
}

/// The rollout of a policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// The policy.
    pub policy: String,
    /// Its generation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Its active condition, or `Unknown`.
    pub condition: String,
    /// Its reason.
    pub reason: String,
    /// Its message.
    pub message: String,
    /// Nodes done with the current generation.
    pub done: usize,
    /// Nodes with an enactment.
    pub total: usize,
    /// Whether the rollout is over: the policy has a verdict and is not progressing, and every
    /// enactment is done with the current generation.
    pub settled: bool,
    /// Per node, in name order.
    pub nodes: Vec<NodeStatus>,
}

fn seconds_since(c: &Condition, now: Timestamp) -> Option<f64> {
    c.last_transition_time
        .as_ref()
        .map(|t| now.duration_since(t.0).as_secs_f64().max(0.0))
}

fn active(list: &ConditionList) -> (String, String, String, Option<&Condition>) {
    list.first_true().map_or_else(
        || ("Unknown".to_owned(), String::new(), String::new(), None),
        |c| {
            (
                c.type_.clone(),
                c.reason.clone(),
                c.message.clone(),
                Some(c),
            )
        },
    )
}

/// The view of `policy` and its `enactments` at `now`.
pub fn view(
    policy: &NodeNetworkConfigurationPolicy,
    enactments: &[NodeNetworkConfigurationEnactment],
    now: Timestamp,
) -> PolicyStatus {
    let generation = policy.metadata.generation;
    let mut nodes: Vec<NodeStatus> = enactments
        .iter()
        .map(|en| node_view(en, generation, now))
        .collect();
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    let conditions = policy
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let (condition, reason, message, _) = active(&conditions);
    let done = nodes.iter().filter(|n| n.settled).count();
    let settled = !conditions.is_true(p::PROGRESSING)
        && conditions.first_true().is_some()
        && done == nodes.len();
    PolicyStatus {
        policy: policy.name_any(),
        generation,
        condition,
        reason,
        message,
        done,
        total: nodes.len(),
        settled,
        nodes,
    }
}

fn node_view(
    en: &NodeNetworkConfigurationEnactment,
    generation: Option<i64>,
    now: Timestamp,
) -> NodeStatus {
    let status = en.status.clone().unwrap_or_default();
    let (condition, reason, message, c) = active(&status.conditions);
    let for_seconds = c.and_then(|c| seconds_since(c, now));
    let current = generation.is_none() || status.policy_generation == generation;
    let settled = current
        && c.is_some()
        && !status.conditions.is_true(e::PROGRESSING)
        && !status.conditions.is_true(e::PENDING);
    let other = serde_json::to_value(&status)
        .map(|v| other_fields(&v))
        .unwrap_or_default();
    let last = status.last_apply.as_ref();
    NodeStatus {
        node: en.node_name().unwrap_or_default().to_owned(),
        policy_generation: status.policy_generation,
        condition,
        reason,
        message,
        for_seconds,
        apply_seconds: last.map(|a| a.duration_seconds),
        probes: last.map(|a| a.probes.clone()).unwrap_or_default(),
        rollback_reason: last
            .filter(|a| a.rolled_back)
            .map(|a| a.rollback_reason.clone())
            .unwrap_or_default(),
        settled,
        plan: status.plan.clone(),
        drift: status.drift.clone(),
        other,
    }
}

/// The fields of an enactment status (as JSON) that the table does not lay out.
pub fn other_fields(status: &Value) -> BTreeMap<String, Value> {
    status
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !LAID_OUT.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `[#####-----] 1/2 nodes done`, `width` characters of bar.
pub fn progress_bar(done: usize, total: usize, width: usize) -> String {
    let filled = (done.min(total) * width)
        .checked_div(total)
        .unwrap_or(width);
    format!(
        "[{}{}] {done}/{total} nodes done",
        "#".repeat(filled),
        "-".repeat(width - filled)
    )
}

fn cap(s: &str) -> String {
    if s.chars().count() <= MESSAGE_CAP {
        return s.to_owned();
    }
    let cut: String = s.chars().take(MESSAGE_CAP - 1).collect();
    format!("{cut}…")
}

/// A dry run's plan, one line per change, then its probes.
fn plan_lines(node: &str, plan: &EnactmentPlan) -> String {
    let mut out = String::new();
    if plan.summary.is_empty() {
        let _ = writeln!(out, "{node} plan: no change");
    }
    for line in &plan.summary {
        let _ = writeln!(out, "{node} plan: {line}");
    }
    if !plan.probes.is_empty() || !plan.skipped_probes.is_empty() {
        let skipped = if plan.skipped_probes.is_empty() {
            String::new()
        } else {
            format!("; skipped {}", plan.skipped_probes.join(", "))
        };
        let _ = writeln!(
            out,
            "{node} plan probes: {}{skipped}",
            plan.probes.join(", ")
        );
    }
    out
}

/// The probes of the last apply in a few words: `all 4 ok`, or the failed ones by name and how
/// many passed (`default-gateway FAILED; 1 ok`), or `-` when none ran.
fn probes_cell(probes: &[ProbeReport]) -> String {
    let ok = probes.iter().filter(|p| p.succeeded).count();
    if probes.is_empty() {
        return "-".to_owned();
    }
    if ok == probes.len() {
        return format!("all {ok} ok");
    }
    let mut failed: Vec<String> = probes
        .iter()
        .filter(|p| !p.succeeded)
        .map(|p| format!("{} FAILED", p.name))
        .collect();
    if ok > 0 {
        failed.push(format!("{ok} ok"));
    }
    failed.join("; ")
}

/// The view for people.
pub fn text(s: &PolicyStatus) -> String {
    let mut out = format!("Policy {}", s.policy);
    if let Some(g) = s.generation {
        let _ = write!(out, " (generation {g})");
    }
    let _ = write!(out, ": {}", s.condition);
    if !s.reason.is_empty() {
        let _ = write!(out, " / {}", s.reason);
    }
    out.push('\n');
    if !s.message.is_empty() {
        let _ = writeln!(out, "  {}", cap(&s.message));
    }
    out.push_str(&progress_bar(s.done, s.total, 30));
    out.push_str(if s.settled { ", settled\n" } else { "\n" });
    if s.nodes.is_empty() {
        out.push_str("No enactments yet\n");
        return out;
    }
    let mut t = Table::new(&[
        "NODE",
        "GEN",
        "CONDITION",
        "REASON",
        "FOR",
        "APPLY",
        "PROBES",
        "ROLLBACK",
    ]);
    let dash = || "-".to_owned();
    for n in &s.nodes {
        t.row(vec![
            n.node.clone(),
            n.policy_generation.map_or_else(dash, |g| g.to_string()),
            n.condition.clone(),
            n.reason.clone(),
            n.for_seconds.map_or_else(dash, human_duration),
            n.apply_seconds.map_or_else(dash, human_duration),
            probes_cell(&n.probes),
            if n.rollback_reason.is_empty() {
                dash()
            } else {
                cap(&n.rollback_reason)
            },
        ]);
    }
    out.push_str(&t.render());
    for n in &s.nodes {
        // Available and Progressing say nothing their reason does not; the others explain.
        if !n.message.is_empty() && ![e::AVAILABLE, e::PROGRESSING].contains(&n.condition.as_str())
        {
            let _ = writeln!(out, "{}: {}", n.node, cap(&n.message));
        }
        for p in n
            .probes
            .iter()
            .filter(|p| !p.succeeded && !p.message.is_empty())
        {
            let _ = writeln!(out, "{} probe {}: {}", n.node, p.name, cap(&p.message));
        }
        if let Some(plan) = &n.plan {
            out.push_str(&plan_lines(&n.node, plan));
        }
        if let Some(drift) = &n.drift {
            let since = drift
                .since
                .as_ref()
                .map(|t| format!(" since {}", t.0))
                .unwrap_or_default();
            let action = if drift.reapply {
                "re-applying"
            } else {
                "reported only"
            };
            let _ = writeln!(
                out,
                "{} drifted{since} ({action}): {}",
                n.node,
                drift.paths.join(", ")
            );
        }
        for (k, v) in &n.other {
            let _ = writeln!(out, "{} {k}: {}", n.node, cap(&v.to_string()));
        }
    }
    out
}
