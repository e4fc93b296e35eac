//! # knmstate-controller
//!
//! The cluster-wide, leader-elected controller: the **only writer of
//! NodeNetworkConfigurationPolicy status**. Upstream has every node's handler recompute every
//! policy's status from uncached lists of enactments, nodes and pods (O(N²) reads per
//! rollout, flapping status, stale counts after node removal); here one controller does it
//! from watch caches and writes only when the meaning changes.
//!
//! | module | role |
//! |---|---|
//! | [`leader`] | Lease-based leader election with optimistic concurrency; only the leader writes |
//! | [`aggregation`] | which nodes count for a policy and its next conditions (pure) |
//! | [`reconcile`] | the NNCP reconciler: aggregate from caches, server-side apply the status, events |
//! | [`cleanup`] | the orphan sweep: enactments of gone policies/nodes or non-matching nodes, states of gone nodes |
//! | [`metrics`] | upstream's five `kubernetes_nmstate_*` gauges plus apply, rollback, probe and condition-age metrics |
//! | [`http`] | `/metrics`, `/healthz`, `/readyz` |
//! | [`run`](mod@run) | wiring of reflectors, Controller, election, sweep and endpoint |
//! | [`cli`] | flags and environment of the binary |
//!
//! A policy is re-aggregated when it changes, when one of its enactments changes, when any
//! Node is added, removed, relabelled or changes readiness, when a NodeNetworkState appears
//! or goes (a handler starts or its node is removed), when this process becomes the leader,
//! and every resync period.

pub mod aggregation;
pub mod cleanup;
pub mod cli;
pub mod error;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod run;

pub use error::Error;
pub use run::{Config, run};
