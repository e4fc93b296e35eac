//! # knmstate-runtime
//!
//! What every knmstate binary (controller, handler, webhook) sets up before it does its own work,
//! written once so that each `main` reads like a table of contents:
//!
//! - [`logging`]: the `tracing` subscriber, text or JSON lines, filtered by `RUST_LOG` with a
//!   default level; [`logging::LogArgs`] is the clap flag group every binary flattens
//!   (`--log-format`/`LOG_FORMAT` and the older `--log-json`/`LOG_JSON`).
//! - [`signal`]: one future that resolves on SIGTERM or SIGINT, so a pod stops cleanly when the
//!   kubelet asks.
//! - [`admin`]: the health and metrics endpoint on axum: `/healthz` and `/livez` (the process
//!   runs), `/readyz` (from a check the binary supplies) and `/metrics` (a `prometheus-client`
//!   registry in the OpenMetrics text format), over plain HTTP or TLS, `/metrics` optionally
//!   only for scrapers the API server authenticates and authorizes (`access`, cargo feature
//!   `reviews`: `TokenReview` and `SubjectAccessReview`, cached).
//! - [`server`]: the one hardened HTTP/1.1 server under the endpoint and the webhook (handshake,
//!   header and body timeouts, a body limit, a connection cap, a pause after accept errors,
//!   graceful shutdown); [`tls`]: its certificates (files re-read on change, or self-signed).
//! - `events` (cargo feature `events`): the Kubernetes event recorder with the binary's
//!   reporter name.
//!
//! Nothing here decides anything about networks or policies; that lives in the state engine and
//! the binaries' libraries.

#[cfg(feature = "reviews")]
pub mod access;
pub mod admin;
mod error;
#[cfg(feature = "events")]
pub mod events;
pub mod logging;
pub mod server;
pub mod signal;
pub mod tls;

pub use admin::Admin;
pub use error::Error;
pub use logging::{LogArgs, LogFormat, init_logging};
pub use signal::shutdown_signal;
