//! The `handler` binary: parse the configuration, take the node lock, run the handler.

use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use knmstate_handler::{Cli, Handler, HandlerConfig, lock::NodeLock, probes::RealProbes, run};
use knmstate_nm_backend::{Backend, NmBackend};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = HandlerConfig::try_from(Cli::parse())?;
    run::init_tracing(config.log_format);
    let _lock = NodeLock::acquire(&config.lock_file, config.lock_poll).await?;
    let backend = NmBackend::new();
    let state = backend
        .current_state()
        .await
        .context("reading the node's network state")?;
    tracing::info!(nm = %state.nm_version, nmstate = %state.nmstate_version, "NetworkManager reachable");
    run::rollback_stale_checkpoints(&backend).await?;
    let kube_config = kube::Config::infer()
        .await
        .context("finding the API server")?;
    let client = kube::Client::try_from(kube_config.clone())?;
    let handler = Handler {
        client,
        kube_config,
        backend,
        config,
        probes: Arc::new(RealProbes),
    };
    handler.run(run::shutdown_signal()).await?;
    Ok(())
}
