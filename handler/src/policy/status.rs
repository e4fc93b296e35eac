//! The enactment status (written by server-side apply, only when its meaning changed, and
//! never over state-engine's size cap, with the feature statistics once they are done) and the
//! Warning events on the policy.

use knmstate_api::names;
use knmstate_api::v1beta1::NodeNetworkConfigurationEnactment;
use knmstate_nm_backend::Backend;
use knmstate_state_engine::concurrency::SlotState;
use knmstate_state_engine::conditions::{
    self as cond, EnactmentTransition, enactment_status_differs,
};
use knmstate_state_engine::status_cap::{self, MAX_ENACTMENT_STATUS_BYTES};
use kube::Resource;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};

use super::{Run, now};
use crate::error::{Error, Result};
use crate::objects;
use knmstate_state_engine::secrets;

/// Tries of a status write that fails without an answer from the API server.
const STATUS_WRITE_TRIES: usize = 2;

impl<B: Backend> Run<B> {
    pub(super) fn transition(&mut self, t: &EnactmentTransition) {
        t.apply(&mut self.status.conditions, &now());
    }

    /// Server-side apply the status when its meaning changed.
    ///
    /// A status over the size cap (a huge desiredState or capturedStates) is written without
    /// those fields. A node that waits for a slot or aborted says so as usual; any other
    /// (about to apply, or done) is written Failing instead, its slot released, a Warning event
    /// emitted, and [`Error::CapEnactmentStatus`] ends the reconcile until the policy changes:
    /// without the cap every write would fail and the reconcile would requeue forever holding
    /// its slot. So the cap fails the policy inside a slot, on at most maxUnavailable nodes.
    pub(super) async fn write_status(&mut self) -> Result<()> {
        // The feature statistics go with the first write after they are done; an end state
        // waits for them.
        let ended = SlotState::of(Some(&self.status), self.generation).is_final();
        self.collect_features(ended).await;
        let bytes = status_cap::status_bytes(&self.status);
        if let Some(problem) = status_cap::cap_status(&mut self.status, MAX_ENACTMENT_STATUS_BYTES)
        {
            let waiting = matches!(
                SlotState::of(Some(&self.status), self.generation),
                SlotState::Idle | SlotState::Pending | SlotState::Aborted
            );
            if waiting {
                return self.patch_status().await.map(drop);
            }
            let message = secrets::cap_message(
                &cond::failed_to_configure_message_of(self.node(), &problem),
                secrets::MAX_MESSAGE_BYTES,
            );
            self.transition(&EnactmentTransition::FailedToConfigure { message });
            if self.patch_status().await? {
                self.warn(
                    names::event::REASON_STATUS_TOO_LARGE,
                    names::event::ACTION_RECONCILE,
                    &problem,
                )
                .await;
            }
            self.release_slot().await;
            return Err(Error::CapEnactmentStatus {
                name: self.enactment.clone(),
                bytes,
            });
        }
        self.patch_status().await.map(drop)
    }

    /// Server-side apply the status when its meaning changed; whether it was written.
    async fn patch_status(&mut self) -> Result<bool> {
        if !enactment_status_differs(&self.stored, &self.status) {
            return Ok(false);
        }
        let body = objects::status_patch::<NodeNetworkConfigurationEnactment>(
            &self.enactment,
            &self.status,
        );
        let params = PatchParams::apply(names::field_manager::HANDLER).force();
        let mut tries = 0;
        loop {
            tries += 1;
            let written = self
                .ctx
                .enactment_api()
                .patch_status(&self.enactment, &params, &Patch::Apply(&body))
                .await;
            match written {
                Ok(stored) => {
                    self.ctx.remember_enactment(&stored);
                    break;
                }
                // A connection that failed (timed out, reset) is not reused: try a new one now
                // rather than after the reconcile's backoff.
                Err(e) if tries < STATUS_WRITE_TRIES && !matches!(e, kube::Error::Api(_)) => {
                    tracing::warn!(enactment = %self.enactment, error = %e,
                        "failed to write the enactment status; trying again");
                }
                Err(source) => {
                    return Err(Error::WriteEnactmentStatus {
                        name: self.enactment.clone(),
                        source,
                    });
                }
            }
        }
        self.stored = self.status.clone();
        Ok(true)
    }

    /// A Warning event `ReconcileFailed` on the policy (errors are only logged).
    pub(super) async fn event(&self, note: &str) {
        self.warn(
            names::event::REASON_RECONCILE_FAILED,
            names::event::ACTION_RECONCILE,
            note,
        )
        .await;
    }

    /// A Warning event on the policy with this reason and action (errors are only logged).
    pub(super) async fn warn(&self, reason: &str, action: &str, note: &str) {
        let note = secrets::scrub_capped(note, &self.desired, 1024);
        let ev = Event {
            type_: EventType::Warning,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self
            .ctx
            .requests
            .recorder()
            .publish(&ev, &self.policy.object_ref(&()))
            .await
        {
            tracing::warn!(error = %e, "failed to publish an event");
        }
    }
}
