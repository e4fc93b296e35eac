//! The condition sets written on enactments (NNCE) and policies (NNCP), exactly as upstream
//! writes them: every transition sets **all** condition types of the kind at once, with
//! upstream's reasons (quirks included) and messages. Everything goes through
//! [`ConditionList::set`], so `lastTransitionTime` moves only when a status really changes.
//!
//! ```
//! use knmstate_api::condition::{ConditionList, ConditionStatus};
//! use knmstate_state_engine::conditions::EnactmentTransition;
//! use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
//! use k8s_openapi::jiff::Timestamp;
//!
//! let now = Time(Timestamp::from_second(1_000).unwrap());
//! let mut list = ConditionList::default();
//! EnactmentTransition::Progressing.apply(&mut list, &now);
//! assert!(list.is_true("Progressing"));
//! assert_eq!(list.find("Progressing").unwrap().message, "Applying desired state");
//! EnactmentTransition::Success.apply(&mut list, &now);
//! assert_eq!(list.first_true().unwrap().type_, "Available");
//! ```

use std::fmt::Write as _;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use knmstate_api::condition::{ConditionList, ConditionStatus};
use knmstate_api::names::{enactment as e, policy as p};

use ConditionStatus::{False, True, Unknown};

/// Message on `Progressing` while an enactment applies.
pub const MSG_PROGRESSING: &str = "Applying desired state";
/// Message on `Available` after a successful apply.
pub const MSG_SUCCESS: &str = "successfully reconciled";
/// Message on `Pending` (and `Progressing`) while waiting for a maxUnavailable slot.
pub const MSG_PENDING: &str = "Waiting for progressing nodes to finish";
/// Message on the policy's `Ignored` when no node matches.
pub const MSG_NOT_MATCHING: &str = "Policy does not match any node";

/// A change of an enactment's state; [`EnactmentTransition::apply`] writes its condition set.
///
/// | transition | Available | Failing | Progressing | Pending | Aborted |
/// |---|---|---|---|---|---|
/// | `Progressing` | Unknown | Unknown | **True** | False | False |
/// | `Success` | **True** | False | False | False | False |
/// | `FailedToConfigure`, `GenerateFailure` | False | **True** | False | False | False `SuccessfullyConfigured` (sic) |
/// | `Retrying` | False | **True** | **True** | False | False `SuccessfullyConfigured` (sic) |
/// | `Pending` | False | False | False (with the message) | **True** | False |
/// | `Aborted` | False | False | False | False | **True** |
/// | `Planned` (dry run; reason `ConfigurationPlanned`) | **True** | False | False | False | False |
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnactmentTransition {
    /// About to apply (`NotifyProgressing`).
    Progressing,
    /// Applied and committed (`NotifySuccess`).
    Success,
    /// Retries exhausted; `message` is the full error, see [`failed_to_configure_message`].
    FailedToConfigure {
        /// The error, shown on `Failing`.
        message: String,
    },
    /// Capture or nmpolicy rendering failed; `error` is the rendering error.
    GenerateFailure {
        /// The rendering error; the message becomes
        /// `failure generating desiredState and capturedStates: <error>`.
        error: String,
    },
    /// The apply failed and retries remain; see [`retrying_message`].
    Retrying {
        /// The message, shown on `Failing` and `Progressing`.
        message: String,
    },
    /// Waiting for a maxUnavailable slot.
    Pending,
    /// Not applied because enough other nodes already failed; see [`aborted_message`].
    Aborted {
        /// The message, shown on `Aborted`.
        message: String,
    },
    /// Planned, not applied: the policy is a dry run (our addition, no new condition type).
    Planned {
        /// The message, shown on `Available`.
        message: String,
    },
}

