//! The orphan sweep's I/O: when woken, periodically, and when a young orphan comes of age,
//! take state-engine's [`find_orphans`] candidates from the caches, confirm each with fresh
//! reads of its policy and node, then delete it with a UID precondition.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::{NodeNetworkConfigurationEnactment, NodeNetworkState};
use knmstate_state_engine::orphans::{
    Orphan, OrphanKind, OrphanReason, find_orphans, still_orphan,
};
use kube::api::{Api, DeleteParams, Preconditions};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::Error;
use crate::reconcile::Context;
use crate::run::stopped;

/// Fresh reads of objects by name, each read at most once per sweep.
struct Fresh<K> {
    api: Api<K>,
    seen: HashMap<String, Option<K>>,
}

impl<K> Fresh<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    fn new(api: Api<K>) -> Self {
        Self {
            api,
            seen: HashMap::new(),
        }
    }

    /// The object as read during this sweep, if it was read at all.
    fn cached(&self, name: &str) -> Option<&K> {
        self.seen.get(name).and_then(Option::as_ref)
    }

    /// The object, read now unless it was read earlier in this sweep.
    async fn get(&mut self, name: &str) -> Result<Option<&K>, kube::Error> {
        if !self.seen.contains_key(name) {
            let fetched = self.api.get_opt(name).await?;
            self.seen.insert(name.to_owned(), fetched);
        }
        Ok(self.cached(name))
    }
}

/// Delete one object of type `K` if it still has `uid`; `Ok(false)` when it is already gone
/// or was replaced by a new object of the same name.
async fn delete_exact<K>(
    client: &Client,
    name: &str,
    uid: Option<String>,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..Default::default()
    };
    match Api::<K>::all(client.clone()).delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Confirm each candidate with fresh reads and delete it. Returns the names deleted.
pub async fn delete_orphans(client: &Client, orphans: &[Orphan]) -> Result<Vec<String>, Error> {
    let mut nodes = Fresh::<Node>::new(Api::all(client.clone()));
    let mut policies = Fresh::<NodeNetworkConfigurationPolicy>::new(Api::all(client.clone()));
    let mut deleted = Vec::new();
    for o in orphans {
        let confirm = |source| Error::ConfirmOrphan {
            kind: o.kind.as_str(),
            name: o.name.clone(),
            source,
        };
        // Read only what the reason needs; what another candidate read is reused.
        let node = match o.reason {
            OrphanReason::PolicyGone => nodes.cached(&o.node),
            _ => nodes.get(&o.node).await.map_err(confirm)?,
        };
        let policy = match (&o.policy, o.reason) {
            (None, _) => None,
            (Some(p), OrphanReason::NodeGone) => policies.cached(p),
            (Some(p), _) => policies.get(p).await.map_err(confirm)?,
        };
        if !still_orphan(o.reason, node, policy) {
            continue;
        }
        let result = match o.kind {
            OrphanKind::Enactment => {
                delete_exact::<NodeNetworkConfigurationEnactment>(client, &o.name, o.uid.clone())
                    .await
            }
            OrphanKind::State => {
                delete_exact::<NodeNetworkState>(client, &o.name, o.uid.clone()).await
            }
        };
        match result {
            Ok(true) => {
                tracing::info!(kind = o.kind.as_str(), name = %o.name, reason = ?o.reason, "deleted orphan");
                deleted.push(o.name.clone());
            }
            Ok(false) => {}
            Err(source) => {
                return Err(Error::DeleteOrphan {
                    kind: o.kind.as_str(),
                    name: o.name.clone(),
                    source,
                });
            }
        }
    }
    Ok(deleted)
}

/// Sweep orphans when woken, periodically, and when a young orphan comes of age, until
/// `stop` turns true.
pub async fn sweep_loop(
    ctx: Arc<Context>,
    interval: Duration,
    grace: Duration,
    stop: watch::Receiver<bool>,
) {
    let mut stop = std::pin::pin!(stopped(stop));
    let mut wait = interval;
    loop {
        tokio::select! {
            () = ctx.sweep.notified() => {}
            () = tokio::time::sleep(wait) => {}
            () = &mut stop => return,
        }
        wait = interval;
        if !ctx.leadership.is_leader() {
            continue;
        }
        tokio::select! {
            ready = ctx.stores.wait_ready() => if !ready { return },
            () = &mut stop => return,
        }
        let policies = ctx.stores.policies.state();
        let nodes = ctx.stores.nodes.state();
        let enactments = ctx.stores.enactments.state();
        let states = ctx.stores.states.state();
        let candidates = find_orphans(
            policies.iter().map(|p| &**p),
            nodes.iter().map(|n| &**n),
            enactments.iter().map(|e| &**e),
            states.iter().map(|s| &**s),
            Timestamp::now(),
            grace,
        );
        if let Some(r) = candidates.retry_after {
            wait = wait.min(r + Duration::from_millis(100));
        }
        if candidates.orphans.is_empty() || !ctx.leadership.is_leader() {
            continue;
        }
        if let Err(e) = delete_orphans(&ctx.client, &candidates.orphans).await {
            ctx.metrics.failed(&e);
            wait = wait.min(Duration::from_secs(5));
        }
    }
}
