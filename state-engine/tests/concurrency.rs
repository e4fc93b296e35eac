//! Property tests of the slot protocol (`knmstate_state_engine::slot`), the same functions the
//! handler calls, on a small pure simulator of the handler's steps: N handlers share one ledger
//! (written with a version precondition) and one enactment per node; every handler step is one
//! API call (read the ledger; list the enactments and decide; write the ledger; mark a ghost
//! Aborted; write Progressing; end an attempt), steps of different handlers interleave
//! arbitrarily, and the virtual clock moves on. Any handler may crash (losing its local state,
//! its next step is a restart that rolls its checkpoint back) or die **for good** (it never
//! steps again; its checkpoint is rolled back by NetworkManager at the checkpoint timeout).
//! Any handler may also **stall** and later resume (a frozen process, not a dead one): while
//! stalled it neither steps nor renews its lease, and NetworkManager rolls its checkpoint back
//! at the timeout meanwhile (a commit after that fails). A resumed handler goes on from where
//! it stopped, with what it knew then: the slot fence ([`slot::fence`], the handler's
//! `policy/fence.rs`) is what stops it from applying or committing after it was pruned. The
//! model takes the fence's read and the step it guards as one step; in the handler a stall
//! between the two before the apply is caught by the commit fence (rolled back, never
//! committed), and one before the commit outlasts the checkpoint, so the commit fails.
//!
//! The one timing assumption, the one the handler's heartbeat keeps: a live handler renews its
//! lease at every tick from its successful slot write until its attempt ends (the heartbeat runs
//! during the apply, more often than the lease's margin). Between attempts (the retry backoff)
//! nothing renews: a handler delayed there past its lease is pruned like a dead one, and the
//! properties must hold all the same.
//!
//! Properties, for every interleaving:
//! * never more than `maxUnavailable` nodes unavailable (holding a checkpoint: applying, or
//!   dead or crashed before their checkpoint was rolled back), every live node holding a
//!   checkpoint is in the ledger, and no node commits unless it is a live holder then;
//! * at most `maxUnavailable` nodes end Failing;
//! * once crashes stop and every live handler gets scheduled while time passes, the rollout
//!   ends: every live node's enactment is Available, Failing or Aborted, a node dead for good
//!   that held a slot ends Aborted, and no ghost holds a slot. (A ghost is pruned by a live
//!   handler of the policy: when every node died for good, none is left to do it.)

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use knmstate_api::shared::NodeNetworkConfigurationEnactmentStatus;
use knmstate_state_engine::concurrency::{SlotState, max_unavailable};
use knmstate_state_engine::conditions::{
    EnactmentTransition, aborted_message, initial_enactment_conditions, retrying_message,
};
use knmstate_state_engine::ledger_guard;
use knmstate_state_engine::rollback::{ApplyDecision, RetryDecision, RetryPolicy, apply_decision};
use knmstate_state_engine::slot::{
    self, ExpiredHolder, FenceStage, SlotAction, SlotHolder, SlotInput, SlotLedger, SlotPlan,
    SlotTiming, Sweep,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;

const GENERATION: i64 = 1;
/// The checkpoint timeout, in ticks (seconds).
const CHECKPOINT: u64 = 20;

/// A handler's local, volatile progress through the protocol.
#[derive(Debug, Clone, PartialEq)]
enum Local {
    Idle,
    GotLedger {
        ledger: Option<SlotLedger>,
        version: u64,
    },
    Decided {
        plan: SlotPlan,
        version: u64,
    },
    /// Marking ghosts Aborted, then doing `action` (`None`: back to Done).
    Marking {
        action: Option<SlotAction>,
        ghosts: Vec<ExpiredHolder>,
    },
    /// Done with the policy, sweeping for ghosts: the ledger read.
    SweepRead {
        ledger: Option<SlotLedger>,
        version: u64,
    },
    /// Done with the policy, sweeping for ghosts: the sweep decided.
    SweepDecided {
        sweep: Sweep,
        version: u64,
    },
    Claimed,
    /// Progressing written; the next step passes the fence and applies.
    Announced,
    Applying,
    Done,
    /// Crashed: the next step is the restart.
    Down,
    /// Dead for good: never steps again.
    Dead,
}

struct World {
    max: usize,
    retry: RetryPolicy,
    timing: SlotTiming,
    ledger: Option<SlotLedger>,
    version: u64,
    enactments: Vec<NodeNetworkConfigurationEnactmentStatus>,
    locals: Vec<Local>,
    /// Per node: until when its checkpoint holds (set while it applies, until rolled back).
    checkpoint_until: Vec<Option<u64>>,
    incarnations: Vec<u32>,
    /// Per node: frozen (neither steps nor renews) until resumed.
    stalled: Vec<bool>,
    /// A node that committed while not a live holder of its slot, if any.
    committed_without_slot: Option<usize>,
    /// The first ledger write the admission guard (`ledger_guard::check`) refused, if any.
    refused_write: Option<String>,
    clock: u64,
}

fn name(i: usize) -> String {
    format!("node{i}")
}

fn time(s: u64) -> Time {
    Time(Timestamp::from_second(i64::try_from(s).expect("small")).expect("in range"))
}

impl World {
    fn new(n: usize, max: usize) -> Self {
        Self {
            max,
            retry: RetryPolicy {
                max_retries: 3,
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(4),
            },
            timing: SlotTiming::new(Duration::from_secs(CHECKPOINT), Duration::from_secs(4)),
            ledger: None,
            version: 0,
            enactments: (0..n)
                .map(|_| NodeNetworkConfigurationEnactmentStatus {
                    policy_generation: Some(GENERATION),
                    conditions: initial_enactment_conditions(&time(0)),
                    ..Default::default()
                })
                .collect(),
            locals: vec![Local::Idle; n],
            checkpoint_until: vec![None; n],
            incarnations: vec![0; n],
            stalled: vec![false; n],
            committed_without_slot: None,
            refused_write: None,
            clock: 0,
        }
    }

    /// Node `i` writes the ledger `next`, which the webhook checks with the same clock.
    fn store(&mut self, i: usize, next: SlotLedger) {
        if let Err(e) =
            ledger_guard::check(self.ledger.as_ref(), &next, &name(i), &time(self.clock))
            && self.refused_write.is_none()
        {
            self.refused_write = Some(format!("{}'s ledger write refused: {e}", name(i)));
        }
        self.ledger = Some(next);
        self.version += 1;
    }

    fn write(&mut self, i: usize, tr: &EnactmentTransition) {
        tr.apply(&mut self.enactments[i].conditions, &time(self.clock));
    }

    fn states(&self) -> BTreeMap<String, SlotState> {
        self.enactments
            .iter()
            .enumerate()
            .map(|(i, s)| (name(i), SlotState::of(Some(s), GENERATION)))
            .collect()
    }

    fn incarnation(&self, i: usize) -> String {
        format!("{}-{}", name(i), self.incarnations[i])
    }

    /// Time passes; every live applying handler's heartbeat renews its lease.
    fn tick(&mut self) {
        self.clock += 1;
        for i in 0..self.locals.len() {
            let holding = !self.stalled[i]
                && matches!(
                    self.locals[i],
                    Local::Applying
                        | Local::Claimed
                        | Local::Announced
                        | Local::Marking {
                            action: Some(SlotAction::Apply),
                            ..
                        }
                );
            if holding
                && let Some(next) = self
                    .ledger
                    .as_ref()
                    .and_then(|l| slot::renew(l, &name(i), &self.incarnation(i), &time(self.clock)))
            {
                self.store(i, next);
            }
        }
    }

    fn crash(&mut self, i: usize) {
        // A frozen process killed: it restarts like any crashed one.
        self.stalled[i] = false;
        if self.locals[i] != Local::Dead {
            self.locals[i] = Local::Down;
        }
    }

    fn die(&mut self, i: usize) {
        self.locals[i] = Local::Dead;
    }

    fn input<'a>(
        &self,
        (me, incarnation): (&'a str, &'a str),
        ledger: Option<&'a SlotLedger>,
        states: &'a BTreeMap<String, SlotState>,
    ) -> SlotInput<'a> {
        SlotInput {
            node: me,
            incarnation,
            generation: GENERATION,
            ledger,
            states,
            max_unavailable: self.max,
            now: time(self.clock),
            hold_for: self.timing.hold_for,
        }
    }

    /// The slot fence of handler `i` now, over the ledger as it is.
    fn fence(&self, i: usize) -> Result<(), slot::SlotLoss> {
        let incarnation = self.incarnation(i);
        let me = name(i);
        let holder = SlotHolder {
            node: &me,
            incarnation: &incarnation,
            generation: GENERATION,
        };
        slot::fence(self.ledger.as_ref(), &holder, &time(self.clock))
    }

    /// The property's own view (not the fence's): `i` is in the ledger's holders of this
    /// generation and its lease, if any, has not run out.
    fn live_holder(&self, i: usize) -> bool {
        self.ledger.as_ref().is_some_and(|l| {
            l.generation == GENERATION
                && l.holders.contains(&name(i))
                && l.leases
                    .get(&name(i))
                    .is_none_or(|lease| !lease.expired_at(&time(self.clock)))
        })
    }

    /// Handler `i` found its slot lost at `stage`: Aborted (before the apply, unless the
    /// pruner marked it already).
    fn fenced(&mut self, i: usize, loss: &slot::SlotLoss, stage: FenceStage) -> Local {
        let ended = SlotState::of(Some(&self.enactments[i]), GENERATION).is_final();
        if !(stage == FenceStage::BeforeApply && ended) {
            let message = slot::fenced_message(&name(i), "p", loss, stage);
            self.write(i, &EnactmentTransition::Aborted { message });
        }
        Local::Done
    }

    /// One API call (or the end of one apply attempt) of handler `i`; `ok` is the outcome.
    /// A stalled handler does nothing.
    fn step(&mut self, i: usize, ok: bool) {
        if self.stalled[i] {
            return;
        }
        let me = name(i);
        let local = std::mem::replace(&mut self.locals[i], Local::Idle);
        self.locals[i] = match local {
            Local::Dead => Local::Dead,
            // A finished node watches for ghosts while the rollout has not ended.
            Local::Done if self.states().values().any(|s| !s.is_final()) => Local::SweepRead {
                ledger: self.ledger.clone(),
                version: self.version,
            },
            Local::Done => Local::Done,
            Local::SweepRead { ledger, version } => {
                let states = self.states();
                let inc = self.incarnation(i);
                let sweep = slot::sweep(&self.input((&me, &inc), ledger.as_ref(), &states));
                Local::SweepDecided { sweep, version }
            }
            Local::SweepDecided { sweep, version } => match sweep.ledger {
                Some(next) if self.version == version => {
                    self.store(i, next);
                    Local::Marking {
                        action: None,
                        ghosts: sweep.expired,
                    }
                }
                Some(_) => Local::Done,
                None => Local::Marking {
                    action: None,
                    ghosts: sweep.expired,
                },
            },
            Local::Down => {
                // Restart: a new process, and start-up recovery rolls the checkpoint back.
                self.incarnations[i] += 1;
                self.checkpoint_until[i] = None;
                Local::Idle
            }
            Local::Idle => {
                match apply_decision(Some(&self.enactments[i]), GENERATION, &self.retry, None) {
                    ApplyDecision::Apply => Local::GotLedger {
                        ledger: self.ledger.clone(),
                        version: self.version,
                    },
                    _ => Local::Done,
                }
            }
            Local::GotLedger { ledger, version } => {
                let states = self.states();
                let inc = self.incarnation(i);
                let plan = slot::decide(&self.input((&me, &inc), ledger.as_ref(), &states));
                Local::Decided { plan, version }
            }
            Local::Decided { plan, version } => match plan.ledger {
                Some(next) if self.version == version => {
                    self.store(i, next);
                    Local::Marking {
                        action: Some(plan.action),
                        ghosts: plan.expired,
                    }
                }
                Some(_) => Local::Idle,
                None => Local::Marking {
                    action: Some(plan.action),
                    ghosts: plan.expired,
                },
            },
            Local::Marking { action, mut ghosts } => {
                if let Some(ghost) = ghosts.pop() {
                    let g: usize = ghost.node["node".len()..].parse().expect("a node index");
                    if !SlotState::of(Some(&self.enactments[g]), GENERATION).is_final() {
                        let message = slot::expired_message(&ghost.node, "p", &ghost.lease);
                        self.write(g, &EnactmentTransition::Aborted { message });
                    }
                    Local::Marking { action, ghosts }
                } else {
                    match action {
                        None | Some(SlotAction::Expired) => Local::Done,
                        Some(SlotAction::Apply) => Local::Claimed,
                        Some(SlotAction::Wait) => {
                            self.write(i, &EnactmentTransition::Pending);
                            Local::Idle
                        }
                        Some(SlotAction::Abort) => {
                            let message = aborted_message(&me, "p");
                            self.write(i, &EnactmentTransition::Aborted { message });
                            Local::Done
                        }
                    }
                }
            }
            Local::Claimed => {
                self.write(i, &EnactmentTransition::Progressing);
                Local::Announced
            }
            Local::Announced => match self.fence(i) {
                Ok(()) => {
                    self.checkpoint_until[i] = Some(self.clock + CHECKPOINT);
                    Local::Applying
                }
                Err(loss) => self.fenced(i, &loss, FenceStage::BeforeApply),
            },
            Local::Applying => self.end_attempt(i, ok),
        };
    }

    /// The attempt commits (`ok`, past the commit fence, and while NetworkManager still holds
    /// the checkpoint) or rolls back: Success, Aborted (the slot was lost), or Retrying (back
    /// to the slot decision), or Failing.
    fn end_attempt(&mut self, i: usize, ok: bool) -> Local {
        let held = self.checkpoint_until[i].is_some_and(|t| self.clock < t);
        self.checkpoint_until[i] = None;
        let fence = self.fence(i);
        if ok && held {
            if let Err(loss) = fence {
                return self.fenced(i, &loss, FenceStage::BeforeCommit);
            }
            if !self.live_holder(i) {
                self.committed_without_slot = Some(i);
            }
            self.write(i, &EnactmentTransition::Success);
            return Local::Done;
        }
        if let Err(loss) = fence {
            return self.fenced(i, &loss, FenceStage::AfterFailure);
        }
        let failures_before =
            knmstate_state_engine::rollback::retry_count(Some(&self.enactments[i]), GENERATION);
        let decision = self.retry.after_failure(failures_before);
        let (RetryDecision::Retry { failures, .. } | RetryDecision::GiveUp { failures }) = decision;
        knmstate_state_engine::rollback::record_retry_count(
            &mut self.enactments[i].retry_count,
            GENERATION,
            failures,
        );
        if let RetryDecision::Retry { failures, .. } = decision {
            let message = retrying_message(&name(i), failures, self.retry.max_retries);
            self.write(i, &EnactmentTransition::Retrying { message });
            Local::Idle
        } else {
            let message = "boom".to_owned();
            self.write(i, &EnactmentTransition::FailedToConfigure { message });
            Local::Done
        }
    }

    /// Nodes whose network is in an unprobed new state.
    fn unavailable(&self) -> usize {
        self.checkpoint_until
            .iter()
            .filter(|t| t.is_some_and(|t| self.clock < t))
            .count()
    }

    /// The safety properties; `Err` describes the violation.
    fn check(&self) -> Result<(), String> {
        if self.unavailable() > self.max {
            return Err(format!(
                "{} nodes unavailable at once, max {}",
                self.unavailable(),
                self.max
            ));
        }
        let holders = self.ledger.as_ref().map(|l| &l.holders);
        if let Some(i) = (0..self.locals.len()).find(|&i| {
            self.locals[i] == Local::Applying
                && self.checkpoint_until[i].is_some_and(|t| self.clock < t)
                && !holders.is_some_and(|h| h.contains(&name(i)))
        }) {
            return Err(format!("{} applies without a ledger entry", name(i)));
        }
        if let Some(refused) = &self.refused_write {
            return Err(refused.clone());
        }
        if let Some(i) = self.committed_without_slot {
            return Err(format!("{} committed without holding its slot", name(i)));
        }
        let failed = self
            .states()
            .values()
            .filter(|s| **s == SlotState::FailedFinal)
            .count();
        if failed > self.max {
            return Err(format!("{failed} nodes failed, max {}", self.max));
        }
        Ok(())
    }

    /// The rollout ended: every handler rests, every live node's enactment ended, and a dead
    /// node either ended (marked Aborted if it held a slot) or never held one.
    fn quiescent(&self) -> bool {
        let states = self.states();
        let ledger = self.ledger.clone().unwrap_or_default();
        (0..self.locals.len()).all(|i| {
            let s = states[&name(i)];
            match self.locals[i] {
                // Done, or done and sweeping for ghosts.
                Local::Done
                | Local::SweepRead { .. }
                | Local::SweepDecided { .. }
                | Local::Marking { action: None, .. } => s.is_final(),
                Local::Dead => {
                    s.is_final()
                        || (s != SlotState::Progressing
                            && !ledger.holders.contains(&name(i))
                            && !ledger.expired.contains_key(&name(i)))
                }
                _ => false,
            }
        })
    }
}

