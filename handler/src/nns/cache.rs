//! The node's network state as last read, for the policy reconcile: an apply renders, decides
//! and chooses its probes from it instead of reading the whole state again.
//!
//! Every read of the NodeNetworkState refresh is kept. NetworkManager's change stream marks
//! the kept state stale (each batch, before it asks for the refresh that reads it again), and
//! so does each apply of this handler; a stale or missing state is read again, and kept. So the
//! kept state lags the node by at most the change stream's debounce, as a read made that much
//! earlier would; while the stream is not subscribed (at start, or after it failed) nothing is
//! trusted and every caller reads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use knmstate_nm_backend::{Backend, BackendError, CurrentState};

/// The node's state as last read, and whether it may still be trusted.
#[derive(Debug, Default)]
pub struct StateCache {
    /// Changes seen: batches of the change stream, applies, the stream's (un)subscription.
    changes: AtomicU64,
    /// Whether the change stream is subscribed.
    live: AtomicBool,
    /// The last state read, with the count of changes seen before its read began.
    kept: Mutex<Option<(u64, CurrentState)>>,
}

impl StateCache {
    /// The node changed (or may have): the kept state is stale.
    pub fn changed(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether the change stream is subscribed now; without it nothing kept is trusted.
    pub fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::SeqCst);
        self.changed();
    }

    /// The kept state, when no change came since its read began and the stream is live.
    pub fn fresh(&self) -> Option<CurrentState> {
        if !self.live.load(Ordering::SeqCst) {
            return None;
        }
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let (seen, state) = kept.as_ref()?;
        (*seen == self.changes.load(Ordering::SeqCst)).then(|| state.clone())
    }

    /// The node's state: the kept one while fresh, else read from `backend` (and kept).
    pub async fn current<B: Backend>(&self, backend: &B) -> Result<CurrentState, BackendError> {
        match self.fresh() {
            Some(state) => Ok(state),
            None => self.read(backend).await,
        }
    }

    /// Read the node's state from `backend` now, and keep it.
    pub async fn read<B: Backend>(&self, backend: &B) -> Result<CurrentState, BackendError> {
        let seen = self.changes.load(Ordering::SeqCst);
        let state = backend.current_state().await?;
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        // Of two reads ending out of order, the one begun later stays.
        if kept.as_ref().is_none_or(|(was, _)| *was <= seen) {
            *kept = Some((seen, state.clone()));
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use knmstate_nm_backend::MemoryBackend;
    use serde_json::json;

    use super::*;

    fn node(mtu: u64) -> serde_json::Value {
        json!({"interfaces": [{"name": "eth1", "type": "ethernet", "state": "up", "mtu": mtu}]})
    }

    #[tokio::test]
    async fn kept_until_the_node_changes_and_only_while_the_stream_is_live() {
        let backend = MemoryBackend::new(node(1500));
        let cache = StateCache::default();
        // Not subscribed yet: nothing trusted.
        cache.read(&backend).await.expect("read");
        assert_eq!(cache.fresh(), None);

        cache.set_live(true);
        assert_eq!(cache.fresh(), None, "kept before the stream was live");
        let first = backend.state();
        let read = cache.current(&backend).await.expect("read");
        assert_eq!(read.state, first);
        assert_eq!(cache.fresh().map(|c| c.state), Some(first.clone()));

        // The node changes: the kept state is stale once the change is seen, then read again.
        let pending = backend
            .apply(&node(9000), &knmstate_nm_backend::ApplyOptions::default())
            .await
            .expect("apply");
        backend.commit(&pending.checkpoint).await.expect("commit");
        let second = backend.state();
        assert_ne!(first, second);
        assert_eq!(
            cache.current(&backend).await.expect("kept").state,
            first,
            "within the debounce, like an earlier read"
        );
        cache.changed();
        assert_eq!(cache.fresh(), None);
        assert_eq!(cache.current(&backend).await.expect("read").state, second);
        assert_eq!(cache.fresh().map(|c| c.state), Some(second));

        cache.set_live(false);
        assert_eq!(cache.fresh(), None);
    }
}
