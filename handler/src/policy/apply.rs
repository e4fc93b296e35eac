//! The apply of a policy on this node, once its slot is held: announce Progressing, choose the
//! probes (state-engine's plan; external probes kept only if they work before the apply), run
//! nm-backend's apply transaction (apply holding a checkpoint → probes → commit, or roll back;
//! the attempt recorded durably by the backend before the network is touched), record
//! `status.lastApply` (with whether connectivity came back after a rollback), then Success or
//! the retry decision. An attempt that died with the handler is counted first (`retry.rs`).
//! The slot fence (`fence.rs`) is checked right before the apply, right before the commit and
//! before a failure is reported: a holder that stalled past its lease neither applies nor
//! commits, and reports Aborted.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use knmstate_api::shared::{ApplyReport, ProbeReport};
use knmstate_nm_backend::probe::{self, FixedState, Probe, ProbeContext, ProbeRecord};
use knmstate_nm_backend::{
    ApplyOptions, Attempt, Backend, BackendError, RollbackCause, TransactionOutcome, fault,
};
use knmstate_state_engine::conditions::{self as cond, EnactmentTransition};
use knmstate_state_engine::plan;
use knmstate_state_engine::rollback::{self, ProbePlan, ProbeSpec};
use knmstate_state_engine::slot::{FenceStage, SlotLoss};
use kube::runtime::controller::Action;
use serde_json::Value;

use super::fence::CommitFence;
use super::{Run, now};
use crate::error::{Error, Result};
use crate::probes::{ProbeEnv, Scrubbed};
use knmstate_state_engine::secrets;

/// Budget of an external probe's check before the apply.
const PRECHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// First and longest wait between writes of a committed apply's status.
const REPORT_RETRY_FIRST: Duration = Duration::from_millis(200);
const REPORT_RETRY_MAX: Duration = Duration::from_secs(5);

impl<B: Backend> Run<B> {
    /// Apply the rendered desired state over `before` (the node's state now).
    pub(super) async fn apply(&mut self, before: Value) -> Result<Action> {
        let ctx = self.ctx.clone();
        let _apply = ctx.apply_lock.lock().await;
        if let std::ops::ControlFlow::Break(action) = self.count_interrupted().await? {
            return Ok(action);
        }
        // Every attempt is announced once its slot is held (a retry flips Retrying back to
        // Progressing, as upstream).
        self.transition(&EnactmentTransition::Progressing);
        let writing = Instant::now();
        self.write_status().await?;
        self.steps.progressing_seconds = writing.elapsed().as_secs_f64();
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
        // The apply may have changed or removed the addresses pooled connections came from.
        ctx.requests.renew();
        // And the node's state as kept is no longer the node's.
        ctx.node_state.changed();
        let (report, failure) = match attempt? {
            Tried::Ran { report, failure } => (report, failure),
            Tried::BesideForeignCheckpoints(checkpoints) => {
                return self.wait_for_foreign_checkpoints(&checkpoints).await;
            }
            Tried::Fenced {
                loss,
                stage,
                report,
            } => {
                if report.is_some() {
                    self.status.last_apply = report;
                    ctx.request_nns_refresh();
                }
                return self.fenced(&loss, stage).await;
            }
        };
        ctx.rollout.forget_foreign_waits(&self.name);
        if failure.is_none() {
            fault::point("committed-before-status", Some(&self.name)).await;
        }
        self.status.last_apply = Some(report);
        ctx.request_nns_refresh();
        match failure {
            None => {
                tracing::info!(policy = %self.name, "applied and committed");
                // An earlier attempt that died with the handler no longer matters.
                for died in ctx.backend.interrupted_attempts() {
                    if died.policy == self.name {
                        ctx.backend.forget_interrupted(&died);
                    }
                }
                self.transition(&EnactmentTransition::Success);
                let writing = Instant::now();
                self.report_committed().await?;
                tracing::info!(policy = %self.name, elapsed = ?writing.elapsed(), "reported the committed apply");
                Ok(Action::await_change())
            }
            Some(error) => {
                // A pruned holder's Retrying or Failing would overwrite its Aborted; an
                // unreadable ledger leaves the failure to the next slot decision.
                if let Ok(Err(loss)) = self.check_fence().await {
                    return self.fenced(&loss, FenceStage::AfterFailure).await;
                }
                self.after_failure(&error).await
            }
        }
    }

