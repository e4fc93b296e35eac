//! After a failed attempt: Retrying (with the retry backoff) while retries are left, else
//! FailedToConfigure with the decisive error first, and a Warning event.

use std::time::Instant;

use knmstate_nm_backend::Backend;
use knmstate_state_engine::conditions::{self as cond, EnactmentTransition};
use knmstate_state_engine::rollback::{self, RetryDecision};
use kube::runtime::controller::Action;

use super::Run;
use crate::error::Result;
use knmstate_state_engine::secrets::{self, MAX_MESSAGE_BYTES};

impl<B: Backend> Run<B> {
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
