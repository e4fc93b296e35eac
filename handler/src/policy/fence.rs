//! The slot fence: a holder that stalled for longer than its lease (a frozen process, a very
//! long pause: not dead) was pruned by the next claimant like a ghost, its enactment marked
//! Aborted and its slot given to another node; once it runs again it must not apply or commit,
//! or one node more than maxUnavailable would change its network. So the apply reads the
//! policy's slot ledger again right before it starts, right before the commit (as one more
//! check after the probes passed, inside the transaction: a lost slot rolls back) and, after a
//! failed attempt, before it reports the failure (a pruned node's Retrying or Failing would
//! overwrite its Aborted and count as a failure of the rollout). The decision is
//! state-engine's [`slot::fence`].
//!
//! An API server that can not be read at the fence (tried again for [`FENCE_READ_BUDGET`]):
//! before the apply, the reconcile fails with the read error and nothing is applied (it starts
//! over from the slot decision); before the commit, the apply is rolled back and reported as a
//! failed attempt, like a failed API-server probe: committing without knowing that the slot is
//! still held could exceed maxUnavailable, while a rollback only costs an attempt; after a
//! failure, the failure is reported as usual (the next slot decision finds a lost slot).
//!
//! The read before the apply is skipped when the ledger write that won the slot succeeded
//! less than [`CLAIM_IS_FRESH`] ago (the write answered what a read would: this node holds
//! its slot); a stall or a new generation since then is the commit fence's to catch.
//!
//! What remains: a stall between the fence's read and the step it guards. Before the apply
//! the commit fence still catches it (the apply is rolled back, never committed); before the
//! commit, a stall longer than the lease outlasts the checkpoint, which NetworkManager rolls
//! back by itself (the lease covers the checkpoint timeout), so the commit fails.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use knmstate_api::names::event as ev;
use knmstate_nm_backend::probe::{ProbeRecord, ProbeRun};
use knmstate_nm_backend::{Backend, BackendError};
use knmstate_state_engine::concurrency::SlotState;
use knmstate_state_engine::conditions::EnactmentTransition;
use knmstate_state_engine::slot::{self, FenceStage, SlotHolder, SlotLoss};
use kube::runtime::controller::Action;

use super::Run;
use crate::error::{Error, Result};
use crate::slots;

/// How long the fence tries to read the ledger while the API server can not be reached.
pub(super) const FENCE_READ_BUDGET: Duration = Duration::from_secs(10);

/// Bound of one read of the ledger at the fence (the API answers a read in milliseconds; the
/// request timeout of the handler's client is much longer).
const FENCE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// The name of the fence's record in `status.lastApply.probes` when it stopped a commit.
pub(super) const FENCE_CHECK: &str = "slot-fence";

/// How long after the ledger write that won or renewed the slot the fence before the apply
/// takes that write for its read: far below any lease ([`slot::MIN_GRACE`] of margin alone),
/// so no claimant can have pruned the slot since.
const CLAIM_IS_FRESH: Duration = Duration::from_secs(2);

/// When the slot was won: by the process's monotonic clock and by the wall clock (which also
/// counts a suspended machine).
#[derive(Debug, Clone, Copy)]
pub(super) struct Claimed {
    at: Instant,
    wall: k8s_openapi::jiff::Timestamp,
}

impl Claimed {
    /// Won now.
    pub(super) fn now() -> Self {
        Self {
            at: Instant::now(),
            wall: k8s_openapi::jiff::Timestamp::now(),
        }
    }

    /// Whether the write that won the slot is recent enough to stand for the fence's read
    /// before the apply: by both clocks, less than [`CLAIM_IS_FRESH`] ago.
    pub(super) fn fresh(&self) -> bool {
        let wall = Duration::try_from(
            self.wall
                .duration_until(k8s_openapi::jiff::Timestamp::now()),
        )
        .unwrap_or(Duration::MAX);
        self.at.elapsed() < CLAIM_IS_FRESH && wall < CLAIM_IS_FRESH
    }
}

/// The commit fence of one transaction: checked once, after the first probe run that passed
/// (the probes run again after a rollback, and that run is no commit).
#[derive(Default)]
pub(super) struct CommitFence {
    checked: AtomicBool,
    lost: Mutex<Option<SlotLoss>>,
}

