//! The policy reconcile (upstream's NNCP reconcile, with the improvements of this project),
//! one file per step:
//!
//! | step | file |
//! |---|---|
//! | selector match → create or delete this node's enactment | `enactment.rs` |
//! | wait for the retry backoff and for earlier policies (name order) | `ordering.rs` |
//! | drift of an applied generation: `status.drift`, event; re-applied only when opted in | `drift.rs` |
//! | render (captures resolved against the node's state as kept by `nns/cache.rs`, reusing `status.capturedStates`; default linux-bridge VLAN trunk) | `render.rs` |
//! | nmstate's feature statistics (beside the apply, logged, never failing the policy) | `features.rs` |
//! | dry run (`nmstate.io/dry-run`): the plan to `status.plan`, nothing applied | `dry_run.rs` |
//! | apply decision (a generation that succeeded, and that the node still satisfies, or whose retries are exhausted, is not applied again) | this file |
//! | slot (state-engine's slot protocol: Pending, Aborted, or Progressing; ghosts pruned; the lease renewed while applying, released after) | `slot.rs` |
//! | the apply transaction (apply without commit → probes → commit, or roll back) | `apply.rs` |
//! | the slot fence: still a live holder right before the apply, the commit and a failure report? | `fence.rs` |
//! | Retrying / FailedToConfigure after a failed attempt | `retry.rs` |
//! | the enactment status and events | `status.rs` |
//! | how long each step took (`status.lastApply.steps`) | `steps.rs` |
//!
//! Each step returns a `Step`: go on, or end the reconcile with an [`Action`].
//!
//! Policies are reconciled one at a time (controller concurrency 1, plus an apply lock), and a
//! policy defers to a policy earlier in name order that also matches this node and has not been
//! tried for its generation yet, so a burst (startup, node label change) applies in name order.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use knmstate_api::State;
use knmstate_api::shared::{ApplySteps, NodeNetworkConfigurationEnactmentStatus};
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::NodeNetworkConfigurationEnactment;
use knmstate_nm_backend::Backend;
use knmstate_state_engine::conditions::{self as cond, EnactmentTransition};
use knmstate_state_engine::plan;
use knmstate_state_engine::rollback::{self, ApplyDecision};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use serde_json::Value;

use crate::context::Context;
use crate::error::{Error, Result};
use knmstate_state_engine::secrets;

/// What a step of the reconcile decided: go on (with what it produced), or end the reconcile
/// with this action.
type Step<T = ()> = ControlFlow<Action, T>;

/// The value of a step that goes on; returns the action from the reconcile when it ends it.
macro_rules! step {
    ($step:expr) => {
        match $step? {
            ControlFlow::Continue(value) => value,
            ControlFlow::Break(action) => return Ok(action),
        }
    };
}

mod apply;
mod drift;
mod dry_run;
mod enactment;
mod features;
mod fence;
mod ordering;
mod render;
mod retry;
mod slot;
mod slot_view;
mod status;
mod steps;

pub use dry_run::trigger_hash;
pub use enactment::delete_enactment;

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// The controller's error policy: log, and try again after the initial backoff.
// kube's `Controller::run` hands the object and the context over by value.
#[allow(clippy::needless_pass_by_value)]
pub fn error_policy<B: Backend>(
    policy: Arc<NodeNetworkConfigurationPolicy>,
    err: &Error,
    ctx: Arc<Context<B>>,
) -> Action {
    if matches!(err, Error::ShuttingDown) {
        return Action::await_change();
    }
    if let Error::CapEnactmentStatus { .. } = err {
        // Written Failing; nothing to retry until the policy changes.
        tracing::warn!(policy = %policy.name_any(), category = err.category(), error = %err.report(), "enactment status over the size cap");
        return Action::await_change();
    }
    let spec_state = policy
        .spec
        .desired_state
        .as_ref()
        .map(State::to_value)
        .unwrap_or_default();
    let error = secrets::scrub(&err.report(), &spec_state);
    tracing::warn!(policy = %policy.name_any(), category = err.category(), %error, "failed to reconcile the policy");
    Action::requeue(
        ctx.config
            .defaults
            .retry
            .initial_backoff
            .max(Duration::from_millis(500)),
    )
}

