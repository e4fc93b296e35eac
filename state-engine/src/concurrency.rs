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
//! ## Slots without ghosts
//!
//! Upstream keeps a counter per generation in the policy status; a crash or a failed status
//! write between increment and decrement leaves a "ghost" slot and can deadlock a rollout
//! (upstream #1571, #1427). Here a slot is held by a node only while **its enactment of the
//! current generation says so**: `Progressing=True` (applying, or retrying between attempts).
//! A finally failed enactment (`Failing=True`, not progressing) keeps using a slot, as upstream,
//! so at most `maxUnavailable` nodes ever end Failing and the rest are Aborted.
//!
//! ## Two handlers racing for the last slot
//!
//! Enactments are per node, so two handlers that each read "one slot left" could both start.
//! The race is resolved by an **optimistic write on one shared object per policy**, a
//! [`SlotLedger`] (the handler stores it as JSON, e.g. in an annotation of a per-policy
//! `Lease`, and writes it with `resourceVersion` preconditions). The ledger is never trusted on
//! its own: every decision prunes it against the enactments, so a stale entry disappears on
//! the next claim. The protocol, per node:
//!
//! 1. read the ledger (remember its `resourceVersion`), **then** list the policy's enactments
//!    from the API server (not from a cache older than the ledger read);
//! 2. call [`decide_slot`]:
//!    * [`SlotDecision::Resume`]: this node already holds a slot (restart mid-apply, or a
//!      retry): apply;
//!    * [`SlotDecision::Wait`]: write `Pending`, requeue; [`SlotDecision::Abort`]: write
//!      `Aborted`, stop;
//!    * [`SlotDecision::Claim`]: write the returned ledger with the remembered
//!      `resourceVersion`; on a conflict start again at 1; on success write `Progressing` and
//!      apply. Nothing says `Progressing` before its slot is won, so observers never see more
//!      than `maxUnavailable` nodes progressing.
//!
//! Before step 2 the caller counts every ledger entry of the current generation whose
//! enactment still says `Idle` or `Pending` as a holder ([`count_ledger_claims`]):
//! that is a claim won but not yet announced. Why this never exceeds the limit: a node applies
//! only after its ledger write succeeded, so it is in the ledger while it applies, and a later
//! writer removes an entry only when the enactments it listed *after* reading that entry show
//! the node finished (Available, finally failed, Aborted), on another generation, or no longer
//! matching — never merely "not yet progressing". Every successful write leaves at most
//! `maxUnavailable` entries (counting final failures), and writes are serialised by the
//! `resourceVersion` precondition. Why nothing leaks: finished entries are pruned by the next
//! claim, and a node that crashed while holding a slot (announced or not) resumes it on
//! restart. The property tests in `tests/concurrency.rs` run a simulator of the slot protocol
//! under arbitrary interleavings and crashes.
//!
//! Known limits, as upstream: a new policy generation starts with an empty ledger while
//! nodes may still be applying the previous one, and a node that stays NotReady with its
//! enactment `Progressing` keeps its slot until it comes back (or is removed from the
//! matching set). The controller may publish `live_holders(..).len()` under the policy's
//! `unavailableNodeCountMap[<generation>]` for compatibility; nothing reads it back.
//!
//! ```
//! use knmstate_state_engine::concurrency::{decide_slot, SlotDecision, SlotState};
//! use std::collections::BTreeMap;
//!
//! let states = BTreeMap::from([
//!     ("n1".to_string(), SlotState::Progressing),
//!     ("n2".to_string(), SlotState::Idle),
//! ]);
//! // n1 holds the only slot in the ledger, so n2 waits.
//! let mut ledger = knmstate_state_engine::concurrency::SlotLedger::new(1);
//! ledger.holders.insert("n1".into());
//! assert_eq!(decide_slot("n2", 1, Some(&ledger), &states, 1), SlotDecision::Wait);
//! // Once n1 finished, n2 may claim it (and the write drops n1).
//! let states = BTreeMap::from([
//!     ("n1".to_string(), SlotState::Available),
//!     ("n2".to_string(), SlotState::Idle),
//! ]);
//! let SlotDecision::Claim(next) = decide_slot("n2", 1, Some(&ledger), &states, 1) else { panic!() };
//! assert_eq!(next.holders.iter().collect::<Vec<_>>(), ["n2"]);
//! ```

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
    /// Read an enactment status; anything not of `generation` is [`SlotState::Idle`].
    pub fn of(status: Option<&NodeNetworkConfigurationEnactmentStatus>, generation: i64) -> Self {
        let Some(s) = status.filter(|s| s.policy_generation == Some(generation)) else {
            return Self::Idle;
        };
        let l = &s.conditions;
        let t = |ty: &str| l.is(ty, ConditionStatus::True);
        if t(e::PROGRESSING) {
            Self::Progressing
        } else if t(e::AVAILABLE) {
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

/// The shared, optimistically written record of who holds a slot for one policy generation.
/// It is advisory: [`decide_slot`] prunes it against the enactments on every claim.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotLedger {
    /// The policy generation the holders apply.
    pub generation: i64,
    /// Nodes that claimed a slot.
    pub holders: BTreeSet<String>,
}

impl SlotLedger {
    /// An empty ledger for `generation`.
    pub fn new(generation: i64) -> Self {
        Self {
            generation,
            holders: BTreeSet::new(),
        }
    }
}

/// The ledger entries that still hold a slot: of this generation, of a matching node (a key
/// of `states`), whose enactment is [`SlotState::Progressing`].
pub fn live_holders<'a>(
    generation: i64,
    ledger: Option<&'a SlotLedger>,
    states: &BTreeMap<String, SlotState>,
) -> BTreeSet<&'a str> {
    ledger
        .filter(|l| l.generation == generation)
        .into_iter()
        .flat_map(|l| l.holders.iter())
        .filter(|n| states.get(n.as_str()) == Some(&SlotState::Progressing))
        .map(String::as_str)
        .collect()
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

