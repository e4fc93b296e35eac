//! The maxUnavailable slot protocol: claim, renew (heartbeat), release, prune of holders whose
//! lease expired, and the abort rule, as pure functions over the ledger, the enactments' slot
//! states and `now`. The handler calls them (its Lease I/O is `handler/src/slots.rs`) and the
//! property test `tests/concurrency.rs` drives the same functions under crashes, restarts and
//! permanent deaths.
//!
//! ## The ledger and its leases
//!
//! A slot is won only by an optimistic write (a `resourceVersion` precondition) of one shared
//! [`SlotLedger`] per policy, and counts only while the holder's enactment of the current
//! generation has not reached an end. Every holder entry carries a [`SlotLease`]: when it was
//! last renewed and until when it holds. A holder renews its lease when it claims or resumes
//! its slot and, while it applies, every [`SlotTiming::renew_every`] (its heartbeat); the lease
//! runs for [`SlotTiming::hold_for`]: the checkpoint timeout of its apply plus a margin.
//!
//! ## Ghost holders (upstream #1571)
//!
//! A holder whose handler never comes back (evicted, the node NotReady and cut off, the
//! process dead for good) stops renewing. Once `now` is past its lease, the **next claimant**
//! prunes it: [`decide`] moves it from `holders` to `expired` (a tombstone) and reports it in
//! [`SlotPlan::expired`]; the claimant writes the ledger (the version precondition makes it the
//! only pruner) and then marks the ghost's enactment `Aborted` with [`expired_message`].
//! Aborted, not Failing: the node's outcome is unknown, not a failed configuration, and a
//! Failing ghost would keep using a slot (the abort rule counts final failures), so one dead
//! node would abort the whole rollout with `maxUnavailable: 1`. Why the claimant and not the
//! controller: the claimant is the one the ghost blocks, it writes the ledger anyway, and a
//! rollout then completes without a leader-elected controller.
//!
//! Why the lease covers the checkpoint timeout: a handler killed mid-apply leaves the node in
//! the new, unprobed state until NetworkManager's checkpoint timeout rolls it back, so the node
//! stays unavailable until then; only after that may another node take its slot. The margin
//! covers the retry backoff between two attempts (no heartbeat runs then) and the clock skew
//! between the holder, which writes the expiry with its clock, and the pruner, which reads it
//! with its own (and the admission check of the prune, [`crate::ledger_guard`], with its own).
//! A node that is deleted or no longer matches the policy stops counting at once.
//!
//! **Only a node's own entry changes, except for that prune.** A holder releases its own slot
//! when its apply ends; another node's ended (or no longer matching) holder entry stays in the
//! ledger and simply stops counting ([`live_holders`]), and a tombstone stays until the ledger
//! moves to a new generation. So the admission webhook can refuse every other change a node
//! makes to another node's entry ([`crate::ledger_guard`]). While the ghost's enactment has not
//! ended, every decision reports its tombstone to mark, so a claimant that dies between its
//! ledger write and the Aborted write leaves the marking to the next one. A ghost that comes
//! back never claims again for the generation: it finds its enactment Aborted, or its tombstone
//! ([`SlotAction::Expired`]: it marks itself). So a pruner's late Aborted write never hits a
//! node that applies. A new generation applies everywhere again.
//!
//! ## Crashes and restarts
//!
//! Each handler process has an *incarnation* (an id it chooses at start-up), written into its
//! lease. A node that resumes a slot whose lease names another incarnation died while holding
//! it and restarted: [`SlotPlan::restarted`] says so, and the handler emits an event.
//!
//! ## Compatibility
//!
//! `holders` stays a list of node names, and the leases are a separate map with a default, so
//! a ledger written by an older handler still reads (its holders get a lease starting at the
//! first decision that sees them) and an older handler still reads a new ledger.
//!
//! ```
//! use knmstate_state_engine::concurrency::SlotState;
//! use knmstate_state_engine::slot::{decide, SlotAction, SlotInput};
//! use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
//! use k8s_openapi::jiff::Timestamp;
//! use std::collections::BTreeMap;
//! use std::time::Duration;
//!
//! let t = |s| Time(Timestamp::from_second(s).unwrap());
//! let states = BTreeMap::from([("n1".to_string(), SlotState::Idle), ("n2".to_string(), SlotState::Idle)]);
//! let input = |node, ledger, now| SlotInput {
//!     node, incarnation: "a", generation: 1, ledger, states: &states, max_unavailable: 1,
//!     now, hold_for: Duration::from_mins(1),
//! };
//! // n1 claims the only slot; n2 waits while n1's lease holds, and prunes n1 once it expired.
//! let claim = decide(&input("n1", None, t(0)));
//! assert_eq!(claim.action, SlotAction::Apply);
//! let ledger = claim.ledger.unwrap();
//! let states = BTreeMap::from([("n1".to_string(), SlotState::Progressing), ("n2".to_string(), SlotState::Idle)]);
//! let at = |now| decide(&SlotInput { node: "n2", incarnation: "b", generation: 1, ledger: Some(&ledger),
//!     states: &states, max_unavailable: 1, now, hold_for: Duration::from_mins(1) });
//! assert_eq!(at(t(30)).action, SlotAction::Wait);
//! let late = at(t(61));
//! assert_eq!(late.action, SlotAction::Apply);
//! assert_eq!(late.expired[0].node, "n1");
//! ```

