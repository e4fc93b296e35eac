//! NetworkManager backend of knmstate.
//!
//! This crate is the only part of knmstate that changes a node's network. It wraps the `nmstate`
//! crate (which drives NetworkManager over D-Bus) and talks to NetworkManager itself through
//! `zbus` for what nmstate does not expose:
//!
//! - [`Backend::current_state`]: the full nmstate state plus the NetworkManager and nmstate
//!   versions;
//! - [`Backend::resolve_policy`]: nmpolicy capture resolution against the current state, reusing
//!   cached captures, giving the node's desired state and `capturedStates`;
//! - [`Backend::feature_statistics`]: nmstate's feature statistics of a desired state (a panic
//!   in nmstate's nmpolicy or statistics code is caught and returned as
//!   [`BackendError::NmstatePanic`]);
//! - [`Backend::transaction`]: the apply transaction — apply without committing, holding a
//!   NetworkManager checkpoint, run the caller's [`probe`]s, then commit, or roll back on a
//!   failed probe, a cancellation or a failed commit; its steps [`Backend::apply`] →
//!   [`Backend::commit`] / [`Backend::rollback`] are there for callers that drive them
//!   themselves. Interface types the kernel cannot create are refused within seconds instead
//!   of after nmstate's retries;
//! - [`Backend::roll_back_stale_checkpoints`]: start-up recovery from the recovery record
//!   ([`NmBackend::with_state_dir`], a host directory): the checkpoint this backend created for
//!   an apply whose process died is rolled back (found by its exact D-Bus path), the global DNS
//!   saved before that apply is restored (also when NetworkManager's checkpoint timeout rolled
//!   the checkpoint back first), and the interrupted [`Attempt`] is handed back so that the
//!   caller counts it. Checkpoints another tool created are never committed or rolled back:
//!   they are logged, and an apply refuses to start beside them
//!   ([`BackendError::ForeignCheckpoint`]);
//! - [`Backend::supports_bridge_vlan_filtering`]: the kernel-support probe for linux-bridge
//!   VLAN filtering (the same throw-away-link probe that checks interface types);
//! - [`Backend::changes`]: a debounced stream of NetworkManager change signals.
//!
//! [`NmBackend`] is the real implementation; `MemoryBackend` (feature `testing`, for tests only)
//! models interfaces, routes and DNS in memory for handler tests and simulations, and goes
//! through the same transaction.
//!
//! nmstate's futures are not `Send` and its blocking calls panic on a tokio worker thread, so
//! every nmstate call runs on a dedicated thread with its own current-thread runtime; the
//! futures this crate returns are `Send`.

mod auto_dns;
mod changes;
mod error;
pub mod fault;
mod kernel;
#[cfg(any(test, feature = "testing"))]
mod memory;
mod nm;
mod policy;
pub mod probe;
mod record;
mod transaction;
mod worker;

use std::{collections::BTreeMap, future::Future, time::Duration};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use changes::{ChangeBatch, ChangeKind, ChangeStream};
pub use error::{BackendError, Result};
pub use kernel::{KernelSupport, kernel_link_kind};
#[cfg(any(test, feature = "testing"))]
pub use memory::MemoryBackend;
pub use nm::NmBackend;
pub use policy::{feature_statistics, resolve_policy};
pub use record::Attempt;
pub use transaction::{RollbackCause, Transaction, TransactionOutcome};

use probe::ProbeRun;

/// Version of the nmstate crate this backend was built with.
pub const NMSTATE_VERSION: &str = env!("KNMSTATE_NMSTATE_VERSION");

/// A node's current network state and the versions of the software that reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentState {
    /// The full nmstate state (interfaces, routes, route rules, dns-resolver, ...).
    pub state: Value,
    /// NetworkManager's `Version` property (empty for the in-memory backend).
    pub nm_version: String,
    /// The nmstate crate version.
    pub nmstate_version: String,
}

/// Per-node outcome of resolving an nmpolicy (`capture` + `desiredState`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedPolicy {
    /// The desired state with every capture reference filled in.
    pub desired_state: Value,
    /// Each capture's matched state, by capture name (cached entries are reused as they are).
    pub captured_states: BTreeMap<String, Value>,
}

/// nmstate's feature statistics of a desired state (for the `features_applied` metric).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureStatistics {
    /// Interface topologies, such as `bond -> eth`.
    pub topology: Vec<String>,
    /// Feature names, such as `StaticRoute` or `StaticDnsNameServer`.
    pub features: Vec<String>,
}

/// How an apply is carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOptions {
    /// NetworkManager rolls the checkpoint back by itself when neither commit nor rollback came
    /// within this time.
    pub checkpoint_timeout: Duration,
    /// Have nmstate verify the result against the desired state before returning.
    pub verify: bool,
    /// The caller's attempt, recorded durably before the network is touched and handed back
    /// by start-up recovery if the process dies before the apply finished.
    pub attempt: Option<Attempt>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            checkpoint_timeout: Duration::from_mins(1),
            verify: true,
            attempt: None,
        }
    }
}

/// A NetworkManager checkpoint held by an uncommitted apply.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Checkpoint(pub String);

impl std::fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An applied but not yet committed desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingApply {
    /// The checkpoint to [`Backend::commit`] or [`Backend::rollback`].
    pub checkpoint: Checkpoint,
    /// Checkpoints of earlier, crashed applies that were found first and rolled back (which
    /// destroys them): their changes were never probed, so the node returns to the state before
    /// them.
    pub destroyed_stale: Vec<Checkpoint>,
}

