//! What makes the Controller re-aggregate every policy besides a policy's own changes and
//! its enactments': Node changes that can alter counts, NodeNetworkStates that come or go,
//! and gaining leadership. Each trigger may also wake the orphan sweep.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use futures::{Stream, StreamExt, future};
use k8s_openapi::api::core::v1::Node;
use knmstate_api::v1beta1::NodeNetworkState;
use knmstate_state_engine::node::is_ready as node_is_ready;
use kube::ResourceExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::Notify;

use crate::leader::Leadership;

/// Hash of what makes a Node count: labels and readiness.
fn node_key(n: &Node) -> u64 {
    let mut h = DefaultHasher::new();
    n.metadata.labels.hash(&mut h);
    node_is_ready(n).hash(&mut h);
    h.finish()
}

/// What a watch event says about one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Part of a (re)listing.
    Listed,
    /// Created or changed.
    Applied,
    /// Deleted.
    Deleted,
}

/// One `()` per event for which `fires` says so, and one at the end of every (re)listing
/// (which may hide deletions; it also wakes the sweep). Watch errors are logged.
fn on_changes<K>(
    events: impl Stream<Item = Result<Event<K>, watcher::Error>>,
    what: &'static str,
    sweep: Arc<Notify>,
    mut fires: impl FnMut(Seen, K) -> bool,
) -> impl Stream<Item = ()> {
    events.filter_map(move |ev| {
        let fire = match ev {
            Ok(Event::Apply(o)) => fires(Seen::Applied, o),
            Ok(Event::InitApply(o)) => fires(Seen::Listed, o),
            Ok(Event::Delete(o)) => fires(Seen::Deleted, o),
            Ok(Event::Init) => false,
            Ok(Event::InitDone) => {
                sweep.notify_one();
                true
            }
            Err(e) => {
                tracing::warn!("{what} watch: {e}");
                false
            }
        };
        future::ready(fire.then_some(()))
    })
}

/// One `()` per Node change that can alter any policy's counts: a node added or removed, its
/// labels or readiness changed, or a relist (which may hide deletions).
pub fn node_triggers(
    events: impl Stream<Item = Result<Event<Node>, watcher::Error>>,
    sweep: Arc<Notify>,
) -> impl Stream<Item = ()> {
    let mut known: HashMap<String, u64> = HashMap::new();
    let wake = sweep.clone();
    on_changes(events, "node", sweep, move |seen, n| {
        let key = node_key(&n);
        match seen {
            Seen::Listed => {
                known.insert(n.name_any(), key);
                false
            }
            Seen::Applied => {
                let old = known.insert(n.name_any(), key);
                if old.is_some_and(|o| o != key) {
                    wake.notify_one();
                }
                old != Some(key)
            }
            Seen::Deleted => {
                known.remove(&n.name_any());
                wake.notify_one();
                true
            }
        }
    })
}

/// One `()` per NodeNetworkState created or deleted (a handler started or its node went).
pub fn state_triggers(
    events: impl Stream<Item = Result<Event<NodeNetworkState>, watcher::Error>>,
    sweep: Arc<Notify>,
) -> impl Stream<Item = ()> {
    let mut known: HashSet<String> = HashSet::new();
    on_changes(
        events,
        "NodeNetworkState",
        sweep,
        move |seen, s| match seen {
            Seen::Listed => {
                known.insert(s.name_any());
                false
            }
            Seen::Applied => known.insert(s.name_any()),
            Seen::Deleted => {
                known.remove(&s.name_any());
                true
            }
        },
    )
}

/// One `()` each time this process becomes the leader.
pub fn leadership_gained(
    leadership: &Leadership,
    sweep: Arc<Notify>,
) -> impl Stream<Item = ()> + use<> {
    futures::stream::unfold(leadership.subscribe(), |mut rx| async move {
        rx.changed().await.ok()?;
        let leader = *rx.borrow_and_update();
        Some((leader, rx))
    })
    .filter_map(move |leader| {
        if leader {
            sweep.notify_one();
        }
        future::ready(leader.then_some(()))
    })
}
