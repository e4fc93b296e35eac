//! The concurrency slot, through state-engine's slot protocol ([`slot::decide`]): the ledger
//! read, the policy's enactments listed after it, the decision, the ledger written against the
//! version read ([`slots`]), then ghosts marked Aborted with a `SlotExpired` event, a
//! `HandlerRestarted` event when this node resumes the slot of its previous process, and
//! Pending, Aborted or the apply. A node done with the policy sweeps for ghosts
//! ([`slot::sweep`]) until the rollout ends, so a ghost is pruned even when nobody waits.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use knmstate_api::names::{self, event as ev};
use knmstate_api::v1beta1::NodeNetworkConfigurationEnactment;
use knmstate_nm_backend::Backend;
use knmstate_state_engine::concurrency::{self, SlotState};
use knmstate_state_engine::conditions::{self as cond, EnactmentTransition};
use knmstate_state_engine::rollback;
use knmstate_state_engine::slot::{self, ExpiredHolder, SlotAction, SlotInput, SlotTiming};
use knmstate_state_engine::{plan, selector};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::Value;

use super::{Run, Step};
use crate::error::{Error, Result};
use crate::{objects, slots};

/// Attempts at the slot ledger before writing Pending.
const LEDGER_ATTEMPTS: usize = 5;

/// The policy's enactments as listed, and the slot state of each node that has one.
struct Listed {
    items: Vec<NodeNetworkConfigurationEnactment>,
    states: BTreeMap<String, SlotState>,
}

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
        for _ in 0..LEDGER_ATTEMPTS {
            let read = slots::read(&leases, &self.name).await?;
            let listed = self.list_enactments().await?;
            let limit = self.max_unavailable(listed.states.len()).await?;
            let plan = slot::decide(&self.input(&read, &listed, limit, hold_for));
            tracing::debug!(policy = %self.name, ?plan, limit, "slot decision");
            if let Some(next) = &plan.ledger
                && !slots::write(&leases, &self.policy, &read, next).await?
            {
                tracing::debug!(policy = %self.name, "slot ledger conflict; reading again");
                continue;
            }
            self.mark_expired(&plan.expired, &listed.items).await;
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
                SlotAction::Wait => {
                    self.transition(&EnactmentTransition::Pending);
                    self.write_status().await?;
                    let wait = self
                        .ctx
                        .config
                        .defaults
                        .retry
                        .initial_backoff
                        .max(Duration::from_millis(200));
                    return Ok(ControlFlow::Break(Action::requeue(wait)));
                }
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
        self.transition(&EnactmentTransition::Pending);
        self.write_status().await?;
        Ok(ControlFlow::Break(Action::requeue(Duration::from_millis(
            500,
        ))))
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
        let leases = slots::leases(&self.ctx);
        let read = slots::read(&leases, &self.name).await?;
        let listed = self.list_enactments().await?;
        let retry = &self.ctx.config.defaults.retry;
        let timing = SlotTiming::new(
            self.ctx.config.defaults.checkpoint_timeout,
            retry.max_backoff,
        );
        // A sweep never claims: the limit does not matter.
        let sweep = slot::sweep(&self.input(&read, &listed, 1, timing.hold_for));
        if let Some(next) = &sweep.ledger
            && !slots::write(&leases, &self.policy, &read, next).await?
        {
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        self.mark_expired(&sweep.expired, &listed.items).await;
        Ok(sweep
            .look_again
            .map_or_else(Action::await_change, Action::requeue))
    }

    /// Free this node's slot once its enactment shows an end (logged when it fails: the next
    /// claimant prunes the entry anyway).
    pub(super) async fn release_slot(&self) {
        if !SlotState::of(Some(&self.status), self.generation).is_final() {
            return;
        }
        if let Err(e) = slots::release(&self.ctx, &self.policy).await {
            tracing::warn!(policy = %self.name, error = %e.report(), "failed to release the slot");
        }
    }

    /// What state-engine's slot protocol decides from, now.
    fn input<'a>(
        &'a self,
        read: &'a slots::ReadLedger,
        listed: &'a Listed,
        max_unavailable: usize,
        hold_for: Duration,
    ) -> SlotInput<'a> {
        SlotInput {
            node: self.node(),
            incarnation: &self.ctx.rollout.incarnation,
            generation: self.generation,
            ledger: read.ledger.as_ref(),
            states: &listed.states,
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
    async fn mark_expired(
        &self,
        ghosts: &[ExpiredHolder],
        items: &[NodeNetworkConfigurationEnactment],
    ) {
        for ghost in ghosts {
            let Some(e) = items
                .iter()
                .find(|e| e.node_name() == Some(ghost.node.as_str()))
            else {
                continue;
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
            let name = e.name_any();
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

    /// The policy's enactments (read from the API server, not a cache) and their slot states,
    /// this node's from the status being built.
    async fn list_enactments(&self) -> Result<Listed> {
        let list = self
            .ctx
            .enactment_api()
            .list(&ListParams::default().labels(&format!("{}={}", names::POLICY_LABEL, self.name)))
            .await
            .map_err(|e| Error::read(format!("enactments of policy {}", self.name), e))?;
        let mut states: BTreeMap<String, SlotState> = list
            .items
            .iter()
            .filter_map(|e| {
                let node = e.labels().get(names::NODE_LABEL)?.clone();
                Some((node, SlotState::of(e.status.as_ref(), self.generation)))
            })
            .collect();
        states.insert(
            self.node().to_owned(),
            SlotState::of(Some(&self.status), self.generation),
        );
        Ok(Listed {
            items: list.items,
            states,
        })
    }

    /// maxUnavailable over the nodes matching the policy (at least the enactments' count).
    async fn max_unavailable(&self, enactments: usize) -> Result<usize> {
        let nodes: Api<Node> = Api::all(self.ctx.requests.client());
        let list = nodes
            .list_metadata(&ListParams::default())
            .await
            .map_err(|e| Error::read("nodes", e))?;
        let matching = list
            .items
            .iter()
            .filter(|n| {
                selector::policy_matches_node(&self.policy.spec, n.labels()).unwrap_or(false)
            })
            .count();
        let m = concurrency::max_unavailable(
            self.policy.spec.max_unavailable.as_ref(),
            matching.max(enactments),
        );
        if let Some(e) = &m.error {
            tracing::warn!(policy = %self.name, error = %e, "invalid maxUnavailable, using 50%");
        }
        Ok(m.value)
    }
}