use crate::concurrency::{SlotState, failed_final, should_abort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The least margin past the checkpoint timeout, for clock skew and API latency.
pub const MIN_GRACE: Duration = Duration::from_secs(5);

/// The shared, optimistically written record of who holds a slot for one policy generation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotLedger {
    /// The policy generation the holders apply.
    pub generation: i64,
    /// Nodes that hold a slot.
    pub holders: BTreeSet<String>,
    /// The lease of each holder (a holder without one gets a lease from the next decision).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub leases: BTreeMap<String, SlotLease>,
    /// Pruned holders whose enactment is still to be marked Aborted, with their last lease.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub expired: BTreeMap<String, SlotLease>,
}

impl SlotLedger {
    /// An empty ledger for `generation`.
    pub fn new(generation: i64) -> Self {
        Self {
            generation,
            ..Self::default()
        }
    }
}

/// A holder's lease on its slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotLease {
    /// When the holder last renewed it.
    pub renewed: Time,
    /// Until when it holds without a renewal.
    pub expires: Time,
    /// The handler process that renewed it.
    #[serde(default)]
    pub incarnation: String,
    /// The claim this lease belongs to, chosen by the holder when it won or resumed the slot
    /// and kept by its renewals; its apply reports it in `status.lastApply.slotClaim`, so an
    /// enactment that ended under this claim shows that the entry no longer counts (empty in
    /// an older handler's lease).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub claim: String,
}

impl SlotLease {
    /// A lease renewed at `now` for `hold_for` by `incarnation`.
    pub fn new(now: &Time, hold_for: Duration, incarnation: &str) -> Self {
        Self {
            renewed: now.clone(),
            expires: Time(later(now.0, hold_for)),
            incarnation: incarnation.to_owned(),
            claim: String::new(),
        }
    }

    /// Whether it ran out before `now`.
    pub fn expired_at(&self, now: &Time) -> bool {
        now.0 > self.expires.0
    }
}

/// `t + d`, saturating at the end of time.
fn later(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// How long a lease holds and how often a holder renews it while it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotTiming {
    /// The lease length: the checkpoint timeout plus [`SlotTiming::margin`].
    pub hold_for: Duration,
    /// The heartbeat interval while applying: half the margin.
    pub renew_every: Duration,
}

impl SlotTiming {
    /// The timing for an apply with `checkpoint_timeout` (the plan's, raised to cover its
    /// probes) and the retry schedule's `max_backoff` (the longest time between two attempts,
    /// when no heartbeat runs).
    ///
    /// ```
    /// use knmstate_state_engine::slot::SlotTiming;
    /// use std::time::Duration;
    /// let t = SlotTiming::new(Duration::from_secs(480), Duration::from_secs(30));
    /// assert_eq!(t.hold_for, Duration::from_secs(480 + 30 + 120));
    /// assert_eq!(t.renew_every, Duration::from_mins(1));
    /// ```
    pub fn new(checkpoint_timeout: Duration, max_backoff: Duration) -> Self {
        Self {
            hold_for: checkpoint_timeout
                .saturating_add(max_backoff)
                .saturating_add(Self::margin(checkpoint_timeout)),
            renew_every: Self::margin(checkpoint_timeout) / 2,
        }
    }

    /// The skew and latency margin: a quarter of the checkpoint timeout, at least
    /// [`MIN_GRACE`].
    pub fn margin(checkpoint_timeout: Duration) -> Duration {
        (checkpoint_timeout / 4).max(MIN_GRACE)
    }
}

/// What a node knows when it decides about its slot.
#[derive(Debug, Clone)]
pub struct SlotInput<'a> {
    /// This node.
    pub node: &'a str,
    /// This handler process's incarnation.
    pub incarnation: &'a str,
    /// The policy generation to apply.
    pub generation: i64,
    /// The ledger as read (remember its version for the write).
    pub ledger: Option<&'a SlotLedger>,
    /// The slot state of every matching node, from enactments listed after the ledger read.
    pub states: &'a BTreeMap<String, SlotState>,
    /// From [`crate::concurrency::max_unavailable`].
    pub max_unavailable: usize,
    /// The decider's clock.
    pub now: Time,
    /// This node's lease length, [`SlotTiming::hold_for`].
    pub hold_for: Duration,
}

