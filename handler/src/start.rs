//! Start-up of the `handler` binary on a real node: logging, the node lock, NetworkManager
//! reachable, checkpoints of a dead handler rolled back (with the global DNS it saved, kept in
//! [`HandlerConfig::backend_state_dir`]), the API client, then the handler until
//! SIGTERM or SIGINT.

use std::sync::Arc;

use knmstate_nm_backend::{Backend, NmBackend};
use knmstate_runtime::{init_logging, shutdown_signal};

use crate::config::HandlerConfig;
use crate::error::{Error, Result};
use crate::lock::NodeLock;
use crate::probes::RealProbes;
use crate::run::{Handler, rollback_stale_checkpoints};

/// Run the handler with `config` on this node until it is asked to stop.
pub async fn start(config: HandlerConfig) -> Result<()> {
    if let Err(e) = init_logging(
        config.log_format,
        knmstate_runtime::logging::DEFAULT_LOG_LEVEL,
    ) {
        // Only when a subscriber is installed already: that one logs.
        tracing::debug!(error = %e, "logging was set up before");
    }
    // One handler per node: a second one waits here (the previous pod is still stopping).
    let _lock = NodeLock::acquire(&config.lock_file, config.lock_poll).await?;
    let backend = NmBackend::with_state_dir(config.backend_state_dir());
    let state = backend
        .current_state()
        .await
        .map_err(Error::ReadNetworkState)?;
    tracing::info!(nm = %state.nm_version, nmstate = %state.nmstate_version, "NetworkManager reachable");
    rollback_stale_checkpoints(&backend).await?;
    let kube_config = kube::Config::infer().await.map_err(Error::FindApiServer)?;
    let client = kube::Client::try_from(kube_config.clone()).map_err(Error::CreateClient)?;
    let handler = Handler {
        client,
        kube_config,
        backend,
        config,
        probes: Arc::new(RealProbes),
    };
    handler.run(shutdown_signal()).await
}