/// Reconcile one policy on this node.
#[tracing::instrument(skip_all, fields(policy = %policy.name_any(), node = %ctx.node_name()))]
pub async fn reconcile<B: Backend>(
    policy: Arc<NodeNetworkConfigurationPolicy>,
    ctx: Arc<Context<B>>,
) -> Result<Action> {
    if ctx.shutting_down() {
        return Err(Error::ShuttingDown);
    }
    let node = ctx.node()?;
    let existing = step!(enactment::of_this_node(&ctx, &policy, &node).await);
    if let ControlFlow::Break(action) = ordering::wait_turn(&ctx, &policy.name_any(), node.labels())
    {
        return Ok(action);
    }
    Run::new(ctx, policy, existing).run().await
}

/// One reconcile of a policy: the enactment status being built and what it needs.
struct Run<B: Backend> {
    ctx: Arc<Context<B>>,
    policy: Arc<NodeNetworkConfigurationPolicy>,
    name: String,
    enactment: String,
    generation: i64,
    /// The status as stored.
    stored: NodeNetworkConfigurationEnactmentStatus,
    /// The status being built.
    status: NodeNetworkConfigurationEnactmentStatus,
    /// The rendered desired state (secrets in clear: this is what is applied).
    desired: Value,
    /// How long the steps so far took (reported in `status.lastApply`).
    steps: ApplySteps,
    /// nmstate's feature statistics, while they are computed (`features.rs`).
    features: Option<features::PendingFeatures>,
    /// When this reconcile's ledger write that holds the slot succeeded (`fence.rs`).
    claimed: Option<fence::Claimed>,
    /// The name of that claim, reported in `status.lastApply.slotClaim`.
    claim: Option<String>,
}

impl<B: Backend> Run<B> {
    fn new(
        ctx: Arc<Context<B>>,
        policy: Arc<NodeNetworkConfigurationPolicy>,
        existing: NodeNetworkConfigurationEnactment,
    ) -> Self {
        let name = policy.name_any();
        let generation = policy.metadata.generation.unwrap_or(0);
        let stored = existing.status.unwrap_or_default();
        let mut status = stored.clone();
        // A new generation starts over: no old condition or retry count speaks for it
        // (upstream #1442).
        cond::enter_generation(&mut status, generation);
        Self {
            enactment: existing.metadata.name.unwrap_or_default(),
            ctx,
            policy,
            name,
            generation,
            stored,
            status,
            desired: Value::Null,
            steps: ApplySteps::default(),
            features: None,
            claimed: None,
            claim: None,
        }
    }

    fn node(&self) -> &str {
        self.ctx.node_name()
    }

    async fn run(&mut self) -> Result<Action> {
        step!(self.check_drift().await);
        let started = Instant::now();
        step!(self.render().await);
        step!(self.check_bridge_vlan_filtering().await);
        step!(self.dry_run().await);
        let before = step!(self.decide().await);
        self.steps.render_seconds = started.elapsed().as_secs_f64();
        let started = Instant::now();
        step!(self.take_slot(&before).await);
        self.steps.slot_claim_seconds = started.elapsed().as_secs_f64();
        self.apply_holding_slot(before).await
    }

    /// Whether to apply: an empty desired state is a success without applying; a generation
    /// that succeeded and that the node still satisfies, or whose retries are exhausted, is
    /// not applied again. Goes on with the node's state before the apply.
    async fn decide(&mut self) -> Result<Step<Value>> {
        let ctx = self.ctx.clone();
        let retry = &ctx.config.defaults.retry;
        if self
            .desired
            .as_object()
            .is_none_or(serde_json::Map::is_empty)
        {
            tracing::info!(policy = %self.name, "ignoring empty desired state");
            self.status.features = Vec::new();
            if rollback::apply_decision(Some(&self.status), self.generation, retry, None)
                == ApplyDecision::Apply
            {
                self.transition(&EnactmentTransition::Success);
            }
            self.write_status().await?;
            return Ok(ControlFlow::Break(Action::await_change()));
        }
        // As kept since the last change (the render read it already when it was stale).
        let before = ctx
            .node_state
            .current(&ctx.backend)
            .await
            .map_err(Error::ReadNetworkState)?;
        self.start_features(&before.state);
        // Nothing to change (per interface, route and DNS; secrets hidden on both sides).
        let satisfied = plan::plan(
            &secrets::hidden(&before.state),
            &secrets::hidden(&self.desired),
        )
        .is_empty();
        match rollback::apply_decision(Some(&self.status), self.generation, retry, Some(satisfied))
        {
            ApplyDecision::Apply => Ok(ControlFlow::Continue(before.state)),
            skip => {
                tracing::info!(policy = %self.name, generation = self.generation, decision = ?skip, "not applying");
                self.write_status().await?;
                Ok(ControlFlow::Break(self.watch_slots().await?))
            }
        }
    }
}
