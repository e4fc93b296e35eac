//! The concurrency slot, through state-engine's slot protocol ([`slot::decide`]): the ledger
//! and the policy's enactments read from the handler's watch caches ([`crate::caches`]; the
//! nodes whose cached state disagrees with the ledger read again), the decision, the ledger
//! written against the version read ([`slots`]; after a conflict, against a fresh read), then
//! ghosts marked Aborted with a `SlotExpired` event, a `HandlerRestarted` event when this node
//! resumes the slot of its previous process, and Pending, Aborted or the apply. A node that
//! must wait ends its reconcile and is woken by the caches ([`crate::slot_wait`]), not by a
//! timer. A node done with the policy sweeps for ghosts ([`slot::sweep`]) until the rollout
//! ends, so a ghost is pruned even when nobody waits.

use std::ops::ControlFlow;
use std::time::Duration;

use knmstate_api::names::{self, event as ev};
use knmstate_api::v1beta1::NodeNetworkConfigurationEnactment;
use knmstate_nm_backend::Backend;
use knmstate_state_engine::concurrency::SlotState;
use knmstate_state_engine::conditions::{self as cond, EnactmentTransition};
use knmstate_state_engine::plan;
use knmstate_state_engine::rollback;
use knmstate_state_engine::slot::{self, ExpiredHolder, SlotAction, SlotInput, SlotTiming};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use serde_json::Value;

use super::{Run, Step};
use crate::error::Result;
use crate::{objects, slot_wait, slots};

/// Attempts at the slot ledger before writing Pending (one more for the stagger).
const LEDGER_ATTEMPTS: usize = 6;

/// The pause between two claimants that go together, per place: a ledger write and its watch
/// event take about that long.
const CLAIM_STAGGER: Duration = Duration::from_millis(25);

/// Upper bound of the random pause after a conflicting ledger write, per attempt.
const CONFLICT_SPREAD: Duration = Duration::from_millis(20);

use super::slot_view::{Source, View};

impl<B: Backend> Run<B> {
    /// Take a concurrency slot for an apply over `before`; ends the reconcile when this node
    /// must not apply now.
    ///
    /// The slot is won by the ledger write alone; `Progressing` is written afterwards, by the
    /// apply. A node leaving an end state (a drifted node applying again) first writes
    /// `Pending`, so its old end state can not make its entry look done to the others.
    pub(super) async fn take_slot(&mut self, before: &Value) -> Result<Step> {
        if SlotState::of(Some(&self.status), self.generation).is_final() {
            self.transition(&EnactmentTransition::Pending);
            self.write_status().await?;
        }
        let leases = slots::leases(&self.ctx);
        let hold_for = self.timing(before).hold_for;
        self.ctx.caches.ready().await;
        let mut source = Source::Cache;
        let mut staggered = false;
        for attempt in 0..LEDGER_ATTEMPTS {
            let view = self
                .view(&leases, std::mem::replace(&mut source, Source::Cache))
                .await?;
            let selected = self.ctx.caches.matching(&self.policy).len();
            let limit = self
                .ctx
                .caches
                .max_unavailable(&self.policy, selected.max(view.states.len()));
            // First with the disputed nodes at their worst; read again only when that does not
            // claim.
            let (view, mut plan) = if let Some(plan) = self.claim_at_worst(&view, limit, hold_for) {
                (view, plan)
            } else {
                let view = self.settle(view).await?;
                let plan = slot::decide(&self.input(&view, limit, hold_for));
                (view, plan)
            };
            tracing::debug!(policy = %self.name, ?plan, limit, "slot decision");
            if plan.action == SlotAction::Apply {
                let Some(place) = self.turn(&view, limit) else {
                    return self.wait_for_slot().await;
                };
                // Claimants that go together write one after the other, each after the
                // previous write reached its cache, instead of all against the same version.
                if place > 0 && !staggered {
                    staggered = true;
                    let place = u32::try_from(place).unwrap_or(u32::MAX);
                    tokio::time::sleep(CLAIM_STAGGER.saturating_mul(place)).await;
                    continue;
                }
            }
            let claim = (plan.action == SlotAction::Apply)
                .then(|| slots::name_claim(plan.ledger.as_mut(), self.node()))
                .flatten();
            if let Some(next) = &plan.ledger
                && !slots::write(&leases, &self.policy, &view.read, next).await?
            {
                tracing::debug!(policy = %self.name, "slot ledger conflict; reading again");
                // Spread the claimants that conflicted, so the next round does not collide.
                let rounds = u32::try_from(attempt + 1).unwrap_or(u32::MAX);
                let spread = CONFLICT_SPREAD
                    .saturating_mul(rounds)
                    .mul_f64(fastrand::f64());
                tokio::time::sleep(spread).await;
                source = Source::AfterConflict(view.read.resource_version.clone());
                continue;
            }
            if plan.action == SlotAction::Apply {
                self.claimed = Some(super::fence::Claimed::now());
                self.claim = claim;
            }
            if plan.action != SlotAction::Wait {
                self.ctx.slot_waits.done(&self.name);
            }
            self.mark_expired(&plan.expired).await;
            match plan.action {
                SlotAction::Apply => {
                    if plan.restarted {
                        let note = slot::restarted_message(self.node(), &self.name);
                        tracing::warn!(policy = %self.name, "{note}");
                        self.warn(ev::REASON_HANDLER_RESTARTED, ev::ACTION_SLOT, &note)
                            .await;
                    }
                    return Ok(ControlFlow::Continue(()));
                }
                SlotAction::Wait => return self.wait_for_slot().await,
                SlotAction::Abort => {
                    let message = cond::aborted_message(self.node(), &self.name);
                    self.transition(&EnactmentTransition::Aborted {
                        message: message.clone(),
                    });
                    self.write_status().await?;
                    self.event(&message).await;
                    return Ok(ControlFlow::Break(self.watch_slots().await?));
                }
                // Marked Aborted with the others above.
                SlotAction::Expired => return Ok(ControlFlow::Break(Action::await_change())),
            }
        }
        self.wait_for_slot().await
    }

