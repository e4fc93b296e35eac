//! The text form of a plan: a summary of the rollout, then one table of changes per node.

use knmstate_state_engine::plan::Plan;
use std::fmt::Write as _;

use super::output::{Table, human_duration};
use super::plan::{NodePlan, PolicyPlan};

/// The plans of several policies, one after the other.
pub fn plans_text(plans: &[PolicyPlan]) -> String {
    plans.iter().map(policy_text).collect::<Vec<_>>().join("\n")
}

/// One policy's plan for people.
pub fn policy_text(p: &PolicyPlan) -> String {
    let mut out = format!("Policy {}", p.policy);
    if let Some(g) = p.generation {
        let _ = write!(out, " (generation {g})");
    }
    out.push('\n');
    let selected = if p.selected_nodes.is_empty() {
        "none".to_owned()
    } else {
        p.selected_nodes.join(", ")
    };
    let assumed = if p.labels_known {
        ""
    } else {
        " (no node labels given: every state counts as selected)"
    };
    let _ = writeln!(
        out,
        "Selected nodes: {} — {selected}{assumed}",
        p.selected_nodes.len()
    );
    if !p.without_handler.is_empty() {
        let _ = writeln!(
            out,
            "Selected but running no handler (not counted): {}",
            p.without_handler.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "Rollout: maxUnavailable {} → at most {} node(s) at once, at least {} round(s); \
         nodes take free slots first come, first served",
        p.max_unavailable, p.at_once, p.rounds
    );
    let _ = writeln!(out, "Handler settings: {}", p.handler_settings);
    for n in &p.nodes {
        out.push('\n');
        out.push_str(&node_text(n));
    }
    out
}

fn node_text(n: &NodePlan) -> String {
    let mut head = format!("Node {}", n.node);
    let mut notes = Vec::new();
    if !n.selected {
        notes.push("not selected by the policy");
    }
    match n.ready {
        Some(true) => notes.push("Ready"),
        Some(false) => notes.push("NotReady: reported, not waited for"),
        None => {}
    }
    if !notes.is_empty() {
        let _ = write!(head, " ({})", notes.join(", "));
    }
    head.push('\n');
    if let Some(e) = &n.error {
        return format!("{head}  cannot plan: {e}\n");
    }
    let Some(plan) = &n.plan else {
        return head;
    };
    if plan.is_empty() {
        head.push_str("  no change: the node already satisfies the desired state\n");
    } else {
        let mut t = Table::new(&["CHANGE", "WHAT", "DETAIL"]);
        for row in change_rows(plan) {
            t.row(row);
        }
        for line in t.render().lines() {
            head.push_str("  ");
            head.push_str(line);
            head.push('\n');
        }
    }
    let names = |kinds: &mut dyn Iterator<Item = String>| {
        let v: Vec<String> = kinds.collect();
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    let _ = writeln!(
        head,
        "  Probes: {} (checkpoint {})",
        names(&mut n.probes.iter().map(|k| k.name().to_owned())),
        human_duration(secs_f64(n.checkpoint_timeout_seconds))
    );
    if !n.skipped_probes.is_empty() {
        let _ = writeln!(
            head,
            "  Skipped: {}",
            names(
                &mut n
                    .skipped_probes
                    .iter()
                    .map(|(k, why)| { format!("{} ({})", k.name(), kebab(why)) })
            )
        );
    }
    if plan.touches_default_route_interface || plan.touches_default_route {
        head.push_str("  Touches the default route or its interface\n");
    }
    head
}

/// Rows of the change table: state-engine's words for the plan.
fn change_rows(plan: &Plan) -> Vec<Vec<String>> {
    plan.change_lines()
        .into_iter()
        .map(|l| vec![l.verb.to_owned(), l.what, l.detail])
        .collect()
}

fn kebab<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

// Checkpoint timeouts are small whole seconds.
#[allow(clippy::cast_precision_loss)]
fn secs_f64(s: u64) -> f64 {
    s as f64
}
