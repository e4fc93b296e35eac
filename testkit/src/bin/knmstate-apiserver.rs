//! `knmstate-apiserver`: runs the Kubernetes API stand-in until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use knmstate_testkit::apiserver::{ApiServer, Config};

/// Kubernetes API stand-in for end-to-end runs (HTTP, or HTTPS with --tls; bearer tokens and
/// RBAC enforced with --enforce-auth).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(
        long,
        env = "KNMSTATE_APISERVER_LISTEN",
        default_value = "127.0.0.1:6443"
    )]
    listen: SocketAddr,
    /// File to persist objects to (and load them from at start).
    #[arg(long, env = "KNMSTATE_APISERVER_DATA")]
    data_file: Option<PathBuf>,
    /// Where to write a kubeconfig pointing at the server.
    #[arg(long, env = "KNMSTATE_APISERVER_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Seconds between watch bookmarks.
    #[arg(long, default_value_t = 5)]
    bookmark_interval: u64,
    /// Serve HTTPS with a self-signed certificate (kept beside the data file, if any) that the
    /// written kubeconfig trusts.
    #[arg(long, env = "KNMSTATE_APISERVER_TLS")]
    tls: bool,
    /// Refuse requests without a valid bearer token (401) and what RBAC does not allow (403);
    /// the written kubeconfig carries the administrator's token.
    #[arg(long, env = "KNMSTATE_APISERVER_ENFORCE_AUTH")]
    enforce_auth: bool,
    /// Number of watch events retained; older resourceVersions get 410 Gone.
    #[arg(long, default_value_t = 2_000)]
    event_window: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let server = ApiServer::start(Config {
        listen: args.listen,
        data_file: args.data_file,
        kubeconfig: args.kubeconfig,
        bookmark_interval: Duration::from_secs(args.bookmark_interval.max(1)),
        event_window: args.event_window,
        tls: args.tls,
        enforce_auth: args.enforce_auth,
        ..Config::default()
    })
    .await?;
    tracing::info!("serving the Kubernetes API stand-in on {}", server.url());
    println!("{}", server.url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    server.shutdown().await;
    Ok(())
}
