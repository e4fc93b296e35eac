//! Errors of the runtime set-up.

use std::net::SocketAddr;

/// What failed while setting up or running the process plumbing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A global `tracing` subscriber was already installed.
    #[error("failed to install the log subscriber: {message}")]
    InstallLogSubscriber {
        /// Why `tracing` refused it.
        message: String,
    },
    /// The endpoint's listening socket could not be opened.
    #[error("failed to listen on {addr}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The endpoint stopped on an I/O error.
    #[error("failed to serve the health and metrics endpoint")]
    Serve {
        /// The OS error.
        source: std::io::Error,
    },
}

impl Error {
    /// Stable kebab-case category for logs, events and metric labels.
    ///
    /// ```
    /// let e = knmstate_runtime::Error::InstallLogSubscriber { message: "set".into() };
    /// assert_eq!(e.category(), "install-log-subscriber");
    /// ```
    pub fn category(&self) -> &'static str {
        match self {
            Self::InstallLogSubscriber { .. } => "install-log-subscriber",
            Self::Listen { .. } => "listen",
            Self::Serve { .. } => "serve",
        }
    }
}
