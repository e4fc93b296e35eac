//! The enactment status (written by server-side apply, only when its meaning changed) and the
//! Warning events on the policy.

use knmstate_api::names;
use knmstate_api::v1beta1::NodeNetworkConfigurationEnactment;
use knmstate_nm_backend::Backend;
use knmstate_state_engine::conditions::{EnactmentTransition, enactment_status_differs};
use kube::Resource;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};

use super::{Run, now};
use crate::error::{Error, Result};
use crate::objects;
use knmstate_state_engine::secrets;

impl<B: Backend> Run<B> {
    pub(super) fn transition(&mut self, t: &EnactmentTransition) {
        t.apply(&mut self.status.conditions, &now());
    }

    /// Server-side apply the status when its meaning changed.
    pub(super) async fn write_status(&mut self) -> Result<()> {
        if !enactment_status_differs(&self.stored, &self.status) {
            return Ok(());
        }
        let body = objects::status_patch::<NodeNetworkConfigurationEnactment>(
            &self.enactment,
            &self.status,
        );
        self.ctx
            .enactment_api()
            .patch_status(
                &self.enactment,
                &PatchParams::apply(names::field_manager::HANDLER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(|source| Error::WriteEnactmentStatus {
                name: self.enactment.clone(),
                source,
            })?;
        self.stored = self.status.clone();
        Ok(())
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
            .recorder
            .publish(&ev, &self.policy.object_ref(&()))
            .await
        {
            tracing::warn!(error = %e, "failed to publish an event");
        }
    }
}
