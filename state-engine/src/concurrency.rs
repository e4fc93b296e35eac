//! Concurrency: how many nodes may apply a policy at once, and whether this node may start.
//!
//! ## The limit
//!
//! [`max_unavailable`] scales `spec.maxUnavailable` (an integer, or a percentage such as
//! `"30%"`, default `"50%"`) over the number of **matching** nodes, rounds up and never goes
//! below 1. An invalid value falls back to 50 % and reports an error, as upstream does.
//!
//! The grammar, [`parse_max_unavailable`], is the one the webhook validates with, and the one
//! Kubernetes applies to a Deployment's or DaemonSet's `maxUnavailable`: a count `>= 0`, or a
//! percentage `"0%"` to `"100%"` (digits then `%`). Everything else is invalid: `"asdf"`, a
//! number written as a string (`"42"`), a negative count, `"-10%"`, and a percentage over
//! 100 % (`"101%"`; upstream's engine would scale it past the node count).
//!
//! ## Slots
//!
//! Upstream keeps a counter per generation in the policy status; a crash or a failed status
//! write between increment and decrement leaves a "ghost" slot and can deadlock a rollout
//! (upstream #1571, #1427). Here a slot is held by a node only while it is in the policy's
//! ledger **and** its enactment of the current generation has not reached an end; the ledger,
//! its leases and the protocol over it are [`crate::slot`]. This module reads the enactments:
//! [`SlotState`] per node ([`slot_states`]) and the abort rule ([`should_abort`]). A finally
//! failed enactment (`Failing=True`, not progressing) keeps using a slot, as upstream, so at
//! most `maxUnavailable` nodes ever end Failing and the rest are Aborted.
//!
//! The controller may publish the number of live holders under the policy's
//! `unavailableNodeCountMap[<generation>]` for compatibility; nothing reads it back.

use crate::Error;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use knmstate_api::ConditionStatus;
use knmstate_api::names::enactment as e;
use knmstate_api::shared::NodeNetworkConfigurationEnactmentStatus;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Upstream's default `maxUnavailable`, as written (parses to [`MaxUnavailableSpec::DEFAULT`]).
pub const DEFAULT_MAX_UNAVAILABLE: &str = "50%";

/// A scaled maxUnavailable: the value to use, and the error when the spec was invalid (the
/// value is then the 50 % default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxUnavailable {
    /// How many nodes may apply at once (≥ 1).
    pub value: usize,
    /// Why the spec value was not usable, if it was not.
    pub error: Option<Error>,
}

/// A `maxUnavailable` that passed [`parse_max_unavailable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxUnavailableSpec {
    /// An absolute number of nodes.
    Count(u32),
    /// A share of the matching nodes, 0 to 100.
    Percent(u8),
}

impl MaxUnavailableSpec {
    /// Upstream's default, `"50%"`.
    pub const DEFAULT: Self = Self::Percent(50);

    /// The number of nodes this allows out of `nodes`, percentages rounded up (may be 0).
    ///
    /// ```
    /// use knmstate_state_engine::concurrency::MaxUnavailableSpec;
    /// assert_eq!(MaxUnavailableSpec::Percent(25).scale(10), 3);
    /// assert_eq!(MaxUnavailableSpec::Count(4).scale(2), 4);
    /// ```
    pub fn scale(self, nodes: usize) -> usize {
        match self {
            Self::Count(n) => usize::try_from(n).unwrap_or(usize::MAX),
            // ⌈p·n/100⌉ with n = 100q + r is p·q + ⌈p·r/100⌉: no product past n·p/100, so no
            // overflow for any node count (`p·n` itself overflows beyond usize::MAX / 100).
            Self::Percent(p) => {
                let p = usize::from(p);
                (nodes / 100)
                    .saturating_mul(p)
                    .saturating_add((nodes % 100 * p).div_ceil(100))
            }
        }
    }
}

