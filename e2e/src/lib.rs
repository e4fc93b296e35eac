//! knmstate's end-to-end test harness.
//!
//! This crate holds what end-to-end runs need beside the production binaries: a Kubernetes API
//! stand-in ([`apiserver`], binary `knmstate-apiserver`) that real `kubectl` and kube-rs
//! controllers talk to, and the suites that drive the whole system through it. Production code
//! never depends on this crate.

pub mod apiserver;
pub mod cluster;
pub mod nodes;
