//! Handlers over in-memory node networks against the API stand-in: the settings tests run
//! them with and a running handler to stop or kill. The handler's own tests and the scale
//! harness start theirs here.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use knmstate_handler::probes::ProbeFactory;
use knmstate_handler::{Handler, HandlerConfig};
use knmstate_nm_backend::MemoryBackend;
use knmstate_state_engine::rollback::RetryPolicy;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Handler settings for tests: fast retries and probes, the lock and readiness files in `dir`.
pub fn test_config(dir: &Path, node: &str) -> HandlerConfig {
    let mut c = HandlerConfig::for_node(node);
    c.lock_file = dir.join(format!("{node}.lock"));
    c.readiness_file = dir.join(format!("{node}.healthy"));
    c.defaults.retry = RetryPolicy {
        max_retries: 3,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
    };
    c.defaults.probe_timeout = Duration::from_secs(3);
    c.defaults.checkpoint_timeout = Duration::from_mins(1);
    c.nns_debounce = Duration::from_millis(50);
    // In-memory nodes: whatever the test machine's kernel says.
    c.bridge_vlan_filtering = Some(true);
    c
}

/// Start a handler with `config` over `backend`, its watches on `client`, its requests and
/// probes on clients of their own from `kube_config`.
pub fn start(
    client: kube::Client,
    kube_config: kube::Config,
    config: HandlerConfig,
    backend: MemoryBackend,
    probes: Arc<dyn ProbeFactory>,
) -> Running {
    let (tx, rx) = oneshot::channel::<()>();
    let handler = Handler {
        client,
        kube_config,
        backend,
        config,
        probes,
    };
    let task = tokio::spawn(handler.run(async move {
        let _ = rx.await;
    }));
    Running {
        stop: Some(tx),
        task,
    }
}

/// A running handler.
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    /// The handler's task.
    pub task: JoinHandle<knmstate_handler::Result<()>>,
}

impl Running {
    /// Graceful stop (SIGTERM).
    pub async fn stop(mut self) -> Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), &mut self.task)
            .await
            .context("handler did not stop")??
            .context("handler failed")?;
        Ok(())
    }

    /// Kill (no cleanup at all).
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Most nodes holding a checkpoint (applying) at once, sampled until `stop`.
pub fn track_applying(
    backends: Vec<MemoryBackend>,
    stop: Arc<AtomicBool>,
) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let max = Arc::new(AtomicUsize::new(0));
    let m = max.clone();
    let task = tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            let n = backends
                .iter()
                .filter(|b| !b.checkpoints().is_empty())
                .count();
            m.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    (max, task)
}
