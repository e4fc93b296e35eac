//! Drift of an applied policy, judged first thing when the policy is reconciled (the change
//! stream asks for that when the node departs from it, see [`crate::drift`]): the node is
//! compared with the desired state rendered for the generation it applied
//! (`status.desiredState`) by state-engine's [`drift::differing_paths`] (nmstate's desired ⊆
//! current rule). A drifted `Available` enactment gets `status.drift` (the differing paths,
//! since when) and a Warning event `ConfigurationDrifted` on the policy; the report goes when
//! the node satisfies the policy again.
//!
//! Drift is repaired, by the ordinary apply (slot, probes, rollback), when the policy opts in
//! with `nmstate.io/reapply-on-drift: "true"`, and at the first look after the handler starts
//! (a restart re-applies a drifted policy, as before); otherwise it is only reported.

use std::ops::ControlFlow;

use knmstate_api::names;
use knmstate_nm_backend::Backend;
use knmstate_state_engine::drift;
use knmstate_state_engine::dry_run::PolicySwitches;
use knmstate_state_engine::secrets;
use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::{Run, Step, now};
use crate::error::{Error, Result};

impl<B: Backend> Run<B> {
    /// Report drift of this node from the generation it applied, judged against the desired
    /// state stored when it was applied (so a drift report needs no render); ends the
    /// reconcile when drift is only reported.
    pub(super) async fn check_drift(&mut self) -> Result<Step> {
        let first_look = self.ctx.first_drift_look(&self.name);
        let switches = PolicySwitches::of(self.policy.annotations());
        let desired = self
            .status
            .desired_state
            .as_ref()
            .map(knmstate_api::State::to_value);
        let (true, Some(desired), false) = (
            drift::watched(Some(&self.status), self.generation),
            desired,
            switches.dry_run,
        ) else {
            // Not applied (or applying, or planning): no report speaks for it.
            self.status.drift = None;
            return Ok(ControlFlow::Continue(()));
        };
        let current = self
            .ctx
            .backend
            .current_state()
            .await
            .map_err(Error::ReadNetworkState)?;
        let paths = drift::differing_paths(&desired, &secrets::hidden(&current.state));
        let reapply = switches.reapply_on_drift || first_look;
        let stored = self.status.drift.take();
        self.status.drift = drift::next_report(stored.as_ref(), paths, reapply, &now());
        let Some(report) = self.status.drift.clone() else {
            if stored.is_some() {
                tracing::info!(policy = %self.name, "no longer drifted");
            }
            return Ok(ControlFlow::Continue(()));
        };
        if stored.as_ref() != Some(&report) {
            tracing::warn!(policy = %self.name, paths = ?report.paths, reapply, "the node drifted from the policy");
            self.write_status().await?;
            let note = format!(
                "node {} no longer satisfies the policy at {}{}",
                self.node(),
                report.paths.join(", "),
                if reapply { "; re-applying" } else { "" }
            );
            self.warn(
                names::event::REASON_DRIFTED,
                names::event::ACTION_DETECT_DRIFT,
                &note,
            )
            .await;
        }
        Ok(if reapply {
            // The ordinary path: render, the apply decision (the node does not satisfy the
            // desired state: apply), slot, probes, commit or roll back.
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(Action::await_change())
        })
    }
}