    /// Whether a claim of a free slot is this node's turn, and its place among the claimants
    /// that go now (0 first): it holds the slot already (first), the slot wait woke it, or it
    /// ranks among the first waiting nodes ([`slot_wait`]) — so a new policy does not have
    /// every node write the ledger at once. `None`: not its turn.
    fn turn(&self, view: &View, limit: usize) -> Option<usize> {
        let holds =
            view.read.ledger.as_ref().is_some_and(|l| {
                l.generation == self.generation && l.holders.contains(self.node())
            });
        if holds {
            return Some(0);
        }
        let matching = self.ctx.caches.matching(&self.policy);
        let (free, rank) = slot_wait::rank(
            view.read.ledger.as_ref(),
            self.generation,
            &view.states,
            &matching,
            limit,
            self.node(),
        );
        let turns = slot_wait::turns(free);
        if rank < turns || self.ctx.slot_waits.woken(&self.name) {
            Some(rank.min(turns.saturating_sub(1)))
        } else {
            None
        }
    }

    /// No slot now: Pending, and woken by the caches when one may be free.
    async fn wait_for_slot(&mut self) -> Result<Step> {
        self.transition(&EnactmentTransition::Pending);
        self.write_status().await?;
        self.ctx.slot_waits.wait(&self.name);
        Ok(ControlFlow::Break(Action::await_change()))
    }

    /// Apply over `before` while the heartbeat renews this node's slot leases; once the
    /// enactment shows an end, release the slot and watch the others'.
    pub(super) async fn apply_holding_slot(&mut self, before: Value) -> Result<Action> {
        let ctx = self.ctx.clone();
        let policy = self.policy.clone();
        let action = tokio::select! {
            action = self.apply(before) => action?,
            never = slots::heartbeat(&ctx, &policy) => match never {},
        };
        if !SlotState::of(Some(&self.status), self.generation).is_final() {
            return Ok(action);
        }
        self.release_slot().await;
        self.watch_slots().await
    }