impl CommitFence {
    /// The lost slot that stopped the commit, if any.
    pub(super) fn lost(&self) -> Option<SlotLoss> {
        self.lost
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Check the fence of `run` after a probe run: a lost slot, or a ledger that can not be
    /// read, becomes the run's failure, so the transaction rolls back instead of committing.
    pub(super) async fn after_probes<B: Backend>(&self, run: &Run<B>, probes: &mut ProbeRun) {
        if probes.failure.is_some() || self.checked.swap(true, Ordering::SeqCst) {
            return;
        }
        let started = Instant::now();
        let message = match run.check_fence().await {
            Ok(Ok(())) => return,
            Ok(Err(loss)) => {
                let message = format!("the maxUnavailable slot was lost: {loss}");
                *self
                    .lost
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(loss);
                message
            }
            Err(e) => format!(
                "failed to read the slot ledger before the commit (rolled back to be safe): {}",
                e.report()
            ),
        };
        tracing::warn!(policy = %run.name, %message, "not committing");
        probes.records.push(ProbeRecord {
            name: FENCE_CHECK.to_owned(),
            duration: started.elapsed(),
            outcome: Err(message.clone()),
        });
        probes.failure = Some(BackendError::Probe {
            probe: FENCE_CHECK.to_owned(),
            message,
        });
    }
}

impl<B: Backend> Run<B> {
    /// Whether this process still holds its slot of the policy now ([`slot::fence`] over the
    /// ledger read now); the read error once [`FENCE_READ_BUDGET`] ran out.
    pub(super) async fn check_fence(&self) -> Result<std::result::Result<(), SlotLoss>> {
        // From the first failure, not from the first attempt: a process stalled mid-read (the
        // very case the fence is for) must not find its budget spent when it resumes.
        let mut failing_since = None::<Instant>;
        let read = loop {
            // Read each time: a failed attempt renews the connections.
            let leases = slots::leases(&self.ctx);
            let attempt =
                tokio::time::timeout(FENCE_ATTEMPT_TIMEOUT, slots::read(&leases, &self.name))
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::read(
                            format!("the slot ledger of policy {}", self.name),
                            kube::Error::Service(
                                format!("no answer within {FENCE_ATTEMPT_TIMEOUT:?}").into(),
                            ),
                        ))
                    });
            match attempt {
                Ok(read) => break read,
                Err(e)
                    if failing_since.get_or_insert_with(Instant::now).elapsed()
                        < FENCE_READ_BUDGET
                        && !self.ctx.shutting_down() =>
                {
                    tracing::debug!(policy = %self.name, error = %e.report(), "failed to read the slot ledger at the fence; trying again on new connections");
                    // A stall outlives connections: one pooled from before it may be dead
                    // (closed by the server, or opened from an address rolled back meanwhile)
                    // and would hold each attempt for the whole request timeout.
                    self.ctx.requests.renew();
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let holder = SlotHolder {
            node: self.node(),
            incarnation: &self.ctx.rollout.incarnation,
            generation: self.generation,
        };
        Ok(slot::fence(read.ledger.as_ref(), &holder, &slots::now()))
    }

    /// End the attempt of a holder that found its slot lost at `stage`: Aborted with
    /// [`slot::fenced_message`] and a `SlotExpired` event. Before the apply, an enactment the
    /// pruner already marked is left as it is. A slot another process of this node holds is
    /// that process's to report: nothing is written.
    pub(super) async fn fenced(&mut self, loss: &SlotLoss, stage: FenceStage) -> Result<Action> {
        let message = slot::fenced_message(self.node(), &self.name, loss, stage);
        tracing::warn!(policy = %self.name, "{message}");
        if let SlotLoss::OtherIncarnation(_) = loss {
            return Ok(Action::await_change());
        }
        if stage == FenceStage::BeforeApply {
            let stored = self
                .ctx
                .enactment_api()
                .get_status(&self.enactment)
                .await
                .map_err(|e| Error::read(format!("enactment {}", self.enactment), e))?;
            if let Some(status) = stored.status
                && SlotState::of(Some(&status), self.generation).is_final()
            {
                self.status = status;
                return Ok(Action::await_change());
            }
        }
        self.transition(&EnactmentTransition::Aborted {
            message: message.clone(),
        });
        self.write_status().await?;
        self.warn(ev::REASON_SLOT_EXPIRED, ev::ACTION_SLOT, &message)
            .await;
        Ok(Action::await_change())
    }
}
