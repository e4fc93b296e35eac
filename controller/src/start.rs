//! Start-up of the `knmstate-controller` binary: flags in, a running controller until SIGTERM
//! or SIGINT.

use knmstate_runtime::{Admin, shutdown_signal};

use crate::Error;
use crate::cli::Args;
use crate::error::parse_bind_address;

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
