//! After a failed attempt: Retrying (with the retry backoff) while retries are left, else
//! FailedToConfigure with the decisive error first, and a Warning event. An attempt during
//! which the handler died (killed, out of memory, panicked, evicted) counts as a failed one:
//! start-up recovery rolled it back and handed it over, so a policy that kills the handler is
//! not re-applied forever (upstream #1440's pattern). An apply that a checkpoint of another
//! tool kept from starting is no attempt at all: the node waits for it, without its slot.

use std::ops::ControlFlow;
use std::time::Instant;

use knmstate_api::shared::ApplyReport;
use knmstate_nm_backend::{Attempt, Backend};
use knmstate_state_engine::conditions::{self as cond, EnactmentTransition};
use knmstate_state_engine::rollback::{self, RetryDecision};
use kube::runtime::controller::Action;

use super::{Run, Step, now};
use crate::error::Result;
use crate::slots;
use knmstate_state_engine::secrets::{self, MAX_MESSAGE_BYTES};

/// The failure of an attempt during which the handler died.
fn died_message(attempt: u32) -> String {
    format!(
        "the handler died during the apply (attempt {attempt}: killed, out of memory or \
         crashed); its changes were rolled back when it started again"
    )
}

/// `status.lastApply` of an attempt during which the handler died.
fn died_report() -> ApplyReport {
    ApplyReport {
        rolled_back: true,
        rollback_reason: "handler-died".into(),
        ..ApplyReport::default()
    }
}

impl<B: Backend> Run<B> {
    /// Count the attempts of this policy that died with the handler (start-up recovery rolled
    /// them back): an attempt of this generation not counted yet is a failure (Retrying with
    /// the backoff, or FailedToConfigure), and ends this reconcile. Attempts of other
    /// generations no longer matter.
    pub(super) async fn count_interrupted(&mut self) -> Result<Step> {
        let ctx = self.ctx.clone();
        let backend = &ctx.backend;
        let mine: Vec<Attempt> = backend
            .interrupted_attempts()
            .into_iter()
            .filter(|a| a.policy == self.name)
            .collect();
        let mut outcome = ControlFlow::Continue(());
        for attempt in mine {
            let counted = rollback::retry_count(Some(&self.status), self.generation);
            if attempt.generation == self.generation && attempt.number > counted {
                tracing::warn!(policy = %self.name, generation = self.generation,
                    attempt = attempt.number, "counting an attempt during which the handler died");
                rollback::record_retry_count(
                    &mut self.status.retry_count,
                    self.generation,
                    attempt.number - 1,
                );
                self.status.last_apply = Some(died_report());
                let action = self.after_failure(&died_message(attempt.number)).await?;
                outcome = ControlFlow::Break(action);
            }
            // Counted (its status is written) or moot.
            backend.forget_interrupted(&attempt);
            if outcome.is_break() {
                break;
            }
        }
        Ok(outcome)
    }

    /// The apply did not start: NetworkManager holds `checkpoints` another tool created. It
    /// touched nothing and is not the policy's failure, so no attempt is used (state-engine's
    /// [`RetryPolicy::wait_for_foreign_checkpoints`](rollback::RetryPolicy)): Pending with a
    /// message naming them, the slot given back, and another try after the backoff. The
    /// checkpoints are left to their owner or their rollback timeout.
    pub(super) async fn wait_for_foreign_checkpoints(
        &mut self,
        checkpoints: &[String],
    ) -> Result<Action> {
        let ctx = self.ctx.clone();
        let waits = ctx.rollout.foreign_wait(&self.name);
        let wait = ctx
            .config
            .defaults
            .retry
            .wait_for_foreign_checkpoints(checkpoints, waits);
        tracing::warn!(policy = %self.name, ?checkpoints, waits, delay = ?wait.delay,
            "NetworkManager holds checkpoints knmstate did not create: waiting for them to go");
        rollback::mark_waiting_for_foreign_checkpoints(
            &mut self.status.conditions,
            &wait.message,
            &now(),
        );
        self.write_status().await?;
        if let Err(e) = slots::release(&ctx, &self.policy).await {
            tracing::warn!(policy = %self.name, error = %e.report(), "failed to release the slot");
        }
        Ok(Action::requeue(wait.delay))
    }

    /// Record the failure of this attempt (`error`, secrets in clear) and decide what next.
    pub(super) async fn after_failure(&mut self, error: &str) -> Result<Action> {
        let failures_before = rollback::retry_count(Some(&self.status), self.generation);
        let ctx = self.ctx.clone();
        let retry = ctx.config.defaults.retry;
        let scrubbed = secrets::scrub(error, &self.desired);
        // Scrubbed before it is cut, so that no part of a secret survives the cut.
        tracing::warn!(policy = %self.name, error = %secrets::cap_message(&scrubbed, 4096), "failed to apply");
        match retry.after_failure(failures_before) {
            RetryDecision::Retry { failures, delay } => {
                rollback::record_retry_count(
                    &mut self.status.retry_count,
                    self.generation,
                    failures,
                );
                let message = cond::retrying_message(self.node(), failures, retry.max_retries);
                self.transition(&EnactmentTransition::Retrying { message });
                self.write_status().await?;
                ctx.not_before
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(self.name.clone(), Instant::now() + delay);
                Ok(Action::requeue(delay))
            }
            RetryDecision::GiveUp { failures } => {
                rollback::record_retry_count(
                    &mut self.status.retry_count,
                    self.generation,
                    failures,
                );
                let message = secrets::cap_message(
                    &cond::failed_to_configure_message_of(self.node(), &scrubbed),
                    MAX_MESSAGE_BYTES,
                );
                self.transition(&EnactmentTransition::FailedToConfigure { message });
                self.write_status().await?;
                self.event(&cond::failed_event_message(
                    self.node(),
                    &self.name,
                    failures,
                ))
                .await;
                Ok(Action::await_change())
            }
        }
    }
}
