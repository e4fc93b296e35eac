//! The hardened HTTP/1.1 server every knmstate endpoint runs on (the webhook's admission
//! reviews, the health and metrics endpoint), plain or over TLS.
//!
//! A client on the network can be slow or hostile; what it may cost is bounded by [`Limits`]:
//!
//! | limit | default | what happens |
//! |---|---|---|
//! | TLS handshake | 10 s | the connection is dropped |
//! | request headers | 10 s | the connection is closed (hyper's header-read timeout, also while a kept-alive connection idles) |
//! | request body | 10 s | `408 Request Timeout` |
//! | body size | 3 MiB (the API server never sends more) | `413 Payload Too Large` |
//! | concurrent connections | 4,096 | no more are accepted until one ends (the kernel's backlog holds them) |
//! | accept error (e.g. out of file descriptors) | pause 250 ms | then accepting resumes |
//!
//! Each connection, its handshake included, runs in its own task, so a silent client never
//! delays the others; on shutdown no more connections are accepted and the ones open finish
//! their request in flight.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::Error;
use crate::tls::ServerCert;

/// What a client may cost the server (see the module page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
    /// Longest wait for a request's headers (from the connection's start or the previous
    /// answer).
    pub header_timeout: Duration,
    /// Longest read of a request's body.
    pub body_timeout: Duration,
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Most connections open at once (handshakes included).
    pub max_connections: usize,
    /// Pause after a failed accept.
    pub accept_error_pause: Duration,
}

/// 3 MiB: the API server's own request limit, so no AdmissionReview is larger.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_body: MAX_BODY,
            max_connections: 4096,
            accept_error_pause: Duration::from_millis(250),
        }
    }
}

/// `router` with the body limits of `limits`: a request's body is read whole (so handlers
/// see it buffered) within [`Limits::body_timeout`] and [`Limits::max_body`].
pub fn with_body_limits(router: Router, limits: Limits) -> Router {
    router.layer(middleware::from_fn(move |req: Request, next: Next| {
        buffer_body(req, next, limits)
    }))
}

async fn buffer_body(req: Request, next: Next, limits: Limits) -> Response {
    let (parts, body) = req.into_parts();
    let read = axum::body::to_bytes(body, limits.max_body);
    let bytes = match tokio::time::timeout(limits.body_timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("failed to read the request body: {e}"),
            )
                .into_response();
        }
        Err(_) => {
            return (
                StatusCode::REQUEST_TIMEOUT,
                "failed to read the request body in time",
            )
                .into_response();
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Serves `router` (with [`with_body_limits`]) on `listener`, over TLS when `tls` is given,
/// until `shutdown` resolves; then stops accepting and lets the requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerCert>>,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let acceptor = match &tls {
        Some(cert) => Some(cert.acceptor()?),
        None => None,
    };
    let _reload = tls.map(ServerCert::watch);
    let router = with_body_limits(router, limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = slots.clone().acquire_owned() => p.map_err(|_| Error::Serve {
                source: std::io::Error::other("connection slots closed"),
            })?,
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "failed to accept a connection");
                    tokio::time::sleep(limits.accept_error_pause).await;
                    continue;
                }
            },
        };
        let (router, acceptor, mut stop) = (router.clone(), acceptor.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let Some(acceptor) = acceptor else {
                return connection(stream, peer, router, limits, stop).await;
            };
            let handshake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream));
            let tls = tokio::select! {
                done = handshake => done,
                // A handshake never holds up a shutdown.
                () = stopping(&mut stop) => return,
            };
            match tls {
                Ok(Ok(tls)) => connection(tls, peer, router, limits, stop).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
    // Tell open connections to finish, then wait until every slot is back.
    let _ = stop_tx.send(true);
    let all = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    Ok(())
}

/// One HTTP/1.1 connection, closed gracefully (after its request in flight) on `stop`.
async fn connection<S>(
    io: S,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(router));
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopping(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Resolves once the server is stopping (or can no longer be told to).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.is_ok();
}

/// Opens a listening socket at `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })
}

#[cfg(test)]
mod tests;
