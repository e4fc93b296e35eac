//! Errors of the handler, each named for the action that failed, with a stable
//! [`Error::category`] used for condition reasons, event reasons, metric labels and logs.

use knmstate_nm_backend::BackendError;

/// What went wrong in the handler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is unusable (e.g. `NODE_NAME` is missing).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Opening or locking the per-node lock file failed.
    #[error("locking {path}: {source}")]
    AcquireLock {
        /// The lock file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Writing or removing the readiness file failed.
    #[error("writing the readiness file {path}: {source}")]
    WriteReadinessFile {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// This node's Node object is not known (yet).
    #[error("node {0} not found")]
    FindNode(String),
    /// Reading an object from the API server failed.
    #[error("reading {what} failed: {source}")]
    ReadObject {
        /// What was read.
        what: String,
        /// The cause.
        source: kube::Error,
    },
    /// Creating an enactment failed.
    #[error("creating enactment {name} failed: {source}")]
    CreateEnactment {
        /// Enactment name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// Deleting an enactment failed.
    #[error("deleting enactment {name} failed: {source}")]
    DeleteEnactment {
        /// Enactment name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// Writing an enactment's status failed.
    #[error("writing the status of enactment {name} failed: {source}")]
    WriteEnactmentStatus {
        /// Enactment name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// Writing the slot ledger of a policy failed (other than a conflict).
    #[error("writing the slot ledger of policy {policy} failed: {source}")]
    WriteSlotLedger {
        /// Policy name.
        policy: String,
        /// The cause.
        source: kube::Error,
    },
    /// Creating or writing this node's NodeNetworkState failed.
    #[error("writing NodeNetworkState {name} failed: {source}")]
    WriteNodeNetworkState {
        /// NNS name (the node's).
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// Reading the node's network state through the backend failed.
    #[error("reading the node's network state failed: {0}")]
    ReadNetworkState(#[source] BackendError),
    /// Watching the node's network changes failed.
    #[error("watching the node's network changes failed: {0}")]
    WatchNetworkChanges(#[source] BackendError),
    /// Rolling back a pending checkpoint failed.
    #[error("rolling back the pending checkpoint failed: {0}")]
    RollbackCheckpoint(#[source] BackendError),
    /// (De)serialising an object failed.
    #[error("serialising {what} failed: {source}")]
    Serialize {
        /// What was serialised.
        what: String,
        /// The cause.
        source: serde_json::Error,
    },
    /// The desired state configures linux-bridge VLANs on a kernel without bridge VLAN
    /// filtering (NetworkManager would fail later with an unclear verification error).
    #[error(
        "linux-bridge {interface}: {what} needs bridge VLAN filtering, which this kernel does not support"
    )]
    CheckBridgeVlanFiltering {
        /// The bridge.
        interface: String,
        /// What needs VLAN filtering (`port vlan configuration`, `vlan-filtering`, ...).
        what: String,
    },
    /// The handler is shutting down; the work was abandoned (after rolling back).
    #[error("the handler is shutting down")]
    ShuttingDown,
}

impl Error {
    /// A stable, kebab-case category of the failure.
    ///
    /// ```
    /// let e = knmstate_handler::Error::FindNode("n1".into());
    /// assert_eq!(e.category(), "node-not-found");
    /// ```
    pub fn category(&self) -> &'static str {
        match self {
            Self::InvalidConfig(_) => "invalid-config",
            Self::AcquireLock { .. } => "lock-failed",
            Self::WriteReadinessFile { .. } => "readiness-file-failed",
            Self::FindNode(_) => "node-not-found",
            Self::ReadObject { .. } => "read-object-failed",
            Self::CreateEnactment { .. } => "create-enactment-failed",
            Self::DeleteEnactment { .. } => "delete-enactment-failed",
            Self::WriteEnactmentStatus { .. } => "write-enactment-status-failed",
            Self::WriteSlotLedger { .. } => "write-slot-ledger-failed",
            Self::WriteNodeNetworkState { .. } => "write-node-network-state-failed",
            Self::ReadNetworkState(_) => "read-network-state-failed",
            Self::WatchNetworkChanges(_) => "watch-network-changes-failed",
            Self::RollbackCheckpoint(_) => "rollback-failed",
            Self::Serialize { .. } => "serialize-failed",
            Self::CheckBridgeVlanFiltering { .. } => "bridge-vlan-filtering-unsupported",
            Self::ShuttingDown => "shutting-down",
        }
    }

    pub(crate) fn read(what: impl Into<String>, source: kube::Error) -> Self {
        Self::ReadObject {
            what: what.into(),
            source,
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_distinct_for_kube_actions() {
        let e = |s: &str| kube::Error::Service(s.to_owned().into());
        let cats = [
            Error::CreateEnactment {
                name: "a".into(),
                source: e("x"),
            }
            .category(),
            Error::DeleteEnactment {
                name: "a".into(),
                source: e("x"),
            }
            .category(),
            Error::WriteEnactmentStatus {
                name: "a".into(),
                source: e("x"),
            }
            .category(),
            Error::WriteNodeNetworkState {
                name: "a".into(),
                source: e("x"),
            }
            .category(),
        ];
        let unique: std::collections::BTreeSet<_> = cats.iter().collect();
        assert_eq!(unique.len(), cats.len());
        assert_eq!(Error::ShuttingDown.category(), "shutting-down");
    }
}