/// What the node does after the ledger write (if any) succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotAction {
    /// It holds a slot: apply.
    Apply,
    /// No slot free: write `Pending`, look again later.
    Wait,
    /// Enough nodes failed: write `Aborted`, stop.
    Abort,
    /// This node's own slot expired and was pruned while it was away (it is among
    /// [`SlotPlan::expired`]): mark its enactment Aborted like any ghost's, and stop. It never
    /// claims again for the generation, so a pruner's late Aborted write can not hit a node
    /// that applies.
    Expired,
}

/// A holder pruned because its lease ran out; its enactment is to be marked Aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredHolder {
    /// The node.
    pub node: String,
    /// Its last lease.
    pub lease: SlotLease,
}

/// The decision: the ledger to write first, then what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotPlan {
    /// Write this ledger against the version read; on a conflict read and decide again. `None`:
    /// nothing to write.
    pub ledger: Option<SlotLedger>,
    /// What to do once the write (if any) succeeded.
    pub action: SlotAction,
    /// Ghost holders to mark Aborted (with [`expired_message`]) once the write succeeded.
    pub expired: Vec<ExpiredHolder>,
    /// This node resumes a slot that another incarnation of its handler held: it died while
    /// holding the slot and restarted.
    pub restarted: bool,
}

/// The ledger of `input.generation` as read, pruned: this node's own entry dropped when its
/// enactment ended, holders of other nodes (not ended, still matching) whose lease ran out moved
/// to the tombstones, and this node's lease given when it had none. Other nodes' ended or no
/// longer matching holders and their tombstones stay as they are (they no longer count, see
/// [`live_holders`]): a node may change another node's entry only by pruning an expired holder
/// ([`crate::ledger_guard`]). Returns the prior and pruned ledgers, the ghosts to mark (the
/// tombstones whose enactment has not ended) and whether `input.node` resumes another
/// incarnation's slot.
fn prune(input: &SlotInput<'_>) -> (SlotLedger, SlotLedger, Vec<ExpiredHolder>, bool) {
    let SlotInput {
        node,
        incarnation,
        generation,
        ledger,
        states,
        ref now,
        hold_for,
        ..
    } = *input;
    let prior = ledger
        .filter(|l| l.generation == generation)
        .cloned()
        .unwrap_or_else(|| SlotLedger::new(generation));
    let mut next = prior.clone();
    let mut restarted = false;
    let not_ended = |n: &String| states.get(n).is_some_and(|s| !s.is_final());
    for holder in &prior.holders {
        let lease = prior.leases.get(holder);
        if holder == node {
            if !not_ended(holder) {
                next.holders.remove(holder);
                next.leases.remove(holder);
                continue;
            }
            restarted =
                lease.is_some_and(|l| !l.incarnation.is_empty() && l.incarnation != incarnation);
            if lease.is_none() {
                next.leases
                    .insert(holder.clone(), SlotLease::new(now, hold_for, ""));
            }
        } else if lease.is_none() {
            next.leases
                .insert(holder.clone(), SlotLease::new(now, hold_for, ""));
        } else if let Some(lease) = lease.filter(|l| not_ended(holder) && l.expired_at(now)) {
            next.holders.remove(holder);
            next.expired.insert(holder.clone(), lease.clone());
            next.leases.remove(holder);
        }
    }
    let expired = next
        .expired
        .iter()
        .filter(|(ghost, _)| not_ended(ghost) && !next.holders.contains(*ghost))
        .map(|(node, lease)| ExpiredHolder {
            node: node.clone(),
            lease: lease.clone(),
        })
        .collect();
    (prior, next, expired, restarted)
}

/// The holders of `ledger` that use a slot: their enactment of the generation has not ended
/// and they still match (a holder of another node without a lease, written by an older
/// handler, counts too).
pub fn live_holders<'a>(
    ledger: &'a SlotLedger,
    states: &'a BTreeMap<String, SlotState>,
) -> impl Iterator<Item = &'a String> + 'a {
    ledger
        .holders
        .iter()
        .filter(|h| states.get(*h).is_some_and(|s| !s.is_final()))
}

/// Decide about `input.node`'s slot: resume (renewing the lease), claim, wait or abort, pruning
/// holders that ended, no longer match, or whose lease expired.
pub fn decide(input: &SlotInput<'_>) -> SlotPlan {
    let node = input.node;
    let (prior, mut next, expired, restarted) = prune(input);
    let mine = SlotLease::new(&input.now, input.hold_for, input.incarnation);
    let action = if next.expired.contains_key(node) {
        SlotAction::Expired
    } else if next.holders.contains(node) {
        next.leases.insert(node.to_owned(), mine);
        SlotAction::Apply
    } else if live_holders(&next, input.states).count() + failed_final(input.states)
        < input.max_unavailable
    {
        next.holders.insert(node.to_owned());
        next.leases.insert(node.to_owned(), mine);
        SlotAction::Apply
    } else if should_abort(input.states, input.max_unavailable) {
        SlotAction::Abort
    } else {
        SlotAction::Wait
    };
    // Apply always writes (a claim, or a renewal that also confirms the slot against the
    // version read); Wait and Abort write only a pruned ledger.
    let write = action == SlotAction::Apply || next != prior;
    SlotPlan {
        ledger: write.then_some(next),
        action,
        expired,
        restarted,
    }
}

