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
    #[error("failed to lock {path}")]
    AcquireLock {
        /// The lock file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Writing or removing the readiness file failed.
    #[error("failed to write the readiness file {path}")]
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
    #[error("failed to read {what}")]
    ReadObject {
        /// What was read.
        what: String,
        /// The cause.
        source: kube::Error,
    },
    /// Creating an enactment failed.
    #[error("failed to create enactment {name}")]
    CreateEnactment {
        /// Enactment name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// Deleting an enactment failed.
    #[error("failed to delete enactment {name}")]
    DeleteEnactment {
        /// Enactment name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// Writing an enactment's status failed.
    #[error("failed to write the status of enactment {name}")]
    WriteEnactmentStatus {
        /// Enactment name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// An enactment status was over the size cap: it was written Failing without its
    /// desiredState and capturedStates, and the reconcile ends until the policy changes.
    #[error("failed to fit the status of enactment {name} under the size cap ({bytes} bytes)")]
    CapEnactmentStatus {
        /// Enactment name.
        name: String,
        /// The status size before the cap.
        bytes: usize,
    },
    /// Writing the slot ledger of a policy failed (other than a conflict).
    #[error("failed to write the slot ledger of policy {policy}")]
    WriteSlotLedger {
        /// Policy name.
        policy: String,
        /// The cause.
        source: kube::Error,
    },
    /// Creating or writing this node's NodeNetworkState failed.
    #[error("failed to write NodeNetworkState {name}")]
    WriteNodeNetworkState {
        /// NNS name (the node's).
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// Reading the node's network state through the backend failed.
    #[error("failed to read the node's network state")]
    ReadNetworkState(#[source] BackendError),
    /// Watching the node's network changes failed.
    #[error("failed to watch the node's network changes")]
    WatchNetworkChanges(#[source] BackendError),
    /// Rolling back the checkpoints a dead handler left failed.
    #[error("failed to roll back the stale checkpoints")]
    RollbackCheckpoint(#[source] BackendError),
    /// (De)serialising an object failed.
    #[error("failed to serialise {what}")]
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
    /// Finding the API server (in-cluster or `KUBECONFIG`) failed.
    #[error("failed to find the API server")]
    FindApiServer(#[source] kube::config::InferConfigError),
    /// Creating the API client failed.
    #[error("failed to create the API client")]
    CreateClient(#[source] kube::Error),
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
            Self::CapEnactmentStatus { .. } => "enactment-status-capped",
            Self::WriteNodeNetworkState { .. } => "write-node-network-state-failed",
            Self::ReadNetworkState(_) => "read-network-state-failed",
            Self::WatchNetworkChanges(_) => "watch-network-changes-failed",
            Self::RollbackCheckpoint(_) => "rollback-failed",
            Self::Serialize { .. } => "serialize-failed",
            Self::CheckBridgeVlanFiltering { .. } => "bridge-vlan-filtering-unsupported",
            Self::FindApiServer(_) => "find-api-server-failed",
            Self::CreateClient(_) => "create-client-failed",
            Self::ShuttingDown => "shutting-down",
        }
    }

    /// The message with every source after it (`failed to read policy p1: <why>`), for logs.
    ///
    /// ```
    /// let e = knmstate_handler::Error::FindNode("n1".into());
    /// assert_eq!(e.report(), "node n1 not found");
    /// ```
    pub fn report(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            out.push_str(": ");
            out.push_str(&cause.to_string());
            source = cause.source();
        }
        out
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

    #[test]
    fn messages_say_what_failed_and_the_report_adds_why() {
        let e = Error::read(
            "policy p1",
            kube::Error::Service("refused".to_owned().into()),
        );
        assert_eq!(e.to_string(), "failed to read policy p1");
        assert!(
            e.report().starts_with("failed to read policy p1: "),
            "{}",
            e.report()
        );
        assert!(e.report().contains("refused"), "{}", e.report());
    }
}
