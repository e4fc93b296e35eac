//! The NNCP reconciler: aggregate a policy's conditions from the caches and write them with
//! server-side apply when, and only when, their meaning changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use knmstate_api::ConditionList;
use knmstate_api::names::{field_manager, policy as p};
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::{NodeNetworkConfigurationEnactment, NodeNetworkState};
use knmstate_state_engine::conditions::active_condition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::{Notify, watch};

use crate::Error;
use crate::aggregation::{next_conditions, policy_verdict, select_nodes};
use crate::leader::Leadership;
use crate::metrics::Metrics;

/// The reflector caches aggregation, cleanup and metrics read from.
#[derive(Clone)]
pub struct Stores {
    /// NodeNetworkConfigurationPolicies.
    pub policies: Store<NodeNetworkConfigurationPolicy>,
    /// NodeNetworkConfigurationEnactments.
    pub enactments: Store<NodeNetworkConfigurationEnactment>,
    /// Nodes.
    pub nodes: Store<Node>,
    /// NodeNetworkStates.
    pub states: Store<NodeNetworkState>,
    ready: watch::Receiver<bool>,
}

impl Stores {
    /// The caches, plus the future that marks them ready once every one holds a complete
    /// first listing; drive it alongside the reflectors.
    ///
    /// `Store::wait_until_ready` keeps a single waker (a oneshot underneath): two tasks
    /// waiting on it at once can lose a wake-up. Only that future waits on the stores; every
    /// other waiter watches the flag it sets.
    pub fn new(
        policies: Store<NodeNetworkConfigurationPolicy>,
        enactments: Store<NodeNetworkConfigurationEnactment>,
        nodes: Store<Node>,
        states: Store<NodeNetworkState>,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (tx, ready) = watch::channel(false);
        let stores = Self {
            policies,
            enactments,
            nodes,
            states,
            ready,
        };
        let waiting = stores.clone();
        let mark = async move {
            let synced = waiting.policies.wait_until_ready().await.is_ok()
                && waiting.enactments.wait_until_ready().await.is_ok()
                && waiting.nodes.wait_until_ready().await.is_ok()
                && waiting.states.wait_until_ready().await.is_ok();
            if synced {
                let _ = tx.send(true);
            }
        };
        (stores, mark)
    }

    /// Wait until every cache holds a complete first listing; false if that can no longer
    /// happen (shutting down).
    pub async fn wait_ready(&self) -> bool {
        let mut rx = self.ready.clone();
        rx.wait_for(|r| *r).await.is_ok()
    }

    /// Whether every cache holds a complete first listing.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// The enactments of one policy (by label, or by name when unlabelled).
    pub fn enactments_of(&self, policy: &str) -> Vec<NodeNetworkConfigurationEnactment> {
        self.enactments
            .state()
            .iter()
            .filter(|e| e.policy_name() == Some(policy))
            .map(|e| (**e).clone())
            .collect()
    }
}

/// Keep of a cached Node only what aggregation reads: name, UID, labels, creation time and
/// the `Ready` condition (images, addresses, annotations and managed fields can be large).
pub fn trim_node(node: &mut Node) {
    node.metadata.managed_fields = None;
    node.metadata.annotations = None;
    node.spec = None;
    if let Some(status) = node.status.take() {
        let ready = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.type_ == "Ready")
            .collect();
        node.status = Some(k8s_openapi::api::core::v1::NodeStatus {
            conditions: Some(ready),
            ..Default::default()
        });
    }
}

/// Keep of a cached enactment what aggregation, cleanup and metrics read: conditions,
/// generation, features and the apply report (not the rendered and captured states).
pub fn trim_enactment(nnce: &mut NodeNetworkConfigurationEnactment) {
    nnce.metadata.managed_fields = None;
    if let Some(s) = nnce.status.as_mut() {
        s.desired_state = None;
        s.desired_state_meta_info = None;
        s.captured_states.clear();
        s.retry_count.clear();
    }
}

/// Drop managed fields from a cached object.
pub fn trim_managed_fields<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// What this controller last wrote for a policy: the policy's resourceVersion just before the
/// write, the conditions written and when. Until the cache moves past that resourceVersion,
/// the written conditions are the current ones (no duplicate write from a stale cache).
#[derive(Debug, Clone)]
struct Written {
    before: Option<String>,
    conditions: ConditionList,
    at: Instant,
}

