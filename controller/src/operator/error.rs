//! Errors of the operator, each named for the action that failed, with a stable kebab-case
//! [`OperatorError::category`] (log field and the `InternalError` condition's message).

/// Something the operator could not do.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The installation could not be rendered.
    #[error("failed to render the installation")]
    Render {
        /// What the renderer reported.
        #[from]
        source: knmstate_deploy::RenderError,
    },
    /// Listing the Nodes (for the webhook's topology) failed.
    #[error("failed to list the nodes")]
    ListNodes {
        /// What the API server answered.
        source: kube::Error,
    },
    /// Looking up the cluster's `cluster-reader` cluster role failed.
    #[error("failed to look up ClusterRole {name}")]
    LookUpClusterReader {
        /// The cluster role.
        name: &'static str,
        /// What the API server answered.
        source: kube::Error,
    },
    /// Asking the API server whether it serves a kind failed.
    #[error("failed to discover whether {api_version} is served")]
    Discover {
        /// The group/version asked for.
        api_version: String,
        /// What the API server answered.
        source: kube::Error,
    },
    /// The server-side apply of a rendered object failed.
    #[error("failed to apply {object}")]
    ApplyObject {
        /// `kind/namespace/name`.
        object: String,
        /// What the API server answered.
        source: kube::Error,
    },
    /// Listing or deleting objects the installation no longer renders failed.
    #[error("failed to prune {kind} objects")]
    Prune {
        /// The kind.
        kind: String,
        /// What the API server answered.
        source: kube::Error,
    },
    /// Reading a workload's status failed.
    #[error("failed to read the status of {object}")]
    ReadWorkload {
        /// `kind/namespace/name`.
        object: String,
        /// What the API server answered.
        source: kube::Error,
    },
    /// Writing the NMState status failed.
    #[error("failed to write the status of NMState {name}")]
    WriteStatus {
        /// The resource.
        name: String,
        /// What the API server answered.
        source: kube::Error,
    },
    /// Reading or writing a webhook certificate Secret failed.
    #[error("failed to store the webhook certificate in Secret {name}")]
    StoreCertificate {
        /// The Secret.
        name: String,
        /// What the API server answered.
        source: kube::Error,
    },
    /// Issuing a webhook certificate failed.
    #[error("failed to issue the webhook {what}")]
    IssueCertificate {
        /// `CA` or `serving certificate`.
        what: &'static str,
        /// What rcgen reported.
        source: rcgen::Error,
    },
    /// A `selfSignConfiguration` interval is not a Go duration.
    #[error("failed to parse selfSignConfiguration interval {value:?}")]
    ParseInterval {
        /// The value as written.
        value: String,
    },
}

impl OperatorError {
    /// A stable, kebab-case category.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Render { .. } => "render-failed",
            Self::ListNodes { .. } => "list-nodes-failed",
            Self::LookUpClusterReader { .. } => "look-up-cluster-reader-failed",
            Self::Discover { .. } => "discover-failed",
            Self::ApplyObject { .. } => "apply-object-failed",
            Self::Prune { .. } => "prune-failed",
            Self::ReadWorkload { .. } => "read-workload-failed",
            Self::WriteStatus { .. } => "write-nmstate-status-failed",
            Self::StoreCertificate { .. } => "store-certificate-failed",
            Self::IssueCertificate { .. } => "issue-certificate-failed",
            Self::ParseInterval { .. } => "invalid-interval",
        }
    }

    /// The message and every cause after it, `": "`-separated.
    pub fn report(&self) -> String {
        crate::error::report_chain(self)
    }
}
