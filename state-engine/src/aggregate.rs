//! Policy aggregation: which nodes count for a policy ([`select_nodes`]), its conditions from
//! the enactments of its current generation and those nodes ([`policy_verdict`]), in upstream's
//! decision order, and whether they are worth writing ([`next_conditions`]).
//!
//! A node counts when it matches the policy's selection and runs a handler; a handler proves
//! it runs by keeping its NodeNetworkState (named after the node). Nodes whose `Ready`
//! condition is not `True` are counted as matching but not ready: they are reported with the
//! "nodes ignored due to NotReady state" suffix instead of being waited for.
//!
//! 1. no matching node → `Ignored` ("Policy does not match any node");
//! 2. any Failing or Aborted enactment → `Degraded`
//!    ("`<failing>/<matching>` nodes failed to configure[, `<n>` nodes aborted configuration]");
//! 3. finished (Available + Failing + Aborted) < ready → `Progressing`
//!    ("Policy is progressing `<finished>/<ready>` nodes finished[, `<n>` nodes ignored due to NotReady state]");
//! 4. any Pending → `Progressing` ("… nodes finished, `<pending>` pending[, … NotReady …]");
//! 5. otherwise → `Available` ("`<available>/<matching>` nodes successfully configured[, … NotReady …]");
//!    when some of them only planned a dry run, reason `ConfigurationPlanned` and
//!    "`<planned>/<matching>` nodes planned, not applied (dry run)[, `<n>` nodes successfully configured][, … NotReady …]".
//!
//! Enactments of another generation count as Unknown (they count in none of the above).
//! [`aggregate_policy`] also ignores enactments of nodes that no longer match, so a removed
//! node stops counting at once (upstream #1098).
//!
//! ```
//! use knmstate_state_engine::aggregate::{decide, EnactmentCounts};
//! use knmstate_state_engine::conditions::PolicyConditionKind;
//!
//! let counts = EnactmentCounts { available: 2, ..Default::default() };
//! let v = decide(&counts, 3, 2);
//! assert_eq!(v.kind, PolicyConditionKind::Success);
//! assert_eq!(v.message, "2/3 nodes successfully configured, 1 nodes ignored due to NotReady state");
//! ```

use crate::conditions::{MSG_NOT_MATCHING, PolicyConditionKind, PolicyVerdict};
use crate::selector::policy_matches_node;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use knmstate_api::names::enactment as e;
use knmstate_api::shared::NodeNetworkConfigurationEnactmentStatus;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::NodeNetworkConfigurationEnactment;
use knmstate_api::{ConditionList, ConditionStatus};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// How many enactments of the current generation have each condition `True`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnactmentCounts {
    /// Enactments looked at, of any generation.
    pub total: usize,
    /// `Available=True`.
    pub available: usize,
    /// `Failing=True` (final failures and retrying ones).
    pub failing: usize,
    /// `Progressing=True` (applying or retrying).
    pub progressing: usize,
    /// `Pending=True`.
    pub pending: usize,
    /// `Aborted=True`.
    pub aborted: usize,
    /// `Failing=True ∧ Progressing≠True`: retries exhausted (or rendering failed).
    pub failed_final: usize,
    /// `Available=True` with reason `ConfigurationPlanned` (a dry run; also in `available`).
    pub planned: usize,
}

impl EnactmentCounts {
    /// Count the statuses of one policy's enactments; those whose `policyGeneration` is not
    /// `generation` count only in `total`.
    pub fn count<'a>(
        statuses: impl IntoIterator<Item = Option<&'a NodeNetworkConfigurationEnactmentStatus>>,
        generation: i64,
    ) -> Self {
        let mut c = Self::default();
        for s in statuses {
            c.add(s, generation);
        }
        c
    }

    /// Add one enactment status.
    pub fn add(
        &mut self,
        status: Option<&NodeNetworkConfigurationEnactmentStatus>,
        generation: i64,
    ) {
        self.total += 1;
        let Some(s) = status.filter(|s| s.policy_generation == Some(generation)) else {
            return;
        };
        self.add_conditions(&s.conditions);
    }

    /// Add one enactment by its conditions alone (the caller checked the generation).
    pub fn add_conditions(&mut self, l: &ConditionList) {
        let mut failing = false;
        let mut progressing = false;
        for c in &l.0 {
            if c.status != ConditionStatus::True {
                continue;
            }
            match c.type_.as_str() {
                e::AVAILABLE => {
                    self.available += 1;
                    self.planned += usize::from(c.reason == e::REASON_PLANNED);
                }
                e::FAILING => failing = true,
                e::PROGRESSING => progressing = true,
                e::PENDING => self.pending += 1,
                e::ABORTED => self.aborted += 1,
                _ => {}
            }
        }
        self.failing += usize::from(failing);
        self.progressing += usize::from(progressing);
        self.failed_final += usize::from(failing && !progressing);
    }

    /// Enactments that reached an end: Available + Failing + Aborted (upstream's `finished`).
    pub fn finished(&self) -> usize {
        self.available + self.failing + self.aborted
    }
}