impl EnactmentTransition {
    /// Write this transition's full condition set into `list` at `now`.
    pub fn apply(&self, list: &mut ConditionList, now: &Time) {
        let mut set = |t: &str, s: ConditionStatus, r: &str, m: &str| {
            list.set(t, s, r, m, now.clone());
        };
        match self {
            Self::Progressing => {
                let r = e::REASON_PROGRESSING;
                set(e::PROGRESSING, True, r, MSG_PROGRESSING);
                set(e::FAILING, Unknown, r, "");
                set(e::AVAILABLE, Unknown, r, "");
                set(e::PENDING, False, r, "");
                set(e::ABORTED, False, r, "");
            }
            Self::Success => {
                let r = e::REASON_SUCCESS;
                set(e::AVAILABLE, True, r, MSG_SUCCESS);
                set(e::FAILING, False, r, "");
                set(e::PROGRESSING, False, r, "");
                set(e::PENDING, False, r, "");
                set(e::ABORTED, False, r, "");
            }
            Self::FailedToConfigure { message } => failed(&mut set, message),
            Self::GenerateFailure { error } => {
                failed(&mut set, &generate_failure_message(error));
            }
            Self::Retrying { message } => {
                let r = e::REASON_RETRYING;
                set(e::FAILING, True, r, message);
                set(e::PROGRESSING, True, r, message);
                set(e::AVAILABLE, False, r, "");
                set(e::PENDING, False, r, "");
                // Upstream quirk kept for compatibility: Aborted carries SuccessfullyConfigured.
                set(e::ABORTED, False, e::REASON_SUCCESS, "");
            }
            Self::Pending => {
                let r = e::REASON_MAX_UNAVAILABLE;
                set(e::PENDING, True, r, MSG_PENDING);
                set(e::ABORTED, False, r, "");
                set(e::PROGRESSING, False, r, MSG_PENDING);
                set(e::FAILING, False, r, "");
                set(e::AVAILABLE, False, r, "");
            }
            Self::Aborted { message } => {
                let r = e::REASON_ABORTED;
                set(e::FAILING, False, r, "");
                set(e::AVAILABLE, False, r, "");
                set(e::PROGRESSING, False, r, "");
                set(e::PENDING, False, r, "");
                set(e::ABORTED, True, r, message);
            }
            Self::Planned { message } => {
                let r = e::REASON_PLANNED;
                set(e::AVAILABLE, True, r, message);
                set(e::FAILING, False, r, "");
                set(e::PROGRESSING, False, r, "");
                set(e::PENDING, False, r, "");
                set(e::ABORTED, False, r, "");
            }
        }
    }
}

fn failed(set: &mut impl FnMut(&str, ConditionStatus, &str, &str), message: &str) {
    let r = e::REASON_FAILED;
    set(e::FAILING, True, r, message);
    set(e::AVAILABLE, False, r, "");
    set(e::PROGRESSING, False, r, "");
    set(e::PENDING, False, r, "");
    // Upstream quirk kept for compatibility: Aborted carries SuccessfullyConfigured.
    set(e::ABORTED, False, e::REASON_SUCCESS, "");
}

/// The conditions of a freshly created enactment: all five types `Unknown`, no reason, no
/// message (upstream's `NewEnactment`).
pub fn initial_enactment_conditions(now: &Time) -> ConditionList {
    let mut list = ConditionList::default();
    for t in e::TYPES {
        list.set(t, Unknown, "", "", now.clone());
    }
    list
}

/// Move an enactment status to policy generation `generation`. When it held another
/// generation, it starts over: every condition is cleared (upstream fix #1442: other handlers
/// must not attribute an old failure to the new generation) and every retry count is dropped —
/// no count of another generation speaks for this one, not even one of a higher generation
/// (a policy deleted and created again starts its generations over). Returns whether it was
/// reset.
///
/// ```
/// use knmstate_api::shared::NodeNetworkConfigurationEnactmentStatus;
/// use knmstate_state_engine::conditions::{enter_generation, initial_enactment_conditions};
/// use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
/// use k8s_openapi::jiff::Timestamp;
///
/// let mut s = NodeNetworkConfigurationEnactmentStatus {
///     policy_generation: Some(1),
///     conditions: initial_enactment_conditions(&Time(Timestamp::from_second(0).unwrap())),
///     ..Default::default()
/// };
/// assert!(!enter_generation(&mut s, 1));
/// assert!(enter_generation(&mut s, 2));
/// assert!(s.conditions.is_empty());
/// assert_eq!(s.policy_generation, Some(2));
/// ```
pub fn enter_generation(
    status: &mut knmstate_api::shared::NodeNetworkConfigurationEnactmentStatus,
    generation: i64,
) -> bool {
    if status.policy_generation == Some(generation) {
        return false;
    }
    status.policy_generation = Some(generation);
    status.conditions = ConditionList::default();
    status.retry_count.clear();
    true
}

