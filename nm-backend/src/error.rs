//! Typed errors of the backend, each named for the action that failed.

/// The result type of this crate.
pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// What went wrong while reading or changing a node's network.
///
/// Every variant has a stable [`category`](BackendError::category) (used for condition reasons,
/// event reasons and metric labels) and says whether trying again may help
/// ([`can_retry`](BackendError::can_retry)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// Reading the current network state failed.
    #[error("failed to retrieve the current network state ({kind}): {message}")]
    RetrieveState {
        /// nmstate's error kind (`PluginFailure`, `Bug`, ...).
        kind: String,
        /// nmstate's message.
        message: String,
    },
    /// The desired state is not a valid nmstate state.
    #[error("invalid desired state: {0}")]
    InvalidDesiredState(String),
    /// The desired state needs an interface type that the running kernel cannot create.
    #[error("interface {interface:?}: type {interface_type} is not supported by this kernel")]
    UnsupportedInterfaceType {
        /// Name of the interface in the desired state.
        interface: String,
        /// nmstate interface type (`bond`, `vlan`, ...).
        interface_type: String,
    },
    /// nmstate failed to apply (or to verify) the desired state; it rolled back already.
    #[error("failed to apply the desired state ({kind}): {message}")]
    ApplyState {
        /// nmstate's error kind.
        kind: String,
        /// nmstate's message.
        message: String,
    },
    /// Another apply holds a checkpoint that was neither committed nor rolled back.
    #[error("checkpoint {0} is still pending: commit or roll it back first")]
    CheckpointPending(String),
    /// NetworkManager holds checkpoints this backend did not create: they are left to their
    /// owner (or their timeout), and NetworkManager would refuse the apply's own checkpoint.
    #[error("failed to start the apply: NetworkManager holds checkpoints knmstate did not create ({})", .0.join(", "))]
    ForeignCheckpoint(Vec<String>),
    /// The apply succeeded but NetworkManager shows no checkpoint for it.
    #[error("NetworkManager reports no checkpoint after the apply")]
    CheckpointMissing,
    /// Destroying a checkpoint left behind by an earlier, crashed apply failed.
    #[error("failed to roll back the stale checkpoint {checkpoint}: {message}")]
    DestroyStaleCheckpoint {
        /// D-Bus path of the checkpoint.
        checkpoint: String,
        /// What NetworkManager said.
        message: String,
    },
    /// Committing (destroying) the checkpoint failed.
    #[error("failed to commit checkpoint {checkpoint}: {message}")]
    CommitCheckpoint {
        /// D-Bus path of the checkpoint.
        checkpoint: String,
        /// What went wrong.
        message: String,
    },
    /// Rolling back to the checkpoint failed.
    #[error("failed to roll back to checkpoint {checkpoint}: {message}")]
    RollbackCheckpoint {
        /// D-Bus path of the checkpoint.
        checkpoint: String,
        /// What went wrong.
        message: String,
    },
    /// The nmpolicy capture or template could not be resolved.
    #[error("failed to resolve the policy captures: {0}")]
    ResolvePolicy(String),
    /// nmstate could not compute the feature statistics of a desired state.
    #[error("failed to compute the nmstate feature statistics: {0}")]
    FeatureStatistics(String),
    /// Talking to NetworkManager over D-Bus failed.
    #[error("failed to talk to NetworkManager over D-Bus: {0}")]
    NetworkManagerDbus(zbus::Error),
    /// Subscribing to NetworkManager's change signals failed.
    #[error("failed to watch NetworkManager changes: {0}")]
    WatchChanges(String),
    /// A probe found the network broken while the checkpoint was held.
    #[error("probe {probe} failed: {message}")]
    Probe {
        /// Name of the probe.
        probe: String,
        /// What the probe saw.
        message: String,
    },
    /// A worker thread could not start, or died.
    #[error("failed to run the backend worker: {0}")]
    Worker(String),
    /// nmstate panicked while computing something from states (capture resolution, feature
    /// statistics); the panic was caught so that it does not take the process down.
    #[error("failed to {operation}: nmstate panicked: {message}")]
    NmstatePanic {
        /// What was being computed ("resolve the policy captures", ...).
        operation: &'static str,
        /// The panic's message.
        message: String,
    },
}

