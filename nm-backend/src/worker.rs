//! Runs nmstate's non-`Send` futures on a dedicated thread with its own current-thread runtime.

use std::future::Future;

use crate::error::{BackendError, Result};

/// Run `job` on a new thread and wait for its output without blocking the caller's runtime.
///
/// nmstate's async functions hold non-`Send` values across awaits and its blocking functions
/// start a runtime of their own (which panics on a tokio worker thread); a thread of our own
/// avoids both traps.
pub(crate) async fn run<T, F, Fut>(name: &str, job: F) -> Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("nmstate-{name}"))
        .spawn(move || {
            let outcome = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(job()))
                .map_err(|e| e.to_string());
            // The receiver is gone only when the caller gave up waiting; nothing to report then.
            let _ = tx.send(outcome);
        })
        .map_err(|e| BackendError::Worker(format!("spawning the {name} thread: {e}")))?;
    match rx.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(BackendError::Worker(format!("{name} runtime: {e}"))),
        Err(_) => Err(BackendError::Worker(format!("the {name} thread panicked"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn runs_non_send_futures_from_a_tokio_worker() {
        let out = run("test", || async {
            let local = std::rc::Rc::new(5);
            tokio::task::yield_now().await;
            *local * 2
        })
        .await;
        assert_eq!(out.ok(), Some(10));
    }

    #[tokio::test]
    async fn a_panicking_job_is_a_worker_error() {
        let out: Result<()> = run("boom", || async { panic!("boom") }).await;
        let err = out.err().map(|e| e.category());
        assert_eq!(err, Some("backend-worker-failed"));
    }
}
