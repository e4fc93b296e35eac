//! The NNCP reconciler: aggregate a policy's conditions from the caches and write them with
//! server-side apply when, and only when, their meaning changes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use knmstate_api::ConditionList;
use knmstate_api::names::{event as ev, field_manager, policy as p};
use knmstate_api::shared::NodeNetworkConfigurationPolicyStatus;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_state_engine::aggregate::{next_conditions, policy_verdict, select_nodes};
use knmstate_state_engine::conditions::active_condition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use tokio::sync::Notify;

use crate::Error;
use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::stores::Stores;

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

    fn written(&self) -> std::sync::MutexGuard<'_, HashMap<String, Written>> {
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forget what was written for a deleted policy.
    pub fn forget(&self, policy: &str) {
        self.written().remove(policy);
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
        action: ev::ACTION_AGGREGATE.to_owned(),
        secondary: None,
    })
}

/// The server-side apply body of a policy's status: its identity and conditions, nothing of
/// its spec (so this field manager never owns a spec field).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusApply {
    api_version: Cow<'static, str>,
    kind: Cow<'static, str>,
    metadata: ObjectMeta,
    status: NodeNetworkConfigurationPolicyStatus,
}

impl StatusApply {
    fn new(name: &str, conditions: ConditionList) -> Self {
        Self {
            api_version: NodeNetworkConfigurationPolicy::api_version(&()),
            kind: NodeNetworkConfigurationPolicy::kind(&()),
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            status: NodeNetworkConfigurationPolicyStatus {
                conditions,
                ..NodeNetworkConfigurationPolicyStatus::default()
            },
        }
    }
}

/// Server-side apply `conditions` as the policy's status. `Ok(false)`: the policy is gone.
async fn write_status(ctx: &Context, name: &str, conditions: ConditionList) -> Result<bool, Error> {
    let api: Api<NodeNetworkConfigurationPolicy> = Api::all(ctx.client.clone());
    let params = PatchParams::apply(field_manager::CONTROLLER).force();
    let body = StatusApply::new(name, conditions);
    match api.patch_status(name, &params, &Patch::Apply(&body)).await {
        Ok(_) => Ok(true),
        // Deleted meanwhile: the sweep removes its enactments.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(source) => Err(Error::WritePolicyStatus {
            policy: name.to_owned(),
            source,
        }),
    }
}

/// Aggregate one policy and write its conditions if their meaning changed.
#[tracing::instrument(skip_all, fields(policy = %obj.name_any()))]
pub async fn reconcile(
    obj: Arc<NodeNetworkConfigurationPolicy>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    if !ctx.leadership.is_leader() || !ctx.stores.wait_ready().await {
        return Ok(Action::await_change());
    }
    let name = obj.name_any();
    let enactments = ctx.stores.enactments_of(&name);
    ctx.metrics.observe_reports(&enactments);
    let states = ctx.stores.states.clone();
    let nodes = ctx.stores.nodes.state();
    let has_handler = |node: &str| states.get(&ObjectRef::new(node)).is_some();
    let (matching, ready) =
        select_nodes(&obj, nodes.iter().map(|n| &**n), has_handler).map_err(|source| {
            Error::SelectNodes {
                policy: name.clone(),
                source,
            }
        })?;
    let verdict = policy_verdict(&obj, &enactments, &matching, &ready);
    let stored = obj
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let (current, last_write) = match ctx.written().get(&name) {
        Some(w) if w.before == obj.metadata.resource_version => (w.conditions.clone(), Some(w.at)),
        Some(w) => (stored, Some(w.at)),
        None => (stored, None),
    };
    let Some(next) = next_conditions(&current, &verdict, &Time(Timestamp::now())) else {
        return Ok(Action::requeue(ctx.resync));
    };
    // During a rollout every finished node changes the message: write at most once per
    // `status_interval` then (the requeue writes the latest counts), transitions at once.
    if active_condition(&current) == active_condition(&next)
        && let Some(wait) = last_write
            .map(|at| at.elapsed())
            .and_then(|e| ctx.status_interval.checked_sub(e))
            .filter(|wait| !wait.is_zero())
    {
        return Ok(Action::requeue(wait));
    }
    if !ctx.leadership.is_leader() || !write_status(&ctx, &name, next.clone()).await? {
        return Ok(Action::await_change());
    }
    tracing::info!(kind = ?verdict.kind, message = %verdict.message, "policy status written");
    let written = Written {
        before: obj.metadata.resource_version.clone(),
        conditions: next.clone(),
        at: Instant::now(),
    };
    ctx.written().insert(name, written);
    let (before, after) = (active_condition(&current), active_condition(&next));
    if before != after
        && let Some(event) = after.and_then(|a| transition_event(a, &verdict.message))
    {
        ctx.publish(&obj, event).await;
    }
    Ok(Action::requeue(ctx.resync))
}

/// On failure: count it, tell the policy's watchers with a `ReconcileFailed` warning, retry.
#[tracing::instrument(skip_all, fields(policy = %obj.name_any()))]
pub fn error_policy(
    obj: Arc<NodeNetworkConfigurationPolicy>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics.failed(error);
    if ctx.leadership.is_leader() {
        let event = Event {
            type_: EventType::Warning,
            reason: ev::REASON_RECONCILE_FAILED.to_owned(),
            note: Some(format!("{}: {}", error.category(), error.report())),
            action: ev::ACTION_AGGREGATE.to_owned(),
            secondary: None,
        };
        tokio::spawn(async move { ctx.publish(&obj, event).await });
    }
    Action::requeue(Duration::from_secs(5))
}
