//! Watch streams: newline-delimited JSON watch events with resourceVersion semantics,
//! bookmarks, `timeoutSeconds`, `sendInitialEvents` and 410 Gone for expired versions.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::error::ApiError;
use super::object;
use super::resources::ResourceType;
use super::selectors::{FieldSelector, LabelSelector};
use super::shape::{Shape, partial_metadata};
use super::storage::{Event, EventType, Store};

/// What a watch asks for.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    /// The kind.
    pub rt: ResourceType,
    /// Version to serve objects at.
    pub version: String,
    /// Namespace filter.
    pub namespace: Option<String>,
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// `resourceVersion` parameter.
    pub resource_version: Option<String>,
    /// `sendInitialEvents=true`.
    pub send_initial_events: bool,
    /// `allowWatchBookmarks=true`.
    pub bookmarks: bool,
    /// `timeoutSeconds`.
    pub timeout: Duration,
    /// How often bookmarks are sent.
    pub bookmark_interval: Duration,
    /// Objects as themselves, one-row Tables (`kubectl get --watch`) or metadata only.
    pub shape: Shape,
}

impl WatchRequest {
    fn selects(&self, obj: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| ns == object::namespace(obj))
            && self.labels.matches_object(obj)
            && self.fields.matches(obj)
    }

    fn served(&self, obj: &Value) -> Value {
        let mut o = obj.clone();
        o["apiVersion"] = json!(self.rt.api_version(&self.version));
        match self.shape {
            Shape::Object => o,
            Shape::Metadata => partial_metadata(&o),
            Shape::Table => {
                let meta = json!({"resourceVersion": object::resource_version(&o)});
                super::table::render(&self.rt, &self.version, &[o], &meta)
            }
        }
    }

    /// The watch event line for a stored change, if this watch sees it.
    fn translate(&self, ev: &Event) -> Option<Bytes> {
        if ev.group != self.rt.group || ev.plural != self.rt.plural {
            return None;
        }
        let now = self.selects(&ev.object);
        let before = ev.prev.as_ref().is_some_and(|p| self.selects(p));
        let ty = match (ev.kind, now, before) {
            (EventType::Modified, true, false) => "ADDED",
            (EventType::Modified, false, true) => "DELETED",
            (_, false, _) => return None,
            (k, true, _) => k.as_str(),
        };
        let object = match self.shape {
            Shape::Table => Bytes::from(self.served(&ev.object).to_string()),
            shape => ev
                .encoded
                .get_or_encode(&self.version, shape, || self.served(&ev.object).to_string()),
        };
        Some(event_line(ty, &object))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Value {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"type": "BOOKMARK", "object": {
            "kind": self.rt.kind, "apiVersion": self.rt.api_version(&self.version), "metadata": meta,
        }})
    }
}

/// `{"type":…,"object":…}` and a newline, around an encoded object.
fn event_line(ty: &str, object: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(object.len() + ty.len() + 24);
    b.extend_from_slice(b"{\"type\":\"");
    b.extend_from_slice(ty.as_bytes());
    b.extend_from_slice(b"\",\"object\":");
    b.extend_from_slice(object);
    b.extend_from_slice(b"}\n");
    Bytes::from(b)
}

fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

/// The ERROR event for an expired resourceVersion.
pub fn gone_event(e: &ApiError) -> Bytes {
    line(&json!({"type": "ERROR", "object": e.status()}))
}

/// Starts a watch: returns a receiver of the body chunks to stream.
pub fn start(
    store: Arc<Store>,
    req: WatchRequest,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> mpsc::Receiver<Bytes> {
    let (tx, out) = mpsc::channel::<Bytes>(256);
    let since = match req.resource_version.as_deref() {
        None | Some("" | "0") => None,
        Some(_) if req.send_initial_events => None,
        Some(s) => {
            if let Ok(n) = s.parse::<u64>() {
                Some(n)
            } else {
                let e = ApiError::bad_request(format!("invalid resource version {s}"));
                let _ = tx.try_send(line(&json!({"type": "ERROR", "object": e.status()})));
                return out;
            }
        }
    };
    let initial = since.is_none();
    tokio::spawn(async move {
        let (first, mut rx, mut seen) = if initial {
            let (items, rx, rv) = store.subscribe_with_state(&req.rt.group, &req.rt.plural);
            let first: Vec<Bytes> = items
                .iter()
                .filter(|o| req.selects(o))
                .map(|o| line(&json!({"type": "ADDED", "object": req.served(o)})))
                .collect();
            (first, rx, rv)
        } else {
            match store.subscribe(since) {
                Ok((backlog, rx, _)) => {
                    let mut seen = since.unwrap_or_default();
                    let mut first = Vec::new();
                    for ev in backlog {
                        seen = seen.max(ev.rv);
                        if let Some(line) = req.translate(&ev) {
                            first.push(line);
                        }
                    }
                    (first, rx, seen)
                }
                Err(e) => {
                    let _ = tx.send(gone_event(&e)).await;
                    return;
                }
            }
        };
        for b in first {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        if req.send_initial_events
            && req.bookmarks
            && tx.send(line(&req.bookmark(seen, true))).await.is_err()
        {
            return;
        }
        let deadline = tokio::time::sleep(req.timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(req.bookmark_interval);
        tick.tick().await;
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if ev.rv <= seen {
                            continue;
                        }
                        seen = ev.rv;
                        if let Some(line) = req.translate(&ev)
                            && tx.send(line).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let e = ApiError::gone("watch fell behind: resource version expired");
                        let _ = tx.send(gone_event(&e)).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick(), if req.bookmarks => {
                    if tx.send(line(&req.bookmark(seen, false))).await.is_err() {
                        return;
                    }
                }
                () = &mut deadline => return,
                _ = shutdown.changed() => return,
                () = tx.closed() => return,
            }
        }
    });
    out
}
