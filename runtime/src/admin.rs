//! The health and metrics endpoint, on axum over [`crate::server`] (plain HTTP, or TLS with
//! [`Admin::serve_tls`]).
//!
//! | path | answer |
//! |---|---|
//! | `/healthz`, `/livez` | `200 ok` while the process serves at all |
//! | `/readyz` | `200 ok` when the binary's readiness check passes, else `503` with its message |
//! | `/metrics` | the OpenMetrics text exposition (only when a registry or renderer was given); with [`Admin::metrics_access`], `401` without a valid bearer token and `403` for a user not allowed `get` on `/metrics` |
//! | anything else | `404 not found` |
//!
//! The exposition is rendered on a blocking thread, so a scrape never holds up the async
//! tasks of the process (the controller's lease renewal among them).
//!
//! ```no_run
//! # async fn run() -> Result<(), knmstate_runtime::Error> {
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use knmstate_runtime::{Admin, shutdown_signal};
//!
//! let registry = prometheus_client::registry::Registry::default();
//! let synced = Arc::new(AtomicBool::new(false));
//! let flag = synced.clone();
//! let listener = Admin::bind("0.0.0.0:8089".parse().unwrap()).await?;
//! Admin::new()
//!     .ready_when(move || flag.load(Ordering::Relaxed))
//!     .not_ready_message("caches are not synced yet")
//!     .registry(Arc::new(registry))
//!     .serve(listener, shutdown_signal())
//!     .await
//! # }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::Error;
use crate::server::{self, Limits};
use crate::tls::ServerCert;

/// The content type of the OpenMetrics text format, as Prometheus negotiates it.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The body of every successful health answer.
const OK: &str = "ok";

/// The message of a failing readiness check when the binary gave none.
const DEFAULT_NOT_READY: &str = "not ready";

type Check = Arc<dyn Fn() -> bool + Send + Sync>;
type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// The verdict on a scrape of `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Served (`200`).
    Allowed,
    /// No token, or one the API server does not know (`401`).
    Unauthenticated,
    /// A known user without the right (`403`, with the reason).
    Forbidden(String),
    /// The reviews could not be made (`500`, with what failed); never cached.
    Unavailable(String),
}

/// Decides a scrape from its bearer token (`None` when the request carries none).
pub type Gate =
    Arc<dyn Fn(Option<String>) -> Pin<Box<dyn Future<Output = Verdict> + Send>> + Send + Sync>;

/// The endpoint's configuration: what `/readyz` asks, what `/metrics` renders and who may see
/// it.
#[derive(Clone)]
pub struct Admin {
    ready: Check,
    not_ready: Arc<str>,
    metrics: Option<Render>,
    gate: Option<Gate>,
}

impl Default for Admin {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("not_ready", &self.not_ready)
            .field("metrics", &self.metrics.is_some())
            .field("gated", &self.gate.is_some())
            .finish_non_exhaustive()
    }
}

/// Renders `registry` in the OpenMetrics text format (`# EOF` included).
///
/// ```
/// use prometheus_client::metrics::counter::Counter;
/// let mut registry = prometheus_client::registry::Registry::default();
/// registry.register("requests", "Requests served", Counter::<u64>::default());
/// let text = knmstate_runtime::admin::encode(&registry);
/// assert!(text.contains("requests_total 0"), "{text}");
/// assert!(text.ends_with("# EOF\n"));
/// ```
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        // Writing into a String cannot fail; a metric's own encoder can, and then a partial
        // exposition would be misread, so none is served.
        out.clear();
    }
    out
}

impl Admin {
    /// An endpoint that is always ready and serves no `/metrics`.
    pub fn new() -> Self {
        Self {
            ready: Arc::new(|| true),
            not_ready: Arc::from(DEFAULT_NOT_READY),
            metrics: None,
            gate: None,
        }
    }

