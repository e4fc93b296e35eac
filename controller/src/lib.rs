//! # knmstate-controller
//!
//! The cluster-wide, leader-elected controller: the **only writer of
//! NodeNetworkConfigurationPolicy status**. Upstream has every node's handler recompute every
//! policy's status from uncached lists of enactments, nodes and pods (O(N²) reads per
//! rollout, flapping status, stale counts after node removal); here one controller does it
//! from watch caches and writes only when the meaning changes.
//!
//! The decisions are state-engine's (`aggregate`: which nodes count and the verdict;
//! `census`: the metric counts; `orphans`: what to delete); this crate holds the wiring and
//! the I/O around them.
//!
//! | module | role |
//! |---|---|
//! | [`leader`] | Lease-based leader election with optimistic concurrency; only the leader writes |
//! | [`stores`] | the reflector caches, trimmed to what is read, and their readiness |
//! | [`reconcile`] | the NNCP reconciler: aggregate from caches, server-side apply the status, events |
//! | [`triggers`] | Node, NodeNetworkState and leadership changes that re-aggregate every policy |
//! | [`cleanup`] | the orphan sweep: confirm state-engine's candidates with fresh reads, delete |
//! | [`metrics`] | upstream's five `kubernetes_nmstate_*` gauges plus apply, rollback, probe and condition-age metrics |
//! | [`run`](mod@run) | wiring of reflectors, Controller, election, sweep and the health and metrics endpoint |
//! | [`endpoint`] | the health and metrics endpoint: gauges from the caches, `/metrics` over TLS for scrapers the API server authenticates and authorizes |
//! | [`operator`] | the NMState operator: the `operator` subcommand installs knmstate for the `NMState` resource |
//! | [`cli`] | flags and environment of the binary |
//! | [`start`] | the binary's start-up: logging, endpoint, client, run until SIGTERM/SIGINT |
//! | [`error`] | what failed, with a stable kebab-case category |
//!
//! A policy is re-aggregated when it changes, when one of its enactments changes, when any
//! Node is added, removed, relabelled or changes readiness, when a NodeNetworkState appears
//! or goes (a handler starts or its node is removed), when this process becomes the leader,
//! and every resync period.

pub mod cleanup;
pub mod cli;
pub mod endpoint;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod operator;
pub mod reconcile;
pub mod run;
pub mod start;
pub mod stores;
pub mod triggers;

pub use error::Error;
pub use run::{Config, run};
pub use start::main_with;
