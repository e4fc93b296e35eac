//! knmstate-controller: the leader-elected writer of NodeNetworkConfigurationPolicy status.

use anyhow::{Context, Result};
use clap::Parser;
use knmstate_controller::cli::{Args, termination};
use knmstate_controller::error::parse_bind_address;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.print_metrics {
        print!("{}", knmstate_controller::metrics::describe());
        return Ok(());
    }
    args.init_logging();
    let addr = parse_bind_address(&args.metrics_bind_address)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| knmstate_controller::Error::ServeMetrics {
            addr: addr.to_string(),
            source,
        })?;
    let client = kube::Client::try_default()
        .await
        .context("failed to build a Kubernetes client")?;
    let config = args.config();
    tracing::info!(identity = %config.lease.identity, %addr, "starting");
    knmstate_controller::run(client, config, Some(listener), termination()).await;
    Ok(())
}