    /// `/readyz` answers 200 only while `check` returns true (it is called on every request,
    /// so read a flag, an atomic or a `watch` channel, never do I/O).
    #[must_use]
    pub fn ready_when(mut self, check: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.ready = Arc::new(check);
        self
    }

    /// The body of a 503 from `/readyz`.
    #[must_use]
    pub fn not_ready_message(mut self, message: &str) -> Self {
        self.not_ready = Arc::from(message);
        self
    }

    /// `/metrics` renders `registry`.
    #[must_use]
    pub fn registry(self, registry: Arc<Registry>) -> Self {
        self.metrics_with(move || encode(&registry))
    }

    /// `/metrics` serves what `render` returns, for binaries that recompute gauges on each
    /// scrape before encoding (use [`encode`] at the end).
    #[must_use]
    pub fn metrics_with(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.metrics = Some(Arc::new(render));
        self
    }

    /// `/metrics` answers only scrapes `gate` allows (e.g. `access::MetricsAccess`, cargo
    /// feature `reviews`); health and readiness stay open, as the kubelet probes them without
    /// a token.
    #[must_use]
    pub fn metrics_access(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The endpoint's routes without a fallback, to merge into a router that serves more
    /// (the webhook adds its admission paths).
    pub fn routes(&self) -> Router {
        let ready = self.ready.clone();
        let not_ready = self.not_ready.clone();
        let mut router = Router::new()
            .route("/healthz", get(|| async { OK }))
            .route("/livez", get(|| async { OK }))
            .route(
                "/readyz",
                get(move || {
                    let answer = if ready() {
                        (StatusCode::OK, OK.to_owned())
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, not_ready.to_string())
                    };
                    async move { answer }
                }),
            );
        if let Some(render) = self.metrics.clone() {
            let gate = self.gate.clone();
            router = router.route(
                "/metrics",
                get(move |headers: HeaderMap| scrape(render.clone(), gate.clone(), headers)),
            );
        }
        router
    }

    /// The whole endpoint: [`Self::routes`] and `404 not found` for every other path.
    pub fn router(&self) -> Router {
        self.routes().fallback(not_found)
    }

    /// Opens the endpoint's listening socket (before the slow parts of start-up, so a bad
    /// address fails at once).
    pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
        server::bind(addr).await
    }

    /// Serves plain HTTP on `listener` until `shutdown` resolves, then lets the requests in
    /// flight finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        self.serve_with(listener, None, shutdown).await
    }

    /// [`Self::serve`] over TLS with `cert`.
    pub async fn serve_tls(
        self,
        listener: TcpListener,
        cert: Arc<ServerCert>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        self.serve_with(listener, Some(cert), shutdown).await
    }

    async fn serve_with(
        self,
        listener: TcpListener,
        cert: Option<Arc<ServerCert>>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        if let Ok(local) = listener.local_addr() {
            let tls = cert.is_some();
            tracing::info!(%local, tls, gated = self.gate.is_some(), "serving health and metrics");
        }
        let router = self.router();
        server::serve(listener, cert, router, Limits::default(), shutdown).await
    }
}

/// The bearer token of a request, if it carries one.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// One scrape: the gate's verdict, then the exposition rendered on a blocking thread.
async fn scrape(render: Render, gate: Option<Gate>, headers: HeaderMap) -> Response {
    if let Some(gate) = gate {
        match gate(bearer(&headers)).await {
            Verdict::Allowed => {}
            Verdict::Unauthenticated => {
                return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
            }
            Verdict::Forbidden(why) => return (StatusCode::FORBIDDEN, why).into_response(),
            Verdict::Unavailable(what) => {
                return (StatusCode::INTERNAL_SERVER_ERROR, what).into_response();
            }
        }
    }
    match tokio::task::spawn_blocking(move || render()).await {
        Ok(body) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to render the metrics: {e}"),
        )
            .into_response(),
    }
}

/// The answer for a path nobody serves.
pub async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, "not found")
}

#[cfg(test)]
mod tests;
