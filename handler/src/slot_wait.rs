//! Waiting for a slot by watching. A policy reconcile that must wait ([`SlotWaits::wait`])
//! ends without a requeue; [`watch`] then judges the waiting policies from the watch caches
//! ([`crate::caches`]) each time a ledger or an enactment changes (and every [`TICK`], for
//! leases that run out), and asks for a reconcile only when state-engine's slot protocol,
//! run on the cached view, would do something: claim, prune, abort. So a waiting handler
//! sends no request, and a freed slot is taken within a watch event's delay.
//!
//! A freed slot must not wake every waiting node at once (N conflicting ledger writes per
//! slot: O(N²) requests per rollout). The waiting nodes are ranked by name: with `free` slots,
//! the first `free` of them go at once; the others only once the slot stayed free, and the
//! ledger unchanged, for a grace that grows with their rank, with jitter (a node ranked ahead
//! may be gone; while the ledger changes, the nodes ahead are claiming). And when
//! the caches show nothing to do, each waiting policy is still reconciled on an exponential
//! backoff with jitter ([`FALLBACK_FIRST`] doubling to [`FALLBACK_MAX`]), should a cache have
//! missed a change.
//!
//! A judgement reads every node and enactment of the policy from the caches: O(N). Judged on
//! every change, N waiting nodes cost O(N²) per change (and a harness running a thousand
//! handlers on two cores spent its time there). A node with `r` waiting nodes ahead cannot
//! get its turn before they claimed, so it looks again only after [`LOOK_PER_RANK`] × `r`
//! (at most [`LOOK_MAX`]); the first ranked look on every change.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_nm_backend::Backend;
use knmstate_state_engine::concurrency::{SlotState, failed_final};
use knmstate_state_engine::slot::{self, SlotAction, SlotInput, SlotLedger, SlotTiming};
use kube::runtime::reflector::ObjectRef;
use tokio::sync::Notify;

use crate::context::Context;
use crate::slots;

/// How often the waiting policies are judged without a change (a lease may have run out).
pub const TICK: Duration = Duration::from_secs(1);
/// Changes closer together than this are judged once.
const SETTLE: Duration = Duration::from_millis(50);
/// First reconcile of a waiting policy whose caches show nothing to do.
pub const FALLBACK_FIRST: Duration = Duration::from_secs(10);
/// Longest wait between two of them.
pub const FALLBACK_MAX: Duration = Duration::from_mins(2);
/// How long a free slot waits for the node ranked ahead, per rank.
const GRACE_PER_RANK: Duration = Duration::from_millis(500);
/// Waiting nodes that claim at once: claims of one ledger conflict with each other.
pub const CLAIM_BATCH: usize = 3;
/// No second reconcile asked for a policy while the first may still be running.
const ASKED_AGAIN_AFTER: Duration = Duration::from_secs(2);
/// How much later a waiting node looks again per waiting node ahead of it (a fiftieth of
/// the grace it would wait per rank once a slot is free).
const LOOK_PER_RANK: Duration = Duration::from_millis(10);
/// The longest a waiting node goes without looking.
const LOOK_MAX: Duration = Duration::from_secs(5);

/// One waiting policy.
#[derive(Debug)]
struct Waiting {
    fallback: ExponentialBackoff,
    next_fallback: Instant,
    /// Since when the caches show a slot this node could take and the ledger did not change
    /// (while it changes, the nodes ahead are claiming).
    free_since: Option<Instant>,
    /// The ledger version of the last judgement.
    ledger_version: Option<String>,
    /// When a reconcile was last asked for.
    asked: Option<Instant>,
    /// No judgement before then (see [`next_look`]).
    next_look: Option<Instant>,
}

/// The policies this handler waits for a slot of.
#[derive(Debug, Default)]
pub struct SlotWaits {
    waiting: Mutex<HashMap<String, Waiting>>,
    wake: Notify,
}

fn backoff() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(FALLBACK_FIRST)
        .with_max_delay(FALLBACK_MAX)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

