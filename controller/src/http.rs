//! The plain-HTTP endpoint: `/metrics` (OpenMetrics text), `/healthz` (the process runs) and
//! `/readyz` (every cache holds a first complete listing).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use k8s_openapi::jiff::Timestamp;
use tokio::net::TcpListener;

use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::reconcile::Stores;

/// What the endpoint reads.
#[derive(Clone)]
pub struct HttpState {
    /// The registry.
    pub metrics: Arc<Metrics>,
    /// The caches the cluster gauges are computed from.
    pub stores: Stores,
    /// Only the leader reports the cluster gauges (one series per cluster, not per replica).
    pub leadership: Leadership,
}

impl HttpState {
    fn ready(&self) -> bool {
        self.stores.is_ready()
    }

    /// The exposition after recomputing the cluster gauges.
    pub fn scrape(&self) -> String {
        if self.leadership.is_leader() && self.ready() {
            let policies = self.stores.policies.state();
            let enactments = self.stores.enactments.state();
            let states = self.stores.states.state();
            self.metrics.refresh(
                &policies.iter().map(|p| &**p).collect::<Vec<_>>(),
                &enactments.iter().map(|e| &**e).collect::<Vec<_>>(),
                &states.iter().map(|s| &**s).collect::<Vec<_>>(),
                Timestamp::now(),
            );
        } else {
            self.metrics.clear_cluster();
        }
        self.metrics.encode()
    }

    fn respond(&self, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let (status, content_type, body) = match req.uri().path() {
            "/metrics" => (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.scrape(),
            ),
            "/healthz" | "/livez" => (StatusCode::OK, "text/plain", "ok".to_owned()),
            "/readyz" if self.ready() => (StatusCode::OK, "text/plain", "ok".to_owned()),
            "/readyz" => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "caches are not synced yet".to_owned(),
            ),
            _ => (StatusCode::NOT_FOUND, "text/plain", "not found".to_owned()),
        };
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(content_type),
        );
        resp
    }
}

/// Serve until `shutdown` completes.
pub async fn serve(listener: TcpListener, state: HttpState, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("metrics endpoint accept: {e}");
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let resp = state.respond(&req);
                async move { Ok::<_, Infallible>(resp) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!("metrics connection: {e}");
            }
        });
    }
}