/// Whether two enactment statuses differ in meaning: condition heartbeats and transition
/// times, and the capture timestamps, aside. An unchanged status is not written.
pub fn enactment_status_differs(
    old: &knmstate_api::shared::NodeNetworkConfigurationEnactmentStatus,
    new: &knmstate_api::shared::NodeNetworkConfigurationEnactmentStatus,
) -> bool {
    let strip = |s: &knmstate_api::shared::NodeNetworkConfigurationEnactmentStatus| {
        let mut s = s.clone();
        s.conditions = ConditionList::default();
        for c in s.captured_states.values_mut() {
            c.meta_info = None;
        }
        s
    };
    !old.conditions.same_meaning(&new.conditions) || strip(old) != strip(new)
}

/// The final failure message: `error reconciling NodeNetworkConfigurationPolicy on node <node>
/// at desired state apply: "<output>",\n <error>`.
///
/// ```
/// let m = knmstate_state_engine::conditions::failed_to_configure_message("n1", "out", "boom");
/// assert_eq!(m, "error reconciling NodeNetworkConfigurationPolicy on node n1 at desired state apply: \"out\",\n boom");
/// ```
pub fn failed_to_configure_message(node: &str, output: &str, error: &str) -> String {
    format!(
        "error reconciling NodeNetworkConfigurationPolicy on node {node} at desired state apply: \"{output}\",\n {error}"
    )
}

/// [`failed_to_configure_message`] of an apply error: its first line is the decisive error
/// (upstream's "output"), the lines after it follow.
///
/// ```
/// let m = knmstate_state_engine::conditions::failed_to_configure_message_of("n1", "probe x failed\nrollback failed too");
/// assert!(m.ends_with("apply: \"probe x failed\",\n rollback failed too"));
/// ```
pub fn failed_to_configure_message_of(node: &str, error: &str) -> String {
    let (decisive, rest) = error.split_once('\n').unwrap_or((error, ""));
    failed_to_configure_message(node, decisive, rest)
}

/// The failure of an apply whose probes failed, in upstream's words, with the rollback's own
/// failure on a line of its own when it failed too.
///
/// ```
/// use knmstate_state_engine::conditions::probe_rollback_message;
/// assert_eq!(
///     probe_rollback_message("probe dns failed", None),
///     "rolling back desired state configuration: failed running probes after network changes: probe dns failed"
/// );
/// assert!(probe_rollback_message("p", Some("gone")).ends_with("\nrollback failed too: gone"));
/// ```
pub fn probe_rollback_message(probe_error: &str, rollback_error: Option<&str>) -> String {
    let mut msg = format!(
        "rolling back desired state configuration: failed running probes after network changes: {probe_error}"
    );
    if let Some(rollback_error) = rollback_error {
        let _ = write!(msg, "\nrollback failed too: {rollback_error}");
    }
    msg
}

/// The rendering failure message: `failure generating desiredState and capturedStates: <err>`.
pub fn generate_failure_message(error: &str) -> String {
    format!("failure generating desiredState and capturedStates: {error}")
}

