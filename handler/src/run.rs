//! Wiring: the per-node controllers over kube-runtime, the NodeNetworkState triggers, the
//! readiness file and graceful shutdown.
//!
//! | controller | main object | triggers |
//! |---|---|---|
//! | policies ([`crate::policy`]) | every NNCP (generation or dry-run/re-apply switch changes) | this Node's label changes re-run all; drift ([`crate::drift`]) re-runs one |
//! | node state ([`crate::nns`]) | this Node (field selector) | network changes, NNS deletion or force label, each apply, safety re-read |
//! | enactment sweep ([`crate::sweep`]) | this node's NNCEs (label `nmstate.io/node`) | NNCP deletions |
//!
//! Beside them, the slot path's watch caches ([`crate::caches`]: every Node's metadata, every
//! enactment, the slot ledgers), whose changes wake the policies waiting for a slot
//! ([`crate::slot_wait`]).

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use knmstate_api::names;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::{NodeNetworkConfigurationEnactment, NodeNetworkState};
use knmstate_nm_backend::Backend;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::{mpsc, watch};

use crate::caches::{self, SlotCaches};
use crate::config::HandlerConfig;
use crate::context::{Context, Requests};
use crate::error::{Error, Result};
use crate::probes::ProbeFactory;
use crate::{nns, policy, slot_wait, sweep};

/// What the handler runs with.
pub struct Handler<B: Backend> {
    /// API client of the watches (the requests get their own, [`crate::context::Requests`]).
    pub client: kube::Client,
    /// How to reach the API server (for the requests' client and the API-server probe's).
    pub kube_config: kube::Config,
    /// The node's network.
    pub backend: B,
    /// Settings.
    pub config: HandlerConfig,
    /// Probe factory.
    pub probes: Arc<dyn ProbeFactory>,
}

fn hash_uid(n: &Node) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    n.metadata.uid.hash(&mut h);
    h.finish()
}

