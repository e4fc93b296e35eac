//! Start-up of the `knmstate-controller` binary: flags in, a running controller (or operator)
//! until SIGTERM or SIGINT.

use std::net::SocketAddr;

use knmstate_runtime::{Admin, shutdown_signal};
use tokio::net::TcpListener;

use crate::Error;
use crate::cli::{Args, Command};
use crate::error::parse_bind_address;
use crate::operator::OperatorContext;
use crate::operator::cli::OperatorArgs;

/// Run the binary with parsed flags: print the metrics table, or set up logging, open the
/// endpoint, connect to the cluster and run until a termination signal (then release the
/// Lease).
pub async fn main_with(args: Args) -> Result<(), Error> {
    if args.print_metrics {
        print!("{}", crate::metrics::describe());
        return Ok(());
    }
    args.log
        .init()
        .map_err(|source| Error::SetUpLogging { source })?;
    if let Some(Command::Operator(op)) = &args.command {
        return operator(op).await;
    }
    let (addr, listener, client) = listen_and_connect(&args.metrics_bind_address).await?;
    let config = args.config();
    tracing::info!(identity = %config.lease.identity, %addr, "starting");
    crate::run(client, config, Some(listener), shutdown_signal()).await;
    Ok(())
}

/// The `operator` subcommand: health endpoint, client, the operator until a termination
/// signal.
async fn operator(args: &OperatorArgs) -> Result<(), Error> {
    let (addr, listener, client) = listen_and_connect(&args.health_bind_address).await?;
    tracing::info!(%addr, namespace = %args.namespace, "starting the NMState operator");
    let ctx = OperatorContext::new(client.clone(), args.settings());
    crate::operator::run(client, ctx, Some(listener), shutdown_signal()).await;
    Ok(())
}

/// Bind the HTTP endpoint at a Go-style address and connect to the cluster as kube-rs finds
/// it (`KUBECONFIG`, `~/.kube/config`, in-cluster).
async fn listen_and_connect(
    bind_address: &str,
) -> Result<(SocketAddr, TcpListener, kube::Client), Error> {
    let addr = parse_bind_address(bind_address)?;
    let listener = Admin::bind(addr)
        .await
        .map_err(|source| Error::ServeMetrics { source })?;
    let client = kube::Client::try_default()
        .await
        .map_err(|source| Error::BuildClient { source })?;
    Ok((addr, listener, client))
}