/// The retrying message for the `attempt`-th failed attempt (1-based) out of `max`:
/// `failed to reconcile NodeNetworkConfigurationPolicy on node <node>. Retrying <attempt+1>/<max>`.
///
/// ```
/// let m = knmstate_state_engine::conditions::retrying_message("n1", 1, 5);
/// assert_eq!(m, "failed to reconcile NodeNetworkConfigurationPolicy on node n1. Retrying 2/5");
/// ```
pub fn retrying_message(node: &str, attempt: u32, max: u32) -> String {
    format!(
        "failed to reconcile NodeNetworkConfigurationPolicy on node {node}. Retrying {}/{max}",
        attempt + 1
    )
}

/// The abort message: `reconciliation of enactment "<node>.<policy>" has aborted`.
///
/// ```
/// let m = knmstate_state_engine::conditions::aborted_message("n1", "br1");
/// assert_eq!(m, "reconciliation of enactment \"n1.br1\" has aborted");
/// ```
pub fn aborted_message(node: &str, policy: &str) -> String {
    format!(
        "reconciliation of enactment \"{}\" has aborted",
        knmstate_api::names::enactment_name(node, policy)
    )
}

/// The message of the warning event emitted when retries are exhausted:
/// `reconciliation of enactment "<node>.<policy>" has failed after <N> retries`.
pub fn failed_event_message(node: &str, policy: &str, retries: u32) -> String {
    format!(
        "reconciliation of enactment \"{}\" has failed after {retries} retries",
        knmstate_api::names::enactment_name(node, policy)
    )
}

/// Which condition set a policy gets; [`PolicyVerdict::apply`] writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyConditionKind {
    /// No node matches: `Ignored=True`, reason `NoMatchingNode`.
    NotMatching,
    /// A node failed or aborted: `Degraded=True`, reason `FailedToConfigure`.
    FailedToConfigure,
    /// Rollout under way: `Progressing=True`, reason `ConfigurationProgressing`.
    Progressing,
    /// Every node succeeded: `Available=True`, reason `SuccessfullyConfigured`.
    Success,
    /// Every node finished and some only planned it (a dry run): `Available=True`, reason
    /// `ConfigurationPlanned` (our addition).
    Planned,
    /// Nothing decided yet: all four `Unknown` with no reason.
    Unknown,
}

/// A policy condition set plus the message on its `True` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVerdict {
    /// Which set.
    pub kind: PolicyConditionKind,
    /// The message on the `True` condition (empty for [`PolicyConditionKind::Unknown`]).
    pub message: String,
}

impl PolicyVerdict {
    /// Write this verdict's full condition set into `list` at `now`.
    ///
    /// | kind | Available | Degraded | Progressing | Ignored |
    /// |---|---|---|---|---|
    /// | Progressing | Unknown | Unknown | **True** | False |
    /// | Success | **True** | False | False | False |
    /// | Planned | **True** `ConfigurationPlanned` | False | False | False |
    /// | FailedToConfigure | False | **True** | False `ConfigurationProgressing` (sic) | False |
    /// | NotMatching | False | False | False | **True** |
    /// | Unknown | Unknown "" | Unknown "" | Unknown "" | Unknown "" |
    ///
    /// ```
    /// use knmstate_api::condition::ConditionList;
    /// use knmstate_state_engine::conditions::{PolicyConditionKind, PolicyVerdict};
    /// use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    /// use k8s_openapi::jiff::Timestamp;
    ///
    /// let mut list = ConditionList::default();
    /// let v = PolicyVerdict { kind: PolicyConditionKind::Success, message: "2/2 nodes successfully configured".into() };
    /// v.apply(&mut list, &Time(Timestamp::from_second(0).unwrap()));
    /// assert_eq!(list.first_true().unwrap().reason, "SuccessfullyConfigured");
    /// ```
    pub fn apply(&self, list: &mut ConditionList, now: &Time) {
        let mut set = |t: &str, s: ConditionStatus, r: &str, m: &str| {
            list.set(t, s, r, m, now.clone());
        };
        let m = self.message.as_str();
        match self.kind {
            PolicyConditionKind::Progressing => {
                let r = p::REASON_PROGRESSING;
                set(p::DEGRADED, Unknown, r, "");
                set(p::AVAILABLE, Unknown, r, "");
                set(p::PROGRESSING, True, r, m);
                set(p::IGNORED, False, r, "");
            }
            PolicyConditionKind::Success | PolicyConditionKind::Planned => {
                let r = if self.kind == PolicyConditionKind::Planned {
                    p::REASON_PLANNED
                } else {
                    p::REASON_SUCCESS
                };
                set(p::DEGRADED, False, r, "");
                set(p::AVAILABLE, True, r, m);
                set(p::PROGRESSING, False, r, "");
                set(p::IGNORED, False, r, "");
            }
            PolicyConditionKind::NotMatching => {
                let r = p::REASON_NO_MATCHING_NODE;
                set(p::DEGRADED, False, r, "");
                set(p::AVAILABLE, False, r, "");
                set(p::PROGRESSING, False, r, "");
                set(p::IGNORED, True, r, m);
            }
            PolicyConditionKind::FailedToConfigure => {
                let r = p::REASON_FAILED;
                set(p::DEGRADED, True, r, m);
                set(p::AVAILABLE, False, r, "");
                // Upstream quirk kept for compatibility.
                set(p::PROGRESSING, False, p::REASON_PROGRESSING, "");
                set(p::IGNORED, False, r, "");
            }
            PolicyConditionKind::Unknown => {
                for t in p::TYPES {
                    set(t, Unknown, "", "");
                }
            }
        }
    }
}