/// Everything a reconcile needs.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Event recorder (reporting controller `knmstate-controller`).
    pub recorder: Recorder,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Reflector caches.
    pub stores: Stores,
    /// Whether this process may write.
    pub leadership: Leadership,
    /// Wakes the orphan sweep.
    pub sweep: Arc<Notify>,
    /// Periodic re-aggregation even without a change.
    pub resync: Duration,
    /// Minimum time between two writes of a policy's status that only change a message
    /// (counts during a rollout); a change of the active condition is written at once.
    pub status_interval: Duration,
    written: Mutex<HashMap<String, Written>>,
}

impl Context {
    /// A context over these caches.
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        stores: Stores,
        leadership: Leadership,
        resync: Duration,
    ) -> Self {
        Self {
            client,
            recorder,
            metrics,
            stores,
            leadership,
            sweep: Arc::new(Notify::new()),
            resync,
            status_interval: Duration::from_secs(1),
            written: Mutex::new(HashMap::new()),
        }
    }

    /// Forget what was written for a deleted policy.
    pub fn forget(&self, policy: &str) {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(policy);
    }

    /// Publish an event about a policy; failures are logged, never fatal.
    pub async fn publish(&self, policy: &NodeNetworkConfigurationPolicy, event: Event) {
        let reference = policy.object_ref(&());
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(policy = %policy.name_any(), "failed to publish event: {e}");
        }
    }
}

/// The event announcing that a policy's active condition became `active`.
fn transition_event(active: &str, message: &str) -> Option<Event> {
    let (type_, reason) = match active {
        p::AVAILABLE => (EventType::Normal, p::REASON_SUCCESS),
        p::DEGRADED => (EventType::Warning, p::REASON_FAILED),
        p::PROGRESSING => (EventType::Normal, p::REASON_PROGRESSING),
        p::IGNORED => (EventType::Normal, p::REASON_NO_MATCHING_NODE),
        _ => return None,
    };
    Some(Event {
        type_,
        reason: reason.to_owned(),
        note: Some(message.to_owned()),
        action: "Aggregate".to_owned(),
        secondary: None,
    })
}

/// Aggregate one policy and write its conditions if their meaning changed.
pub async fn reconcile(
    obj: Arc<NodeNetworkConfigurationPolicy>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    if !ctx.leadership.is_leader() {
        return Ok(Action::await_change());
    }
    if !ctx.stores.wait_ready().await {
        return Ok(Action::await_change());
    }
    let name = obj.name_any();
    let enactments = ctx.stores.enactments_of(&name);
    ctx.metrics.observe_reports(&enactments);
    let states = ctx.stores.states.clone();
    let nodes = ctx.stores.nodes.state();
    let (matching, ready) = select_nodes(&obj, nodes.iter().map(|n| &**n), |node| {
        states
            .get(&kube::runtime::reflector::ObjectRef::new(node))
            .is_some()
    })
    .map_err(|source| Error::SelectNodes {
        policy: name.clone(),
        source,
    })?;
    let verdict = policy_verdict(&obj, &enactments, &matching, &ready);
    let stored = obj
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let (current, last_write) = {
        let written = ctx.written.lock().unwrap_or_else(|e| e.into_inner());
        match written.get(&name) {
            Some(w) if w.before == obj.metadata.resource_version => {
                (w.conditions.clone(), Some(w.at))
            }
            Some(w) => (stored, Some(w.at)),
            None => (stored, None),
        }
    };
    let Some(next) = next_conditions(&current, &verdict, Time(Timestamp::now())) else {
        return Ok(Action::requeue(ctx.resync));
    };
    // During a rollout every finished node changes the message: write at most once per
    // `status_interval` then (the requeue writes the latest counts), transitions at once.
    if active_condition(&current) == active_condition(&next)
        && let Some(wait) = last_write
            .map(|at| at.elapsed())
            .filter(|e| *e < ctx.status_interval)
            .map(|e| ctx.status_interval - e)
    {
        return Ok(Action::requeue(wait));
    }
    if !ctx.leadership.is_leader() {
        return Ok(Action::await_change());
    }
    let api: Api<NodeNetworkConfigurationPolicy> = Api::all(ctx.client.clone());
    let patch = serde_json::json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": name},
        "status": {"conditions": next},
    });
    match api
        .patch_status(
            &name,
            &PatchParams::apply(field_manager::CONTROLLER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => {}
        // Deleted meanwhile: the sweep removes its enactments.
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
        Err(source) => {
            return Err(Error::WritePolicyStatus {
                policy: name.clone(),
                source,
            });
        }
    }
    tracing::info!(policy = %name, kind = ?verdict.kind, message = %verdict.message, "policy status written");
    ctx.written
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            name.clone(),
            Written {
                before: obj.metadata.resource_version.clone(),
                conditions: next.clone(),
                at: Instant::now(),
            },
        );
    let (before, after) = (active_condition(&current), active_condition(&next));
    if before != after
        && let Some(event) = after.and_then(|a| transition_event(a, &verdict.message))
    {
        ctx.publish(&obj, event).await;
    }
    Ok(Action::requeue(ctx.resync))
}

