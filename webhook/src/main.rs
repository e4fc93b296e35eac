//! knmstate-webhook: admission for NodeNetworkConfigurationPolicy.

use anyhow::Result;
use clap::Parser;
use knmstate_webhook::{admission::Admission, server};
use std::{net::SocketAddr, path::PathBuf, sync::Arc};

/// Admission webhook for NodeNetworkConfigurationPolicy.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to serve HTTPS on.
    #[arg(long, env = "WEBHOOK_LISTEN", default_value = "0.0.0.0:9443")]
    listen: SocketAddr,
    /// PEM certificate chain (re-read when it changes).
    #[arg(
        long,
        env = "WEBHOOK_TLS_CERT_FILE",
        default_value = "/etc/webhook/certs/tls.crt"
    )]
    tls_cert_file: PathBuf,
    /// PEM private key (re-read when it changes).
    #[arg(
        long,
        env = "WEBHOOK_TLS_KEY_FILE",
        default_value = "/etc/webhook/certs/tls.key"
    )]
    tls_key_file: PathBuf,
    /// Log as JSON lines.
    #[arg(long, env = "LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let logs = tracing_subscriber::fmt().with_env_filter(
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
    );
    if args.log_json {
        logs.json().init()
    } else {
        logs.init()
    }
    let certs = server::ReloadingCert::new(args.tls_cert_file, args.tls_key_file)?;
    tokio::select! {
        r = server::serve(args.listen, certs, Arc::new(Admission::default()), |_| {}) => r?,
        _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
    }
    Ok(())
}
