//! Render the desired state of this node: captures resolved (reusing `status.capturedStates`)
//! against the node's state as the handler keeps it ([`crate::nns::StateCache`]: read again
//! only when the node changed since), the default linux-bridge VLAN trunk; a rendering that
//! cannot work on this node fails for good (until the policy changes). nmstate's feature
//! statistics are not computed here: they never fail a policy (see `features.rs`).

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use knmstate_api::State;
use knmstate_api::shared::{
    NodeNetworkConfigurationEnactmentCapturedState, NodeNetworkConfigurationEnactmentMetaInfo,
};
use knmstate_nm_backend::{Backend, BackendError};
use knmstate_state_engine::conditions::{self as cond, EnactmentTransition};
use knmstate_state_engine::render;
use kube::runtime::controller::Action;

use super::{Run, Step, now};
use crate::error::{Error, Result};
use knmstate_state_engine::secrets::{self, MAX_MESSAGE_BYTES};

impl<B: Backend> Run<B> {
    /// Render the desired state into `self.desired` and the status.
    pub(super) async fn render(&mut self) -> Result<Step> {
        let policy_value = render::nmpolicy(&self.policy.spec);
        let cache = render::reusable_captures(&self.stored);
        let current = self
            .ctx
            .node_state
            .current(&self.ctx.backend)
            .await
            .map_err(Error::ReadNetworkState)?;
        let resolved =
            match knmstate_nm_backend::resolve_policy(&policy_value, &current.state, &cache) {
                Ok(r) => r,
                Err(e) => return self.render_failed(e).await,
            };
        let desired = render::finish(resolved.desired_state, self.ctx.inject_bridge_vlan().await);
        let meta = NodeNetworkConfigurationEnactmentMetaInfo {
            version: knmstate_nm_backend::NMSTATE_VERSION.to_owned(),
            time: Some(now()),
        };
        let mut captured = BTreeMap::new();
        for (k, v) in resolved.captured_states {
            let keep = self
                .stored
                .captured_states
                .get(&k)
                .filter(|old| old.state.as_ref().map(State::to_value).as_ref() == Some(&v))
                .cloned();
            let entry = keep.unwrap_or_else(|| NodeNetworkConfigurationEnactmentCapturedState {
                state: State::try_from(secrets::hidden(&v)).ok(),
                meta_info: Some(meta.clone()),
            });
            captured.insert(k, entry);
        }
        self.status.desired_state = State::try_from(secrets::hidden(&desired)).ok();
        self.status.captured_states = captured;
        self.status.policy_generation = Some(self.generation);
        self.desired = desired;
        Ok(ControlFlow::Continue(()))
    }

    async fn render_failed(&mut self, e: BackendError) -> Result<Step> {
        let final_failure = matches!(
            e,
            BackendError::ResolvePolicy(_)
                | BackendError::NmstatePanic { .. }
                | BackendError::InvalidDesiredState(_)
        );
        if !final_failure {
            return Err(Error::ReadNetworkState(e));
        }
        let spec_state = self
            .policy
            .spec
            .desired_state
            .as_ref()
            .map(State::to_value)
            .unwrap_or_default();
        let msg = secrets::scrub_capped(&e.to_string(), &spec_state, MAX_MESSAGE_BYTES);
        tracing::warn!(policy = %self.name, category = e.category(), error = %msg, "failed to render the desired state");
        self.fail_for_good(msg).await
    }

    /// Fail for good when the rendered desired state needs bridge VLAN filtering and this
    /// node's kernel lacks it (NetworkManager would fail later with an unclear error).
    pub(super) async fn check_bridge_vlan_filtering(&mut self) -> Result<Step> {
        let Some((interface, what)) = render::bridge_vlan_filtering_needed(&self.desired) else {
            return Ok(ControlFlow::Continue(()));
        };
        if self.ctx.kernel_bridge_vlan_filtering().await {
            return Ok(ControlFlow::Continue(()));
        }
        let err = Error::CheckBridgeVlanFiltering {
            interface,
            what: what.to_owned(),
        };
        let msg = err.to_string();
        tracing::warn!(policy = %self.name, category = err.category(), error = %msg, "not applying");
        self.fail_for_good(msg).await
    }

    /// FailedToConfigure ("failure generating …") without retry until the policy changes, as
    /// upstream does when rendering fails.
    async fn fail_for_good(&mut self, msg: String) -> Result<Step> {
        self.status.policy_generation = Some(self.generation);
        self.transition(&EnactmentTransition::GenerateFailure { error: msg.clone() });
        self.write_status().await?;
        self.event(&cond::generate_failure_message(&msg)).await;
        Ok(ControlFlow::Break(Action::await_change()))
    }
}
