//! The policy reconcile (upstream's NNCP reconcile, with the improvements of this project):
//!
//! selector match → create or delete this node's enactment → render (captures resolved by the
//! backend, reusing `status.capturedStates`; default linux-bridge VLAN trunk) → features →
//! apply decision (a generation that succeeded, and that the node still satisfies, or whose
//! retries are exhausted, is not applied again) → slot (state-engine's ledger protocol:
//! Pending, Aborted, or Progressing) → apply without commit → probes → commit, or roll back
//! and Retrying / FailedToConfigure → Success.
//!
//! Policies are reconciled one at a time (controller concurrency 1, plus an apply lock), and a
//! policy defers to a policy earlier in name order that also matches this node and has not been
//! tried for its generation yet, so a burst (startup, node label change) applies in name order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use knmstate_api::names::{self, enactment_name};
use knmstate_api::shared::{
    ApplyReport, NodeNetworkConfigurationEnactmentCapturedState,
    NodeNetworkConfigurationEnactmentStatus, ProbeReport,
};
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::NodeNetworkConfigurationEnactment;
use knmstate_api::{ConditionList, State};
use knmstate_nm_backend::probe::{FixedState, Probe, ProbeContext, ProbeOutcome};
use knmstate_nm_backend::{ApplyOptions, Backend, BackendError};
use knmstate_state_engine::concurrency::{self, SlotDecision, SlotState};
use knmstate_state_engine::conditions::{self as cond, EnactmentTransition};
use knmstate_state_engine::rollback::{self, ApplyDecision, ProbePlan, ProbeSpec, RetryDecision};
use knmstate_state_engine::{plan, render, selector};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::secrets::{self, MAX_MESSAGE_BYTES};
use crate::slots;

/// Event reason of failure and abort events (upstream's).
pub const EVENT_REASON: &str = "ReconcileFailed";

/// How long a policy waits before looking again when an earlier policy goes first.
const DEFER: Duration = Duration::from_millis(200);
/// Budget of an external probe's check before the apply.
const PRECHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts at the slot ledger before writing Pending.
const LEDGER_ATTEMPTS: usize = 5;

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// The controller's error policy: log, and try again after the initial backoff.
pub fn error_policy<B: Backend>(
    policy: Arc<NodeNetworkConfigurationPolicy>,
    err: &Error,
    ctx: Arc<Context<B>>,
) -> Action {
    if matches!(err, Error::ShuttingDown) {
        return Action::await_change();
    }
    let spec_state = policy
        .spec
        .desired_state
        .as_ref()
        .map(State::to_value)
        .unwrap_or_default();
    let error = secrets::scrub(&err.to_string(), &spec_state);
    tracing::warn!(policy = %policy.name_any(), category = err.category(), %error, "policy reconcile failed");
    Action::requeue(
        ctx.config
            .defaults
            .retry
            .initial_backoff
            .max(Duration::from_millis(500)),
    )
}