/// What start-up recovery ([`Backend::roll_back_stale_checkpoints`]) found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// This backend's checkpoint of an apply whose process died, rolled back.
    pub rolled_back: Option<Checkpoint>,
    /// The global DNS saved before that apply was put back.
    pub dns_restored: bool,
    /// The attempt whose process died before its apply finished (committed applies are not
    /// listed): count it. It stays listed by [`Backend::interrupted_attempts`] until
    /// [`Backend::forget_interrupted`].
    pub interrupted: Option<Attempt>,
    /// Checkpoints this backend did not create: left alone.
    pub foreign: Vec<Checkpoint>,
}

/// A node's network, as the handler sees it.
///
/// All futures are `Send`, so they can run inside kube-runtime reconcilers.
pub trait Backend: Send + Sync {
    /// The current state and versions.
    fn current_state(&self) -> impl Future<Output = Result<CurrentState>> + Send;

    /// Apply `desired` and keep a checkpoint instead of committing.
    ///
    /// The attempt is recorded before the network is touched, then the exact checkpoint the
    /// apply created. A checkpoint of this backend's crashed apply is rolled back first
    /// ([`roll_back_stale_checkpoints`](Backend::roll_back_stale_checkpoints)) and returned in
    /// [`PendingApply::destroyed_stale`]; a checkpoint another tool holds makes the apply fail
    /// without touching anything ([`BackendError::ForeignCheckpoint`]: NetworkManager would
    /// refuse the apply's own checkpoint). On error nothing is left pending: nmstate rolled back
    /// already, or nothing was changed. Dropping the future does not stop an apply already
    /// handed to NetworkManager; its checkpoint is then rolled back by the next apply (or by its
    /// timeout).
    fn apply(
        &self,
        desired: &Value,
        options: &ApplyOptions,
    ) -> impl Future<Output = Result<PendingApply>> + Send;

    /// Keep the applied state: destroy the checkpoint.
    fn commit(&self, checkpoint: &Checkpoint) -> impl Future<Output = Result<()>> + Send;

    /// Return to the state saved in the checkpoint.
    fn rollback(&self, checkpoint: &Checkpoint) -> impl Future<Output = Result<()>> + Send;

    /// Start-up recovery: roll back the checkpoint this backend created for an apply whose
    /// process died (its changes were never probed, and NetworkManager refuses new checkpoints
    /// beside it), restore the global DNS saved before that apply, and hand back its attempt.
    /// A commit that had begun and whose checkpoint is gone was committed: nothing is undone.
    /// Checkpoints this backend did not create are left alone (logged).
    ///
    /// Call it only while no apply of this process is pending: at start-up (under the node
    /// lock, so no other handler is alive) — [`apply`](Backend::apply) calls it itself once it
    /// made sure of that.
    fn roll_back_stale_checkpoints(&self) -> impl Future<Output = Result<Recovery>> + Send;

    /// Attempts start-up recovery found interrupted and the caller has not yet counted
    /// (they survive another death of the process).
    fn interrupted_attempts(&self) -> Vec<Attempt>;

    /// `attempt` was counted: stop listing it.
    fn forget_interrupted(&self, attempt: &Attempt);

    /// Whether the node's kernel can filter VLANs on a linux bridge (probed once). When it
    /// cannot tell, it answers `true` and leaves the verdict to the apply.
    fn supports_bridge_vlan_filtering(&self) -> impl Future<Output = bool> + Send;

    /// The apply transaction: [`apply`](Backend::apply) `desired` holding a checkpoint, run
    /// `probe` (what to check while it is held), then [`commit`](Backend::commit); or
    /// [`rollback`](Backend::rollback) when a probe failed, when `cancel` resolved first (the
    /// process is stopping) or when the commit failed. Nothing is left pending whatever the
    /// outcome, unless the rollback itself failed (then NetworkManager rolls back when the
    /// checkpoint times out). After a rollback for a failed probe or commit, `probe` runs
    /// again to tell whether connectivity came back ([`Transaction::after_rollback`]).
    fn transaction<P, F, C>(
        &self,
        desired: &Value,
        options: &ApplyOptions,
        probe: P,
        cancel: C,
    ) -> impl Future<Output = Transaction> + Send
    where
        P: Fn() -> F + Send + Sync,
        F: Future<Output = ProbeRun> + Send,
        C: Future<Output = ()> + Send,
    {
        transaction::run(self, desired, options, probe, cancel)
    }

    /// Debounced change notifications: one batch per burst of changes, after `debounce` of quiet.
    fn changes(&self, debounce: Duration) -> impl Future<Output = Result<ChangeStream>> + Send;

    /// Resolve an nmpolicy (`{capture, desiredState}`) against the current state.
    ///
    /// Captures named in `cache` are reused instead of being captured again.
    fn resolve_policy(
        &self,
        policy: &Value,
        cache: &BTreeMap<String, Value>,
    ) -> impl Future<Output = Result<ResolvedPolicy>> + Send {
        async move {
            let current = self.current_state().await?;
            policy::resolve_policy(policy, &current.state, cache)
        }
    }

    /// nmstate's feature statistics of `desired` against the current state.
    fn feature_statistics(
        &self,
        desired: &Value,
    ) -> impl Future<Output = Result<FeatureStatistics>> + Send {
        async move {
            let current = self.current_state().await?;
            policy::feature_statistics(desired, &current.state)
        }
    }
}
