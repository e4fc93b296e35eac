//! Errors of the controller, each named for the action that failed and with a stable
//! [`Error::category`] used in event notes, logs and the `knmstate_controller_errors_total`
//! metric. Messages say what failed, not why: the cause is the [`source`](std::error::Error::source),
//! and [`Error::report`] writes the whole chain.

use std::net::SocketAddr;

/// Something the controller could not do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A policy's node selection could not be evaluated (invalid `nodeSelectorExpressions`).
    #[error("failed to select the nodes of policy {policy}")]
    SelectNodes {
        /// The policy.
        policy: String,
        /// What state-engine refused.
        source: knmstate_state_engine::Error,
    },
    /// The server-side apply of a policy's status failed.
    #[error("failed to write the status of policy {policy}")]
    WritePolicyStatus {
        /// The policy.
        policy: String,
        /// What the API server answered.
        source: kube::Error,
    },
    /// Reading an object to confirm it is an orphan failed.
    #[error("failed to confirm that {kind} {name} is an orphan")]
    ConfirmOrphan {
        /// `NodeNetworkConfigurationEnactment` or `NodeNetworkState`.
        kind: &'static str,
        /// The object's name.
        name: String,
        /// What the API server answered.
        source: kube::Error,
    },
    /// Deleting an orphan failed.
    #[error("failed to delete orphan {kind} {name}")]
    DeleteOrphan {
        /// `NodeNetworkConfigurationEnactment` or `NodeNetworkState`.
        kind: &'static str,
        /// The object's name.
        name: String,
        /// What the API server answered.
        source: kube::Error,
    },
    /// Reading, creating or updating the leader-election Lease failed.
    #[error("failed to acquire or renew lease {namespace}/{name}")]
    RenewLease {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// What the API server answered.
        source: kube::Error,
    },
    /// Releasing the Lease on shutdown failed.
    #[error("failed to release lease {namespace}/{name}")]
    ReleaseLease {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// What the API server answered.
        source: kube::Error,
    },
    /// The metrics and health endpoint could not listen or stopped serving.
    #[error("failed to serve metrics")]
    ServeMetrics {
        /// What the runtime reported.
        source: knmstate_runtime::Error,
    },
    /// The metrics bind address is not `host:port` or `:port`.
    #[error("failed to parse metrics bind address {value:?}: expected host:port or :port")]
    ParseBindAddress {
        /// The value as given.
        value: String,
    },
    /// The log subscriber could not be installed.
    #[error("failed to set up logging")]
    SetUpLogging {
        /// What the runtime reported.
        source: knmstate_runtime::Error,
    },
    /// No Kubernetes client could be built from the environment.
    #[error("failed to build a Kubernetes client")]
    BuildClient {
        /// What kube reported.
        source: kube::Error,
    },
}

impl Error {
    /// A stable, kebab-case category for event notes, logs and metric labels.
    ///
    /// ```
    /// let e = knmstate_controller::Error::ParseBindAddress { value: "x".into() };
    /// assert_eq!(e.category(), "invalid-bind-address");
    /// ```
    pub fn category(&self) -> &'static str {
        match self {
            Self::SelectNodes { .. } => "select-nodes-failed",
            Self::WritePolicyStatus { .. } => "write-policy-status-failed",
            Self::ConfirmOrphan { .. } => "confirm-orphan-failed",
            Self::DeleteOrphan { .. } => "delete-orphan-failed",
            Self::RenewLease { .. } => "renew-lease-failed",
            Self::ReleaseLease { .. } => "release-lease-failed",
            Self::ServeMetrics { .. } => "serve-metrics-failed",
            Self::ParseBindAddress { .. } => "invalid-bind-address",
            Self::SetUpLogging { .. } => "set-up-logging-failed",
            Self::BuildClient { .. } => "build-client-failed",
        }
    }

    /// The message and every cause after it, `": "`-separated, for logs and event notes.
    ///
    /// ```
    /// let e = knmstate_controller::Error::BuildClient {
    ///     source: kube::Error::LinesCodecMaxLineLengthExceeded,
    /// };
    /// assert!(e.report().starts_with("failed to build a Kubernetes client: "));
    /// ```
    pub fn report(&self) -> String {
        report_chain(self)
    }
}

/// An error's message and every cause after it, `": "`-separated (the operator's errors use it
/// too).
pub fn report_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Parse a Go-style listen address: `:8089` means every interface, `host:port` as given.
///
/// ```
/// use knmstate_controller::error::parse_bind_address;
/// assert_eq!(parse_bind_address(":8089").unwrap().to_string(), "0.0.0.0:8089");
/// assert_eq!(parse_bind_address("127.0.0.1:0").unwrap().port(), 0);
/// assert!(parse_bind_address("nope").is_err());
/// ```
pub fn parse_bind_address(value: &str) -> Result<SocketAddr, Error> {
    let full = if value.starts_with(':') {
        format!("0.0.0.0{value}")
    } else {
        value.to_owned()
    };
    full.parse().map_err(|_| Error::ParseBindAddress {
        value: value.to_owned(),
    })
}