// Not `#[from]`: that would make the D-Bus error a source as well as part of the message.
impl From<zbus::Error> for BackendError {
    fn from(e: zbus::Error) -> Self {
        Self::NetworkManagerDbus(e)
    }
}

impl BackendError {
    /// Stable, kebab-case name of the failure class.
    pub fn category(&self) -> &'static str {
        match self {
            Self::RetrieveState { .. } => "retrieve-state-failed",
            Self::InvalidDesiredState(_) => "invalid-desired-state",
            Self::UnsupportedInterfaceType { .. } => "unsupported-interface-type",
            Self::ApplyState { .. } => "apply-failed",
            Self::CheckpointPending(_) => "checkpoint-pending",
            Self::CheckpointMissing => "checkpoint-missing",
            Self::ForeignCheckpoint(_) => "foreign-checkpoint",
            Self::DestroyStaleCheckpoint { .. } => "stale-checkpoint-rollback-failed",
            Self::CommitCheckpoint { .. } => "commit-failed",
            Self::RollbackCheckpoint { .. } => "rollback-failed",
            Self::ResolvePolicy(_) => "resolve-policy-failed",
            Self::FeatureStatistics(_) => "feature-statistics-failed",
            Self::NetworkManagerDbus(_) => "network-manager-unreachable",
            Self::WatchChanges(_) => "watch-changes-failed",
            Self::Probe { .. } => "probe-failed",
            Self::Worker(_) => "backend-worker-failed",
            Self::NmstatePanic { .. } => "nmstate-panicked",
        }
    }

    /// Whether the same request may succeed when tried again later without changes.
    pub fn can_retry(&self) -> bool {
        match self {
            Self::RetrieveState { kind, .. } | Self::ApplyState { kind, .. } => {
                nmstate_kind_can_retry(kind)
            }
            Self::CheckpointPending(_)
            | Self::CheckpointMissing
            | Self::ForeignCheckpoint(_)
            | Self::DestroyStaleCheckpoint { .. }
            | Self::CommitCheckpoint { .. }
            | Self::RollbackCheckpoint { .. }
            | Self::NetworkManagerDbus(_)
            | Self::WatchChanges(_)
            | Self::Probe { .. }
            | Self::Worker(_) => true,
            Self::InvalidDesiredState(_)
            | Self::UnsupportedInterfaceType { .. }
            | Self::ResolvePolicy(_)
            | Self::FeatureStatistics(_)
            | Self::NmstatePanic { .. } => false,
        }
    }

    pub(crate) fn from_retrieve(e: &nmstate::NmstateError) -> Self {
        Self::RetrieveState {
            kind: e.kind().to_string(),
            message: e.msg().to_string(),
        }
    }

    pub(crate) fn from_apply(e: &nmstate::NmstateError) -> Self {
        match e.kind() {
            nmstate::ErrorKind::InvalidArgument => Self::InvalidDesiredState(e.msg().to_string()),
            kind => Self::ApplyState {
                kind: kind.to_string(),
                message: e.msg().to_string(),
            },
        }
    }
}

/// nmstate retries these kinds itself; they are transient (NetworkManager busy, verification race).
fn nmstate_kind_can_retry(kind: &str) -> bool {
    matches!(
        kind,
        "PluginFailure" | "Bug" | "VerificationError" | "SrIovVfNotFound"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_stable_and_retry_follows_kind() {
        let e = BackendError::UnsupportedInterfaceType {
            interface: "bond0".into(),
            interface_type: "bond".into(),
        };
        assert_eq!(e.category(), "unsupported-interface-type");
        assert!(!e.can_retry());
        assert_eq!(
            e.to_string(),
            "interface \"bond0\": type bond is not supported by this kernel"
        );

        let busy = BackendError::from_apply(&nmstate::NmstateError::new(
            nmstate::ErrorKind::PluginFailure,
            "NM busy".into(),
        ));
        assert_eq!(busy.category(), "apply-failed");
        assert!(busy.can_retry());

        let invalid = BackendError::from_apply(&nmstate::NmstateError::new(
            nmstate::ErrorKind::InvalidArgument,
            "bad".into(),
        ));
        assert_eq!(invalid.category(), "invalid-desired-state");
        assert!(!invalid.can_retry());
    }
}