/// What a node that is done with the policy (its enactment at an end) does about the others'
/// slots: the pruned ledger to write (`None`: nothing to prune), the ghosts to mark Aborted
/// after the write, and when to look again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sweep {
    /// Write this ledger against the version read (`None`: nothing to write).
    pub ledger: Option<SlotLedger>,
    /// Ghost holders to mark Aborted once the write (if any) succeeded.
    pub expired: Vec<ExpiredHolder>,
    /// Look again after this long: a holder's lease runs out then, or, while some enactment
    /// has not ended, a claim not yet made could expire at the latest then. `None`: the
    /// rollout ended, nothing to watch.
    pub look_again: Option<Duration>,
}

/// The sweep of a node that is done with the policy, so that a ghost is pruned even when no
/// node is left waiting for its slot (the policy would stay Progressing, refusing spec edits).
///
/// ```
/// use knmstate_state_engine::concurrency::SlotState;
/// use knmstate_state_engine::slot::{sweep, SlotInput, SlotLedger, SlotLease};
/// use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
/// use k8s_openapi::jiff::Timestamp;
/// use std::collections::BTreeMap;
/// use std::time::Duration;
/// let t = |s| Time(Timestamp::from_second(s).unwrap());
/// let mut l = SlotLedger::new(1);
/// l.holders.insert("n2".into());
/// l.leases.insert("n2".into(), SlotLease::new(&t(0), Duration::from_mins(1), "a"));
/// let states = BTreeMap::from([("n1".to_string(), SlotState::Available), ("n2".to_string(), SlotState::Progressing)]);
/// let at = |now| sweep(&SlotInput { node: "n1", incarnation: "b", generation: 1, ledger: Some(&l),
///     states: &states, max_unavailable: 1, now, hold_for: Duration::from_mins(1) });
/// assert_eq!(at(t(20)).look_again, Some(Duration::from_secs(41)));
/// assert_eq!(at(t(61)).expired[0].node, "n2");
/// ```
pub fn sweep(input: &SlotInput<'_>) -> Sweep {
    let (prior, next, expired, _) = prune(input);
    let soonest = live_holders(&next, input.states)
        .filter_map(|h| next.leases.get(h))
        .map(|l| l.expires.0)
        .min()
        .map(|t| {
            Duration::try_from(input.now.0.duration_until(t))
                .unwrap_or_default()
                .saturating_add(Duration::from_secs(1))
        });
    let unfinished = input.states.values().any(|s| !s.is_final());
    Sweep {
        look_again: soonest.or(unfinished.then_some(input.hold_for)),
        ledger: (next != prior).then_some(next),
        expired,
    }
}

/// The heartbeat: `ledger` with `node`'s lease renewed at `now` for as long as it held before
/// (its holder chose the length when it claimed); `None` when `node` holds no slot in it.
///
/// ```
/// use knmstate_state_engine::slot::{renew, SlotLedger, SlotLease};
/// use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
/// use k8s_openapi::jiff::Timestamp;
/// use std::time::Duration;
/// let t = |s| Time(Timestamp::from_second(s).unwrap());
/// let mut l = SlotLedger::new(1);
/// l.holders.insert("n1".into());
/// l.leases.insert("n1".into(), SlotLease::new(&t(0), Duration::from_mins(1), "a"));
/// let renewed = renew(&l, "n1", "a", &t(50)).unwrap();
/// assert_eq!(renewed.leases["n1"].expires, t(110));
/// assert!(renew(&l, "n2", "b", &t(50)).is_none());
/// ```
pub fn renew(ledger: &SlotLedger, node: &str, incarnation: &str, now: &Time) -> Option<SlotLedger> {
    if !ledger.holders.contains(node) {
        return None;
    }
    let length = ledger
        .leases
        .get(node)
        .and_then(|l| l.renewed.0.duration_until(l.expires.0).try_into().ok())
        .unwrap_or(MIN_GRACE);
    let claim = ledger
        .leases
        .get(node)
        .map(|l| l.claim.clone())
        .unwrap_or_default();
    let mut next = ledger.clone();
    next.leases.insert(
        node.to_owned(),
        SlotLease {
            claim,
            ..SlotLease::new(now, length, incarnation)
        },
    );
    Some(next)
}

