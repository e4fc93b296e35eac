//! Property tests of the slot protocol in `knmstate_state_engine::concurrency`, run on a
//! small pure simulator: N handlers share one ledger (written with a version precondition)
//! and one enactment per node; every handler step is one API call, steps of different
//! handlers interleave arbitrarily, and any handler may crash (losing its local state) and
//! restart at any time.
//!
//! Properties, for every interleaving:
//! * never more than `maxUnavailable` nodes apply at once, and every applying node is in
//!   the ledger;
//! * at most `maxUnavailable` nodes end Failing;
//! * once crashes stop and every handler gets scheduled, every node ends Available, Failing
//!   or Aborted.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use knmstate_api::shared::NodeNetworkConfigurationEnactmentStatus;
use knmstate_state_engine::concurrency::{
    SlotDecision, SlotLedger, SlotState, decide_slot, max_unavailable,
};
use knmstate_state_engine::conditions::{
    EnactmentTransition, aborted_message, initial_enactment_conditions, retrying_message,
};
use knmstate_state_engine::rollback::{ApplyDecision, RetryDecision, RetryPolicy, apply_decision};
use proptest::prelude::*;
use std::collections::BTreeMap;

const GENERATION: i64 = 1;

/// A handler's local, volatile progress through the protocol.
#[derive(Debug, Clone, PartialEq)]
enum Local {
    Idle,
    GotLedger {
        ledger: Option<SlotLedger>,
        version: u64,
    },
    Claimed {
        ledger: SlotLedger,
        version: u64,
    },
    Intent {
        ledger: SlotLedger,
        version: u64,
    },
    Applying,
    Done,
    Down,
}

struct World {
    max: usize,
    retry: RetryPolicy,
    /// When false, the ledger write ignores the version: the naive protocol.
    compare_and_swap: bool,
    ledger: Option<SlotLedger>,
    version: u64,
    enactments: Vec<NodeNetworkConfigurationEnactmentStatus>,
    locals: Vec<Local>,
    clock: i64,
}

fn name(i: usize) -> String {
    format!("node{i}")
}

impl World {
    fn new(n: usize, max: usize, compare_and_swap: bool) -> Self {
        let now = Time(Timestamp::from_second(0).unwrap());
        Self {
            max,
            retry: RetryPolicy {
                max_retries: 3,
                ..RetryPolicy::default()
            },
            compare_and_swap,
            ledger: None,
            version: 0,
            enactments: (0..n)
                .map(|_| NodeNetworkConfigurationEnactmentStatus {
                    policy_generation: Some(GENERATION),
                    conditions: initial_enactment_conditions(&now),
                    ..Default::default()
                })
                .collect(),
            locals: vec![Local::Idle; n],
            clock: 0,
        }
    }

    fn write(&mut self, i: usize, tr: &EnactmentTransition) {
        self.clock += 1;
        let now = Time(Timestamp::from_second(self.clock).unwrap());
        tr.apply(&mut self.enactments[i].conditions, &now);
    }

    fn retries(&self, i: usize) -> u32 {
        knmstate_state_engine::rollback::retry_count(Some(&self.enactments[i]), GENERATION)
    }

    fn states(&self) -> BTreeMap<String, SlotState> {
        self.enactments
            .iter()
            .enumerate()
            .map(|(i, s)| (name(i), SlotState::of(Some(s), GENERATION)))
            .collect()
    }

    fn crash(&mut self, i: usize) {
        self.locals[i] = Local::Down;
    }