/// The "active" condition of a list: the first `True` one, as `kubectl get` and the
/// `kubernetes_nmstate_{policies,enactments}_status` metrics see it. `None` when nothing is
/// `True`.
///
/// ```
/// use knmstate_api::condition::{ConditionList, ConditionStatus};
/// use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
/// use k8s_openapi::jiff::Timestamp;
///
/// let now = Time(Timestamp::from_second(0).unwrap());
/// let mut l = ConditionList::default();
/// assert_eq!(knmstate_state_engine::conditions::active_condition(&l), None);
/// l.set("Available", ConditionStatus::False, "", "", now.clone());
/// l.set("Degraded", ConditionStatus::True, "", "", now);
/// assert_eq!(knmstate_state_engine::conditions::active_condition(&l), Some("Degraded"));
/// ```
pub fn active_condition(list: &ConditionList) -> Option<&str> {
    list.first_true().map(|c| c.type_.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use pretty_assertions::assert_eq;
    use rstest::rstest;

    fn t(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    /// (type, status, reason, message) sorted by type.
    fn triples(l: &ConditionList) -> Vec<(String, String, String, String)> {
        let mut v: Vec<_> =
            l.0.iter()
                .map(|c| {
                    (
                        c.type_.clone(),
                        c.status.to_string(),
                        c.reason.clone(),
                        c.message.clone(),
                    )
                })
                .collect();
        v.sort();
        v
    }

    fn expect(rows: &[(&str, &str, &str, &str)]) -> Vec<(String, String, String, String)> {
        let mut v: Vec<_> = rows
            .iter()
            .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
            .collect();
        v.sort();
        v
    }

    const CP: &str = "ConfigurationProgressing";
    const SC: &str = "SuccessfullyConfigured";
    const FC: &str = "FailedToConfigure";

    #[rstest]
    #[case::progressing(EnactmentTransition::Progressing, &[
        ("Available", "Unknown", CP, ""), ("Failing", "Unknown", CP, ""),
        ("Progressing", "True", CP, "Applying desired state"), ("Pending", "False", CP, ""),
        ("Aborted", "False", CP, "")])]
    #[case::success(EnactmentTransition::Success, &[
        ("Available", "True", SC, "successfully reconciled"), ("Failing", "False", SC, ""),
        ("Progressing", "False", SC, ""), ("Pending", "False", SC, ""), ("Aborted", "False", SC, "")])]
    #[case::failed(EnactmentTransition::FailedToConfigure { message: "boom".into() }, &[
        ("Available", "False", FC, ""), ("Failing", "True", FC, "boom"),
        ("Progressing", "False", FC, ""), ("Pending", "False", FC, ""), ("Aborted", "False", SC, "")])]
    #[case::generate(EnactmentTransition::GenerateFailure { error: "bad capture".into() }, &[
        ("Available", "False", FC, ""),
        ("Failing", "True", FC, "failure generating desiredState and capturedStates: bad capture"),
        ("Progressing", "False", FC, ""), ("Pending", "False", FC, ""), ("Aborted", "False", SC, "")])]
    #[case::retrying(EnactmentTransition::Retrying { message: "again".into() }, &[
        ("Available", "False", "Retrying", ""), ("Failing", "True", "Retrying", "again"),
        ("Progressing", "True", "Retrying", "again"), ("Pending", "False", "Retrying", ""),
        ("Aborted", "False", SC, "")])]
    #[case::pending(EnactmentTransition::Pending, &[
        ("Available", "False", "MaxUnavailableLimitReached", ""),
        ("Failing", "False", "MaxUnavailableLimitReached", ""),
        ("Progressing", "False", "MaxUnavailableLimitReached", "Waiting for progressing nodes to finish"),
        ("Pending", "True", "MaxUnavailableLimitReached", "Waiting for progressing nodes to finish"),
        ("Aborted", "False", "MaxUnavailableLimitReached", "")])]
    #[case::aborted(EnactmentTransition::Aborted { message: aborted_message("n1", "p") }, &[
        ("Available", "False", "ConfigurationAborted", ""), ("Failing", "False", "ConfigurationAborted", ""),
        ("Progressing", "False", "ConfigurationAborted", ""), ("Pending", "False", "ConfigurationAborted", ""),
        ("Aborted", "True", "ConfigurationAborted", "reconciliation of enactment \"n1.p\" has aborted")])]
    #[case::planned(EnactmentTransition::Planned { message: "planned".into() }, &[
        ("Available", "True", "ConfigurationPlanned", "planned"), ("Failing", "False", "ConfigurationPlanned", ""),
        ("Progressing", "False", "ConfigurationPlanned", ""), ("Pending", "False", "ConfigurationPlanned", ""),
        ("Aborted", "False", "ConfigurationPlanned", "")])]
    fn enactment_sets_match_upstream(
        #[case] tr: EnactmentTransition,
        #[case] rows: &[(&str, &str, &str, &str)],
    ) {
        let mut l = initial_enactment_conditions(&t(0));
        tr.apply(&mut l, &t(1));
        assert_eq!(triples(&l), expect(rows));
        assert_eq!(l.0.len(), 5);
    }

    #[test]
    fn initial_enactment_is_all_unknown_without_reason() {
        let l = initial_enactment_conditions(&t(0));
        assert_eq!(l.0.len(), 5);
        assert!(
            l.0.iter()
                .all(|c| c.status == Unknown && c.reason.is_empty() && c.message.is_empty())
        );
    }

    #[test]
    fn transition_time_moves_only_for_changed_statuses() {
        let mut l = initial_enactment_conditions(&t(0));
        EnactmentTransition::Progressing.apply(&mut l, &t(10));
        EnactmentTransition::Retrying {
            message: "x".into(),
        }
        .apply(&mut l, &t(20));
        let prog = l.find("Progressing").unwrap();
        assert_eq!(prog.last_transition_time, Some(t(10)), "True → True");
        assert_eq!(prog.last_heartbeat_time, Some(t(20)));
        let failing = l.find("Failing").unwrap();
        assert_eq!(failing.last_transition_time, Some(t(20)), "Unknown → True");
        let pending = l.find("Pending").unwrap();
        assert_eq!(pending.last_transition_time, Some(t(10)), "False → False");
    }

    #[rstest]
    #[case::progressing(PolicyConditionKind::Progressing, &[
        ("Available", "Unknown", CP, ""), ("Degraded", "Unknown", CP, ""),
        ("Progressing", "True", CP, "M"), ("Ignored", "False", CP, "")])]
    #[case::success(PolicyConditionKind::Success, &[
        ("Available", "True", SC, "M"), ("Degraded", "False", SC, ""),
        ("Progressing", "False", SC, ""), ("Ignored", "False", SC, "")])]
    #[case::failed(PolicyConditionKind::FailedToConfigure, &[
        ("Available", "False", FC, ""), ("Degraded", "True", FC, "M"),
        ("Progressing", "False", CP, ""), ("Ignored", "False", FC, "")])]
    #[case::not_matching(PolicyConditionKind::NotMatching, &[
        ("Available", "False", "NoMatchingNode", ""), ("Degraded", "False", "NoMatchingNode", ""),
        ("Progressing", "False", "NoMatchingNode", ""), ("Ignored", "True", "NoMatchingNode", "M")])]
    #[case::planned(PolicyConditionKind::Planned, &[
        ("Available", "True", "ConfigurationPlanned", "M"), ("Degraded", "False", "ConfigurationPlanned", ""),
        ("Progressing", "False", "ConfigurationPlanned", ""), ("Ignored", "False", "ConfigurationPlanned", "")])]
    fn policy_sets_match_upstream(
        #[case] kind: PolicyConditionKind,
        #[case] rows: &[(&str, &str, &str, &str)],
    ) {
        let mut l = ConditionList::default();
        PolicyVerdict {
            kind,
            message: "M".into(),
        }
        .apply(&mut l, &t(0));
        assert_eq!(triples(&l), expect(rows));
    }

    #[test]
    fn policy_unknown_resets_reasons() {
        let mut l = ConditionList::default();
        PolicyVerdict {
            kind: PolicyConditionKind::Success,
            message: "M".into(),
        }
        .apply(&mut l, &t(0));
        PolicyVerdict {
            kind: PolicyConditionKind::Unknown,
            message: String::new(),
        }
        .apply(&mut l, &t(1));
        assert!(
            l.0.iter()
                .all(|c| c.status == Unknown && c.reason.is_empty() && c.message.is_empty())
        );
        assert_eq!(l.0.len(), 4);
    }

    #[test]
    fn event_message() {
        assert_eq!(
            failed_event_message("n", "p", 5),
            "reconciliation of enactment \"n.p\" has failed after 5 retries"
        );
    }

    #[test]
    fn heartbeats_alone_do_not_count_as_a_change() {
        let t = |s| Time(k8s_openapi::jiff::Timestamp::from_second(s).expect("time"));
        let mut a = knmstate_api::shared::NodeNetworkConfigurationEnactmentStatus::default();
        a.conditions.set("Available", True, "R", "m", t(1));
        let mut b = a.clone();
        b.conditions.set("Available", True, "R", "m", t(2));
        assert!(!enactment_status_differs(&a, &b));
        b.features = vec!["static-route".into()];
        assert!(enactment_status_differs(&a, &b));
        let mut c = a.clone();
        c.conditions.set("Available", False, "R", "m", t(3));
        assert!(enactment_status_differs(&a, &c));
    }

    #[test]
    fn a_new_generation_starts_with_fresh_conditions_and_retry_counts() {
        let t0 = Time(k8s_openapi::jiff::Timestamp::from_second(0).expect("time"));
        let mut s = knmstate_api::shared::NodeNetworkConfigurationEnactmentStatus {
            policy_generation: Some(2),
            conditions: initial_enactment_conditions(&t0),
            retry_count: [("2".to_owned(), 3), ("3".to_owned(), 1)].into(),
            ..Default::default()
        };
        assert!(!enter_generation(&mut s, 2));
        assert_eq!(
            s.retry_count.len(),
            2,
            "the same generation keeps its counts"
        );
        assert!(enter_generation(&mut s, 1));
        assert!(s.conditions.is_empty());
        assert!(s.retry_count.is_empty());
        assert_eq!(s.policy_generation, Some(1));
    }
}
