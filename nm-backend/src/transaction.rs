//! The apply transaction: apply holding a checkpoint → probe → commit, or roll back on any
//! failure (a probe failed, the caller cancelled, the commit failed).
//!
//! [`Backend::transaction`] is the one way the handler changes a node: it passes the probe step
//! in (what to check while the checkpoint is held) and a cancellation signal (shutdown), and
//! gets a [`Transaction`] back: how it ended, how long it took and what each probe saw. After
//! a rollback for a failed probe or commit the probes run again, so the caller can tell
//! whether connectivity came back (upstream re-runs them too, #454/#484). A checkpoint this
//! backend left behind in a crashed process is rolled back by the apply first
//! ([`Backend::roll_back_stale_checkpoints`]).

use std::{
    future::Future,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    ApplyOptions, Backend, BackendError, Checkpoint, fault, probe::ProbeRecord, probe::ProbeRun,
};

/// Why an applied state was rolled back.
#[derive(Debug)]
pub enum RollbackCause {
    /// A probe failed while the checkpoint was held.
    ProbeFailed(BackendError),
    /// The caller cancelled (the process is stopping).
    Cancelled,
    /// Committing the checkpoint failed; the rollback makes sure none is left behind.
    CommitFailed(BackendError),
}

impl RollbackCause {
    /// The stable category of the cause (`cancelled` for a cancellation).
    pub fn category(&self) -> &'static str {
        match self {
            Self::ProbeFailed(e) | Self::CommitFailed(e) => e.category(),
            Self::Cancelled => "cancelled",
        }
    }
}

/// How a transaction ended.
#[derive(Debug)]
pub enum TransactionOutcome {
    /// The probes passed and the checkpoint was committed.
    Committed,
    /// The applied state was rolled back.
    RolledBack {
        /// Why.
        cause: RollbackCause,
        /// The rollback itself failed too (NetworkManager rolls back by itself when the
        /// checkpoint times out).
        rollback_error: Option<BackendError>,
    },
    /// The apply failed: nothing was left pending (nmstate rolled back, or nothing changed).
    ApplyFailed(BackendError),
}

/// The result of [`Backend::transaction`].
#[derive(Debug)]
pub struct Transaction {
    /// How it ended.
    pub outcome: TransactionOutcome,
    /// Checkpoints of earlier, crashed applies rolled back before this apply.
    pub destroyed_stale: Vec<Checkpoint>,
    /// From the start of the apply to the commit or the end of the rollback.
    pub duration: Duration,
    /// The probes that ran, in order.
    pub probes: Vec<ProbeRecord>,
    /// The probes run again after a successful rollback for a failed probe or commit: whether
    /// connectivity came back (`failure` is `None`) or not.
    pub after_rollback: Option<ProbeRun>,
}

impl Transaction {
    /// Whether the desired state was committed.
    pub fn committed(&self) -> bool {
        matches!(self.outcome, TransactionOutcome::Committed)
    }

    /// After a rollback, whether the probes passed again (`None`: they did not run again).
    pub fn connectivity_restored(&self) -> Option<bool> {
        self.after_rollback
            .as_ref()
            .map(|run| run.failure.is_none())
    }
}

/// The body of [`Backend::transaction`].
pub(crate) async fn run<B, P, F, C>(
    backend: &B,
    desired: &Value,
    options: &ApplyOptions,
    probe: P,
    cancel: C,
) -> Transaction
where
    B: Backend + ?Sized,
    P: Fn() -> F,
    F: Future<Output = ProbeRun>,
    C: Future<Output = ()>,
{
    let started = Instant::now();
    let policy = options.attempt.as_ref().map(|a| a.policy.as_str());
    let pending = match backend.apply(desired, options).await {
        Ok(p) => p,
        Err(e) => {
            return Transaction {
                outcome: TransactionOutcome::ApplyFailed(e),
                destroyed_stale: Vec::new(),
                duration: started.elapsed(),
                probes: Vec::new(),
                after_rollback: None,
            };
        }
    };
    let checkpoint = &pending.checkpoint;
    fault::point("probing", policy).await;
    let probed = tokio::select! {
        run = probe() => Some(run),
        () = cancel => None,
    };
    let (cause, probes) = match probed {
        None => {
            tracing::warn!(%checkpoint, "cancelled while probing: rolling back");
            (RollbackCause::Cancelled, Vec::new())
        }
        Some(ProbeRun {
            records,
            failure: Some(e),
        }) => (RollbackCause::ProbeFailed(e), records),
        Some(ProbeRun {
            records,
            failure: None,
        }) => {
            fault::point("probes-passed", policy).await;
            match backend.commit(checkpoint).await {
                Ok(()) => {
                    return Transaction {
                        outcome: TransactionOutcome::Committed,
                        destroyed_stale: pending.destroyed_stale,
                        duration: started.elapsed(),
                        probes: records,
                        after_rollback: None,
                    };
                }
                Err(e) => (RollbackCause::CommitFailed(e), records),
            }
        }
    };
    let rollback_error = backend.rollback(checkpoint).await.err();
    if let Some(e) = &rollback_error {
        tracing::warn!(%checkpoint, error = %e, "failed to roll back");
    }
    let duration = started.elapsed();
    // Did connectivity come back? Not asked when stopping (the process is going away) or when
    // the rollback failed (the applied state may still be there).
    let after_rollback = if matches!(cause, RollbackCause::Cancelled) || rollback_error.is_some() {
        None
    } else {
        let run = probe().await;
        match &run.failure {
            None => tracing::info!(%checkpoint, "connectivity back after the rollback"),
            Some(e) => {
                tracing::warn!(%checkpoint, error = %e, "connectivity not back after the rollback");
            }
        }
        Some(run)
    };
    Transaction {
        outcome: TransactionOutcome::RolledBack {
            cause,
            rollback_error,
        },
        destroyed_stale: pending.destroyed_stale,
        duration,
        probes,
        after_rollback,
    }
}