    /// Write the Available status of a committed apply, trying again while the API server
    /// cannot be reached (restarting, connection refused, 5xx, 429) until it can or the handler
    /// stops: a reconcile that failed here would find the enactment still Progressing and apply
    /// the policy a second time.
    async fn report_committed(&mut self) -> Result<()> {
        let mut delay = REPORT_RETRY_FIRST;
        loop {
            match self.write_status().await {
                Err(Error::WriteEnactmentStatus { name, source })
                    if unreachable(&source) && !self.ctx.shutting_down() =>
                {
                    tracing::warn!(enactment = %name, error = %source, ?delay,
                        "failed to report a committed apply; trying again");
                }
                written => return written,
            }
            let mut shutdown = self.ctx.shutdown.clone();
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = shutdown.wait_for(|s| *s) => {}
            }
            delay = (delay * 2).min(REPORT_RETRY_MAX);
        }
    }

    /// The probes of `plan`. External probes are kept only if they work before the apply,
    /// judged quickly (upstream polls a failing one for 120 s before dropping it).
    async fn select_probes(&self, before: &Value, plan: &ProbePlan) -> Result<Vec<Box<dyn Probe>>> {
        let ctx = &self.ctx;
        let env = ctx.probe_env();
        let fixed = FixedState(before.clone());
        let pre = ProbeContext {
            before,
            current: &fixed,
        };
        let mut shutdown = ctx.shutdown.clone();
        // The checks run together; the probes keep the plan's order.
        let checks = plan.probes.iter().map(|spec| async {
            if !spec.precheck {
                return true;
            }
            let quick = ProbeSpec {
                timeout: spec.timeout.min(PRECHECK_TIMEOUT),
                ..spec.clone()
            };
            let check = self.probe(&quick, &env);
            let Err(e) = check.run(&pre).await else {
                return true;
            };
            let error = secrets::scrub(&e.to_string(), &self.desired);
            tracing::warn!(probe = check.name(), %error, "not selecting a probe that fails before the apply");
            false
        });
        let works = tokio::select! {
            works = futures::future::join_all(checks) => works,
            _ = shutdown.wait_for(|s| *s) => return Err(Error::ShuttingDown),
        };
        Ok(plan
            .probes
            .iter()
            .zip(works)
            .filter(|(_, works)| *works)
            .map(|(spec, _)| self.probe(spec, &env))
            .collect())
    }

    /// The probe of `spec`, its messages scrubbed of the secrets of the desired state.
    fn probe(&self, spec: &ProbeSpec, env: &ProbeEnv) -> Box<dyn Probe> {
        Box::new(Scrubbed {
            inner: self.ctx.probes.build(spec, env),
            desired: self.desired.clone(),
        })
    }

    /// One apply transaction: the report for `status.lastApply`, and the failure message when
    /// it was not committed; or the foreign checkpoints it did not start beside. A shutdown
    /// while probing rolls back and ends the reconcile.
    async fn attempt(&self, before: &Value, plan: &ProbePlan) -> Result<Tried> {
        let ctx = &self.ctx;
        let selecting = Instant::now();
        let probes = self.select_probes(before, plan).await?;
        let selected_in = selecting.elapsed();
        if ctx.shutting_down() {
            return Err(Error::ShuttingDown);
        }
        let start_time = now();
        let options = ApplyOptions {
            checkpoint_timeout: plan.checkpoint_timeout,
            verify: true,
            attempt: Some(Attempt {
                policy: self.name.clone(),
                generation: self.generation,
                number: rollback::retry_count(Some(&self.status), self.generation) + 1,
            }),
        };
        let started = Instant::now();
        fault::point("before-apply", Some(&self.name)).await;
        let fresh = self.claimed.is_some_and(|c| c.fresh());
        if !fresh && let Err(loss) = self.check_fence().await? {
            return Ok(Tried::Fenced {
                loss,
                stage: FenceStage::BeforeApply,
                report: None,
            });
        }
        let backend = &ctx.backend;
        let probes = &probes;
        let fence = &CommitFence::default();
        let this = self;
        let mut shutdown = ctx.shutdown.clone();
        let probed = &OnceLock::new();
        let transaction = backend
            .transaction(
                &self.desired,
                &options,
                move || async move {
                    let current = ProbeContext {
                        before,
                        current: backend,
                    };
                    let began = Instant::now();
                    let mut run = probe::run_recorded(probes, &current).await;
                    // The first run's (a second one follows a rollback).
                    let _ = probed.set((began, Instant::now()));
                    fence.after_probes(this, &mut run).await;
                    run
                },
                async move {
                    let _ = shutdown.wait_for(|s| *s).await;
                },
            )
            .await;
        if let TransactionOutcome::ApplyFailed(BackendError::ForeignCheckpoint(checkpoints)) =
            transaction.outcome
        {
            return Ok(Tried::BesideForeignCheckpoints(checkpoints));
        }
        for stale in &transaction.destroyed_stale {
            tracing::warn!(checkpoint = %stale, "rolled back a checkpoint left by an earlier apply");
        }
        let mut report = ApplyReport {
            start_time: Some(start_time),
            duration_seconds: transaction.duration.as_secs_f64(),
            probes: transaction
                .probes
                .iter()
                .map(|record| probe_report(record, &self.desired))
                .collect(),
            connectivity_restored: transaction.connectivity_restored(),
            steps: Some(self.steps_of(selected_in, started, probed.get())),
            slot_claim: self.claim.clone(),
            ..Default::default()
        };
        if let Some(loss) = fence.lost() {
            "slot-lost".clone_into(&mut report.rollback_reason);
            report.rolled_back = !transaction.committed();
            return Ok(Tried::Fenced {
                loss,
                stage: FenceStage::BeforeCommit,
                report: Some(report),
            });
        }
        let after_rollback = after_rollback_note(transaction.after_rollback.as_ref());
        let failure = match transaction.outcome {
            TransactionOutcome::Committed => None,
            TransactionOutcome::ApplyFailed(e) => {
                e.category().clone_into(&mut report.rollback_reason);
                Some(apply_failed_message(&e))
            }
            TransactionOutcome::RolledBack {
                cause,
                rollback_error,
            } => {
                report.rolled_back = true;
                cause.category().clone_into(&mut report.rollback_reason);
                let message = match cause {
                    RollbackCause::Cancelled => return Err(Error::ShuttingDown),
                    RollbackCause::CommitFailed(e) => e.to_string(),
                    RollbackCause::ProbeFailed(e) => cond::probe_rollback_message(
                        &e.to_string(),
                        rollback_error.map(|rb| rb.to_string()).as_deref(),
                    ),
                };
                Some(format!("{message}{after_rollback}"))
            }
        };
        Ok(Tried::Ran { report, failure })
    }
}