    /// This node is done with the policy: sweep the ledger for ghosts and look again when a
    /// lease runs out, while the rollout has not ended.
    pub(super) async fn watch_slots(&mut self) -> Result<Action> {
        self.ctx.slot_waits.done(&self.name);
        let leases = slots::leases(&self.ctx);
        self.ctx.caches.ready().await;
        let retry = &self.ctx.config.defaults.retry;
        let timing = SlotTiming::new(
            self.ctx.config.defaults.checkpoint_timeout,
            retry.max_backoff,
        );
        // First from the caches alone: holders that ended release their slots themselves (an
        // entry left behind no longer counts), so a sweep writes only to prune a ghost; then, for
        // that write, with the disputed nodes read again.
        let cached = View {
            read: slots::cached(&self.ctx, &self.name),
            states: self.ctx.caches.states(&self.name, self.generation),
            disputed: Vec::new(),
        };
        // A sweep never claims: the limit does not matter.
        let sweep = slot::sweep(&self.input(&cached, 1, timing.hold_for));
        if sweep.expired.is_empty() {
            return Ok(sweep
                .look_again
                .map_or_else(Action::await_change, Action::requeue));
        }
        let view = self.view(&leases, Source::Cache).await?;
        let view = self.settle(view).await?;
        let sweep = slot::sweep(&self.input(&view, 1, timing.hold_for));
        if let Some(next) = &sweep.ledger
            && !slots::write(&leases, &self.policy, &view.read, next).await?
        {
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        self.mark_expired(&sweep.expired).await;
        Ok(sweep
            .look_again
            .map_or_else(Action::await_change, Action::requeue))
    }

    /// Free this node's slot once its enactment shows an end. When it fails the entry stays,
    /// uncounted (the enactment shows the end), until the next generation; it is logged.
    pub(super) async fn release_slot(&self) {
        if !SlotState::of(Some(&self.status), self.generation).is_final() {
            return;
        }
        if let Err(e) = slots::release(&self.ctx, &self.policy).await {
            tracing::warn!(policy = %self.name, error = %e.report(), "failed to release the slot");
        }
    }

    /// What state-engine's slot protocol decides from, now.
    pub(super) fn input<'a>(
        &'a self,
        view: &'a View,
        max_unavailable: usize,
        hold_for: Duration,
    ) -> SlotInput<'a> {
        SlotInput {
            node: self.node(),
            incarnation: &self.ctx.rollout.incarnation,
            generation: self.generation,
            ledger: view.read.ledger.as_ref(),
            states: &view.states,
            max_unavailable,
            now: slots::now(),
            hold_for,
        }
    }

    /// The lease length and heartbeat of an apply over `before`: its plan's checkpoint timeout
    /// (raised to cover the probes) plus the margin.
    fn timing(&self, before: &Value) -> SlotTiming {
        let defaults = &self.ctx.config.defaults;
        let probes = rollback::select_probes(
            &plan::plan(before, &self.desired),
            before,
            self.policy.spec.probes.as_ref(),
            defaults,
        );
        SlotTiming::new(probes.checkpoint_timeout, defaults.retry.max_backoff)
    }

    /// Mark each ghost's enactment Aborted (unless it already ended) and emit `SlotExpired`.
    /// Failures are logged: the tombstone stays in the ledger, the next decision marks again.
    async fn mark_expired(&self, ghosts: &[ExpiredHolder]) {
        for ghost in ghosts {
            // Read now (the cache keeps only slot states): the status is written back whole.
            let name = names::enactment_name(&ghost.node, &self.name);
            let e = match self.ctx.enactment_api().get_opt(&name).await {
                Ok(Some(e)) => e,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(policy = %self.name, ghost = %ghost.node, error = %e, "failed to read an expired slot holder's enactment");
                    continue;
                }
            };
            let mut status = e.status.clone().unwrap_or_default();
            if SlotState::of(Some(&status), self.generation).is_final() {
                continue;
            }
            // A ghost that died before its first status write of this generation.
            cond::enter_generation(&mut status, self.generation);
            let message = slot::expired_message(&ghost.node, &self.name, &ghost.lease);
            EnactmentTransition::Aborted {
                message: message.clone(),
            }
            .apply(&mut status.conditions, &slots::now());
            let body = objects::status_patch::<NodeNetworkConfigurationEnactment>(&name, &status);
            let written = self
                .ctx
                .enactment_api()
                .patch_status(
                    &name,
                    &PatchParams::apply(names::field_manager::HANDLER).force(),
                    &Patch::Apply(&body),
                )
                .await;
            match written {
                Ok(_) => {
                    tracing::warn!(policy = %self.name, ghost = %ghost.node, "{message}");
                    self.warn(ev::REASON_SLOT_EXPIRED, ev::ACTION_SLOT, &message)
                        .await;
                }
                Err(e) => {
                    tracing::warn!(policy = %self.name, ghost = %ghost.node, error = %e, "failed to mark an expired slot holder Aborted");
                }
            }
        }
    }
}