#[derive(Debug, Clone)]
enum Event {
    Step { node: usize, ok: bool },
    Tick,
    Crash { node: usize },
    Die { node: usize },
    Stall { node: usize },
    Resume { node: usize },
}

fn event(n: usize) -> impl Strategy<Value = Event> {
    prop_oneof![
        12 => (0..n, any::<bool>()).prop_map(|(node, ok)| Event::Step { node, ok }),
        4 => Just(Event::Tick),
        1 => (0..n).prop_map(|node| Event::Crash { node }),
        1 => (0..n).prop_map(|node| Event::Die { node }),
        1 => (0..n).prop_map(|node| Event::Stall { node }),
        1 => (0..n).prop_map(|node| Event::Resume { node }),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, IntOrString, Vec<Event>, Vec<bool>)> {
    (1usize..7).prop_flat_map(|n| {
        let spec = prop_oneof![
            (0i32..6).prop_map(IntOrString::Int),
            (0u32..=100).prop_map(|p| IntOrString::String(format!("{p}%"))),
        ];
        (
            Just(n),
            spec,
            proptest::collection::vec(event(n), 0..400),
            proptest::collection::vec(any::<bool>(), 1..16),
        )
    })
}

/// Run `events`, then a fair phase: crashed handlers restart, live ones are scheduled
/// round-robin while time passes. `Err` names the first violation or a rollout that never ends.
fn run(w: &mut World, events: &[Event], fair_outcomes: &[bool]) -> Result<(), String> {
    for e in events {
        match *e {
            Event::Step { node, ok } => w.step(node, ok),
            Event::Tick => w.tick(),
            Event::Crash { node } => w.crash(node),
            Event::Die { node } => w.die(node),
            Event::Stall { node } => w.stalled[node] = true,
            Event::Resume { node } => w.stalled[node] = false,
        }
        w.check().map_err(|v| format!("after {e:?}: {v}"))?;
    }
    // Stalled handlers resume, with what they knew when they stalled.
    w.stalled.fill(false);
    let n = w.locals.len();
    let mut k = 0;
    for _round in 0..20_000 {
        // With every node dead for good no handler is left to prune: nothing to wait for.
        if w.quiescent() || w.locals.iter().all(|l| *l == Local::Dead) {
            return Ok(());
        }
        for i in 0..n {
            w.step(i, fair_outcomes[k % fair_outcomes.len()]);
            k += 1;
            w.check().map_err(|v| format!("fair phase: {v}"))?;
        }
        w.tick();
        w.check().map_err(|v| format!("fair phase: {v}"))?;
    }
    Err(format!(
        "the rollout never ends: {:?} {:?}",
        w.locals,
        w.states()
    ))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn never_more_than_max_unavailable_and_every_rollout_ends(
        (n, spec, events, fair_outcomes) in scenario()
    ) {
        let max = max_unavailable(Some(&spec), n).value;
        let mut w = World::new(n, max);
        if let Err(v) = run(&mut w, &events, &fair_outcomes) {
            prop_assert!(false, "{}", v);
        }
        let states = w.states();
        let all_dead = w.locals.iter().all(|l| *l == Local::Dead);
        prop_assert!(
            all_dead
                || w.ledger.as_ref().is_none_or(|l| l.holders.iter().all(|h| states[h].is_final())),
            "a node still holds a slot: {:?} {:?}", w.ledger, states
        );
    }

    /// A policy that fails everywhere fails on at most maxUnavailable nodes, whoever dies.
    #[test]
    fn a_bad_policy_fails_on_at_most_max_unavailable_nodes(
        (n, spec, events, _) in scenario()
    ) {
        let max = max_unavailable(Some(&spec), n).value;
        let mut w = World::new(n, max);
        let bad: Vec<Event> = events
            .into_iter()
            .map(|e| match e {
                Event::Step { node, .. } => Event::Step { node, ok: false },
                other => other,
            })
            .collect();
        if let Err(v) = run(&mut w, &bad, &[false]) {
            prop_assert!(false, "{}", v);
        }
        let failed = w.states().values().filter(|s| **s == SlotState::FailedFinal).count();
        prop_assert!(failed <= max, "{failed} failed, max {max}");
        prop_assert!(
            w.states().values().all(|s| *s != SlotState::Available),
            "a bad policy never succeeds: {:?}", w.states()
        );
    }
}

/// A node that dies for good while applying keeps its slot until its lease expires (after its
/// checkpoint timeout), then the next claimant prunes it, marks it Aborted, and the rollout
/// completes on the others.
#[test]
fn a_node_dead_for_good_mid_apply_is_pruned_after_its_lease() {
    let mut w = World::new(3, 1);
    while w.locals[0] != Local::Applying {
        w.step(0, true);
    }
    w.die(0);
    let claimed_by_someone_else = |w: &World| {
        w.ledger
            .as_ref()
            .is_some_and(|l| l.holders.iter().any(|h| h != "node0"))
    };
    let lease_ends = w.clock + w.timing.hold_for.as_secs();
    while w.clock <= lease_ends {
        for i in 1..3 {
            w.step(i, true);
            w.check().unwrap();
        }
        assert!(
            !claimed_by_someone_else(&w),
            "claimed at {} before the lease ended",
            w.clock
        );
        w.tick();
    }
    run(&mut w, &[], &[true]).unwrap();
    let states = w.states();
    assert_eq!(states["node0"], SlotState::Aborted);
    assert_eq!(
        (states["node1"], states["node2"]),
        (SlotState::Available, SlotState::Available)
    );
    let aborted = w.enactments[0].conditions.find("Aborted").expect("Aborted");
    assert!(
        aborted.message.contains("did not renew"),
        "{}",
        aborted.message
    );
}

/// A handler that crashes while holding a slot resumes it after restart (a new incarnation)
/// instead of leaking it, and learns that it restarted.
#[test]
fn crash_while_applying_resumes_the_slot() {
    let mut w = World::new(2, 1);
    while w.locals[0] != Local::Applying {
        w.step(0, true);
    }
    w.crash(0);
    for _ in 0..4 {
        w.step(1, true); // node1 reads the ledger and waits
    }
    assert_eq!(
        SlotState::of(Some(&w.enactments[1]), GENERATION),
        SlotState::Pending
    );
    w.step(0, true); // restart
    w.step(0, true); // Idle → GotLedger
    w.step(0, true); // decide
    let Local::Decided { plan, .. } = &w.locals[0] else {
        panic!("{:?}", w.locals[0])
    };
    assert!(plan.restarted);
    assert_eq!(plan.action, SlotAction::Apply);
    run(&mut w, &[], &[true]).unwrap();
    assert_eq!(
        SlotState::of(Some(&w.enactments[0]), GENERATION),
        SlotState::Available
    );
}

/// The simulator is able to see the race: two handlers that decided on the same ledger version
/// cannot both win it.
#[test]
fn two_claims_on_one_version_cannot_both_win() {
    let mut w = World::new(2, 1);
    for node in [0, 1, 0, 1, 0, 1] {
        w.step(node, true); // both read, both decide Apply, both write
    }
    let winners = w
        .locals
        .iter()
        .filter(|l| matches!(l, Local::Marking { .. }))
        .count();
    assert_eq!(winners, 1, "{:?}", w.locals);
    // Without the version precondition both would hold a slot: the check would see it.
    w.ledger.as_mut().unwrap().holders.insert("node1".into());
    w.locals[1] = Local::Applying;
    w.locals[0] = Local::Applying;
    w.checkpoint_until = vec![Some(100), Some(100)];
    assert!(w.check().is_err());
}

/// A holder that stalls (frozen, not dead) right before its apply, for longer than its lease,
/// is pruned by the next claimant, which applies; once the stalled one resumes, the fence stops
/// it: it never applies, its enactment stays Aborted as the pruner marked it, and the rollout
/// completes on the other node.
#[test]
fn a_holder_stalled_past_its_lease_is_fenced_when_it_resumes() {
    let mut w = World::new(2, 1);
    while w.locals[0] != Local::Announced {
        w.step(0, true);
    }
    w.stalled[0] = true;
    let lease_ends = w.clock + w.timing.hold_for.as_secs();
    for _ in 0..200 {
        if w.locals[1] == Local::Applying {
            break;
        }
        w.step(1, true);
        w.check().unwrap();
        w.tick();
    }
    assert_eq!(w.locals[1], Local::Applying, "node1 took the slot");
    assert!(w.clock > lease_ends, "only once node0's lease ran out");
    w.stalled[0] = false;
    w.step(0, true);
    w.check().unwrap();
    assert_eq!(w.locals[0], Local::Done);
    assert_eq!(w.checkpoint_until[0], None, "node0 never applied");
    run(&mut w, &[], &[true]).unwrap();
    let states = w.states();
    assert_eq!(
        (states["node0"], states["node1"]),
        (SlotState::Aborted, SlotState::Available)
    );
    let aborted = w.enactments[0].conditions.find("Aborted").expect("Aborted");
    assert!(
        aborted.message.contains("did not renew"),
        "{}",
        aborted.message
    );
}