impl SlotWaits {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `policy` waits for a slot (again): [`watch`] asks for its reconcile.
    pub fn wait(&self, policy: &str) {
        let mut waiting = self.lock();
        let w = waiting.entry(policy.to_owned()).or_insert_with(|| {
            let mut fallback = backoff();
            let first = fallback.next().unwrap_or(FALLBACK_FIRST);
            Waiting {
                fallback,
                next_fallback: Instant::now() + first,
                free_since: None,
                ledger_version: None,
                asked: None,
                next_look: None,
            }
        });
        w.asked = None;
        w.next_look = None;
        drop(waiting);
        self.wake.notify_one();
    }

    /// `policy` no longer waits (it holds its slot, ended, or is gone).
    pub fn done(&self, policy: &str) {
        self.lock().remove(policy);
    }

    /// Whether [`watch`] asked for the running reconcile of `policy` (then its claim goes
    /// ahead whatever its rank: the watch judged it due).
    pub fn woken(&self, policy: &str) -> bool {
        self.lock().get(policy).is_some_and(|w| w.asked.is_some())
    }

    /// A ledger or an enactment changed: judge the waiting policies again.
    pub fn nudge(&self) {
        if !self.lock().is_empty() {
            self.wake.notify_one();
        }
    }
}

/// What a waiting node sees in the caches.
struct Judgement {
    /// What the slot protocol would do now.
    action: SlotAction,
    /// Whether it would write the ledger (a prune).
    writes: bool,
    /// Slots free for the waiting nodes.
    free: usize,
    /// Waiting nodes ahead of this one (name order).
    rank: usize,
    /// The version of the ledger judged from.
    ledger_version: Option<String>,
}

/// Judge `policy` for this node from the caches.
fn judge<B: Backend>(ctx: &Context<B>, policy: &NodeNetworkConfigurationPolicy) -> Judgement {
    let name = kube::ResourceExt::name_any(policy);
    let generation = policy.metadata.generation.unwrap_or(0);
    let read = slots::cached(ctx, &name);
    let states = ctx.caches.states(&name, generation);
    let matching = ctx.caches.matching(policy);
    let limit = ctx
        .caches
        .max_unavailable(policy, matching.len().max(states.len()));
    let retry = &ctx.config.defaults.retry;
    let hold_for =
        SlotTiming::new(ctx.config.defaults.checkpoint_timeout, retry.max_backoff).hold_for;
    let plan = slot::decide(&SlotInput {
        node: ctx.node_name(),
        incarnation: &ctx.rollout.incarnation,
        generation,
        ledger: read.ledger.as_ref(),
        states: &states,
        max_unavailable: limit,
        now: slots::now(),
        hold_for,
    });
    let (free, rank) = rank(
        read.ledger.as_ref(),
        generation,
        &states,
        &matching,
        limit,
        ctx.node_name(),
    );
    Judgement {
        action: plan.action,
        writes: plan.ledger.is_some(),
        free,
        rank,
        ledger_version: read.resource_version.clone(),
    }
}

/// The slots free for waiting nodes, and how many waiting nodes are ahead of `me`. A node
/// claims in its turn when its rank is below [`turns`] of them. The nodes ahead are those
/// named before `me` among the nodes with an enactment and the `matching` nodes (selected by
/// the policy): a selected node whose enactment is not in the cache yet waits too (at the
/// start of a rollout every handler creates its enactment at once, and counting only the
/// enactments already seen made most of them rank first and race for the ledger).
pub fn rank(
    ledger: Option<&SlotLedger>,
    generation: i64,
    states: &BTreeMap<String, SlotState>,
    matching: &[String],
    limit: usize,
    me: &str,
) -> (usize, usize) {
    let ledger = ledger.filter(|l| l.generation == generation);
    let holds = |n: &String| ledger.is_some_and(|l| l.holders.contains(n));
    // A slot counts as taken while its holder's enactment has not ended (a holder that ended
    // without releasing stays in the ledger, uncounted: only it may change its entry).
    let held = ledger.map_or(0, |l| slot::live_holders(l, states).count());
    let free = limit.saturating_sub(held + failed_final(states));
    let waiting = |n: &String| {
        n.as_str() < me
            && !holds(n)
            && states
                .get(n)
                .is_none_or(|s| matches!(s, SlotState::Idle | SlotState::Pending))
    };
    let unseen = matching
        .iter()
        .filter(|n| !states.contains_key(*n) && waiting(n))
        .count();
    let rank = states.keys().filter(|n| waiting(n)).count() + unseen;
    (free, rank)
}

