//! Dry runs and the per-policy switches read from a policy's annotations.
//!
//! A policy annotated `nmstate.io/dry-run: "true"` is planned, not applied: each selected
//! handler writes [`enactment_plan`] (the [`crate::plan`] of its desired state over the node's
//! state, and the probes [`crate::rollback::select_probes`] would run) to its enactment's
//! `status.plan`, and reports `Available` with reason `ConfigurationPlanned` and
//! [`planned_message`]. No condition type is added: tools that wait for `Available` see the
//! rollout settle; the reason says nothing was applied. Removing the annotation applies the
//! policy ([`leaving_dry_run`]).
//!
//! `nmstate.io/reapply-on-drift: "true"` opts a policy in to re-applying when its node
//! drifts (see [`crate::drift`]).
//!
//! ```
//! use knmstate_state_engine::dry_run::PolicySwitches;
//! use std::collections::BTreeMap;
//!
//! let a = BTreeMap::from([("nmstate.io/dry-run".to_string(), "true".to_string())]);
//! assert_eq!(PolicySwitches::of(&a), PolicySwitches { dry_run: true, reapply_on_drift: false });
//! ```

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use knmstate_api::State;
use knmstate_api::names::{DRY_RUN_ANNOTATION, REAPPLY_ON_DRIFT_ANNOTATION};
use knmstate_api::shared::{EnactmentPlan, NodeNetworkConfigurationEnactmentStatus, PolicyProbes};
use serde_json::Value;

use crate::drift;
use crate::plan::{self, Plan};
use crate::rollback::{self, HandlerDefaults};

/// The switches a policy's annotations turn on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct PolicySwitches {
    /// `nmstate.io/dry-run: "true"`: plan, do not apply.
    pub dry_run: bool,
    /// `nmstate.io/reapply-on-drift: "true"`: re-apply when the node drifts.
    pub reapply_on_drift: bool,
}

impl PolicySwitches {
    /// The switches of a policy with these annotations; a switch is on only when its value is
    /// `true` (any case, surrounding blanks ignored).
    pub fn of(annotations: &BTreeMap<String, String>) -> Self {
        let on = |key: &str| {
            annotations
                .get(key)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        };
        Self {
            dry_run: on(DRY_RUN_ANNOTATION),
            reapply_on_drift: on(REAPPLY_ON_DRIFT_ANNOTATION),
        }
    }
}

/// The plan of `desired` over `current` for a dry run's `status.plan` (both states with their
/// secrets hidden alike), computed at `now`.
pub fn enactment_plan(
    current: &Value,
    desired: &Value,
    probes: Option<&PolicyProbes>,
    defaults: &HandlerDefaults,
    now: &Time,
) -> EnactmentPlan {
    let p = plan::plan(current, desired);
    let guard = rollback::select_probes(&p, current, probes, defaults);
    EnactmentPlan {
        time: Some(now.clone()),
        summary: summary(&p),
        changes: serde_json::to_value(&p)
            .ok()
            .and_then(|v| State::try_from(v).ok())
            .unwrap_or_default(),
        probes: guard
            .probes
            .iter()
            .map(|s| s.kind.name().to_owned())
            .collect(),
        skipped_probes: guard
            .skipped
            .iter()
            .map(|(kind, why)| {
                let why = serde_json::to_value(why)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                format!("{}: {why}", kind.name())
            })
            .collect(),
    }
}

/// One line per change of `p`, in the plan's own wording ([`Plan::change_lines`]).
fn summary(p: &Plan) -> Vec<String> {
    p.change_lines().iter().map(ToString::to_string).collect()
}

/// The plan to store: the `stored` one while it says the same as `fresh` (so an unchanged plan
/// is not written again just for its time), else `fresh`.
pub fn next_plan(stored: Option<&EnactmentPlan>, fresh: EnactmentPlan) -> EnactmentPlan {
    let timeless = |p: &EnactmentPlan| EnactmentPlan {
        time: None,
        ..p.clone()
    };
    match stored {
        Some(old) if timeless(old) == timeless(&fresh) => old.clone(),
        _ => fresh,
    }
}

/// The message on `Available` of a dry run.
///
/// ```
/// use knmstate_api::shared::EnactmentPlan;
/// let p = EnactmentPlan { summary: vec!["create interface br1 (linux-bridge)".into()], ..Default::default() };
/// assert_eq!(knmstate_state_engine::dry_run::planned_message(&p),
///     "planned, not applied (dry run): 1 change, see status.plan");
/// ```
pub fn planned_message(plan: &EnactmentPlan) -> String {
    match plan.summary.len() {
        0 => "planned, not applied (dry run): the node already satisfies the policy".to_owned(),
        1 => "planned, not applied (dry run): 1 change, see status.plan".to_owned(),
        n => format!("planned, not applied (dry run): {n} changes, see status.plan"),
    }
}