/// Reconcile one policy on this node.
pub async fn reconcile<B: Backend>(
    policy: Arc<NodeNetworkConfigurationPolicy>,
    ctx: Arc<Context<B>>,
) -> Result<Action> {
    if ctx.shutting_down() {
        return Err(Error::ShuttingDown);
    }
    let name = policy.name_any();
    let node = ctx.node()?;
    let enactment = enactment_name(ctx.node_name(), &name);
    let matches = selector::policy_matches_node(&policy.spec, node.labels()).unwrap_or_else(|e| {
        tracing::warn!(policy = %name, error = %e, "invalid node selector: treated as not matching");
        false
    });
    if !matches {
        delete_enactment(&ctx, &enactment).await?;
        return Ok(Action::await_change());
    }
    let Some(existing) = ensure_enactment(&ctx, &policy, &node, &enactment).await? else {
        return Ok(Action::await_change());
    };
    let wait = ctx
        .not_before
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&name)
        .map(|t| t.saturating_duration_since(Instant::now()))
        .filter(|d| !d.is_zero());
    if let Some(wait) = wait {
        return Ok(Action::requeue(wait));
    }
    if let Some(first) = earlier_untried_policy(&ctx, &name, node.labels()) {
        tracing::debug!(policy = %name, earlier = %first, "an earlier policy goes first");
        return Ok(Action::requeue(DEFER));
    }
    let mut run = Run::new(ctx.clone(), policy, existing);
    run.reconcile().await
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
        if status.policy_generation != Some(generation) {
            // A new generation starts over: no old condition or retry count speaks for it
            // (upstream #1442).
            status.conditions = ConditionList::default();
            status.retry_count.clear();
        }
        Self {
            enactment: existing.metadata.name.unwrap_or_default(),
            ctx,
            policy,
            name,
            generation,
            stored,
            status,
            desired: Value::Null,
        }
    }

    fn node(&self) -> &str {
        self.ctx.node_name()
    }

    async fn reconcile(&mut self) -> Result<Action> {
        if let Some(action) = self.render().await? {
            return Ok(action);
        }
        if let Some(action) = self.check_bridge_vlan_filtering().await? {
            return Ok(action);
        }
        if self.desired.as_object().is_none_or(|m| m.is_empty()) {
            tracing::info!(policy = %self.name, "ignoring empty desired state");
            if rollback::apply_decision(
                Some(&self.status),
                self.generation,
                &self.ctx.config.defaults.retry,
                None,
            ) == ApplyDecision::Apply
            {
                self.transition(EnactmentTransition::Success);
            }
            self.write_status().await?;
            return Ok(Action::await_change());
        }
        let before = self
            .ctx
            .backend
            .current_state()
            .await
            .map_err(Error::ReadNetworkState)?;
        // Nothing to change (per interface, route and DNS; secrets hidden on both sides).
        let satisfied = plan::plan(
            &secrets::hidden(&before.state),
            &secrets::hidden(&self.desired),
        )
        .is_empty();
        match rollback::apply_decision(
            Some(&self.status),
            self.generation,
            &self.ctx.config.defaults.retry,
            Some(satisfied),
        ) {
            ApplyDecision::Apply => {}
            skip => {
                tracing::info!(policy = %self.name, generation = self.generation, decision = ?skip, "not applying");
                self.write_status().await?;
                return Ok(Action::await_change());
            }
        }
        if let Some(action) = self.take_slot().await? {
            return Ok(action);
        }
        self.apply(before.state).await
    }

    /// Render the desired state; `Some(action)` when rendering failed for good.
    async fn render(&mut self) -> Result<Option<Action>> {
        let spec = &self.policy.spec;
        let policy_value = json!({
            "capture": spec.capture.clone().unwrap_or_default(),
            "desiredState": spec.desired_state.as_ref().map(State::to_value).unwrap_or(json!({})),
        });
        let cache: BTreeMap<String, Value> = if self.stored.policy_generation.is_some() {
            self.stored
                .captured_states
                .iter()
                .filter_map(|(k, v)| v.state.as_ref().map(|s| (k.clone(), s.to_value())))
                .filter(|(_, v)| secrets::secret_values(v).is_empty())
                .collect()
        } else {
            BTreeMap::new()
        };
        let resolved = match self.ctx.backend.resolve_policy(&policy_value, &cache).await {
            Ok(r) => r,
            Err(e) => return self.render_failed(e).await,
        };
        let mut desired = resolved.desired_state;
        if desired.is_null() {
            desired = json!({});
        }
        if self.ctx.inject_bridge_vlan().await {
            render::inject_default_bridge_vlan(&mut desired);
        }
        let features = if desired.as_object().is_some_and(|m| !m.is_empty()) {
            match self.ctx.backend.feature_statistics(&desired).await {
                Ok(f) => f.features,
                Err(e) => return self.render_failed(e).await,
            }
        } else {
            Vec::new()
        };
        let meta = knmstate_api::shared::NodeNetworkConfigurationEnactmentMetaInfo {
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
        self.status.features = features;
        self.status.policy_generation = Some(self.generation);
        self.desired = desired;
        Ok(None)
    }

    async fn render_failed(&mut self, e: BackendError) -> Result<Option<Action>> {
        let final_failure = matches!(
            e,
            BackendError::ResolvePolicy(_)
                | BackendError::FeatureStatistics(_)
                | BackendError::InvalidDesiredState(_)
        );
        if !final_failure {
            return Err(Error::ReadNetworkState(e));
        }
        // Upstream: no retry until the policy changes.
        let spec_state = self
            .policy
            .spec
            .desired_state
            .as_ref()
            .map(State::to_value)
            .unwrap_or_default();
        let msg = secrets::cap_message(
            &secrets::scrub(&e.to_string(), &spec_state),
            MAX_MESSAGE_BYTES,
        );
        tracing::warn!(policy = %self.name, category = e.category(), error = %msg, "rendering the desired state failed");
        self.status.policy_generation = Some(self.generation);
        self.transition(EnactmentTransition::GenerateFailure { error: msg.clone() });
        self.write_status().await?;
        self.event(&cond::generate_failure_message(&msg)).await;
        Ok(Some(Action::await_change()))
    }

    /// Fail fast, for good (until the policy changes), when the rendered desired state needs
    /// bridge VLAN filtering and this node's kernel lacks it; `Some(action)` when it failed.
    async fn check_bridge_vlan_filtering(&mut self) -> Result<Option<Action>> {
        let Some((interface, what)) = bridge_vlan_filtering_needed(&self.desired) else {
            return Ok(None);
        };
        if self.ctx.kernel_bridge_vlan_filtering().await {
            return Ok(None);
        }
        let err = Error::CheckBridgeVlanFiltering {
            interface,
            what: what.to_owned(),
        };
        let msg = err.to_string();
        tracing::warn!(policy = %self.name, category = err.category(), error = %msg, "not applying");
        self.status.policy_generation = Some(self.generation);
        self.transition(EnactmentTransition::GenerateFailure { error: msg.clone() });
        self.write_status().await?;
        self.event(&cond::generate_failure_message(&msg)).await;
        Ok(Some(Action::await_change()))
    }

    fn transition(&mut self, t: EnactmentTransition) {
        t.apply(&mut self.status.conditions, now());
    }

    /// Take a concurrency slot; `Some(action)` when this node must not apply now.
    ///
    /// The slot is won by the ledger write alone; `Progressing` is written afterwards, by the
    /// apply. So that another handler never prunes an entry whose enactment does not say
    /// `Progressing` yet, [`slots::count_ledger_claims`] counts a ledger entry whose enactment
    /// is not at an end as a holder, and a node leaving an end state (a drifted node applying
    /// again) first writes `Pending`, so its old end state can not make its entry look done.
    async fn take_slot(&mut self) -> Result<Option<Action>> {
        let leases: Api<Lease> =
            Api::namespaced(self.ctx.client.clone(), &self.ctx.config.namespace);
        if SlotState::of(Some(&self.status), self.generation).is_final() {
            self.transition(EnactmentTransition::Pending);
            self.write_status().await?;
        }
        for _ in 0..LEDGER_ATTEMPTS {
            let read = slots::read(&leases, &self.name).await?;
            let mut states = self.slot_states().await?;
            // Resuming without a write is sound only once this node wrote `Progressing`, which
            // it does only after its ledger write succeeded.
            let announced = states.get(self.node()) == Some(&SlotState::Progressing);
            slots::count_ledger_claims(&mut states, self.generation, read.ledger.as_ref());
            let limit = self.max_unavailable(states.len()).await?;
            let decision = concurrency::decide_slot(
                self.node(),
                self.generation,
                read.ledger.as_ref(),
                &states,
                limit,
            );
            tracing::debug!(policy = %self.name, ?decision, limit, "slot decision");
            let next = match decision {
                SlotDecision::Resume if announced => return Ok(None),
                SlotDecision::Resume => {
                    // Claimed before, `Progressing` never written (a crash, a failed write):
                    // confirm the entry against the version read before applying.
                    let mut next = concurrency::SlotLedger::new(self.generation);
                    next.holders =
                        concurrency::live_holders(self.generation, read.ledger.as_ref(), &states)
                            .into_iter()
                            .map(str::to_owned)
                            .collect();
                    next
                }
                SlotDecision::Claim(next) => next,
                SlotDecision::Wait => {
                    self.transition(EnactmentTransition::Pending);
                    self.write_status().await?;
                    let wait = self
                        .ctx
                        .config
                        .defaults
                        .retry
                        .initial_backoff
                        .max(Duration::from_millis(200));
                    return Ok(Some(Action::requeue(wait)));
                }
                SlotDecision::Abort => {
                    let message = cond::aborted_message(self.node(), &self.name);
                    self.transition(EnactmentTransition::Aborted {
                        message: message.clone(),
                    });
                    self.write_status().await?;
                    self.event(&message).await;
                    return Ok(Some(Action::await_change()));
                }
            };
            // The slot first (optimistic write against the version read), `Progressing` only
            // once it is won (written by the apply), as upstream.
            if slots::write(&leases, &self.policy, &read, &next).await? {
                return Ok(None);
            }
            tracing::debug!(policy = %self.name, "slot ledger conflict; reading again");
        }
        self.transition(EnactmentTransition::Pending);
        self.write_status().await?;
        Ok(Some(Action::requeue(Duration::from_millis(500))))
    }

    /// Slot states of the policy's enactments (read from the API server, not a cache).
    async fn slot_states(&self) -> Result<BTreeMap<String, SlotState>> {
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
        Ok(states)
    }

    /// maxUnavailable over the nodes matching the policy (at least the enactments' count).
    async fn max_unavailable(&self, enactments: usize) -> Result<usize> {
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.ctx.client.clone());
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

    async fn apply(&mut self, before: Value) -> Result<Action> {
        let ctx = self.ctx.clone();
        let _apply = ctx.apply_lock.lock().await;
        // Every attempt is announced once its slot is held (a retry flips Retrying back to
        // Progressing, as upstream).
        self.transition(EnactmentTransition::Progressing);
        self.write_status().await?;
        let p = plan::plan(&before, &self.desired);
        let probe_plan = rollback::select_probes(
            &p,
            &before,
            self.policy.spec.probes.as_ref(),
            &ctx.config.defaults,
        );
        tracing::info!(policy = %self.name, generation = self.generation,
            probes = ?probe_plan.probes.iter().map(|p| p.kind.name()).collect::<Vec<_>>(),
            skipped = ?probe_plan.skipped, "applying");
        let attempt = self.attempt(&before, &probe_plan).await;
        let (report, failure) = match attempt {
            Ok(report) => (report, None),
            Err(AttemptError::ShuttingDown) => return Err(Error::ShuttingDown),
            Err(AttemptError::Failed { report, error }) => (report, Some(error)),
        };
        self.status.last_apply = Some(report);
        ctx.request_nns_refresh();
        let Some(error) = failure else {
            tracing::info!(policy = %self.name, "applied and committed");
            self.transition(EnactmentTransition::Success);
            self.write_status().await?;
            return Ok(Action::await_change());
        };
        let failures_before = rollback::retry_count(Some(&self.status), self.generation);
        let retry = ctx.config.defaults.retry;
        let scrubbed = secrets::scrub(&error, &self.desired);
        tracing::warn!(policy = %self.name, error = %secrets::cap_message(&scrubbed, 4096), "apply failed");
        match retry.after_failure(failures_before) {
            RetryDecision::Retry { failures, delay } => {
                rollback::record_retry_count(
                    &mut self.status.retry_count,
                    self.generation,
                    failures,
                );
                let message = cond::retrying_message(self.node(), failures, retry.max_retries);
                self.transition(EnactmentTransition::Retrying { message });
                self.write_status().await?;
                ctx.not_before
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(self.name.clone(), Instant::now() + delay);
                Ok(Action::requeue(delay))
            }
            RetryDecision::GiveUp { failures } => {
                rollback::record_retry_count(
                    &mut self.status.retry_count,
                    self.generation,
                    failures,
                );
                let (decisive, rest) = match scrubbed.split_once("\n") {
                    Some((a, b)) => (a.to_owned(), b.to_owned()),
                    None => (scrubbed.clone(), String::new()),
                };
                let message = secrets::cap_message(
                    &cond::failed_to_configure_message(self.node(), &decisive, &rest),
                    MAX_MESSAGE_BYTES,
                );
                self.transition(EnactmentTransition::FailedToConfigure { message });
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

    /// Apply without commit, probe, commit or roll back.
    async fn attempt(
        &self,
        before: &Value,
        probe_plan: &ProbePlan,
    ) -> std::result::Result<ApplyReport, AttemptError> {
        let ctx = &self.ctx;
        let env = ctx.probe_env();
        // External probes are kept only if they work before the apply, judged quickly (upstream
        // polls a failing one for 120 s before dropping it).
        let mut selected: Vec<Box<dyn Probe>> = Vec::new();
        let fixed = FixedState(before.clone());
        let pre = ProbeContext {
            before,
            current: &fixed,
        };
        let mut shutdown = ctx.shutdown.clone();
        for spec in &probe_plan.probes {
            if spec.precheck {
                let quick = ProbeSpec {
                    timeout: spec.timeout.min(PRECHECK_TIMEOUT),
                    ..spec.clone()
                };
                let check = ctx.probes.build(&quick, &env);
                let res = tokio::select! {
                    r = check.run(&pre) => r,
                    _ = shutdown.wait_for(|s| *s) => return Err(AttemptError::ShuttingDown),
                };
                if let Err(e) = res {
                    tracing::warn!(probe = check.name(), error = %e, "not selecting a probe that fails before the apply");
                    continue;
                }
            }
            selected.push(ctx.probes.build(spec, &env));
        }
        if ctx.shutting_down() {
            return Err(AttemptError::ShuttingDown);
        }
        let mut report = ApplyReport {
            start_time: Some(now()),
            ..Default::default()
        };
        let started = Instant::now();
        let options = ApplyOptions {
            checkpoint_timeout: probe_plan.checkpoint_timeout,
            verify: true,
        };
        let pending = match ctx.backend.apply(&self.desired, &options).await {
            Ok(p) => p,
            Err(e) => {
                report.duration_seconds = started.elapsed().as_secs_f64();
                report.rollback_reason = e.category().to_owned();
                return Err(AttemptError::Failed {
                    report,
                    error: format!("applying the desired state failed: {e}"),
                });
            }
        };
        ctx.set_pending(Some(pending.checkpoint.clone()));
        for stale in &pending.destroyed_stale {
            tracing::warn!(checkpoint = %stale, "rolled back a checkpoint left by an earlier apply");
        }
        let mut shutdown = ctx.shutdown.clone();
        let probing = self.run_probes(before, &selected, &mut report);
        let stopping = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        let verdict = tokio::select! {
            v = probing => v,
            () = stopping => {
                let _ = ctx.rollback_pending().await;
                return Err(AttemptError::ShuttingDown);
            }
        };
        let outcome = match verdict {
            Ok(()) => match ctx.backend.commit(&pending.checkpoint).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    // The checkpoint may still be there: do not leave it behind.
                    let _ = ctx.backend.rollback(&pending.checkpoint).await;
                    report.rolled_back = true;
                    report.rollback_reason = e.category().to_owned();
                    Err(format!("committing the desired state failed: {e}"))
                }
            },
            Err(e) => {
                report.rolled_back = true;
                report.rollback_reason = e.category().to_owned();
                let rb = ctx.backend.rollback(&pending.checkpoint).await;
                let mut msg = format!(
                    "rolling back desired state configuration: failed running probes after network changes: {e}"
                );
                if let Err(rb) = rb {
                    msg.push_str(&format!("\nrollback failed too: {rb}"));
                }
                Err(msg)
            }
        };
        ctx.set_pending(None);
        report.duration_seconds = started.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => Ok(report),
            Err(error) => Err(AttemptError::Failed { report, error }),
        }
    }

    async fn run_probes(
        &self,
        before: &Value,
        probes: &[Box<dyn Probe>],
        report: &mut ApplyReport,
    ) -> std::result::Result<(), BackendError> {
        let pctx = ProbeContext {
            before,
            current: &self.ctx.backend,
        };
        for probe in probes {
            let started = Instant::now();
            let res = probe.run(&pctx).await;
            let (succeeded, message) = match &res {
                Ok(ProbeOutcome::Passed(m)) | Ok(ProbeOutcome::Skipped(m)) => (true, m.clone()),
                Err(e) => (false, e.to_string()),
            };
            tracing::info!(probe = probe.name(), succeeded, %message, "probe");
            report.probes.push(ProbeReport {
                name: probe.name().to_owned(),
                succeeded,
                duration_seconds: started.elapsed().as_secs_f64(),
                message: if succeeded {
                    String::new()
                } else {
                    secrets::cap_message(&message, 1024)
                },
            });
            res?;
        }
        Ok(())
    }

    /// Server-side apply the status when its meaning changed.
    async fn write_status(&mut self) -> Result<()> {
        if !status_differs(&self.stored, &self.status) {
            return Ok(());
        }
        let body = json!({
            "apiVersion": "nmstate.io/v1beta1",
            "kind": "NodeNetworkConfigurationEnactment",
            "metadata": {"name": self.enactment},
            "status": self.status,
        });
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
    async fn event(&self, note: &str) {
        let note = secrets::cap_message(&secrets::scrub(note, &self.desired), 1024);
        let ev = Event {
            type_: EventType::Warning,
            reason: EVENT_REASON.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(e) = self
            .ctx
            .recorder
            .publish(&ev, &self.policy.object_ref(&()))
            .await
        {
            tracing::warn!(error = %e, "publishing an event failed");
        }
    }
}

enum AttemptError {
    ShuttingDown,
    Failed { report: ApplyReport, error: String },
}

/// Whether two enactment statuses differ in meaning (condition heartbeats aside).
pub fn status_differs(
    old: &NodeNetworkConfigurationEnactmentStatus,
    new: &NodeNetworkConfigurationEnactmentStatus,
) -> bool {
    let strip = |s: &NodeNetworkConfigurationEnactmentStatus| {
        let mut s = s.clone();
        s.conditions = ConditionList::default();
        for c in s.captured_states.values_mut() {
            c.meta_info = None;
        }
        s
    };
    !old.conditions.same_meaning(&new.conditions) || strip(old) != strip(new)
}

/// The first linux-bridge of `desired` (not being removed) whose configuration needs bridge
/// VLAN filtering, with what needs it: a port with a non-empty `vlan`, or the bridge's
/// `vlan-filtering`, `vlan-protocol` or `vlan-default-pvid` option.
///
/// ```
/// use knmstate_handler::policy::bridge_vlan_filtering_needed;
/// let desired = serde_json::json!({"interfaces": [{"name": "br1", "type": "linux-bridge",
///     "bridge": {"port": [{"name": "eth1", "vlan": {"mode": "trunk"}}]}}]});
/// assert_eq!(
///     bridge_vlan_filtering_needed(&desired),
///     Some(("br1".to_owned(), "port vlan configuration"))
/// );
/// ```
pub fn bridge_vlan_filtering_needed(desired: &Value) -> Option<(String, &'static str)> {
    let ifaces = desired.get("interfaces")?.as_array()?;
    ifaces.iter().find_map(|i| {
        let bridge = (i.get("type")?.as_str()? == "linux-bridge"
            && i.get("state").and_then(Value::as_str) != Some("absent"))
        .then(|| i.get("bridge"))
        .flatten()?;
        let name = i.get("name").and_then(Value::as_str).unwrap_or_default();
        let port_vlan = bridge
            .get("port")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|p| {
                p.get("vlan")
                    .and_then(Value::as_object)
                    .is_some_and(|v| !v.is_empty())
            });
        if port_vlan {
            return Some((name.to_owned(), "port vlan configuration"));
        }
        let options = bridge.get("options");
        let filtering = [
            bridge.get("vlan-filtering"),
            options.and_then(|o| o.get("vlan-filtering")),
        ]
        .into_iter()
        .flatten()
        .any(|v| v.as_bool() == Some(true));
        if filtering {
            return Some((name.to_owned(), "vlan-filtering"));
        }
        ["vlan-protocol", "vlan-default-pvid"]
            .into_iter()
            .find_map(|k| {
                options
                    .and_then(|o| o.get(k))
                    .filter(|v| !v.is_null())
                    .map(|_| (name.to_owned(), k))
            })
    })
}

/// Delete this node's enactment of a policy (absent is fine).
pub async fn delete_enactment<B: Backend>(ctx: &Context<B>, name: &str) -> Result<()> {
    match ctx
        .enactment_api()
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => {
            tracing::info!(enactment = name, "deleted enactment");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(source) => Err(Error::DeleteEnactment {
            name: name.to_owned(),
            source,
        }),
    }
}

/// The enactment, created (owned by the Node, all conditions Unknown) when missing; `None`
/// when the policy is gone on the API server.
async fn ensure_enactment<B: Backend>(
    ctx: &Context<B>,
    policy: &NodeNetworkConfigurationPolicy,
    node: &k8s_openapi::api::core::v1::Node,
    name: &str,
) -> Result<Option<NodeNetworkConfigurationEnactment>> {
    let api = ctx.enactment_api();
    if let Some(e) = api
        .get_opt(name)
        .await
        .map_err(|e| Error::read(format!("enactment {name}"), e))?
    {
        return Ok(Some(e));
    }
    // Re-read the policy from the API server (not the cache) before creating (upstream #1415).
    let policy_name = policy.name_any();
    let Some(fresh) = ctx
        .policy_api()
        .get_opt(&policy_name)
        .await
        .map_err(|e| Error::read(format!("policy {policy_name}"), e))?
    else {
        return Ok(None);
    };
    if !selector::policy_matches_node(&fresh.spec, node.labels()).unwrap_or(false) {
        return Ok(None);
    }
    let mut labels = ctx.config.extra_labels.clone();
    labels.insert(names::POLICY_LABEL.into(), policy_name.clone());
    labels.insert(names::NODE_LABEL.into(), ctx.node_name().to_owned());
    let obj: NodeNetworkConfigurationEnactment = serde_json::from_value(json!({
        "apiVersion": "nmstate.io/v1beta1",
        "kind": "NodeNetworkConfigurationEnactment",
        "metadata": {
            "name": name,
            "labels": labels,
            "ownerReferences": node.owner_ref(&()).into_iter().collect::<Vec<_>>(),
        },
    }))
    .map_err(|source| Error::Serialize {
        what: "enactment".into(),
        source,
    })?;
    let pp = PostParams {
        field_manager: Some(names::field_manager::HANDLER.to_owned()),
        ..Default::default()
    };
    let created = match api.create(&pp, &obj).await {
        Ok(e) => e,
        Err(kube::Error::Api(s)) if s.is_already_exists() => api
            .get(name)
            .await
            .map_err(|e| Error::read(format!("enactment {name}"), e))?,
        Err(source) => {
            return Err(Error::CreateEnactment {
                name: name.to_owned(),
                source,
            });
        }
    };
    tracing::info!(enactment = name, "created enactment");
    Ok(Some(created))
}

/// The first policy before `name` (in name order) that matches this node and has not been
/// tried for its current generation here.
fn earlier_untried_policy<B: Backend>(
    ctx: &Context<B>,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Option<String> {
    let mut earlier: Vec<_> = ctx
        .policies
        .state()
        .into_iter()
        .filter(|p| p.name_any().as_str() < name && p.metadata.deletion_timestamp.is_none())
        .collect();
    earlier.sort_by_key(|p| p.name_any());
    earlier.into_iter().find_map(|p| {
        let pname = p.name_any();
        if !selector::policy_matches_node(&p.spec, labels).unwrap_or(false) {
            return None;
        }
        let key = ObjectRef::new(&enactment_name(ctx.node_name(), &pname));
        let tried = ctx.enactments.get(&key).is_some_and(|e| {
            e.status
                .as_ref()
                .is_some_and(|s| s.policy_generation == p.metadata.generation)
        });
        (!tried).then_some(pname)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use knmstate_api::ConditionStatus;

    #[test]
    fn bridge_vlan_configuration_needing_vlan_filtering_is_found() {
        let bridge = |bridge: Value, state: &str| {
            json!({"interfaces": [
                {"name": "eth1", "type": "ethernet", "state": "up"},
                {"name": "br1", "type": "linux-bridge", "state": state, "bridge": bridge},
            ]})
        };
        let port = |vlan: Value| json!({"port": [{"name": "eth1", "vlan": vlan}]});
        let trunk = json!({"mode": "trunk", "trunk-tags": [{"id": 101}]});
        assert_eq!(
            bridge_vlan_filtering_needed(&bridge(port(trunk.clone()), "up")),
            Some(("br1".to_owned(), "port vlan configuration"))
        );
        assert_eq!(
            bridge_vlan_filtering_needed(&bridge(port(trunk), "absent")),
            None
        );
        assert_eq!(
            bridge_vlan_filtering_needed(&bridge(port(json!({})), "up")),
            None
        );
        assert_eq!(
            bridge_vlan_filtering_needed(&bridge(port(Value::Null), "up")),
            None
        );
        assert_eq!(
            bridge_vlan_filtering_needed(&bridge(
                json!({"options": {"vlan-filtering": true}, "port": []}),
                "up"
            )),
            Some(("br1".to_owned(), "vlan-filtering"))
        );
        assert_eq!(
            bridge_vlan_filtering_needed(&bridge(
                json!({"options": {"vlan-default-pvid": 1, "stp": {"enabled": false}}}),
                "up"
            )),
            Some(("br1".to_owned(), "vlan-default-pvid"))
        );
        assert_eq!(
            bridge_vlan_filtering_needed(&bridge(
                json!({"options": {"stp": {"enabled": false}}}),
                "up"
            )),
            None
        );
    }

    #[test]
    fn heartbeats_alone_do_not_count_as_a_change() {
        let t = |s| Time(k8s_openapi::jiff::Timestamp::from_second(s).expect("time"));
        let mut a = NodeNetworkConfigurationEnactmentStatus::default();
        a.conditions
            .set("Available", ConditionStatus::True, "R", "m", t(1));
        let mut b = a.clone();
        b.conditions
            .set("Available", ConditionStatus::True, "R", "m", t(2));
        assert!(!status_differs(&a, &b));
        b.features = vec!["static-route".into()];
        assert!(status_differs(&a, &b));
        let mut c = a.clone();
        c.conditions
            .set("Available", ConditionStatus::False, "R", "m", t(3));
        assert!(status_differs(&a, &c));
    }
}