/// What is wrong with a `maxUnavailable` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MaxUnavailableProblem {
    /// A count below zero.
    #[error("a count must not be negative")]
    NegativeCount,
    /// A percentage above 100.
    #[error("a percentage must not be over 100%")]
    PercentOver100,
    /// Neither digits nor digits followed by `%` (this includes a count written as a string).
    #[error("must be an integer or a percentage such as \"30%\"")]
    NotCountOrPercent,
}

/// The maxUnavailable grammar: a count `>= 0` or a percentage from `"0%"` to `"100%"`.
///
/// ```
/// use knmstate_state_engine::concurrency::{parse_max_unavailable, MaxUnavailableSpec};
/// use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
/// let pct = parse_max_unavailable(&IntOrString::String("30%".into()));
/// assert_eq!(pct, Ok(MaxUnavailableSpec::Percent(30)));
/// let err = parse_max_unavailable(&IntOrString::String("101%".into())).unwrap_err();
/// assert_eq!(err.to_string(), "invalid maxUnavailable \"101%\": a percentage must not be over 100%");
/// ```
pub fn parse_max_unavailable(v: &IntOrString) -> Result<MaxUnavailableSpec, Error> {
    let refuse = |problem| Error::ParseMaxUnavailable {
        value: match v {
            IntOrString::Int(i) => i.to_string(),
            IntOrString::String(s) => s.clone(),
        },
        problem,
    };
    match v {
        IntOrString::Int(i) => u32::try_from(*i)
            .map(MaxUnavailableSpec::Count)
            .map_err(|_| refuse(MaxUnavailableProblem::NegativeCount)),
        IntOrString::String(s) => {
            let digits = s
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| refuse(MaxUnavailableProblem::NotCountOrPercent))?;
            // Only digits: a parse failure is an overflow, far over 100 as well.
            match digits.parse::<u8>() {
                Ok(p) if p <= 100 => Ok(MaxUnavailableSpec::Percent(p)),
                _ => Err(refuse(MaxUnavailableProblem::PercentOver100)),
            }
        }
    }
}

/// Scale `spec` (absent means `"50%"`) over `matching_nodes`, round up, at least 1.
///
/// ```
/// use knmstate_state_engine::concurrency::max_unavailable;
/// use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
/// assert_eq!(max_unavailable(None, 6).value, 3);
/// assert_eq!(max_unavailable(Some(&IntOrString::Int(0)), 6).value, 1);
/// let bad = max_unavailable(Some(&IntOrString::String("asdf".into())), 5);
/// assert_eq!((bad.value, bad.error.is_some()), (3, true));
/// ```
pub fn max_unavailable(spec: Option<&IntOrString>, matching_nodes: usize) -> MaxUnavailable {
    let (parsed, error) = match spec.map(parse_max_unavailable) {
        None => (MaxUnavailableSpec::DEFAULT, None),
        Some(Ok(parsed)) => (parsed, None),
        Some(Err(err)) => (MaxUnavailableSpec::DEFAULT, Some(err)),
    };
    MaxUnavailable {
        value: parsed.scale(matching_nodes).max(1),
        error,
    }
}

/// What one node's enactment says about slots, for the current generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SlotState {
    /// No decision yet for this generation (new, other generation, or conditions cleared).
    Idle,
    /// Waiting for a slot.
    Pending,
    /// `Progressing=True`: applying, or retrying between attempts. Holds a slot.
    Progressing,
    /// `Available=True`: done.
    Available,
    /// `Failing=True` and not progressing: retries exhausted or rendering failed. Uses a slot.
    FailedFinal,
    /// `Aborted=True`: gave up because enough nodes failed.
    Aborted,
}

