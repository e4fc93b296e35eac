//! Wiring: reflectors, the Controller, the election, the orphan sweep and the health and
//! metrics endpoint, all stopped together.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::Node;
use knmstate_api::names::field_manager;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::{NodeNetworkConfigurationEnactment, NodeNetworkState};
use knmstate_runtime::events::recorder;
use kube::api::Api;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher::{self, Event, watcher};
use kube::runtime::{WatchStreamExt, reflector as reflect};
use kube::{Client, ResourceExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cleanup::sweep_loop;
use crate::endpoint::{self, MetricsServing};
use crate::leader::{LeaderElector, LeaseConfig};
use crate::metrics::Metrics;
use crate::reconcile::{Context, error_policy, reconcile};
use crate::stores::{Stores, trim_enactment, trim_managed_fields, trim_node};
use crate::triggers::{leadership_gained, node_triggers, state_triggers};

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
    /// How `/metrics` is served (default: plain HTTP; the binary's default: secure).
    pub metrics_serving: MetricsServing,
}

impl Config {
    /// Defaults around a lease configuration.
    pub fn new(lease: LeaseConfig) -> Self {
        Self {
            instance: lease.identity.clone(),
            lease,
            sweep_interval: Duration::from_mins(1),
            orphan_grace: Duration::from_secs(30),
            resync: Duration::from_mins(5),
            debounce: Duration::ZERO,
            status_interval: Duration::from_secs(1),
            metrics_serving: MetricsServing::default(),
        }
    }
}

/// Completes once `rx` says stop.
pub(crate) async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
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
    let recorder = recorder(
        client.clone(),
        field_manager::CONTROLLER,
        Some(config.instance.clone()),
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
        .reconcile_all_on(leadership_gained(&leadership, ctx.sweep.clone()))
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
            let gauges = (metrics.clone(), stores.clone(), leadership.clone());
            let serving = &config.metrics_serving;
            endpoint::serve(listener, serving, client.clone(), gauges, stop_rx.clone()).await;
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