/// The slot path's caches and the future that feeds them (every event nudges the policies
/// waiting for a slot).
fn slot_caches(
    client: &kube::Client,
    namespace: &str,
    waits: Arc<slot_wait::SlotWaits>,
) -> (SlotCaches, impl Future<Output = ()> + Send + 'static) {
    let by_policy = watcher::Config::default().labels(names::POLICY_LABEL);
    let (nodes, node_writer) = reflector::store::<PartialObjectMeta<Node>>();
    let node_events = watcher(
        Api::<PartialObjectMeta<Node>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(node_writer)
    .map(|_| ());
    let (enactments, enactment_writer) = reflector::store();
    let enactment_events = watcher(
        Api::<NodeNetworkConfigurationEnactment>::all(client.clone()),
        by_policy.clone(),
    )
    .default_backoff()
    .modify(caches::trim_enactment)
    .reflect(enactment_writer)
    .map(|_| ());
    let (ledgers, ledger_writer) = reflector::store::<Lease>();
    let ledger_events = watcher(
        Api::<Lease>::namespaced(client.clone(), namespace),
        by_policy,
    )
    .default_backoff()
    .reflect(ledger_writer)
    .map(|_| ());
    let events = futures::stream::select(
        node_events,
        futures::stream::select(enactment_events, ledger_events),
    )
    .for_each(move |()| {
        waits.nudge();
        futures::future::ready(())
    });
    (
        SlotCaches {
            nodes,
            enactments,
            ledgers,
            disputes: Default::default(),
        },
        events,
    )
}

impl<B: Backend + Clone + 'static> Handler<B> {
    /// Run until `shutdown` resolves; then stop the controllers (an apply in flight is rolled
    /// back by its transaction, which watches the same signal) and remove the readiness file.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let node = self.config.node_name.clone();
        let by_name = format!("metadata.name={node}");
        let client = self.client.clone();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (refresh_tx, refresh_rx) = mpsc::channel::<()>(1);

        // This node.
        let (nodes, node_writer) = reflector::store::<Node>();
        let node_stream = watcher(
            Api::<Node>::all(client.clone()),
            watcher::Config::default().fields(&by_name),
        )
        .default_backoff()
        .applied_objects()
        .predicate_filter(|n: &Node| Some(hash_uid(n)), Default::default());
        // Its label changes re-run every policy. This watch feeds the Node store the policy
        // reconciles read, so a label change reaches the store before it triggers them (with
        // the store fed by another watch, a reconcile could still see the old labels and the
        // newly selected node stayed without its enactment).
        let label_changes = watcher(
            Api::<Node>::all(client.clone()),
            watcher::Config::default().fields(&by_name),
        )
        .default_backoff()
        .reflect(node_writer)
        .applied_objects()
        .predicate_filter(predicates::labels, Default::default())
        .filter_map(|r| async move { r.ok().map(|_| ()) });

        // Policies. A deletion is seen here after the store forgot the policy: it asks the
        // enactment sweep to look at this node's enactment of it.
        let (policies, policy_writer) = reflector::store::<NodeNetworkConfigurationPolicy>();
        let (deleted_tx, deleted_rx) = mpsc::unbounded_channel::<String>();
        let policy_stream = watcher(
            Api::<NodeNetworkConfigurationPolicy>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(policy_writer)
        .inspect({
            let node = node.clone();
            move |ev| {
                if let Ok(watcher::Event::Delete(p)) = ev {
                    let _ = deleted_tx.send(names::enactment_name(&node, &p.name_any()));
                }
            }
        })
        .applied_objects()
        .predicate_filter(policy::trigger_hash, Default::default());
        // Drift detection (on each NodeNetworkState refresh) asks for policy reconciles here.
        let (recheck_tx, recheck_rx) = mpsc::unbounded_channel();
        let rechecks = futures::stream::unfold(recheck_rx, |mut rx| async move {
            rx.recv().await.map(|r| (r, rx))
        });
        let deleted_policies = futures::stream::unfold(deleted_rx, |mut rx| async move {
            rx.recv().await.map(|name| (ObjectRef::new(&name), rx))
        });

        // This node's NodeNetworkState.
        let (states, state_writer) = reflector::store::<NodeNetworkState>();
        let state_events = watcher(
            Api::<NodeNetworkState>::all(client.clone()),
            watcher::Config::default().fields(&by_name),
        )
        .default_backoff()
        .reflect(state_writer);

        // This node's enactments.
        let enactment_ctl = Controller::new(
            Api::<NodeNetworkConfigurationEnactment>::all(client.clone()),
            watcher::Config::default().labels(&format!("{}={node}", names::NODE_LABEL)),
        )
        .reconcile_on(deleted_policies);
        let enactments = enactment_ctl.store();

        // The slot path's caches: every Node's metadata, every enactment (trimmed to its slot
        // state), the slot ledgers. Their changes wake the policies waiting for a slot.
        let slot_waits = Arc::new(slot_wait::SlotWaits::default());
        let (caches, cache_events) =
            slot_caches(&client, &self.config.namespace, slot_waits.clone());

        let requests = Requests::new(&self.kube_config, format!("{node}.nmstate-handler"))?;
        let bridge_vlan_filtering = self.config.bridge_vlan_filtering;
        let ctx = Arc::new(Context {
            requests,
            kube_config: self.kube_config,
            backend: self.backend,
            config: self.config,
            probes: self.probes,
            nodes: nodes.clone(),
            policies: policies.clone(),
            enactments,
            states,
            caches,
            slot_waits,
            apply_lock: tokio::sync::Mutex::new(()),
            nns_refresh: refresh_tx.clone(),
            nns_last: Mutex::new(None),
            node_state: nns::StateCache::default(),
            not_before: Mutex::new(Default::default()),
            bridge_vlan_filtering: tokio::sync::OnceCell::new_with(bridge_vlan_filtering),
            rollout: crate::slots::RolloutMemory::new(),
            shutdown: stop_rx.clone(),
            policy_recheck: recheck_tx,
            drift_looked: Mutex::new(Default::default()),
            enactment_versions: Mutex::new(Default::default()),
        });

        let stopped = {
            let rx = stop_rx.clone();
            move || {
                let mut rx = rx.clone();
                async move {
                    let _ = rx.wait_for(|s| *s).await;
                }
            }
        };

        let policy_ctl = Controller::for_stream(policy_stream, policies.clone())
            .with_config(controller::Config::default().concurrency(1))
            .reconcile_all_on(label_changes)
            .reconcile_on(rechecks)
            .graceful_shutdown_on(stopped())
            .run(policy::reconcile, policy::error_policy, ctx.clone())
            .for_each(|_| futures::future::ready(()));
        let refresh_stream = futures::stream::unfold(refresh_rx, |mut rx| async move {
            rx.recv().await.map(|()| ((), rx))
        });
        let nns_ctl = Controller::for_stream(node_stream, nodes.clone())
            .with_config(controller::Config::default().concurrency(1))
            .reconcile_all_on(refresh_stream)
            .graceful_shutdown_on(stopped())
            .run(nns::reconcile, nns::error_policy, ctx.clone())
            .for_each(|_| futures::future::ready(()));
        let sweep_ctl = enactment_ctl
            .graceful_shutdown_on(stopped())
            .run(sweep::reconcile, sweep::error_policy, ctx.clone())
            .for_each(|_| futures::future::ready(()));

        let side_tasks = vec![
            tokio::spawn(cache_events),
            tokio::spawn(slot_wait::watch(ctx.clone())),
            tokio::spawn(nns::forward_nns_events(state_events, refresh_tx.clone())),
            tokio::spawn({
                let ctx = ctx.clone();
                let tx = refresh_tx.clone();
                async move {
                    let (backend, kept) = (&ctx.backend, &ctx.node_state);
                    nns::forward_network_changes(backend, kept, ctx.config.nns_debounce, tx).await;
                }
            }),
        ];
        let readiness = tokio::spawn({
            let ctx = ctx.clone();
            async move {
                // A store's readiness wakes only its latest waiter (the controllers wait too):
                // look again until it says ready.
                let step = std::time::Duration::from_millis(100);
                while tokio::time::timeout(step, ctx.policies.wait_until_ready())
                    .await
                    .is_err()
                {}
                while tokio::time::timeout(step, ctx.nodes.wait_until_ready())
                    .await
                    .is_err()
                {}
                let path = &ctx.config.readiness_file;
                match std::fs::write(path, b"ok\n") {
                    Ok(()) => tracing::info!(file = %path.display(), "handler ready"),
                    Err(source) => tracing::warn!(error = %Error::WriteReadinessFile {
                        path: path.display().to_string(), source }.report(), "readiness"),
                }
            }
        });
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        });

        tracing::info!(node = %ctx.node_name(), "handler started");
        futures::join!(policy_ctl, nns_ctl, sweep_ctl);

        readiness.abort();
        for t in side_tasks {
            t.abort();
        }
        // An apply in flight was rolled back by its transaction when the stop was signalled.
        let _ = std::fs::remove_file(&ctx.config.readiness_file);
        Ok(())
    }
}