impl SlotState {
    /// Read an enactment status; anything not of `generation` is [`SlotState::Idle`], and so
    /// is a dry run's plan (`Available` with reason `ConfigurationPlanned`): the node applied
    /// nothing, and when the dry run ends it claims a slot with the plan still stored, so a
    /// claimant that took the plan for an end would prune a live holder.
    pub fn of(status: Option<&NodeNetworkConfigurationEnactmentStatus>, generation: i64) -> Self {
        let Some(s) = status.filter(|s| s.policy_generation == Some(generation)) else {
            return Self::Idle;
        };
        let l = &s.conditions;
        let t = |ty: &str| l.is(ty, ConditionStatus::True);
        if t(e::PROGRESSING) {
            Self::Progressing
        } else if t(e::AVAILABLE) {
            if l.find(e::AVAILABLE)
                .is_some_and(|c| c.reason == e::REASON_PLANNED)
            {
                return Self::Idle;
            }
            Self::Available
        } else if t(e::FAILING) {
            Self::FailedFinal
        } else if t(e::ABORTED) {
            Self::Aborted
        } else if t(e::PENDING) {
            Self::Pending
        } else {
            Self::Idle
        }
    }

    /// Whether this state has reached an end for its generation (Available, failed, Aborted).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Available | Self::FailedFinal | Self::Aborted)
    }
}

/// The slot state of every node in `matching_nodes`, from the policy's enactments
/// ([`SlotState::Idle`] for a node without one). Enactments of other nodes are ignored.
///
/// ```
/// use knmstate_state_engine::concurrency::{slot_states, SlotState};
/// use std::collections::BTreeSet;
/// let nodes: BTreeSet<String> = ["n1".to_string()].into();
/// assert_eq!(slot_states(&[], 1, &nodes)["n1"], SlotState::Idle);
/// ```
pub fn slot_states(
    enactments: &[knmstate_api::v1beta1::NodeNetworkConfigurationEnactment],
    generation: i64,
    matching_nodes: &BTreeSet<String>,
) -> BTreeMap<String, SlotState> {
    let mut states: BTreeMap<String, SlotState> = matching_nodes
        .iter()
        .map(|n| (n.clone(), SlotState::Idle))
        .collect();
    for e in enactments {
        if let Some(slot) = e.node_name().and_then(|n| states.get_mut(n)) {
            *slot = SlotState::of(e.status.as_ref(), generation);
        }
    }
    states
}

/// Number of finally failed enactments among `states`.
pub fn failed_final(states: &BTreeMap<String, SlotState>) -> usize {
    states
        .values()
        .filter(|s| **s == SlotState::FailedFinal)
        .count()
}