/// The policy verdict from counts, `matching` nodes (matching the selector and running a
/// handler) and the `ready` ones among them, in upstream's decision order.
pub fn decide(c: &EnactmentCounts, matching: usize, ready: usize) -> PolicyVerdict {
    let not_ready = matching.saturating_sub(ready);
    let not_ready_suffix = |m: &mut String| {
        if not_ready > 0 {
            let _ = write!(m, ", {not_ready} nodes ignored due to NotReady state");
        }
    };
    let (kind, message) = if matching == 0 {
        (
            PolicyConditionKind::NotMatching,
            MSG_NOT_MATCHING.to_owned(),
        )
    } else if c.failing > 0 || c.aborted > 0 {
        let mut m = format!("{}/{matching} nodes failed to configure", c.failing);
        if c.aborted > 0 {
            let _ = write!(m, ", {} nodes aborted configuration", c.aborted);
        }
        (PolicyConditionKind::FailedToConfigure, m)
    } else if c.finished() < ready {
        let mut m = format!(
            "Policy is progressing {}/{ready} nodes finished",
            c.finished()
        );
        not_ready_suffix(&mut m);
        (PolicyConditionKind::Progressing, m)
    } else if c.pending > 0 {
        let mut m = format!(
            "Policy is progressing {}/{ready} nodes finished, {} pending",
            c.finished(),
            c.pending
        );
        not_ready_suffix(&mut m);
        (PolicyConditionKind::Progressing, m)
    } else if c.planned > 0 {
        let mut m = format!(
            "{}/{matching} nodes planned, not applied (dry run)",
            c.planned
        );
        let applied = c.available - c.planned;
        if applied > 0 {
            let _ = write!(m, ", {applied} nodes successfully configured");
        }
        not_ready_suffix(&mut m);
        (PolicyConditionKind::Planned, m)
    } else {
        let mut m = format!("{}/{matching} nodes successfully configured", c.available);
        not_ready_suffix(&mut m);
        (PolicyConditionKind::Success, m)
    };
    PolicyVerdict { kind, message }
}

/// Aggregate a policy of generation `generation` from its enactments. Only enactments of
/// nodes in `matching_nodes` count; `ready_nodes` may hold nodes outside `matching_nodes`
/// (they are ignored).
///
/// ```
/// use knmstate_state_engine::aggregate::aggregate_policy;
/// use knmstate_state_engine::conditions::PolicyConditionKind;
/// use std::collections::BTreeSet;
///
/// let nodes: BTreeSet<String> = ["n1".to_string()].into();
/// let v = aggregate_policy(1, &[], &nodes, &nodes);
/// assert_eq!(v.kind, PolicyConditionKind::Progressing);
/// assert_eq!(v.message, "Policy is progressing 0/1 nodes finished");
/// ```
pub fn aggregate_policy(
    generation: i64,
    enactments: &[NodeNetworkConfigurationEnactment],
    matching_nodes: &BTreeSet<String>,
    ready_nodes: &BTreeSet<String>,
) -> PolicyVerdict {
    let counts = EnactmentCounts::count(
        enactments
            .iter()
            .filter(|n| {
                n.node_name()
                    .is_some_and(|node| matching_nodes.contains(node))
            })
            .map(|n| n.status.as_ref()),
        generation,
    );
    let ready = ready_nodes.intersection(matching_nodes).count();
    decide(&counts, matching_nodes.len(), ready)
}

