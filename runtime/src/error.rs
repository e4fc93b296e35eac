//! Errors of the runtime set-up.

use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// A server stopped on an I/O error.
    #[error("failed to serve")]
    Serve {
        /// The OS error.
        source: std::io::Error,
    },
    /// A certificate or key file could not be used.
    #[error("failed to load the TLS certificate {cert} / key {key}: {message}")]
    LoadCertificate {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A self-signed certificate could not be made.
    #[error("failed to generate a self-signed certificate: {message}")]
    GenerateCertificate {
        /// What rcgen or rustls said.
        message: String,
    },
    /// rustls refused the server configuration.
    #[error("failed to configure TLS: {message}")]
    ConfigureTls {
        /// What rustls said.
        message: String,
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
            Self::LoadCertificate { .. } => "load-certificate",
            Self::GenerateCertificate { .. } => "generate-certificate",
            Self::ConfigureTls { .. } => "configure-tls",
        }
    }
}
