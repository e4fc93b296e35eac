//! Wiring: reflectors, the Controller, the election, the orphan sweep and the HTTP endpoint,
//! all stopped together.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt, future};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use knmstate_api::names::field_manager;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::{NodeNetworkConfigurationEnactment, NodeNetworkState};
use kube::api::Api;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher::{self, Event, watcher};
use kube::runtime::{WatchStreamExt, reflector as reflect};
use kube::{Client, ResourceExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::cleanup::{delete_orphans, find_orphans};
use crate::http::{HttpState, serve};
use crate::leader::{LeaderElector, Leadership, LeaseConfig};
use crate::metrics::Metrics;
use crate::reconcile::{
    Context, Stores, error_policy, reconcile, trim_enactment, trim_managed_fields, trim_node,
};
use knmstate_state_engine::node::is_ready as node_is_ready;

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Leader election.
    pub lease: LeaseConfig,
    /// Period of the orphan sweep (it also runs on node, policy and leadership changes).
    pub sweep_interval: Duration,
    /// Orphans younger than this are left alone (their creator's view may be ahead of ours).
    pub orphan_grace: Duration,
    /// Periodic re-aggregation of every policy.
    pub resync: Duration,
    /// Triggers for one policy closer together than this are handled once. Keep it small:
    /// kube-runtime's debounce is trailing-edge, so a policy whose enactments change more
    /// often than this would not be reconciled until they pause.
    pub debounce: Duration,
    /// Minimum time between two status writes of one policy that only change its message
    /// (rollout counts); changes of the active condition are written at once.
    pub status_interval: Duration,
    /// Name reported as the events' reporting instance.
    pub instance: String,
}

impl Config {
    /// Defaults around a lease configuration.
    pub fn new(lease: LeaseConfig) -> Self {
        Self {
            instance: lease.identity.clone(),
            lease,
            sweep_interval: Duration::from_secs(60),
            orphan_grace: Duration::from_secs(30),
            resync: Duration::from_secs(300),
            debounce: Duration::ZERO,
            status_interval: Duration::from_secs(1),
        }
    }
}

/// Hash of what makes a Node count: labels and readiness.
fn node_key(n: &Node) -> u64 {
    let mut h = DefaultHasher::new();
    n.metadata.labels.hash(&mut h);
    node_is_ready(n).hash(&mut h);
    h.finish()
}

/// One `()` per Node change that can alter any policy's counts: a node added or removed, its
/// labels or readiness changed, or a relist (which may hide deletions).
fn node_triggers(
    events: impl Stream<Item = Result<Event<Node>, watcher::Error>>,
    sweep: Arc<Notify>,
) -> impl Stream<Item = ()> {
    let mut known: HashMap<String, u64> = HashMap::new();
    events.filter_map(move |ev| {
        let fire = match ev {
            Ok(Event::Apply(n)) => {
                let key = node_key(&n);
                let old = known.insert(n.name_any(), key);
                if old.is_some_and(|o| o != key) {
                    sweep.notify_one();
                }
                old != Some(key)
            }
            Ok(Event::InitApply(n)) => {
                known.insert(n.name_any(), node_key(&n));
                false
            }
            Ok(Event::Delete(n)) => {
                known.remove(&n.name_any());
                sweep.notify_one();
                true
            }
            Ok(Event::Init) => false,
            Ok(Event::InitDone) => {
                sweep.notify_one();
                true
            }
            Err(e) => {
                tracing::warn!("node watch: {e}");
                false
            }
        };
        future::ready(fire.then_some(()))
    })
}

/// One `()` per NodeNetworkState created or deleted (a handler started or its node went).
fn state_triggers(
    events: impl Stream<Item = Result<Event<NodeNetworkState>, watcher::Error>>,
    sweep: Arc<Notify>,
) -> impl Stream<Item = ()> {
    let mut known: std::collections::HashSet<String> = Default::default();
    events.filter_map(move |ev| {
        let fire = match ev {
            Ok(Event::Apply(s)) => known.insert(s.name_any()),
            Ok(Event::InitApply(s)) => {
                known.insert(s.name_any());
                false
            }
            Ok(Event::Delete(s)) => {
                known.remove(&s.name_any());
                true
            }
            Ok(Event::Init) => false,
            Ok(Event::InitDone) => {
                sweep.notify_one();
                true
            }
            Err(e) => {
                tracing::warn!("NodeNetworkState watch: {e}");
                false
            }
        };
        future::ready(fire.then_some(()))
    })
}

