//! Subscriptions to the event log, for watches: from a resourceVersion (410 Gone when it is
//! no longer retained) or from now with the current objects.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

use super::{Event, Store, Subscription};
use crate::apiserver::error::{ApiError, ApiResult};

impl Store {
    /// Subscribes to changes after `since` (None: from now). Returns the retained events after
    /// `since`, a receiver for later ones, and the current resourceVersion; 410 Gone when the
    /// events after `since` are no longer retained.
    pub fn subscribe(&self, since: Option<u64>) -> ApiResult<Subscription> {
        let inner = self.lock();
        let rx = self.tx.subscribe();
        let backlog = match since {
            None => Vec::new(),
            Some(n) if n < inner.compacted => {
                return Err(ApiError::gone(format!(
                    "too old resource version: {n} ({})",
                    inner.compacted + 1
                )));
            }
            Some(n) => inner.log.iter().filter(|e| e.rv > n).cloned().collect(),
        };
        Ok((backlog, rx, inner.rv))
    }

    /// Subscribes to changes from now on, together with the current objects of a kind.
    pub fn subscribe_with_state(
        &self,
        group: &str,
        plural: &str,
    ) -> (Vec<Value>, broadcast::Receiver<Arc<Event>>, u64) {
        let inner = self.lock();
        let rx = self.tx.subscribe();
        let items = inner
            .objects
            .get(&(group.to_owned(), plural.to_owned()))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        (items, rx, inner.rv)
    }
}
