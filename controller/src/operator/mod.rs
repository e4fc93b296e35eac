//! The NMState operator (`knmstate-controller operator`): installs knmstate for the one
//! `NMState` resource named `nmstate` and keeps it installed.
//!
//! Each reconcile renders the installation with knmstate-deploy (topology from the Nodes, CA
//! bundle from the webhook certificates it issues), applies it with server-side apply in
//! upstream's order with the resource as controller owner (CRDs and the Namespace excepted),
//! skips kinds the cluster does not serve (ServiceMonitor and PrometheusRule without
//! prometheus-operator) and reports Available / Progressing / Degraded from the workloads'
//! status. A spec change renders a new pod template, so the DaemonSet rolls; owned objects the
//! installation no longer renders (an older release's, or ones a setting dropped) are
//! pruned. Deleting the
//! resource lets the garbage collector remove everything it owns.
//!
//! Deliberate difference from upstream: a resource with another name is **not deleted** (upstream
//! keeps the oldest and deletes the others): it gets `Degraded=True`, reason `Ignored`, with a
//! message saying why. Deleting an object a user wrote loses their spec without a trace; a
//! condition tells them what to do, and only the name `nmstate` is ever honoured, so which one
//! wins never depends on creation order.
//!
//! | module | role |
//! |---|---|
//! | [`reconcile`](mod@reconcile) | the reconciler and its error policy |
//! | [`apply`] | server-side apply in order, owner references, skipping unserved kinds |
//! | [`prune`] | deleting owned objects the installation no longer renders |
//! | [`certs`] | the webhook's self-signed CA and serving certificate, rotated |
//! | [`status`] | rollout state of the workloads and the status write |
//! | [`cli`] | flags and environment of the `operator` subcommand |
//! | [`error`] | what failed, with a stable kebab-case category |

pub mod apply;
pub mod certs;
pub mod cli;
pub mod error;
pub mod prune;
pub mod reconcile;
pub mod status;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use knmstate_api::v1::NMState;
use knmstate_runtime::Admin;
use kube::Client;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::watcher;
use tokio::net::TcpListener;

pub use error::OperatorError;
pub use reconcile::{OperatorContext, error_policy, reconcile};

/// Run the operator until `shutdown` completes; serve `/healthz` and `/readyz` on `health`
/// (if given).
pub async fn run(
    client: Client,
    ctx: OperatorContext,
    health: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ns = ctx.settings.namespace.clone();
    let wc = watcher::Config::default();
    let controller = Controller::new(Api::<NMState>::all(client.clone()), wc.clone())
        .owns(
            Api::<DaemonSet>::namespaced(client.clone(), &ns),
            wc.clone(),
        )
        .owns(Api::<Deployment>::namespaced(client.clone(), &ns), wc)
        .graceful_shutdown_on(crate::run::stopped(stop_rx.clone()))
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|r| {
            if let Err(e) = r {
                tracing::debug!("reconcile: {e}");
            }
            futures::future::ready(())
        });
    let http = async {
        if let Some(listener) = health
            && let Err(e) = Admin::new()
                .serve(listener, crate::run::stopped(stop_rx.clone()))
                .await
        {
            tracing::warn!("health endpoint stopped: {e}");
        }
    };
    let signal = async {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    };
    futures::join!(signal, controller, http);
}

impl OperatorContext {
    /// A context with the production timings: look again every 10 s while rolling out, every
    /// 5 min once deployed (and when a certificate is due).
    pub fn new(client: Client, settings: knmstate_deploy::InstallSettings) -> Self {
        Self {
            client,
            settings,
            progress_interval: Duration::from_secs(10),
            resync: Duration::from_mins(5),
        }
    }
}