/// How an apply transaction ended.
enum Tried {
    /// It ran: the report for `status.lastApply`, the failure message unless committed.
    Ran {
        report: ApplyReport,
        failure: Option<String>,
    },
    /// It did not start: NetworkManager holds these checkpoints of another tool.
    BesideForeignCheckpoints(Vec<String>),
    /// The slot was lost at `stage` (the fence): not applied, or rolled back (`report`).
    Fenced {
        loss: SlotLoss,
        stage: FenceStage,
        report: Option<ApplyReport>,
    },
}

/// Whether a request failed for want of a working API server (not refused by it): no
/// connection, a timeout, a 5xx or 429 answer.
fn unreachable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => status.code >= 500 || status.code == 429,
        _ => true,
    }
}

/// A probe's entry in `status.lastApply` (the message only when it failed, scrubbed of the
/// secrets of `desired`: a probe may quote the state it read).
fn probe_report(record: &ProbeRecord, desired: &Value) -> ProbeReport {
    ProbeReport {
        name: record.name.clone(),
        succeeded: record.succeeded(),
        duration_seconds: record.duration.as_secs_f64(),
        message: match &record.outcome {
            Ok(_) => String::new(),
            Err(message) => secrets::scrub_capped(message, desired, 1024),
        },
    }
}

/// What the failure message adds about the probes run again after a rollback (upstream
/// #454/#484).
fn after_rollback_note(run: Option<&probe::ProbeRun>) -> String {
    match run {
        None => String::new(),
        Some(probe::ProbeRun { failure: None, .. }) => {
            "; connectivity came back after the rollback".to_owned()
        }
        Some(probe::ProbeRun {
            failure: Some(e), ..
        }) => format!("; connectivity did not come back after the rollback: {e}"),
    }
}

/// What a failed apply says: the backend's error, which names the apply unless it is about
/// what the apply needed (an interface type, a valid state, NetworkManager).
fn apply_failed_message(e: &BackendError) -> String {
    match e {
        BackendError::ApplyState { .. } => e.to_string(),
        _ => format!("failed to apply the desired state: {e}"),
    }
}
