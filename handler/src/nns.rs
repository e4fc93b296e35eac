//! This node's NodeNetworkState: owned by the Node, `currentState` filtered (and size-capped)
//! by state-engine with secrets hidden, NetworkManager and nmstate versions.
//!
//! It is written only when the filtered state changed (then `lastSuccessfulUpdateTime` moves);
//! an idle node makes no API writes. Refreshes come from the backend's debounced change stream,
//! a slow safety re-read (the reconcile requeues itself), each apply, a deletion of the NNS
//! (it is recreated) and a change of its `nmstate.io/force-nns-refresh` label. Each read also
//! feeds drift detection ([`crate::drift`]) and is kept for the policy reconcile
//! ([`StateCache`]).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use knmstate_api::names;
use knmstate_api::shared::NodeNetworkStateStatus;
use knmstate_api::v1beta1::NodeNetworkState;
use knmstate_nm_backend::Backend;
use knmstate_state_engine::filter::{FilterOptions, filter_state};
use kube::ResourceExt;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::{drift, objects};
use knmstate_state_engine::secrets;

mod cache;
pub use cache::StateCache;

/// The controller's error policy: log and try again soon.
// kube's `Controller::run` hands the object and the context over by value.
#[allow(clippy::needless_pass_by_value)]
pub fn error_policy<B: Backend>(node: Arc<Node>, err: &Error, _ctx: Arc<Context<B>>) -> Action {
    tracing::warn!(node = %node.name_any(), category = err.category(), error = %err.report(), "failed to refresh the NodeNetworkState");
    Action::requeue(Duration::from_secs(2))
}

/// Reconcile this node: refresh its NodeNetworkState, then look again after the safety
/// re-read interval.
#[tracing::instrument(skip_all, fields(node = %ctx.node_name()))]
pub async fn reconcile<B: Backend>(node: Arc<Node>, ctx: Arc<Context<B>>) -> Result<Action> {
    refresh(&ctx, &node).await?;
    Ok(Action::requeue(ctx.config.nns_resync))
}

/// The state to report: filtered, capped, secrets hidden.
pub fn reported_state(current: &Value, max_bytes: usize) -> Value {
    filter_state(&secrets::hidden(current), &FilterOptions { max_bytes }).state
}