/// How many waiting nodes claim at once with `free` slots.
pub fn turns(free: usize) -> usize {
    free.min(CLAIM_BATCH)
}

/// Whether to reconcile a waiting policy now (see the module page).
fn due(j: &Judgement, w: &mut Waiting, now: Instant) -> bool {
    if w.asked.is_some_and(|at| now < at + ASKED_AGAIN_AFTER) {
        return false;
    }
    let wants = j.action != SlotAction::Wait || j.writes;
    if !wants {
        w.free_since = None;
        return now >= w.next_fallback;
    }
    if w.ledger_version != j.ledger_version {
        // The nodes ahead are claiming: the grace starts again.
        w.ledger_version.clone_from(&j.ledger_version);
        w.free_since = None;
    }
    let since = *w.free_since.get_or_insert(now);
    // Each node marks its own end; a claim or a prune goes by rank.
    let turns = turns(j.free).max(1);
    if matches!(j.action, SlotAction::Abort | SlotAction::Expired) || j.rank < turns {
        return true;
    }
    let behind = u32::try_from(j.rank - turns + 1).unwrap_or(u32::MAX);
    let grace = GRACE_PER_RANK.saturating_mul(behind).min(FALLBACK_MAX);
    // Jitter: up to half the grace again, drawn per look.
    let jitter = grace.mul_f64(fastrand::f64() / 2.0);
    now >= since + grace + jitter
}

/// When a node with `rank` waiting nodes ahead looks again after a judgement at `now`.
fn next_look(rank: usize, now: Instant) -> Instant {
    now + LOOK_PER_RANK
        .saturating_mul(u32::try_from(rank).unwrap_or(u32::MAX))
        .min(LOOK_MAX)
}

/// Judge the waiting policies on each change of the caches and every [`TICK`] (each no sooner
/// than its [`next_look`]); ask for the reconciles that are due. Runs until the handler stops.
pub async fn watch<B: Backend>(ctx: Arc<Context<B>>) {
    loop {
        tokio::select! {
            () = ctx.slot_waits.wake.notified() => {}
            () = tokio::time::sleep(TICK) => {}
        }
        tokio::time::sleep(SETTLE).await;
        let now = Instant::now();
        let names: Vec<String> = ctx
            .slot_waits
            .lock()
            .iter()
            .filter(|(_, w)| w.next_look.is_none_or(|at| now >= at))
            .map(|(name, _)| name.clone())
            .collect();
        for name in names {
            let Some(policy) = ctx.policies.get(&ObjectRef::new(&name)) else {
                ctx.slot_waits.done(&name);
                continue;
            };
            let j = judge(&ctx, &policy);
            let now = Instant::now();
            let mut waiting = ctx.slot_waits.lock();
            let Some(w) = waiting.get_mut(&name) else {
                continue;
            };
            w.next_look = Some(next_look(j.rank, now));
            if !due(&j, w, now) {
                continue;
            }
            w.asked = Some(now);
            if now >= w.next_fallback {
                w.next_fallback = now + w.fallback.next().unwrap_or(FALLBACK_MAX);
            }
            drop(waiting);
            tracing::debug!(policy = %name, action = ?j.action, rank = j.rank, free = j.free, "slot wait: reconciling");
            ctx.recheck_policy(ObjectRef::new(&name));
        }
    }
}

#[cfg(test)]
mod tests;
