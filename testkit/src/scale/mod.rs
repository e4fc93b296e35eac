//! The scale harness: N simulated nodes, each a real handler (the handler library's policy
//! and slot path, its own API clients) over an in-memory network whose apply takes a set time
//! (the node-readiness probe holds it) and fails on chosen nodes, with the controller, all
//! against the API stand-in, whose request counters give the API load. The stand-in and the
//! controller run in the harness's process or each as a process of its own
//! ([`processes::Layout`]). One rollout of a policy with a given maxUnavailable is timed
//! against the ideal `ceil(N/M)·t`, its requests counted by verb and resource, then an idle
//! window; CPU time and peak memory of each process are read from `/proc`.
//!
//! Run it with `hack/scale.sh` (binary `knmstate-scale`); `tests/scale.rs` holds the
//! per-rollout request bound for 100 nodes. [`controller_memory`] (binary
//! `knmstate-controller-memory`, `hack/controller-memory.sh`) measures the controller binary's
//! memory over a large cluster's objects.

pub mod controller_memory;
pub mod figures;
pub mod handlers;
pub mod harness;
pub mod processes;

pub use figures::{Figures, Requests};
pub use harness::{Scenario, run};
pub use processes::Layout;