/// The Aborted rule: abort when `count(Failing ∧ ¬Progressing) ≥ maxUnavailable`.
pub fn should_abort(states: &BTreeMap<String, SlotState>, max_unavailable: usize) -> bool {
    failed_final(states) >= max_unavailable
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn a_dry_runs_plan_holds_no_slot_and_is_no_end() {
        let mut s = NodeNetworkConfigurationEnactmentStatus {
            policy_generation: Some(1),
            ..Default::default()
        };
        let at = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        );
        s.conditions.set(
            e::AVAILABLE,
            ConditionStatus::True,
            e::REASON_PLANNED,
            "planned",
            at.clone(),
        );
        assert_eq!(SlotState::of(Some(&s), 1), SlotState::Idle);
        assert!(!SlotState::of(Some(&s), 1).is_final());
        s.conditions.set(
            e::AVAILABLE,
            ConditionStatus::True,
            "SuccessfullyConfigured",
            "ok",
            at,
        );
        assert_eq!(SlotState::of(Some(&s), 1), SlotState::Available);
    }

    #[rstest]
    #[case::none(MaxUnavailableSpec::Percent(50), 0, 0)]
    #[case::round_up(MaxUnavailableSpec::Percent(1), 1, 1)]
    #[case::exact(MaxUnavailableSpec::Percent(30), 200, 60)]
    #[case::half_of_max(MaxUnavailableSpec::Percent(50), usize::MAX, usize::MAX / 2 + 1)]
    #[case::all_of_max(MaxUnavailableSpec::Percent(100), usize::MAX, usize::MAX)]
    #[case::one_percent_of_max(MaxUnavailableSpec::Percent(1), usize::MAX, usize::MAX / 100 + 1)]
    #[case::over_full_saturates(MaxUnavailableSpec::Percent(255), usize::MAX, usize::MAX)]
    #[case::count_of_max(MaxUnavailableSpec::Count(u32::MAX), usize::MAX, u32::MAX as usize)]
    fn scale_does_not_overflow(
        #[case] spec: MaxUnavailableSpec,
        #[case] nodes: usize,
        #[case] want: usize,
    ) {
        assert_eq!(spec.scale(nodes), want);
    }

    #[test]
    fn max_unavailable_of_usize_max_nodes() {
        let m = max_unavailable(Some(&IntOrString::String("50%".into())), usize::MAX);
        assert_eq!((m.value, m.error.is_none()), (usize::MAX / 2 + 1, true));
    }

    #[rstest]
    #[case(5, Some(IntOrString::String("50%".into())), 3, false)]
    #[case(6, Some(IntOrString::String("50%".into())), 3, false)]
    #[case(5, Some(IntOrString::Int(3)), 3, false)]
    #[case(6, Some(IntOrString::Int(3)), 3, false)]
    #[case(5, Some(IntOrString::String("asdf".into())), 3, true)]
    #[case(5, Some(IntOrString::String("42".into())), 3, true)]
    #[case(5, Some(IntOrString::String("0%".into())), 1, false)]
    #[case(5, Some(IntOrString::Int(0)), 1, false)]
    #[case(5, None, 3, false)]
    #[case(0, None, 1, false)]
    #[case(1, Some(IntOrString::String("10%".into())), 1, false)]
    #[case(10, Some(IntOrString::String("25%".into())), 3, false)]
    #[case(10, Some(IntOrString::String("100%".into())), 10, false)]
    // A negative count is invalid (Kubernetes' rule for maxUnavailable), so 50 % of 3.
    #[case(3, Some(IntOrString::Int(-2)), 2, true)]
    #[case(4, Some(IntOrString::String("-10%".into())), 2, true)]
    #[case(10, Some(IntOrString::String("101%".into())), 5, true)]
    fn upstream_table(
        #[case] nodes: usize,
        #[case] spec: Option<IntOrString>,
        #[case] want: usize,
        #[case] err: bool,
    ) {
        let m = max_unavailable(spec.as_ref(), nodes);
        assert_eq!(m.value, want);
        assert_eq!(m.error.is_some(), err);
        if let Some(e) = m.error {
            assert_eq!(e.category(), "invalid-max-unavailable");
        }
    }

    #[rstest]
    #[case::full(IntOrString::String("100%".into()), Ok(MaxUnavailableSpec::Percent(100)))]
    #[case::over_full(IntOrString::String("101%".into()), Err(MaxUnavailableProblem::PercentOver100))]
    #[case::zero_percent(IntOrString::String("0%".into()), Ok(MaxUnavailableSpec::Percent(0)))]
    #[case::half(IntOrString::String("50%".into()), Ok(MaxUnavailableSpec::Percent(50)))]
    #[case::count_as_string(IntOrString::String("42".into()), Err(MaxUnavailableProblem::NotCountOrPercent))]
    #[case::negative_count(IntOrString::Int(-1), Err(MaxUnavailableProblem::NegativeCount))]
    #[case::zero_count(IntOrString::Int(0), Ok(MaxUnavailableSpec::Count(0)))]
    #[case::count(IntOrString::Int(7), Ok(MaxUnavailableSpec::Count(7)))]
    #[case::word(IntOrString::String("abc".into()), Err(MaxUnavailableProblem::NotCountOrPercent))]
    #[case::negative_percent(IntOrString::String("-10%".into()), Err(MaxUnavailableProblem::NotCountOrPercent))]
    #[case::plus_sign(IntOrString::String("+5%".into()), Err(MaxUnavailableProblem::NotCountOrPercent))]
    #[case::bare_percent_sign(IntOrString::String("%".into()), Err(MaxUnavailableProblem::NotCountOrPercent))]
    #[case::spaces(IntOrString::String(" 5%".into()), Err(MaxUnavailableProblem::NotCountOrPercent))]
    #[case::huge_percent(IntOrString::String("99999999999999999999%".into()), Err(MaxUnavailableProblem::PercentOver100))]
    fn max_unavailable_grammar(
        #[case] value: IntOrString,
        #[case] want: Result<MaxUnavailableSpec, MaxUnavailableProblem>,
    ) {
        let got = parse_max_unavailable(&value).map_err(|e| match e {
            Error::ParseMaxUnavailable { problem, .. } => problem,
            other => panic!("unexpected error {other}"),
        });
        assert_eq!(got, want);
    }

    #[test]
    fn the_written_default_parses_to_the_typed_default() {
        let written = IntOrString::String(DEFAULT_MAX_UNAVAILABLE.to_owned());
        assert_eq!(
            parse_max_unavailable(&written),
            Ok(MaxUnavailableSpec::DEFAULT)
        );
    }

    #[test]
    fn a_refused_value_names_itself_and_the_problem() {
        let err = parse_max_unavailable(&IntOrString::Int(-1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid maxUnavailable \"-1\": a count must not be negative"
        );
        assert_eq!(err.category(), "invalid-max-unavailable");
    }

    fn states(v: &[(&str, SlotState)]) -> BTreeMap<String, SlotState> {
        v.iter().map(|(n, s)| (n.to_string(), *s)).collect()
    }

    use SlotState::*;

    #[test]
    fn failures_use_slots_then_abort() {
        let s = states(&[("n1", FailedFinal), ("n2", FailedFinal), ("n3", Idle)]);
        assert!(should_abort(&s, 2));
        assert!(!should_abort(&s, 3));
        assert_eq!(failed_final(&s), 2);
    }

    #[test]
    fn slot_states_cover_matching_nodes_only() {
        use crate::conditions::EnactmentTransition as T;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        use k8s_openapi::jiff::Timestamp;
        use knmstate_api::v1beta1::NodeNetworkConfigurationEnactment;
        let now = Time(Timestamp::from_second(0).unwrap());
        let nnce = |name: &str, tr: T| {
            let mut conditions = crate::conditions::initial_enactment_conditions(&now);
            tr.apply(&mut conditions, &now);
            let mut e = NodeNetworkConfigurationEnactment::new(name, Default::default());
            e.status = Some(NodeNetworkConfigurationEnactmentStatus {
                policy_generation: Some(1),
                conditions,
                ..Default::default()
            });
            e
        };
        let es = [nnce("n1.p", T::Progressing), nnce("gone.p", T::Progressing)];
        let nodes: BTreeSet<String> = ["n1".to_string(), "n2".to_string()].into();
        assert_eq!(
            slot_states(&es, 1, &nodes),
            states(&[("n1", Progressing), ("n2", Idle)])
        );
    }

    #[test]
    fn slot_state_from_conditions() {
        use crate::conditions::EnactmentTransition as T;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        use k8s_openapi::jiff::Timestamp;
        let now = Time(Timestamp::from_second(0).unwrap());
        let of = |tr: Option<T>, g: i64| {
            let mut conditions = crate::conditions::initial_enactment_conditions(&now);
            if let Some(tr) = tr {
                tr.apply(&mut conditions, &now);
            }
            let s = NodeNetworkConfigurationEnactmentStatus {
                policy_generation: Some(g),
                conditions,
                ..Default::default()
            };
            SlotState::of(Some(&s), 1)
        };
        assert_eq!(of(None, 1), Idle);
        assert_eq!(of(Some(T::Progressing), 1), Progressing);
        assert_eq!(of(Some(T::Progressing), 2), Idle);
        assert_eq!(
            of(
                Some(T::Retrying {
                    message: "m".into()
                }),
                1
            ),
            Progressing
        );
        assert_eq!(
            of(
                Some(T::FailedToConfigure {
                    message: "m".into()
                }),
                1
            ),
            FailedFinal
        );
        assert_eq!(of(Some(T::Success), 1), Available);
        assert_eq!(of(Some(T::Pending), 1), Pending);
        assert_eq!(
            of(
                Some(T::Aborted {
                    message: "m".into()
                }),
                1
            ),
            Aborted
        );
        assert_eq!(SlotState::of(None, 1), Idle);
    }
}
