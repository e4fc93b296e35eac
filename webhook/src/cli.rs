//! Flags and environment of the `knmstate-webhook` binary, and the run they describe.

use clap::Parser;
use knmstate_runtime::LogArgs;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::admission::Admission;
use crate::server::{self, ServerCert, ServerError};

/// Admission webhook for NodeNetworkConfigurationPolicy.
#[derive(Debug, Parser)]
#[command(name = "knmstate-webhook", version)]
pub struct Args {
    /// Address to serve HTTPS on.
    #[arg(long, env = "WEBHOOK_LISTEN", default_value = "0.0.0.0:9443")]
    pub listen: SocketAddr,
    /// PEM certificate chain (re-read when it changes).
    #[arg(
        long,
        env = "WEBHOOK_TLS_CERT_FILE",
        default_value = "/etc/webhook/certs/tls.crt"
    )]
    pub tls_cert_file: PathBuf,
    /// PEM private key (re-read when it changes).
    #[arg(
        long,
        env = "WEBHOOK_TLS_KEY_FILE",
        default_value = "/etc/webhook/certs/tls.key"
    )]
    pub tls_key_file: PathBuf,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

impl Args {
    /// Loads the certificate and serves admission reviews until `shutdown` resolves.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let certs = ServerCert::new(self.tls_cert_file, self.tls_key_file)?;
        let admission = Arc::new(Admission::default());
        server::serve_until(self.listen, certs, admission, |_| {}, shutdown).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use knmstate_runtime::LogFormat;

    #[test]
    fn defaults_are_the_deployments() {
        let a = Args::parse_from(["knmstate-webhook"]);
        assert_eq!(a.listen.to_string(), "0.0.0.0:9443");
        assert_eq!(a.tls_cert_file, PathBuf::from("/etc/webhook/certs/tls.crt"));
        assert_eq!(a.tls_key_file, PathBuf::from("/etc/webhook/certs/tls.key"));
        assert_eq!(a.log.format(), LogFormat::Text);
    }

    #[test]
    fn log_json_still_selects_json() {
        let a = Args::parse_from(["knmstate-webhook", "--log-json"]);
        assert_eq!(a.log.format(), LogFormat::Json);
    }
}