#[cfg(test)]
mod tests {
    use std::future::pending;

    use serde_json::json;

    use super::*;
    use crate::MemoryBackend;
    use crate::probe::{FixedState, ProbeContext, ProbeOutcome, run_recorded};

    fn mtu(mtu: u64) -> Value {
        json!({"interfaces": [{"name": "eth1", "mtu": mtu}]})
    }

    fn eth1_mtu(state: &Value) -> Value {
        state["interfaces"]
            .as_array()
            .and_then(|i| i.iter().find(|i| i["name"] == "eth1"))
            .map(|i| i["mtu"].clone())
            .unwrap_or_default()
    }

    fn passed(name: &str) -> ProbeRun {
        ProbeRun {
            records: vec![ProbeRecord {
                name: name.into(),
                duration: Duration::ZERO,
                outcome: Ok(ProbeOutcome::Passed("ok".into())),
            }],
            failure: None,
        }
    }

    fn failed(name: &str) -> ProbeRun {
        ProbeRun {
            records: vec![ProbeRecord {
                name: name.into(),
                duration: Duration::ZERO,
                outcome: Err("down".into()),
            }],
            failure: Some(BackendError::Probe {
                probe: name.into(),
                message: "down".into(),
            }),
        }
    }

    #[tokio::test]
    async fn commits_when_the_probes_pass() {
        let node = MemoryBackend::harness_like("198.18.0.150");
        let t = node
            .transaction(
                &mtu(9000),
                &ApplyOptions::default(),
                || async { passed("default-gateway") },
                pending(),
            )
            .await;
        assert!(t.committed(), "{:?}", t.outcome);
        assert_eq!(t.probes.len(), 1);
        assert!(t.probes[0].succeeded());
        assert_eq!(eth1_mtu(&node.state()), json!(9000));
        assert!(node.checkpoints().is_empty());
    }

    #[tokio::test]
    async fn rolls_back_when_a_probe_fails() {
        let node = MemoryBackend::harness_like("198.18.0.150");
        let before = node.state();
        let t = node
            .transaction(
                &mtu(9000),
                &ApplyOptions::default(),
                || async { failed("dns") },
                pending(),
            )
            .await;
        match &t.outcome {
            TransactionOutcome::RolledBack {
                cause: cause @ RollbackCause::ProbeFailed(_),
                rollback_error: None,
            } => assert_eq!(cause.category(), "probe-failed"),
            other => panic!("{other:?}"),
        }
        assert_eq!(t.probes[0].outcome, Err("down".to_owned()));
        assert_eq!(node.state(), before);
        assert!(node.checkpoints().is_empty());
    }

    #[tokio::test]
    async fn after_a_rollback_the_probes_run_again() {
        let node = MemoryBackend::harness_like("198.18.0.150");
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let t = node
            .transaction(
                &mtu(9000),
                &ApplyOptions::default(),
                || {
                    let n = runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async move { if n == 0 { failed("dns") } else { passed("dns") } }
                },
                pending(),
            )
            .await;
        assert!(matches!(t.outcome, TransactionOutcome::RolledBack { .. }));
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(t.connectivity_restored(), Some(true));

        let still_down = node
            .transaction(
                &mtu(9000),
                &ApplyOptions::default(),
                || async { failed("default-gateway") },
                pending(),
            )
            .await;
        assert_eq!(still_down.connectivity_restored(), Some(false));
        assert!(node.checkpoints().is_empty());
    }

