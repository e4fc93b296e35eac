//! Termination signals.
//!
//! The kubelet stops a container with SIGTERM, a developer with Ctrl-C (SIGINT); both must end
//! the process cleanly (release the leader lease, roll back an unprobed apply, drain
//! connections).

/// Resolves on the first SIGTERM or SIGINT.
///
/// Where SIGTERM cannot be watched (not Unix, or the handler cannot be installed) only SIGINT
/// is awaited; when no signal can be watched at all it never resolves (and says so), rather
/// than stopping a process that was just started.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => tracing::info!("received SIGTERM, shutting down"),
                _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT, shutting down"),
            }
            return;
        }
    }
    match tokio::signal::ctrl_c().await {
        Ok(()) => tracing::info!("received SIGINT, shutting down"),
        Err(error) => {
            tracing::warn!(%error, "failed to watch termination signals");
            std::future::pending::<()>().await;
        }
    }
}