/// One `()` each time this process becomes the leader.
fn leadership_gained(leadership: Leadership, sweep: Arc<Notify>) -> impl Stream<Item = ()> {
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

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Sweep orphans when woken, periodically, and when a young orphan comes of age.
async fn sweep_loop(
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
            tracing::warn!(category = e.category(), "{e}");
            ctx.metrics.count_error(e.category());
            wait = wait.min(Duration::from_secs(5));
        }
    }
}

/// Run the controller until `shutdown` completes: elect, aggregate, sweep, serve metrics on
/// `metrics` (if given). On shutdown the Lease is released so that another replica takes
/// over at once. Dropping the returned future stops everything without releasing (a crash).
pub async fn run(
    client: Client,
    config: Config,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    let (elector, leadership) = LeaderElector::new(client.clone(), config.lease.clone());
    let elector = elector.with_metrics(metrics.clone());
    let wc = watcher::Config::default();

    let (policies, policy_writer) = reflector::store();
    let (enactments, enactment_writer) = reflector::store();
    let (nodes, node_writer) = reflector::store();
    let (states, state_writer) = reflector::store();
    let (stores, mark_ready) = Stores::new(policies.clone(), enactments, nodes, states);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: field_manager::CONTROLLER.to_owned(),
            instance: Some(config.instance.clone()),
        },
    );
    let mut context = Context::new(
        client.clone(),
        recorder,
        metrics.clone(),
        stores.clone(),
        leadership.clone(),
        config.resync,
    );
    context.status_interval = config.status_interval;
    let ctx = Arc::new(context);

    let forget = ctx.clone();
    let policy_stream = reflect(
        policy_writer,
        watcher(
            Api::<NodeNetworkConfigurationPolicy>::all(client.clone()),
            wc.clone(),
        )
        .modify(trim_managed_fields),
    )
    .default_backoff()
    .inspect(move |ev| {
        if let Ok(Event::Delete(p)) = ev {
            forget.forget(&p.name_any());
            forget.sweep.notify_one();
        }
    })
    .applied_objects();
    let enactment_stream = reflect(
        enactment_writer,
        watcher(
            Api::<NodeNetworkConfigurationEnactment>::all(client.clone()),
            wc.clone(),
        )
        .modify(trim_enactment),
    )
    .default_backoff()
    .touched_objects();
    let node_stream = node_triggers(
        reflect(
            node_writer,
            watcher(Api::<Node>::all(client.clone()), wc.clone()).modify(trim_node),
        )
        .default_backoff(),
        ctx.sweep.clone(),
    );
    let state_stream = state_triggers(
        reflect(
            state_writer,
            watcher(Api::<NodeNetworkState>::all(client.clone()), wc.clone())
                .modify(trim_managed_fields),
        )
        .default_backoff(),
        ctx.sweep.clone(),
    );

    let controller = Controller::for_stream(policy_stream, policies)
        .with_config(controller::Config::default().debounce(config.debounce))
        .watches_stream(enactment_stream, |e: NodeNetworkConfigurationEnactment| {
            e.policy_name()
                .map(ObjectRef::<NodeNetworkConfigurationPolicy>::new)
        })
        .reconcile_all_on(node_stream)
        .reconcile_all_on(state_stream)
        .reconcile_all_on(leadership_gained(leadership.clone(), ctx.sweep.clone()))
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|r| {
            if let Err(e) = r {
                tracing::debug!("reconcile: {e}");
            }
            future::ready(())
        });

    let http = async {
        if let Some(listener) = metrics_listener {
            let state = HttpState {
                metrics: metrics.clone(),
                stores: stores.clone(),
                leadership: leadership.clone(),
            };
            serve(listener, state, stopped(stop_rx.clone())).await;
        }
    };
    let signal = async {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    };
    let mark_ready = async {
        tokio::select! {
            () = mark_ready => {}
            () = stopped(stop_rx.clone()) => {}
        }
    };
    futures::join!(
        signal,
        mark_ready,
        elector.run(stopped(stop_rx.clone())),
        controller,
        sweep_loop(
            ctx.clone(),
            config.sweep_interval,
            config.orphan_grace,
            stop_rx.clone()
        ),
        http,
    );
}
