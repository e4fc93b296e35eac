//! The HTTPS server: axum over [`crate::tls`], serving `/readyz` and `/healthz` (from
//! [`knmstate_runtime::Admin`]) and the admission paths of [`crate::admission`].

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use knmstate_runtime::Admin;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::admission::{
    Admission, MUTATE_PATH, STATUS_MUTATE_PATH, TIMESTAMP_MUTATE_PATH, VALIDATE_PATH,
};
pub use crate::tls::ReloadingCert;
use crate::tls::TlsListener;

/// Largest AdmissionReview body accepted (the API server's own request limit is 3 MiB).
const MAX_BODY: usize = 6 * 1024 * 1024;

/// Errors of the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The certificate or key could not be loaded.
    #[error("failed to load the TLS certificate {cert} / key {key}: {message}")]
    LoadCertificate {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the server configuration.
    #[error("failed to configure TLS: {message}")]
    ConfigureTls {
        /// What rustls said.
        message: String,
    },
    /// The listening socket could not be opened.
    #[error("failed to listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server stopped on an I/O error.
    #[error("failed to serve admission reviews")]
    Serve {
        /// The OS error.
        source: std::io::Error,
    },
}

impl ServerError {
    /// Stable category for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::LoadCertificate { .. } => "load-certificate",
            Self::ConfigureTls { .. } => "configure-tls",
            Self::Listen { .. } => "listen",
            Self::Serve { .. } => "serve",
        }
    }
}

/// The webhook's routes: the four admission paths (POST), `/readyz`, `/healthz` and `/livez`
/// (always ok: the webhook has nothing to wait for), a review that denies by name for a POST
/// to any other path, and `404 not found` for everything else.
pub fn router(admission: Arc<Admission>) -> Router {
    let hooks = [
        MUTATE_PATH,
        STATUS_MUTATE_PATH,
        TIMESTAMP_MUTATE_PATH,
        VALIDATE_PATH,
    ]
    .into_iter()
    .fold(Router::new(), |r, path| r.route(path, post(review)));
    hooks
        .fallback(unknown_path)
        .with_state(admission)
        .merge(Admin::new().routes())
}

/// Answers one AdmissionReview: read the body, review it (in the span of
/// [`Admission::review_typed`]), encode the answer.
async fn review(State(admission): State<Arc<Admission>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
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
    certs: Arc<ReloadingCert>,
    admission: Arc<Admission>,
    ready: impl Fn(SocketAddr) + Send,
) -> Result<(), ServerError> {
    serve_until(addr, certs, admission, ready, std::future::pending()).await
}

/// [`serve`] until `shutdown` resolves, then stops accepting and lets the reviews in flight
/// finish.
pub async fn serve_until(
    addr: SocketAddr,
    certs: Arc<ReloadingCert>,
    admission: Arc<Admission>,
    ready: impl Fn(SocketAddr) + Send,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let listener = TlsListener::bind(addr, certs).await?;
    let local = axum::serve::Listener::local_addr(&listener)
        .map_err(|source| ServerError::Listen { addr, source })?;
    ready(local);
    tracing::info!(%local, "serving admission reviews");
    axum::serve(listener, router(admission))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| ServerError::Serve { source })?;
    tracing::info!("stopped serving admission reviews");
    Ok(())
}