/// Count a ledger entry as a holder until its enactment reaches an end: an entry of
/// `generation` whose node's state is [`SlotState::Idle`] or [`SlotState::Pending`] becomes
/// [`SlotState::Progressing`] in `states`.
///
/// A node writes `Progressing` only after its ledger write won the slot, so between the two its
/// enactment still says `Idle` or `Pending`; without this another handler would prune the
/// fresh entry and take the slot too. An entry is still dropped once its enactment says
/// Available, failed or Aborted, or its node no longer matches (no key in `states`), so no
/// slot leaks; a node that crashed between the two writes resumes its slot on restart.
///
/// ```
/// use knmstate_state_engine::concurrency::{count_ledger_claims, SlotLedger, SlotState};
/// use std::collections::BTreeMap;
/// let mut ledger = SlotLedger::new(1);
/// ledger.holders.insert("n1".into());
/// let mut states = BTreeMap::from([("n1".to_string(), SlotState::Pending)]);
/// count_ledger_claims(&mut states, 1, Some(&ledger));
/// assert_eq!(states["n1"], SlotState::Progressing);
/// ```
pub fn count_ledger_claims(
    states: &mut BTreeMap<String, SlotState>,
    generation: i64,
    ledger: Option<&SlotLedger>,
) {
    let Some(ledger) = ledger.filter(|l| l.generation == generation) else {
        return;
    };
    for holder in &ledger.holders {
        if let Some(s) = states.get_mut(holder)
            && matches!(s, SlotState::Idle | SlotState::Pending)
        {
            *s = SlotState::Progressing;
        }
    }
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

/// What a node should do about its slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotDecision {
    /// It already holds a slot (in the ledger, enactment progressing): apply, write nothing.
    Resume,
    /// A slot is free: write `Progressing`, then this ledger with the `resourceVersion` read;
    /// apply only if that write succeeds.
    Claim(SlotLedger),
    /// No slot free: write `Pending` and try again later.
    Wait,
    /// Enough nodes failed: write `Aborted` and stop.
    Abort,
}

