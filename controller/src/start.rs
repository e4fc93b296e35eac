//! Start-up of the `knmstate-controller` binary: flags in, a running controller until SIGTERM
//! or SIGINT.

use knmstate_runtime::{Admin, shutdown_signal};

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
    let addr = parse_bind_address(&args.metrics_bind_address)?;
    let listener = Admin::bind(addr)
        .await
        .map_err(|source| Error::ServeMetrics { source })?;
    let client = kube::Client::try_default()
        .await
        .map_err(|source| Error::BuildClient { source })?;
    let config = args.config();
    tracing::info!(identity = %config.lease.identity, %addr, "starting");
    crate::run(client, config, Some(listener), shutdown_signal()).await;
    Ok(())
}

/// The `operator` subcommand: health endpoint, client, the operator until a termination
/// signal.
async fn operator(args: &OperatorArgs) -> Result<(), Error> {
    let addr = parse_bind_address(&args.health_bind_address)?;
    let listener = Admin::bind(addr)
        .await
        .map_err(|source| Error::ServeMetrics { source })?;
    let client = kube::Client::try_default()
        .await
        .map_err(|source| Error::BuildClient { source })?;
    tracing::info!(%addr, namespace = %args.namespace, "starting the NMState operator");
    let ctx = OperatorContext::new(client.clone(), args.settings());
    crate::operator::run(client, ctx, Some(listener), shutdown_signal()).await;
    Ok(())
}