/// `ledger` without `node`'s slot (its apply ended); `None` when it holds none.
///
/// ```
/// use knmstate_state_engine::slot::{release, SlotLedger};
/// let mut l = SlotLedger::new(1);
/// l.holders.insert("n1".into());
/// assert!(release(&l, "n1").unwrap().holders.is_empty());
/// assert!(release(&l, "n2").is_none());
/// ```
pub fn release(ledger: &SlotLedger, node: &str) -> Option<SlotLedger> {
    if !ledger.holders.contains(node) {
        return None;
    }
    let mut next = ledger.clone();
    next.holders.remove(node);
    next.leases.remove(node);
    Some(next)
}

/// A holder that asks whether it still holds its slot: the fence it passes right before it
/// applies and again right before it commits (or reports the attempt's failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotHolder<'a> {
    /// This node.
    pub node: &'a str,
    /// This handler process's incarnation.
    pub incarnation: &'a str,
    /// The policy generation it applies.
    pub generation: i64,
}

/// Why a holder no longer holds its slot (see [`fence`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotLoss {
    /// No ledger, or one of another generation: the policy changed (or the Lease was deleted)
    /// while this holder was away, and the holders of the new ledger do not count it.
    OtherGeneration(Option<i64>),
    /// Another node pruned it: its entry is a tombstone, with this last lease.
    Pruned(SlotLease),
    /// The ledger no longer names it (pruned, and the tombstone already cleared).
    Absent,
    /// Another process of this node's handler holds the slot (this one was replaced while it
    /// was away): the lease names that incarnation.
    OtherIncarnation(String),
    /// Its lease ran out at `expires` and nobody pruned it yet: any claimant may do so at once.
    Expired(SlotLease),
}

impl std::fmt::Display for SlotLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OtherGeneration(None) => write!(f, "the slot ledger is gone"),
            Self::OtherGeneration(Some(g)) => {
                write!(f, "the slot ledger is now of policy generation {g}")
            }
            Self::Pruned(lease) => write!(
                f,
                "its lease expired at {} and another node pruned it",
                lease.expires.0
            ),
            Self::Absent => write!(f, "the slot ledger no longer names this node"),
            Self::OtherIncarnation(other) => write!(
                f,
                "another process of this node's handler ({other}) holds it"
            ),
            Self::Expired(lease) => write!(f, "its lease expired at {}", lease.expires.0),
        }
    }
}

/// The fence: whether `holder` (this node, this process) is still a live holder of `ledger`
/// at `now`, by its own clock (the clock that wrote its lease's expiry).
///
/// A holder stalled for longer than its lease (a frozen process, a very long pause: not dead)
/// is pruned by the next claimant like a ghost, its enactment marked Aborted and its slot given
/// to another node. Once it runs again it must not apply or commit: that apply would not be
/// counted, one node beyond maxUnavailable. So it reads the ledger right before the apply and
/// right before the commit and goes on only when the ledger names it a holder of its
/// generation with a lease of its own incarnation that has not run out. An expired lease not
/// yet pruned is lost too: a claimant may prune it at any moment, and the holder can not tell.
/// A lease without an incarnation (written by an older handler, or given by a decision to a
/// holder that had none) names no other process and holds.
///
/// ```
/// use knmstate_state_engine::slot::{fence, SlotHolder, SlotLedger, SlotLease, SlotLoss};
/// use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
/// use k8s_openapi::jiff::Timestamp;
/// use std::time::Duration;
/// let t = |s| Time(Timestamp::from_second(s).unwrap());
/// let mut l = SlotLedger::new(1);
/// l.holders.insert("n1".into());
/// l.leases.insert("n1".into(), SlotLease::new(&t(0), Duration::from_mins(1), "a"));
/// let me = SlotHolder { node: "n1", incarnation: "a", generation: 1 };
/// assert_eq!(fence(Some(&l), &me, &t(30)), Ok(()));
/// assert!(matches!(fence(Some(&l), &me, &t(61)), Err(SlotLoss::Expired(_))));
/// ```
pub fn fence(
    ledger: Option<&SlotLedger>,
    holder: &SlotHolder<'_>,
    now: &Time,
) -> Result<(), SlotLoss> {
    let ledger = match ledger {
        Some(l) if l.generation == holder.generation => l,
        other => return Err(SlotLoss::OtherGeneration(other.map(|l| l.generation))),
    };
    if let Some(lease) = ledger.expired.get(holder.node) {
        return Err(SlotLoss::Pruned(lease.clone()));
    }
    if !ledger.holders.contains(holder.node) {
        return Err(SlotLoss::Absent);
    }
    match ledger.leases.get(holder.node) {
        Some(l) if !l.incarnation.is_empty() && l.incarnation != holder.incarnation => {
            Err(SlotLoss::OtherIncarnation(l.incarnation.clone()))
        }
        Some(l) if l.expired_at(now) => Err(SlotLoss::Expired(l.clone())),
        // No lease: an older handler's entry, which holds until a decision gives it one.
        None | Some(_) => Ok(()),
    }
}

