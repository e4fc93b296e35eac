//! Start-up of the `handler` binary on a real node: logging, the node lock, NetworkManager
//! reachable, start-up recovery from the backend's recovery record (kept in
//! [`HandlerConfig::backend_state_dir`], beside the node lock): the checkpoint of an apply
//! during which a handler died is rolled back, the global DNS it saved restored, and the
//! attempt handed to the policy reconcile to be counted; checkpoints knmstate did not create
//! are left alone. Then the API client, and the handler until SIGTERM or SIGINT.

use std::sync::Arc;

use knmstate_nm_backend::{Backend, NmBackend, Recovery};
use knmstate_runtime::{init_logging, shutdown_signal};

use crate::config::HandlerConfig;
use crate::error::{Error, Result};
use crate::lock::NodeLock;
use crate::probes::RealProbes;
use crate::run::Handler;

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
    recover(&backend).await?;
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

/// Start-up recovery (under the node lock, before any apply): what the backend found and did,
/// logged.
pub async fn recover<B: Backend>(backend: &B) -> Result<Recovery> {
    let recovery = backend
        .roll_back_stale_checkpoints()
        .await
        .map_err(Error::RollbackCheckpoint)?;
    if let Some(cp) = &recovery.rolled_back {
        tracing::warn!(checkpoint = %cp, "rolled back a checkpoint left by a handler that died mid-apply");
    }
    if let Some(attempt) = &recovery.interrupted {
        tracing::warn!(policy = %attempt.policy, generation = attempt.generation,
            attempt = attempt.number, dns_restored = recovery.dns_restored,
            "a handler died during this attempt: it counts as failed");
    }
    for cp in &recovery.foreign {
        tracing::warn!(checkpoint = %cp, "NetworkManager holds a checkpoint knmstate did not create: left alone");
    }
    Ok(recovery)
}
