//! The health and metrics endpoint of the controller: what `/metrics` computes, and how it is
//! served — over TLS with scrapes authenticated (`TokenReview`) and authorized
//! (`SubjectAccessReview`, `get` on `/metrics`) through the API server, as Kubernetes'
//! components do, or, for local and development use, plain HTTP without authentication.

use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use knmstate_runtime::Admin;
use knmstate_runtime::access::MetricsAccess;
use knmstate_runtime::tls::ServerCert;
use kube::Client;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Error;
use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::run::stopped;
use crate::stores::Stores;

/// How `/metrics` is served.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MetricsServing {
    /// Plain HTTP, every scrape answered (local and development use; `--metrics-secure=false`).
    #[default]
    Plain,
    /// HTTPS; a scrape needs a bearer token whose user may `get` the non-resource URL
    /// `/metrics`. The certificate and key come from these files (re-read when they change),
    /// or, when none are given, a self-signed pair is generated at start.
    Secure {
        /// PEM certificate chain and private key.
        files: Option<(PathBuf, PathBuf)>,
    },
}

/// The names a self-signed metrics certificate carries (the scraper does not verify it: it
/// reaches the pod by address and proves itself with its token).
fn self_signed_names() -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if let Ok(host) = std::env::var("HOSTNAME")
        && !host.is_empty()
    {
        names.push(host);
    }
    names
}

/// `/metrics`: the cluster gauges recomputed from the caches when this process leads (one
/// series per cluster, not per replica), cleared otherwise; then the exposition. Called on a
/// blocking thread by the endpoint, so it never delays the lease renewal.
fn scrape(metrics: &Metrics, stores: &Stores, leadership: &Leadership) -> String {
    if leadership.is_leader() && stores.is_ready() {
        let policies = stores.policies.state();
        let enactments = stores.enactments.state();
        let states = stores.states.state();
        metrics.refresh(
            &policies.iter().map(|p| &**p).collect::<Vec<_>>(),
            &enactments.iter().map(|e| &**e).collect::<Vec<_>>(),
            &states.iter().map(|s| &**s).collect::<Vec<_>>(),
            Timestamp::now(),
        );
    } else {
        metrics.clear_cluster();
    }
    metrics.encode()
}

/// The health and metrics endpoint: ready once every cache holds a first listing.
fn admin(metrics: Arc<Metrics>, stores: Stores, leadership: Leadership) -> Admin {
    let ready = stores.clone();
    Admin::new()
        .ready_when(move || ready.is_ready())
        .not_ready_message("caches are not synced yet")
        .metrics_with(move || scrape(&metrics, &stores, &leadership))
}

/// Serves the endpoint on `listener` as `serving` says until `stop`; a failure is counted in
/// the metrics and logged.
pub(crate) async fn serve(
    listener: TcpListener,
    serving: &MetricsServing,
    client: Client,
    (metrics, stores, leadership): (Arc<Metrics>, Stores, Leadership),
    stop: watch::Receiver<bool>,
) {
    let endpoint = admin(metrics.clone(), stores, leadership);
    let served = match serving {
        MetricsServing::Plain => endpoint.serve(listener, stopped(stop)).await,
        MetricsServing::Secure { files } => {
            let cert = match files {
                Some((cert, key)) => ServerCert::new(cert.clone(), key.clone()),
                None => ServerCert::self_signed(&self_signed_names()),
            };
            match cert {
                Ok(cert) => {
                    endpoint
                        .metrics_access(MetricsAccess::new(client).gate())
                        .serve_tls(listener, cert, stopped(stop))
                        .await
                }
                Err(e) => Err(e),
            }
        }
    };
    if let Err(source) = served {
        let error = Error::ServeMetrics { source };
        tracing::error!(%error, category = error.category(), "the metrics endpoint stopped");
        metrics.failed(&error);
    }
}