/// Where a holder found its slot lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceStage {
    /// Right before the apply: nothing was applied.
    BeforeApply,
    /// Right before the commit: the applied state was rolled back, never committed.
    BeforeCommit,
    /// After a failed attempt, before reporting it: rolled back, the failure not counted.
    AfterFailure,
}

/// The Aborted message of a holder that found its slot lost at `stage`.
///
/// ```
/// use knmstate_state_engine::slot::{fenced_message, FenceStage, SlotLoss};
/// assert_eq!(
///     fenced_message("n1", "p", &SlotLoss::Absent, FenceStage::BeforeCommit),
///     "reconciliation of enactment \"n1.p\" has aborted: the handler lost its maxUnavailable \
///      slot while it was stalled (the slot ledger no longer names this node); the applied \
///      state was rolled back, never committed"
/// );
/// ```
pub fn fenced_message(node: &str, policy: &str, loss: &SlotLoss, stage: FenceStage) -> String {
    let outcome = match stage {
        FenceStage::BeforeApply => "nothing was applied",
        FenceStage::BeforeCommit => "the applied state was rolled back, never committed",
        FenceStage::AfterFailure => "the failed attempt was rolled back and is not counted",
    };
    format!(
        "{}: the handler lost its maxUnavailable slot while it was stalled ({loss}); {outcome}",
        crate::conditions::aborted_message(node, policy)
    )
}

/// The Aborted message of a ghost holder's enactment.
///
/// ```
/// use knmstate_state_engine::slot::{expired_message, SlotLease};
/// use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
/// use k8s_openapi::jiff::Timestamp;
/// use std::time::Duration;
/// let lease = SlotLease::new(&Time(Timestamp::from_second(0).unwrap()), Duration::from_mins(1), "a");
/// assert_eq!(
///     expired_message("n1", "p", &lease),
///     "reconciliation of enactment \"n1.p\" has aborted: its handler did not renew the \
///      maxUnavailable slot since 1970-01-01T00:00:00Z and the slot expired at \
///      1970-01-01T00:01:00Z (handler gone or node cut off); the slot was freed"
/// );
/// ```
pub fn expired_message(node: &str, policy: &str, lease: &SlotLease) -> String {
    format!(
        "{}: its handler did not renew the maxUnavailable slot since {} and the slot expired at \
         {} (handler gone or node cut off); the slot was freed",
        crate::conditions::aborted_message(node, policy),
        lease.renewed.0,
        lease.expires.0
    )
}