/// Decide for `node` from the ledger as read and the slot states of the policy's matching
/// nodes (enactments listed after the ledger was read), with `max_unavailable` from
/// [`max_unavailable`].
pub fn decide_slot(
    node: &str,
    generation: i64,
    ledger: Option<&SlotLedger>,
    states: &BTreeMap<String, SlotState>,
    max_unavailable: usize,
) -> SlotDecision {
    let holders = live_holders(generation, ledger, states);
    if holders.contains(node) {
        return SlotDecision::Resume;
    }
    let used = holders.len() + failed_final(states);
    if used < max_unavailable {
        let mut next = SlotLedger::new(generation);
        next.holders = holders.into_iter().map(str::to_owned).collect();
        next.holders.insert(node.to_owned());
        SlotDecision::Claim(next)
    } else if should_abort(states, max_unavailable) {
        SlotDecision::Abort
    } else {
        SlotDecision::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

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

    fn ledger(gen_: i64, holders: &[&str]) -> SlotLedger {
        SlotLedger {
            generation: gen_,
            holders: holders
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
        }
    }

    use SlotState::*;

    #[test]
    fn a_fresh_claim_counts_before_its_enactment_says_progressing() {
        let mut ledger = SlotLedger::new(2);
        ledger
            .holders
            .extend(["n1".to_owned(), "n3".to_owned(), "gone".to_owned()]);
        let mut states = BTreeMap::from([
            ("n1".to_owned(), SlotState::Idle),
            ("n2".to_owned(), SlotState::Idle),
            ("n3".to_owned(), SlotState::Available),
        ]);
        count_ledger_claims(&mut states, 2, Some(&ledger));
        assert_eq!(states["n1"], SlotState::Progressing);
        assert_eq!(states["n2"], SlotState::Idle);
        assert_eq!(
            states["n3"],
            SlotState::Available,
            "a finished entry is pruned"
        );
        assert!(!states.contains_key("gone"));
        assert_eq!(
            decide_slot("n2", 2, Some(&ledger), &states, 1),
            SlotDecision::Wait
        );
        // Another generation's ledger says nothing.
        let mut other = BTreeMap::from([("n1".to_owned(), SlotState::Pending)]);
        count_ledger_claims(&mut other, 3, Some(&ledger));
        assert_eq!(other["n1"], SlotState::Pending);
    }

    #[test]
    fn ghost_entries_are_pruned() {
        // n1 crashed after finishing, never removed itself; n9 no longer matches.
        let s = states(&[("n1", Available), ("n2", Idle)]);
        let d = decide_slot("n2", 3, Some(&ledger(3, &["n1", "n9"])), &s, 1);
        assert_eq!(d, SlotDecision::Claim(ledger(3, &["n2"])));
    }

    #[test]
    fn ledger_of_another_generation_is_ignored() {
        let s = states(&[("n1", Progressing), ("n2", Idle)]);
        let d = decide_slot("n2", 4, Some(&ledger(3, &["n1"])), &s, 1);
        assert_eq!(d, SlotDecision::Claim(ledger(4, &["n2"])));
    }

    #[test]
    fn progressing_without_ledger_entry_does_not_hold_a_slot() {
        // n1 wrote its intent and crashed before the ledger write.
        let s = states(&[("n1", Progressing), ("n2", Idle)]);
        assert!(matches!(
            decide_slot("n2", 1, None, &s, 1),
            SlotDecision::Claim(_)
        ));
    }

    #[test]
    fn holder_resumes_after_restart() {
        let s = states(&[("n1", Progressing)]);
        assert_eq!(
            decide_slot("n1", 1, Some(&ledger(1, &["n1"])), &s, 1),
            SlotDecision::Resume
        );
    }

    #[test]
    fn failures_use_slots_then_abort() {
        let s = states(&[("n1", FailedFinal), ("n2", Progressing), ("n3", Idle)]);
        let l = ledger(1, &["n2"]);
        assert_eq!(decide_slot("n3", 1, Some(&l), &s, 2), SlotDecision::Wait);
        assert!(matches!(
            decide_slot("n3", 1, Some(&l), &s, 3),
            SlotDecision::Claim(_)
        ));
        let s = states(&[("n1", FailedFinal), ("n2", FailedFinal), ("n3", Idle)]);
        assert_eq!(decide_slot("n3", 1, Some(&l), &s, 2), SlotDecision::Abort);
        assert!(should_abort(&s, 2));
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