/// Read the node's state and write the NNS if it changed (creating it when missing).
/// Returns whether anything was written.
pub async fn refresh<B: Backend>(ctx: &Context<B>, node: &Node) -> Result<bool> {
    let current = ctx
        .node_state
        .read(&ctx.backend)
        .await
        .map_err(Error::ReadNetworkState)?;
    drift::detect(ctx, &current.state);
    let state = reported_state(&current.state, ctx.config.nns_max_bytes);
    let name = ctx.node_name().to_owned();
    let api = ctx.state_api();
    let existing = match ctx.states.get(&ObjectRef::new(&name)) {
        Some(o) => (*o).clone(),
        None => create(ctx, node).await?,
    };
    let uid = existing.uid().unwrap_or_default();
    let stored = existing
        .status
        .as_ref()
        .and_then(|s| s.current_state.as_ref())
        .map(knmstate_api::State::to_value);
    if stored.as_ref() == Some(&state) {
        remember(ctx, &uid, &state);
        return Ok(false);
    }
    {
        let last = ctx
            .nns_last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.as_ref().is_some_and(|(u, s)| *u == uid && *s == state) {
            // Written already; the cache has not seen it yet.
            return Ok(false);
        }
    }
    let body = objects::status_patch::<NodeNetworkState>(
        &name,
        NodeNetworkStateStatus {
            current_state: knmstate_api::State::try_from(state.clone()).ok(),
            last_successful_update_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
            handler_nmstate_version: current.nmstate_version,
            host_network_manager_version: current.nm_version,
            ..NodeNetworkStateStatus::default()
        },
    );
    api.patch_status(
        &name,
        &PatchParams::apply(names::field_manager::HANDLER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|source| Error::WriteNodeNetworkState {
        name: name.clone(),
        source,
    })?;
    tracing::info!(node = %name, "NodeNetworkState updated");
    remember(ctx, &uid, &state);
    Ok(true)
}

fn remember<B: Backend>(ctx: &Context<B>, uid: &str, state: &Value) {
    *ctx.nns_last
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((uid.to_owned(), state.clone()));
}

async fn create<B: Backend>(ctx: &Context<B>, node: &Node) -> Result<NodeNetworkState> {
    let name = ctx.node_name().to_owned();
    let api = ctx.state_api();
    let obj = NodeNetworkState {
        metadata: objects::node_owned(&name, ctx.config.extra_labels.clone(), node),
        spec: Default::default(),
        status: None,
    };
    let pp = PostParams {
        field_manager: Some(names::field_manager::HANDLER.to_owned()),
        ..Default::default()
    };
    match api.create(&pp, &obj).await {
        Ok(o) => {
            tracing::info!(node = %name, "NodeNetworkState created");
            Ok(o)
        }
        Err(kube::Error::Api(s)) if s.is_already_exists() => api
            .get(&name)
            .await
            .map_err(|e| Error::read(format!("NodeNetworkState {name}"), e)),
        Err(source) => Err(Error::WriteNodeNetworkState { name, source }),
    }
}

/// Turn NNS watch events into refresh requests: a deletion (recreate it) or a change of the
/// force-refresh label.
pub async fn forward_nns_events<S>(events: S, refresh: mpsc::Sender<()>)
where
    S: futures::Stream<
            Item = std::result::Result<watcher::Event<NodeNetworkState>, watcher::Error>,
        >,
{
    let mut events = std::pin::pin!(events);
    let mut label: Option<Option<String>> = None;
    while let Some(ev) = events.next().await {
        let wanted = match ev {
            Ok(watcher::Event::Delete(_)) => {
                label = None;
                true
            }
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                let now = o.labels().get(names::FORCE_NNS_REFRESH_LABEL).cloned();
                let changed = label.as_ref().is_some_and(|l| *l != now);
                label = Some(now);
                changed
            }
            Ok(watcher::Event::InitDone) => true,
            Ok(watcher::Event::Init) => false,
            Err(e) => {
                tracing::debug!(error = %e, "NodeNetworkState watch error");
                false
            }
        };
        if wanted {
            let _ = refresh.try_send(());
        }
    }
}

/// Turn the backend's change stream into refresh requests, each batch marking the kept state
/// stale first; reconnects if the stream fails (nothing kept is trusted meanwhile).
pub async fn forward_network_changes<B: Backend>(
    backend: &B,
    kept: &StateCache,
    debounce: Duration,
    refresh: mpsc::Sender<()>,
) {
    loop {
        match backend.changes(debounce).await {
            Ok(mut stream) => {
                kept.set_live(true);
                while let Some(batch) = stream.next().await {
                    tracing::debug!(kinds = ?batch.kinds, signals = batch.signals, "network changed");
                    kept.changed();
                    let _ = refresh.try_send(());
                }
                kept.set_live(false);
                tracing::warn!("network change stream ended; resubscribing");
            }
            Err(e) => {
                tracing::warn!(error = %Error::WatchNetworkChanges(e), "relying on the safety re-read");
            }
        }
        if refresh.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reported_state_hides_secrets_and_drops_unmanaged_veths() {
        let s = reported_state(
            &json!({"interfaces": [
                {"name": "eth0", "type": "ethernet", "state": "up", "802.1x": {"password": "x"}},
                {"name": "veth9", "type": "veth", "state": "ignore"}],
              "hostname": {"running": "n1"}}),
            usize::MAX,
        );
        assert_eq!(
            s,
            json!({"interfaces": [{"name": "eth0", "type": "ethernet", "state": "up",
                "802.1x": {"password": secrets::HIDDEN}}]})
        );
    }
}