/// On failure: count it, tell the policy's watchers with a `ReconcileFailed` warning, retry.
pub fn error_policy(
    obj: Arc<NodeNetworkConfigurationPolicy>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    tracing::warn!(policy = %obj.name_any(), category = error.category(), "{error}");
    ctx.metrics.count_error(error.category());
    if ctx.leadership.is_leader() {
        let event = Event {
            type_: EventType::Warning,
            reason: "ReconcileFailed".to_owned(),
            note: Some(format!("{}: {error}", error.category())),
            action: "Aggregate".to_owned(),
            secondary: None,
        };
        tokio::spawn(async move { ctx.publish(&obj, event).await });
    }
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    #[test]
    fn trimmed_caches_keep_what_aggregation_reads() {
        use k8s_openapi::api::core::v1::{ContainerImage, NodeCondition, NodeStatus};
        let mut n = Node::default();
        n.metadata.name = Some("n1".into());
        n.metadata.labels = Some([("role".to_string(), "w".to_string())].into());
        n.status = Some(NodeStatus {
            conditions: Some(vec![
                NodeCondition {
                    type_: "MemoryPressure".into(),
                    status: "False".into(),
                    ..Default::default()
                },
                NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                },
            ]),
            images: Some(vec![ContainerImage::default()]),
            ..Default::default()
        });
        trim_node(&mut n);
        assert!(knmstate_state_engine::node::is_ready(&n));
        assert_eq!(n.metadata.labels.as_ref().map(|l| l.len()), Some(1));
        let status = n.status.unwrap_or_default();
        assert!(status.images.is_none());
        assert_eq!(status.conditions.map(|c| c.len()), Some(1));

        let mut e = NodeNetworkConfigurationEnactment::new("n1.p", Default::default());
        e.status = Some(
            knmstate_api::shared::NodeNetworkConfigurationEnactmentStatus {
                desired_state: Some(Default::default()),
                policy_generation: Some(3),
                features: vec!["f".into()],
                last_apply: Some(Default::default()),
                ..Default::default()
            },
        );
        trim_enactment(&mut e);
        let s = e.status.unwrap_or_default();
        assert!(s.desired_state.is_none());
        assert_eq!(s.policy_generation, Some(3));
        assert_eq!(s.features, ["f"]);
        assert!(s.last_apply.is_some());
    }

    #[tokio::test]
    async fn every_waiter_wakes_once_the_caches_are_ready() {
        let (p, mut pw) = reflector::store();
        let (e, mut ew) = reflector::store();
        let (n, mut nw) = reflector::store();
        let (s, mut sw) = reflector::store();
        let (stores, mark) = Stores::new(p, e, n, s);
        let mark = tokio::spawn(mark);
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let s = stores.clone();
                tokio::spawn(async move { s.wait_ready().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(!stores.is_ready());
        pw.apply_watcher_event(&Event::InitDone);
        ew.apply_watcher_event(&Event::InitDone);
        nw.apply_watcher_event(&Event::InitDone);
        assert!(!stores.is_ready());
        sw.apply_watcher_event(&Event::InitDone);
        for w in waiters {
            let ready = tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .expect("a waiter was never woken")
                .expect("waiter panicked");
            assert!(ready);
        }
        mark.await.expect("readiness task panicked");
        assert!(stores.is_ready());
    }
}