/// Whether `policy` selects `node` by its labels (a node without labels has none).
///
/// # Errors
/// When the policy's `nodeSelectorExpressions` cannot be evaluated.
pub fn policy_selects_node(
    policy: &NodeNetworkConfigurationPolicy,
    node: &Node,
) -> Result<bool, crate::Error> {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    policy_matches_node(&policy.spec, labels)
}

/// The nodes that count for a policy: matching its selection and running a handler
/// (`has_handler(node name)`); and the ready ones among them.
///
/// # Errors
/// When the policy's `nodeSelectorExpressions` cannot be evaluated.
pub fn select_nodes<'a>(
    policy: &NodeNetworkConfigurationPolicy,
    nodes: impl IntoIterator<Item = &'a Node>,
    has_handler: impl Fn(&str) -> bool,
) -> Result<(BTreeSet<String>, BTreeSet<String>), crate::Error> {
    let mut matching = BTreeSet::new();
    let mut ready = BTreeSet::new();
    for node in nodes {
        let Some(name) = node.metadata.name.as_deref() else {
            continue;
        };
        if !has_handler(name) || !policy_selects_node(policy, node)? {
            continue;
        }
        matching.insert(name.to_owned());
        if crate::node::is_ready(node) {
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
/// use knmstate_state_engine::aggregate::next_conditions;
/// use knmstate_state_engine::conditions::{PolicyConditionKind, PolicyVerdict};
/// use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
/// use k8s_openapi::jiff::Timestamp;
///
/// let t = |s| Time(Timestamp::from_second(s).unwrap());
/// let v = PolicyVerdict { kind: PolicyConditionKind::Success, message: "1/1 nodes successfully configured".into() };
/// let first = next_conditions(&ConditionList::default(), &v, &t(1)).unwrap();
/// assert!(next_conditions(&first, &v, &t(2)).is_none()); // nothing new: no write
/// ```
pub fn next_conditions(
    current: &ConditionList,
    verdict: &PolicyVerdict,
    now: &Time,
) -> Option<ConditionList> {
    let mut next = current.clone();
    verdict.apply(&mut next, now);
    (!next.same_meaning(current)).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use knmstate_testkit::builders::{self, at};
    use pretty_assertions::assert_eq;
    use rstest::rstest;

    fn c(available: usize, failing: usize, pending: usize, aborted: usize) -> EnactmentCounts {
        EnactmentCounts {
            total: available + failing + pending + aborted,
            available,
            failing,
            progressing: 0,
            pending,
            aborted,
            failed_final: failing,
            planned: 0,
        }
    }

    use PolicyConditionKind::*;

    #[rstest]
    #[case::no_nodes(c(0, 0, 0, 0), 0, 0, NotMatching, "Policy does not match any node")]
    #[case::no_nodes_wins_over_failures(
        c(0, 1, 0, 0),
        0,
        0,
        NotMatching,
        "Policy does not match any node"
    )]
    #[case::nothing_yet(
        c(0, 0, 0, 0),
        3,
        3,
        Progressing,
        "Policy is progressing 0/3 nodes finished"
    )]
    #[case::some_done(
        c(1, 0, 0, 0),
        3,
        3,
        Progressing,
        "Policy is progressing 1/3 nodes finished"
    )]
    #[case::all_done(c(3, 0, 0, 0), 3, 3, Success, "3/3 nodes successfully configured")]
    #[case::one_failed(
        c(2, 1, 0, 0),
        3,
        3,
        FailedToConfigure,
        "1/3 nodes failed to configure"
    )]
    #[case::failed_while_others_progress(
        c(0, 1, 0, 0),
        5,
        5,
        FailedToConfigure,
        "1/5 nodes failed to configure"
    )]
    #[case::failed_and_aborted(
        c(0, 2, 0, 3),
        5,
        5,
        FailedToConfigure,
        "2/5 nodes failed to configure, 3 nodes aborted configuration"
    )]
    #[case::only_aborted(
        c(1, 0, 0, 1),
        2,
        2,
        FailedToConfigure,
        "0/2 nodes failed to configure, 1 nodes aborted configuration"
    )]
    #[case::pending_not_finished(
        c(1, 0, 1, 0),
        3,
        3,
        Progressing,
        "Policy is progressing 1/3 nodes finished"
    )]
    #[case::pending_after_all_ready_finished(
        c(2, 0, 1, 0),
        3,
        2,
        Progressing,
        "Policy is progressing 2/2 nodes finished, 1 pending, 1 nodes ignored due to NotReady state"
    )]
    #[case::not_ready_progressing(
        c(0, 0, 0, 0),
        3,
        2,
        Progressing,
        "Policy is progressing 0/2 nodes finished, 1 nodes ignored due to NotReady state"
    )]
    #[case::not_ready_available(
        c(2, 0, 0, 0),
        3,
        2,
        Success,
        "2/3 nodes successfully configured, 1 nodes ignored due to NotReady state"
    )]
    #[case::all_not_ready(
        c(0, 0, 0, 0),
        2,
        0,
        Success,
        "0/2 nodes successfully configured, 2 nodes ignored due to NotReady state"
    )]
    #[case::single_node(c(1, 0, 0, 0), 1, 1, Success, "1/1 nodes successfully configured")]
    #[case::failing_with_not_ready_has_no_suffix(
        c(0, 1, 0, 0),
        3,
        1,
        FailedToConfigure,
        "1/3 nodes failed to configure"
    )]
    #[case::more_finished_than_ready(
        c(3, 0, 0, 0),
        3,
        1,
        Success,
        "3/3 nodes successfully configured, 2 nodes ignored due to NotReady state"
    )]
    fn decision_table(
        #[case] counts: EnactmentCounts,
        #[case] matching: usize,
        #[case] ready: usize,
        #[case] kind: PolicyConditionKind,
        #[case] message: &str,
    ) {
        let v = decide(&counts, matching, ready);
        assert_eq!(
            v,
            PolicyVerdict {
                kind,
                message: message.to_owned()
            }
        );
    }

    /// `available` of them `Available`, `planned` of those by a dry run.
    fn planned(available: usize, planned: usize) -> EnactmentCounts {
        EnactmentCounts {
            planned,
            ..c(available, 0, 0, 0)
        }
    }

    #[rstest]
    #[case::all_planned(
        planned(3, 3),
        3,
        3,
        Planned,
        "3/3 nodes planned, not applied (dry run)"
    )]
    #[case::leaving_the_dry_run(
        planned(3, 1),
        3,
        3,
        Planned,
        "1/3 nodes planned, not applied (dry run), 2 nodes successfully configured"
    )]
    #[case::planned_while_others_progress(
        planned(1, 1),
        3,
        3,
        Progressing,
        "Policy is progressing 1/3 nodes finished"
    )]
    #[case::not_ready(
        planned(2, 2),
        3,
        2,
        Planned,
        "2/3 nodes planned, not applied (dry run), 1 nodes ignored due to NotReady state"
    )]
    fn dry_runs_are_reported_as_planned(
        #[case] counts: EnactmentCounts,
        #[case] matching: usize,
        #[case] ready: usize,
        #[case] kind: PolicyConditionKind,
        #[case] message: &str,
    ) {
        assert_eq!(
            decide(&counts, matching, ready),
            PolicyVerdict {
                kind,
                message: message.to_owned()
            }
        );
    }

    #[test]
    fn a_planned_enactment_counts_as_available_and_planned() {
        let mut l = ConditionList::default();
        crate::conditions::EnactmentTransition::Planned {
            message: "m".into(),
        }
        .apply(&mut l, &at(0));
        let mut counts = EnactmentCounts::default();
        counts.add_conditions(&l);
        assert_eq!(
            counts,
            EnactmentCounts {
                available: 1,
                planned: 1,
                ..Default::default()
            }
        );
    }

    fn nnce(
        node: &str,
        generation: i64,
        tr: Option<crate::conditions::EnactmentTransition>,
    ) -> NodeNetworkConfigurationEnactment {
        let now = at(0);
        let mut e = builders::enactment(node, "p");
        let status = e.status.get_or_insert_default();
        status.policy_generation = Some(generation);
        status.conditions = crate::conditions::initial_enactment_conditions(&now);
        if let Some(tr) = tr {
            tr.apply(&mut status.conditions, &now);
        }
        e
    }

    #[test]
    fn other_generations_and_unmatched_nodes_do_not_count() {
        use crate::conditions::EnactmentTransition as T;
        let set = |v: &[&str]| {
            v.iter()
                .map(std::string::ToString::to_string)
                .collect::<BTreeSet<_>>()
        };
        let es = vec![
            nnce("a", 2, Some(T::Success)),
            nnce(
                "b",
                1,
                Some(T::FailedToConfigure {
                    message: "old".into(),
                }),
            ),
            nnce(
                "gone",
                2,
                Some(T::FailedToConfigure {
                    message: "x".into(),
                }),
            ),
            nnce("c", 2, Some(T::Progressing)),
        ];
        let v = aggregate_policy(2, &es, &set(&["a", "b", "c"]), &set(&["a", "b", "c", "z"]));
        assert_eq!(v.kind, PolicyConditionKind::Progressing);
        assert_eq!(v.message, "Policy is progressing 1/3 nodes finished");
    }

    #[test]
    fn retrying_counts_as_failing_and_progressing() {
        let mut c = EnactmentCounts::default();
        let mut l = ConditionList::default();
        crate::conditions::EnactmentTransition::Retrying {
            message: "m".into(),
        }
        .apply(&mut l, &at(0));
        c.add_conditions(&l);
        assert_eq!((c.failing, c.progressing, c.failed_final), (1, 1, 0));
        assert_eq!(
            decide(&c, 2, 2).kind,
            PolicyConditionKind::FailedToConfigure
        );
    }

    fn node(name: &str, labels: &[(&str, &str)], ready: bool) -> Node {
        let mut n = builders::node(name, labels);
        n.status = Some(builders::node_status(ready));
        n
    }

    fn policy(selector: &[(&str, &str)], generation: i64) -> NodeNetworkConfigurationPolicy {
        let mut p = builders::policy("p", selector, serde_json::json!({}));
        p.metadata.generation = Some(generation);
        p
    }

    fn names(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(std::string::ToString::to_string).collect()
    }

    #[rstest]
    #[case::handler_and_labels(&[("role", "w")], &["a", "b"], &["a"])]
    #[case::everything_without_selector(&[], &["a", "b", "c"], &["a", "c"])]
    #[case::nothing_matches(&[("role", "gpu")], &[], &[])]
    fn only_nodes_with_a_handler_and_matching_labels_count(
        #[case] selector: &[(&str, &str)],
        #[case] matching: &[&str],
        #[case] ready: &[&str],
    ) {
        let nodes = [
            node("a", &[("role", "w")], true),
            node("b", &[("role", "w")], false),
            node("c", &[("role", "m")], true),
            node("d", &[("role", "w")], true), // no NNS: no handler
        ];
        let (m, r) = select_nodes(&policy(selector, 1), &nodes, |n| n != "d").unwrap();
        assert_eq!((m, r), (names(matching), names(ready)));
    }

    #[test]
    fn verdict_uses_upstream_messages_and_the_current_generation() {
        use crate::conditions::EnactmentTransition as T;
        let nodes = [
            node("a", &[], true),
            node("b", &[], true),
            node("c", &[], false),
        ];
        let p = policy(&[], 2);
        let (m, r) = select_nodes(&p, &nodes, |_| true).unwrap();
        let es = vec![
            nnce("a", 2, Some(T::Success)),
            nnce("b", 1, Some(T::Success)),
        ];
        let v = policy_verdict(&p, &es, &m, &r);
        assert_eq!(v.kind, PolicyConditionKind::Progressing);
        assert_eq!(
            v.message,
            "Policy is progressing 1/2 nodes finished, 1 nodes ignored due to NotReady state"
        );
        let es = vec![
            nnce("a", 2, Some(T::Success)),
            nnce("b", 2, Some(T::Success)),
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
        let first = next_conditions(&ConditionList::default(), &progressing(0), &at(1)).unwrap();
        let second = next_conditions(&first, &progressing(1), &at(2)).unwrap();
        let c = second.find("Progressing").unwrap();
        assert_eq!(c.last_transition_time, Some(at(1)));
        assert_eq!(c.message, "Policy is progressing 1/3 nodes finished");
        assert!(next_conditions(&second, &progressing(1), &at(3)).is_none());
    }
}
