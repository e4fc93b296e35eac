//! A Kubernetes API stand-in for end-to-end runs.
//!
//! No kube-apiserver can be installed on the machines this project is developed and tested on,
//! so this module serves the part of the Kubernetes API that the project's binaries (through
//! kube-rs) and `kubectl` use, over HTTP or HTTPS, generic over resources. It is a **test
//! stand-in**, not a Kubernetes implementation; see `APISERVER.md` in this crate for what it
//! does and does not do.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use knmstate_testkit::apiserver::{ApiServer, Config};
//! let server = ApiServer::start(Config::default()).await?;
//! let client = server.client()?;
//! # drop(client);
//! server.shutdown().await;
//! # Ok(()) }
//! ```

pub mod admission;
pub mod auth;
pub mod discovery;
pub mod error;
pub mod fields;
pub mod gc;
pub mod handler;
pub mod metrics;
pub mod nmstate;
pub mod object;
pub mod patch;
pub mod persistence;
pub mod proto;
pub mod resources;
pub mod response;
pub mod schema;
pub mod selectors;
pub mod server;
pub mod shape;
pub mod storage;
pub mod table;
pub mod watch;

pub use error::ApiError;
pub use metrics::Metrics;
pub use server::{ApiServer, Config, StartError};