/// The event message when a node resumes a slot its previous handler process held.
pub fn restarted_message(node: &str, policy: &str) -> String {
    format!(
        "the handler of node {node} restarted while holding the maxUnavailable slot of policy \
         {policy} (the previous process died mid-apply; its checkpoint was rolled back at \
         start-up); resuming the slot"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use SlotState::*;

    fn t(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    fn states(v: &[(&str, SlotState)]) -> BTreeMap<String, SlotState> {
        v.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect()
    }

    fn ledger(generation: i64, holders: &[(&str, i64)]) -> SlotLedger {
        let mut l = SlotLedger::new(generation);
        for (n, renewed) in holders {
            l.holders.insert((*n).to_owned());
            l.leases.insert(
                (*n).to_owned(),
                SlotLease::new(&t(*renewed), Duration::from_mins(1), "old"),
            );
        }
        l
    }

    fn run(
        node: &str,
        l: Option<&SlotLedger>,
        s: &BTreeMap<String, SlotState>,
        max: usize,
        now: i64,
    ) -> SlotPlan {
        decide(&SlotInput {
            node,
            incarnation: "new",
            generation: 1,
            ledger: l,
            states: s,
            max_unavailable: max,
            now: t(now),
            hold_for: Duration::from_mins(1),
        })
    }

    #[test]
    fn a_finished_or_gone_holder_frees_its_slot() {
        let s = states(&[("n1", Available), ("n2", Idle)]);
        let p = run("n2", Some(&ledger(1, &[("n1", 0), ("n9", 0)])), &s, 1, 10);
        assert_eq!(p.action, SlotAction::Apply);
        let l = p.ledger.unwrap();
        // n1 and n9 stay (only they may release their entries) but no longer count.
        assert_eq!(l.holders.iter().collect::<Vec<_>>(), ["n1", "n2", "n9"]);
        assert_eq!(live_holders(&l, &s).collect::<Vec<_>>(), ["n2"]);
        assert!(p.expired.is_empty() && l.expired.is_empty());
    }

    #[test]
    fn a_fresh_claim_counts_before_its_enactment_says_progressing() {
        let s = states(&[("n1", Pending), ("n2", Idle)]);
        let p = run("n2", Some(&ledger(1, &[("n1", 0)])), &s, 1, 10);
        assert_eq!((p.action, p.ledger), (SlotAction::Wait, None));
    }

    #[test]
    fn a_ledger_of_another_generation_says_nothing() {
        let s = states(&[("n1", Progressing), ("n2", Idle)]);
        let mut l = ledger(1, &[("n1", 0)]);
        l.generation = 0;
        assert_eq!(run("n2", Some(&l), &s, 1, 10).action, SlotAction::Apply);
    }

    #[test]
    fn progressing_without_a_ledger_entry_holds_no_slot() {
        let s = states(&[("n1", Progressing), ("n2", Idle)]);
        assert_eq!(run("n2", None, &s, 1, 0).action, SlotAction::Apply);
    }

    #[test]
    fn a_holder_resumes_renews_and_learns_it_restarted() {
        let s = states(&[("n1", Progressing)]);
        let p = run("n1", Some(&ledger(1, &[("n1", 0)])), &s, 1, 100);
        assert_eq!(p.action, SlotAction::Apply);
        assert!(p.restarted, "the lease names another incarnation");
        assert!(p.expired.is_empty(), "its own old lease is no ghost");
        let lease = &p.ledger.unwrap().leases["n1"];
        assert_eq!(
            (lease.renewed.clone(), lease.incarnation.as_str()),
            (t(100), "new")
        );
    }

    #[test]
    fn an_expired_holder_is_pruned_and_kept_as_a_tombstone_until_marked() {
        let s = states(&[("n1", Progressing), ("n2", Idle), ("n3", Idle)]);
        let l = ledger(1, &[("n1", 0)]);
        assert_eq!(
            run("n2", Some(&l), &s, 1, 60).action,
            SlotAction::Wait,
            "not yet expired"
        );
        let p = run("n2", Some(&l), &s, 1, 61);
        assert_eq!(p.action, SlotAction::Apply);
        assert_eq!(
            p.expired
                .iter()
                .map(|e| e.node.as_str())
                .collect::<Vec<_>>(),
            ["n1"]
        );
        let written = p.ledger.unwrap();
        assert!(written.expired.contains_key("n1"));
        // The claimant died before marking: the next decision reports the ghost again.
        let s = states(&[("n1", Progressing), ("n2", Progressing), ("n3", Idle)]);
        let again = run("n3", Some(&written), &s, 1, 62);
        assert_eq!(again.action, SlotAction::Wait);
        assert_eq!(again.expired.len(), 1);
        assert!(again.ledger.is_none(), "nothing new to write");
        // Once marked Aborted, the tombstone is no longer reported; it stays (only n1 may
        // change its entry) until the ledger moves to a new generation.
        let s = states(&[("n1", Aborted), ("n2", Progressing), ("n3", Idle)]);
        let done = run("n3", Some(&written), &s, 1, 63);
        assert!(done.expired.is_empty());
        assert!(done.ledger.is_none(), "nothing to write");
    }

    #[test]
    fn a_ghost_that_comes_back_marks_itself_and_never_claims() {
        let mut l = ledger(1, &[]);
        l.expired.insert(
            "n1".into(),
            SlotLease::new(&t(0), Duration::from_mins(1), "old"),
        );
        let s = states(&[("n1", Progressing), ("n2", Available)]);
        let p = run("n1", Some(&l), &s, 1, 100);
        assert_eq!(p.action, SlotAction::Expired);
        assert_eq!(
            p.expired
                .iter()
                .map(|e| e.node.as_str())
                .collect::<Vec<_>>(),
            ["n1"]
        );
        assert!(p.ledger.is_none(), "nothing to write: {:?}", p.ledger);
    }

    #[test]
    fn a_lease_from_an_older_handler_starts_at_the_first_decision() {
        let mut l = ledger(1, &[]);
        l.holders.insert("n1".into());
        let s = states(&[("n1", Progressing), ("n2", Idle)]);
        let p = run("n2", Some(&l), &s, 1, 1_000);
        assert_eq!(p.action, SlotAction::Wait);
        assert_eq!(p.ledger.unwrap().leases["n1"].renewed, t(1_000));
    }

    #[test]
    fn failures_use_slots_then_abort() {
        let l = ledger(1, &[("n2", 0)]);
        let s = states(&[("n1", FailedFinal), ("n2", Progressing), ("n3", Idle)]);
        assert_eq!(run("n3", Some(&l), &s, 2, 1).action, SlotAction::Wait);
        assert_eq!(run("n3", Some(&l), &s, 3, 1).action, SlotAction::Apply);
        let s = states(&[("n1", FailedFinal), ("n2", FailedFinal), ("n3", Idle)]);
        let p = run("n3", Some(&l), &s, 2, 1);
        assert_eq!(p.action, SlotAction::Abort);
        assert!(p.ledger.is_none(), "the ended holder stays, uncounted");
    }

    #[test]
    fn ledger_json_of_an_older_handler_still_reads() {
        let old: SlotLedger = serde_json::from_str(r#"{"generation":2,"holders":["n1"]}"#).unwrap();
        assert_eq!(old.holders.len(), 1);
        assert!(old.leases.is_empty());
        let new = serde_json::to_string(&ledger(1, &[("n1", 0)])).unwrap();
        assert!(new.contains(r#""holders":["n1"]"#), "{new}");
    }

    /// The ledger of the fence cases: n1 holds with a lease of incarnation "me" renewed at 0
    /// for a minute, unless `shape` says otherwise.
    fn fence_ledger(shape: &str) -> Option<SlotLedger> {
        let mut l = ledger(1, &[("n1", 0)]);
        l.leases.get_mut("n1").unwrap().incarnation = "me".into();
        match shape {
            "held" => {}
            "no ledger" => return None,
            "other generation" => l.generation = 2,
            "tombstoned" => {
                let lease = l.leases.remove("n1").unwrap();
                l.holders.remove("n1");
                l.expired.insert("n1".into(), lease);
            }
            "absent" => {
                l = ledger(1, &[("n2", 0)]);
            }
            "other incarnation" => l.leases.get_mut("n1").unwrap().incarnation = "next".into(),
            "no incarnation" => l.leases.get_mut("n1").unwrap().incarnation.clear(),
            "no lease" => {
                l.leases.remove("n1");
            }
            other => panic!("{other}"),
        }
        Some(l)
    }

    #[rstest::rstest]
    #[case::held_and_live("held", 30, None)]
    #[case::held_at_the_last_second("held", 60, None)]
    #[case::expired_not_yet_pruned("held", 61, Some("expired"))]
    #[case::tombstoned_by_a_pruner("tombstoned", 30, Some("pruned"))]
    #[case::absent("absent", 30, Some("absent"))]
    #[case::another_process_of_this_node("other incarnation", 30, Some("incarnation"))]
    #[case::a_lease_without_incarnation("no incarnation", 30, None)]
    #[case::an_older_handler_s_entry_without_lease("no lease", 30, None)]
    #[case::another_generation("other generation", 30, Some("generation"))]
    #[case::no_ledger("no ledger", 30, Some("generation"))]
    fn the_fence_lets_only_a_live_holder_of_this_process_go_on(
        #[case] shape: &str,
        #[case] now: i64,
        #[case] lost: Option<&str>,
    ) {
        let l = fence_ledger(shape);
        let me = SlotHolder {
            node: "n1",
            incarnation: "me",
            generation: 1,
        };
        let got = fence(l.as_ref(), &me, &t(now));
        let kind = got.as_ref().err().map(|loss| match loss {
            SlotLoss::Expired(_) => "expired",
            SlotLoss::Pruned(_) => "pruned",
            SlotLoss::Absent => "absent",
            SlotLoss::OtherIncarnation(_) => "incarnation",
            SlotLoss::OtherGeneration(_) => "generation",
        });
        assert_eq!(kind, lost, "{shape} at {now}: {got:?}");
    }

    #[test]
    fn a_stalled_holder_pruned_by_the_next_claimant_is_fenced() {
        // n1 claims at 0 and stalls; n2 prunes it at 61 and claims; n1 resumes at 90.
        let s = states(&[("n1", Idle), ("n2", Idle)]);
        let input = |node, incarnation, l, now| SlotInput {
            node,
            incarnation,
            generation: 1,
            ledger: l,
            states: &s,
            max_unavailable: 1,
            now: t(now),
            hold_for: Duration::from_mins(1),
        };
        let claimed = decide(&input("n1", "me", None, 0)).ledger.unwrap();
        let me = SlotHolder {
            node: "n1",
            incarnation: "me",
            generation: 1,
        };
        assert_eq!(fence(Some(&claimed), &me, &t(10)), Ok(()));
        let s2 = states(&[("n1", Progressing), ("n2", Idle)]);
        let pruned = decide(&SlotInput {
            states: &s2,
            ..input("n2", "other", Some(&claimed), 61)
        });
        assert_eq!(pruned.action, SlotAction::Apply);
        let now_held = pruned.ledger.unwrap();
        let loss = fence(Some(&now_held), &me, &t(90)).unwrap_err();
        assert!(matches!(loss, SlotLoss::Pruned(_)), "{loss:?}");
        assert!(
            fenced_message("n1", "p", &loss, FenceStage::BeforeApply)
                .ends_with("(its lease expired at 1970-01-01T00:01:00Z and another node pruned it); nothing was applied"),
        );
        // The renewal of a pruned holder does not bring it back.
        assert!(renew(&now_held, "n1", "me", &t(90)).is_none());
    }

    #[test]
    fn renewal_keeps_the_length_and_release_frees() {
        let l = ledger(1, &[("n1", 0)]);
        let r = renew(&l, "n1", "x", &t(30)).unwrap();
        assert_eq!(r.leases["n1"].expires, t(90));
        assert_eq!(r.leases["n1"].incarnation, "x");
        let freed = release(&r, "n1").unwrap();
        assert!(freed.holders.is_empty() && freed.leases.is_empty());
    }
}