    /// One API call (or one apply attempt) of handler `i`; `ok` is the attempt's outcome.
    fn step(&mut self, i: usize, ok: bool) {
        let me = name(i);
        let local = std::mem::replace(&mut self.locals[i], Local::Idle);
        self.locals[i] = match local {
            Local::Down => Local::Idle,
            Local::Done => Local::Done,
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
                match decide_slot(&me, GENERATION, ledger.as_ref(), &states, self.max) {
                    SlotDecision::Resume => Local::Applying,
                    SlotDecision::Claim(ledger) if states[&me] == SlotState::Progressing => {
                        Local::Intent { ledger, version }
                    }
                    SlotDecision::Claim(ledger) => Local::Claimed { ledger, version },
                    SlotDecision::Wait => {
                        self.write(i, &EnactmentTransition::Pending);
                        Local::Idle
                    }
                    SlotDecision::Abort => {
                        let message = aborted_message(&me, "p");
                        self.write(i, &EnactmentTransition::Aborted { message });
                        Local::Done
                    }
                }
            }
            Local::Claimed { ledger, version } => {
                self.write(i, &EnactmentTransition::Progressing);
                Local::Intent { ledger, version }
            }
            Local::Intent { ledger, version } => {
                if !self.compare_and_swap || self.version == version {
                    self.ledger = Some(ledger);
                    self.version += 1;
                    Local::Applying
                } else {
                    Local::Idle
                }
            }
            Local::Applying if ok => {
                self.write(i, &EnactmentTransition::Success);
                Local::Done
            }
            Local::Applying => {
                let decision = self.retry.after_failure(self.retries(i));
                let failures = match &decision {
                    RetryDecision::Retry { failures, .. } | RetryDecision::GiveUp { failures } => {
                        *failures
                    }
                };
                knmstate_state_engine::rollback::record_retry_count(
                    &mut self.enactments[i].retry_count,
                    GENERATION,
                    failures,
                );
                match decision {
                    RetryDecision::Retry { failures, .. } => {
                        let message = retrying_message(&me, failures, self.retry.max_retries);
                        self.write(i, &EnactmentTransition::Retrying { message });
                        Local::Applying
                    }
                    RetryDecision::GiveUp { .. } => {
                        let message = "boom".to_owned();
                        self.write(i, &EnactmentTransition::FailedToConfigure { message });
                        Local::Done
                    }
                }
            }
        };
    }

    /// The safety properties; `Err` describes the violation.
    fn check(&self) -> Result<(), String> {
        let applying: Vec<usize> = (0..self.locals.len())
            .filter(|&i| self.locals[i] == Local::Applying)
            .collect();
        if applying.len() > self.max {
            return Err(format!(
                "{} nodes apply at once, max {}",
                applying.len(),
                self.max
            ));
        }
        let holders = self.ledger.as_ref().map(|l| &l.holders);
        if let Some(i) = applying
            .iter()
            .find(|&&i| !holders.is_some_and(|h| h.contains(&name(i))))
        {
            return Err(format!("{} applies without a ledger entry", name(*i)));
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
}

#[derive(Debug, Clone)]
enum Event {
    Step { node: usize, ok: bool },
    Crash { node: usize },
}

fn event(n: usize) -> impl Strategy<Value = Event> {
    prop_oneof![
        9 => (0..n, any::<bool>()).prop_map(|(node, ok)| Event::Step { node, ok }),
        1 => (0..n).prop_map(|node| Event::Crash { node }),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, IntOrString, Vec<Event>, Vec<bool>)> {
    (1usize..8).prop_flat_map(|n| {
        let spec = prop_oneof![
            (0i32..10).prop_map(IntOrString::Int),
            (0u32..=100).prop_map(|p| IntOrString::String(format!("{p}%"))),
        ];
        (
            Just(n),
            spec,
            proptest::collection::vec(event(n), 0..300),
            proptest::collection::vec(any::<bool>(), 1..16),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn never_more_than_max_unavailable_and_everyone_finishes(
        (n, spec, events, fair_outcomes) in scenario()
    ) {
        let max = max_unavailable(Some(&spec), n).value;
        let mut w = World::new(n, max, true);
        for e in &events {
            match *e {
                Event::Step { node, ok } => w.step(node, ok),
                Event::Crash { node } => w.crash(node),
            }
            if let Err(v) = w.check() {
                prop_assert!(false, "after {:?}: {}", e, v);
            }
        }
        // Crashes stop; every handler restarts and is scheduled round-robin.
        let mut k = 0;
        for _round in 0..10_000 {
            if w.locals.iter().all(|l| *l == Local::Done) {
                break;
            }
            for i in 0..n {
                w.step(i, fair_outcomes[k % fair_outcomes.len()]);
                k += 1;
                if let Err(v) = w.check() {
                    prop_assert!(false, "fair phase: {}", v);
                }
            }
        }
        prop_assert!(w.locals.iter().all(|l| *l == Local::Done), "not quiescent: {:?}", w.locals);
        for (node, s) in w.states() {
            prop_assert!(
                matches!(s, SlotState::Available | SlotState::FailedFinal | SlotState::Aborted),
                "{} ended {:?}", node, s
            );
        }
    }
}

/// The simulator is able to see the race: without the version precondition two handlers that
/// read the same ledger both take the last slot.
#[test]
fn blind_ledger_write_overshoots() {
    for (compare_and_swap, want_violation) in [(false, true), (true, false)] {
        let mut w = World::new(2, 1, compare_and_swap);
        // Both read the ledger, both decide, both write intent, both write the ledger.
        for node in [0, 1, 0, 1, 0, 1, 0, 1] {
            w.step(node, true);
        }
        assert_eq!(w.check().is_err(), want_violation, "cas={compare_and_swap}");
    }
}

/// A handler that crashes while holding a slot resumes it after restart instead of leaking it.
#[test]
fn crash_while_applying_resumes_the_slot() {
    let mut w = World::new(2, 1, true);
    for _ in 0..4 {
        w.step(0, true); // Idle → GotLedger → Claimed → Intent → Applying
    }
    assert_eq!(w.locals[0], Local::Applying);
    w.crash(0);
    for _ in 0..3 {
        w.step(1, true); // node1 reads the ledger and waits
    }
    assert_eq!(
        SlotState::of(Some(&w.enactments[1]), GENERATION),
        SlotState::Pending
    );
    for _ in 0..3 {
        w.step(0, true); // restart → Idle → GotLedger → Resume
    }
    assert_eq!(w.locals[0], Local::Applying);
    w.step(0, true);
    assert_eq!(
        SlotState::of(Some(&w.enactments[0]), GENERATION),
        SlotState::Available
    );
    w.check().unwrap();
}