/// Whether a status is left from a dry run that is over (the annotation was removed): its
/// plan or its `ConfigurationPlanned` must go, and the policy must be applied.
pub fn leaving_dry_run(status: &NodeNetworkConfigurationEnactmentStatus) -> bool {
    status.plan.is_some() || drift::planned(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use knmstate_testkit::builders::at;
    use pretty_assertions::assert_eq;
    use rstest::rstest;
    use serde_json::json;

    #[rstest]
    #[case::absent(&[], false, false)]
    #[case::dry_run(&[(DRY_RUN_ANNOTATION, "true")], true, false)]
    #[case::case_and_blanks(&[(DRY_RUN_ANNOTATION, " True ")], true, false)]
    #[case::false_is_off(&[(DRY_RUN_ANNOTATION, "false")], false, false)]
    #[case::yes_is_off(&[(DRY_RUN_ANNOTATION, "yes")], false, false)]
    #[case::reapply(&[(REAPPLY_ON_DRIFT_ANNOTATION, "true")], false, true)]
    #[case::both(&[(DRY_RUN_ANNOTATION, "TRUE"), (REAPPLY_ON_DRIFT_ANNOTATION, "true")], true, true)]
    fn switches(#[case] pairs: &[(&str, &str)], #[case] dry_run: bool, #[case] reapply: bool) {
        let a = knmstate_testkit::builders::labels(pairs);
        assert_eq!(
            PolicySwitches::of(&a),
            PolicySwitches {
                dry_run,
                reapply_on_drift: reapply
            }
        );
    }

    fn node() -> Value {
        json!({
            "interfaces": [
                {"name": "eth0", "type": "ethernet", "state": "up"},
                {"name": "eth1", "type": "ethernet", "state": "up", "mtu": 1500}],
            "routes": {"running": [{"destination": "0.0.0.0/0", "next-hop-interface": "eth0",
                "next-hop-address": "198.18.0.1", "table-id": 254}]},
            "dns-resolver": {"config": {"server": ["198.18.0.1"]}, "running": {"server": ["198.18.0.1"]}}
        })
    }

    #[test]
    fn a_bridge_over_eth1_is_planned_with_its_probes() {
        let desired = json!({
            "interfaces": [
                {"name": "br1", "type": "linux-bridge", "state": "up",
                 "bridge": {"port": [{"name": "eth1"}]}},
                {"name": "eth1", "mtu": 9000}],
            "routes": {"config": [{"destination": "198.19.0.0/24", "next-hop-interface": "br1",
                "next-hop-address": "198.18.1.1"}]},
            "dns-resolver": {"config": {"server": ["2001:db8::53"]}}
        });
        let p = enactment_plan(&node(), &desired, None, &HandlerDefaults::default(), &at(7));
        assert_eq!(
            p.summary,
            [
                "create interface br1 (linux-bridge)",
                "change interface eth1 (ethernet): mtu",
                "attach port eth1: becomes a port of br1",
                "add route: 198.19.0.0/24 via 198.18.1.1 dev br1",
                r#"change dns: {"server":["198.18.0.1"]} → {"server":["2001:db8::53"]}"#,
            ]
        );
        assert_eq!(
            p.probes,
            ["default-gateway", "dns", "api-server", "node-readiness"]
        );
        assert!(p.skipped_probes.is_empty());
        assert_eq!(p.time, Some(at(7)));
        let changes = p.changes.to_value();
        assert_eq!(changes["interfaces"][0]["name"], "br1");
        assert_eq!(changes["routes-added"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            planned_message(&EnactmentPlan {
                summary: p.summary,
                ..Default::default()
            }),
            "planned, not applied (dry run): 5 changes, see status.plan"
        );
    }

    #[test]
    fn a_satisfied_policy_plans_nothing_and_disabled_probes_are_listed() {
        let probes: PolicyProbes =
            serde_json::from_value(json!({"dns": {"enabled": false}})).unwrap();
        let p = enactment_plan(
            &node(),
            &json!({"interfaces": [{"name": "eth1", "mtu": 1500}]}),
            Some(&probes),
            &HandlerDefaults::default(),
            &at(0),
        );
        assert!(p.summary.is_empty());
        assert_eq!(p.skipped_probes, ["dns: disabled-by-policy"]);
        assert_eq!(
            planned_message(&p),
            "planned, not applied (dry run): the node already satisfies the policy"
        );
    }

    #[test]
    fn an_unchanged_plan_keeps_its_time() {
        let plan = |t: i64, line: &str| EnactmentPlan {
            time: Some(at(t)),
            summary: vec![line.to_owned()],
            ..Default::default()
        };
        assert_eq!(next_plan(None, plan(2, "a")), plan(2, "a"));
        assert_eq!(next_plan(Some(&plan(1, "a")), plan(2, "a")), plan(1, "a"));
        assert_eq!(next_plan(Some(&plan(1, "a")), plan(2, "b")), plan(2, "b"));
    }

    #[test]
    fn a_planned_status_is_left_when_the_dry_run_ends() {
        let mut s = NodeNetworkConfigurationEnactmentStatus::default();
        assert!(!leaving_dry_run(&s));
        crate::conditions::EnactmentTransition::Planned {
            message: "m".into(),
        }
        .apply(&mut s.conditions, &at(0));
        assert!(leaving_dry_run(&s));
        let mut s = NodeNetworkConfigurationEnactmentStatus {
            plan: Some(EnactmentPlan::default()),
            ..Default::default()
        };
        assert!(leaving_dry_run(&s));
        s.plan = None;
        crate::conditions::EnactmentTransition::Success.apply(&mut s.conditions, &at(0));
        assert!(!leaving_dry_run(&s));
    }
}