    #[tokio::test]
    async fn no_probe_runs_again_after_a_commit() {
        let node = MemoryBackend::harness_like("198.18.0.150");
        let t = node
            .transaction(
                &mtu(9000),
                &ApplyOptions::default(),
                || async { passed("dns") },
                pending(),
            )
            .await;
        assert!(t.committed());
        assert_eq!(t.connectivity_restored(), None);
    }

    #[tokio::test]
    async fn the_probes_see_the_applied_state_while_the_checkpoint_is_held() {
        let node = MemoryBackend::harness_like("198.18.0.150");
        let before = node.state();
        let probes: Vec<Box<dyn crate::probe::Probe>> = Vec::new();
        let seen = std::sync::Mutex::new(Value::Null);
        let t = node
            .transaction(
                &mtu(1400),
                &ApplyOptions::default(),
                || async {
                    *seen.lock().expect("lock") = eth1_mtu(&node.state());
                    let fixed = FixedState(before.clone());
                    let ctx = ProbeContext {
                        before: &before,
                        current: &fixed,
                    };
                    run_recorded(&probes, &ctx).await
                },
                pending(),
            )
            .await;
        assert!(t.committed());
        assert_eq!(*seen.lock().expect("lock"), json!(1400));
    }

    #[tokio::test]
    async fn rolls_back_when_cancelled_while_probing() {
        let node = MemoryBackend::harness_like("198.18.0.150");
        let before = node.state();
        let t = node
            .transaction(
                &mtu(9000),
                &ApplyOptions::default(),
                pending::<ProbeRun>,
                tokio::time::sleep(Duration::from_millis(20)),
            )
            .await;
        assert!(matches!(
            t.outcome,
            TransactionOutcome::RolledBack {
                cause: RollbackCause::Cancelled,
                rollback_error: None
            }
        ));
        assert_eq!(node.state(), before);
        assert!(node.checkpoints().is_empty());
    }

    #[tokio::test]
    async fn a_failed_apply_leaves_nothing_pending_and_runs_no_probe() {
        let node = MemoryBackend::harness_like("198.18.0.150");
        node.set_unsupported_types(["bond"]);
        let bond = json!({"interfaces": [{"name": "bond0", "type": "bond", "state": "up"}]});
        let t = node
            .transaction(
                &bond,
                &ApplyOptions::default(),
                || async { panic!("no probe runs after a failed apply") },
                pending(),
            )
            .await;
        match &t.outcome {
            TransactionOutcome::ApplyFailed(e) => {
                assert_eq!(e.category(), "unsupported-interface-type");
            }
            other => panic!("{other:?}"),
        }
        assert!(node.checkpoints().is_empty());
    }

    #[tokio::test]
    async fn stale_checkpoints_are_rolled_back_first() {
        let node = MemoryBackend::harness_like("198.18.0.150");
        let before = node.state();
        let crashed = node
            .apply(&mtu(1280), &ApplyOptions::default())
            .await
            .expect("apply");
        node.crash();
        let t = node
            .transaction(
                &json!({"interfaces": [{"name": "eth2", "mtu": 1400}]}),
                &ApplyOptions::default(),
                || async {
                    // The crashed apply's change is gone before the probes run.
                    assert_eq!(eth1_mtu(&node.state()), eth1_mtu(&before));
                    passed("default-gateway")
                },
                pending(),
            )
            .await;
        assert!(t.committed(), "{:?}", t.outcome);
        assert_eq!(t.destroyed_stale, vec![crashed.checkpoint]);
        assert_eq!(eth1_mtu(&node.state()), eth1_mtu(&before));
        assert!(node.checkpoints().is_empty());
    }

    #[tokio::test]
    async fn a_failed_commit_is_rolled_back() {
        let node = MemoryBackend::harness_like("198.18.0.150");
        let before = node.state();
        let options = ApplyOptions {
            checkpoint_timeout: Duration::from_millis(10),
            ..ApplyOptions::default()
        };
        let t = node
            .transaction(
                &mtu(9000),
                &options,
                || async {
                    // The checkpoint times out while probing: the commit finds none.
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    passed("default-gateway")
                },
                pending(),
            )
            .await;
        match &t.outcome {
            TransactionOutcome::RolledBack {
                cause: cause @ RollbackCause::CommitFailed(_),
                ..
            } => assert_eq!(cause.category(), "commit-failed"),
            other => panic!("{other:?}"),
        }
        assert_eq!(node.state(), before);
    }
}
