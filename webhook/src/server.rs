//! The HTTPS server: [`knmstate_runtime::server`] (its timeouts, body limit and connection cap)
//! over TLS with a certificate re-read when its files change, serving `/readyz` and `/healthz`
//! (from [`knmstate_runtime::Admin`]) and the admission paths of [`crate::admission`].

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use knmstate_runtime::Admin;
use knmstate_runtime::server::{self, Limits};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::admission::{
    Admission, MUTATE_PATH, STATUS_MUTATE_PATH, TIMESTAMP_MUTATE_PATH, VALIDATE_PATH,
};
pub use knmstate_runtime::tls::ServerCert;

/// The server's failures (a certificate that cannot be used, a port that cannot be opened,
/// an I/O error while serving): those of the runtime's server.
pub type ServerError = knmstate_runtime::Error;

/// The webhook's routes: the five admission paths (POST), `/readyz`, `/healthz` and `/livez`
/// (always ok: the webhook has nothing to wait for), a review that denies by name for a POST
/// to any other path, and `404 not found` for everything else.
pub fn router(admission: Arc<Admission>) -> Router {
    let hooks = [
        MUTATE_PATH,
        STATUS_MUTATE_PATH,
        TIMESTAMP_MUTATE_PATH,
        VALIDATE_PATH,
        crate::slot_ledger::PATH,
    ]
    .into_iter()
    .fold(Router::new(), |r, path| r.route(path, post(review)));
    hooks
        .fallback(unknown_path)
        .with_state(admission)
        .merge(Admin::new().routes())
}

/// Answers one AdmissionReview: its body (already read whole within the server's
/// [`Limits`]), reviewed in the span of [`Admission::review_typed`], the answer encoded.
async fn review(State(admission): State<Arc<Admission>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let body = match axum::body::to_bytes(req.into_body(), server::MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("failed to read the request body: {e}"),
            )
                .into_response();
        }
    };
    match serde_json::to_vec(&admission.review(&path, &body)) {
        Ok(json) => (
            [(header::CONTENT_TYPE, "application/json")],
            Body::from(json),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to encode the review: {e}"),
        )
            .into_response(),
    }
}

/// A POST elsewhere still gets a review (denied by name, so a misconfigured webhook path is
/// obvious in the API server's answer); anything else is not found.
async fn unknown_path(state: State<Arc<Admission>>, req: Request) -> Response {
    if req.method() == Method::POST {
        review(state, req).await
    } else {
        knmstate_runtime::admin::not_found().await.into_response()
    }
}

/// Serves admission reviews on `addr` until the future is dropped; `ready` is told the bound
/// address once connections are accepted.
pub async fn serve(
    addr: SocketAddr,
    certs: Arc<ServerCert>,
    admission: Arc<Admission>,
    ready: impl Fn(SocketAddr) + Send,
) -> Result<(), ServerError> {
    serve_until(addr, certs, admission, ready, std::future::pending()).await
}

/// [`serve`] until `shutdown` resolves, then stops accepting and lets the reviews in flight
/// finish.
pub async fn serve_until(
    addr: SocketAddr,
    certs: Arc<ServerCert>,
    admission: Arc<Admission>,
    ready: impl Fn(SocketAddr) + Send,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve_with(addr, certs, admission, Limits::default(), ready, shutdown).await
}

/// [`serve_until`] with other [`Limits`] than the defaults (tests shorten the timeouts).
pub async fn serve_with(
    addr: SocketAddr,
    certs: Arc<ServerCert>,
    admission: Arc<Admission>,
    limits: Limits,
    ready: impl Fn(SocketAddr) + Send,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let listener = server::bind(addr).await?;
    let local = listener
        .local_addr()
        .map_err(|source| ServerError::Listen { addr, source })?;
    ready(local);
    tracing::info!(%local, "serving admission reviews");
    server::serve(listener, Some(certs), router(admission), limits, shutdown).await?;
    tracing::info!("stopped serving admission reviews");
    Ok(())
}
