//! Dry runs: a policy annotated `nmstate.io/dry-run: "true"` is planned on this node, not
//! applied. The plan (state-engine's [`dry_run::enactment_plan`] of the rendered desired state
//! over the node's state, with the probes that would guard the apply) goes to the enactment's
//! `status.plan`, and `Available` says `ConfigurationPlanned`. The network is never touched:
//! this step ends the reconcile before the apply decision. Removing the annotation drops the
//! plan and applies the policy.
//!
//! The annotation is not part of the spec, so it does not move the policy's generation: the
//! policy controller is also triggered by a change of the switches ([`trigger_hash`]).

use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;

use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_nm_backend::Backend;
use knmstate_state_engine::conditions::EnactmentTransition;
use knmstate_state_engine::dry_run::{self, PolicySwitches};
use knmstate_state_engine::secrets;
use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::{Run, Step, now};
use crate::error::{Error, Result};

/// What re-runs a policy: its generation, or a change of its dry-run or re-apply-on-drift
/// switch (a predicate for the policy watch).
pub fn trigger_hash(policy: &NodeNetworkConfigurationPolicy) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    policy.metadata.generation.hash(&mut h);
    PolicySwitches::of(policy.annotations()).hash(&mut h);
    Some(h.finish())
}

impl<B: Backend> Run<B> {
    /// Plan instead of applying while the policy is a dry run; when a dry run is over, drop
    /// its plan and go on to apply.
    pub(super) async fn dry_run(&mut self) -> Result<Step> {
        if !PolicySwitches::of(self.policy.annotations()).dry_run {
            if dry_run::leaving_dry_run(&self.status) {
                tracing::info!(policy = %self.name, "dry run over: applying");
                self.status.plan = None;
                // No longer `Available`: the apply decision applies it.
                self.transition(&EnactmentTransition::Pending);
            }
            return Ok(ControlFlow::Continue(()));
        }
        let current = self
            .ctx
            .backend
            .current_state()
            .await
            .map_err(Error::ReadNetworkState)?;
        let fresh = dry_run::enactment_plan(
            &secrets::hidden(&current.state),
            &secrets::hidden(&self.desired),
            self.policy.spec.probes.as_ref(),
            &self.ctx.config.defaults,
            &now(),
        );
        let plan = dry_run::next_plan(self.status.plan.as_ref(), fresh);
        tracing::info!(policy = %self.name, changes = ?plan.summary, probes = ?plan.probes, "dry run: planned, not applied");
        let message = dry_run::planned_message(&plan);
        self.status.plan = Some(plan);
        self.status.drift = None;
        self.transition(&EnactmentTransition::Planned { message });
        self.write_status().await?;
        Ok(ControlFlow::Break(Action::await_change()))
    }
}
