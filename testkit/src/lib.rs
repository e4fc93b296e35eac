//! knmstate's test kit: what tests across the workspace share.
//!
//! - [`apiserver`] (feature `apiserver`, binary `knmstate-apiserver`): a Kubernetes API stand-in
//!   that real `kubectl` and kube-rs controllers talk to;
//! - [`cluster`] (feature `cluster`): the end-to-end suites' connection to a running cluster
//!   (the cluster in a box or a real one through `KUBECONFIG`);
//! - [`boxlet`] (feature `boxlet`, binary `knmstate-boxlet`): the cluster in a box's kubelet,
//!   which runs the pods of the DaemonSets and Deployments from their templates;
//! - [`scale`] (feature `scale`, binary `knmstate-scale`): handlers over in-memory nodes, and
//!   the scale harness (N handlers and the controller in-process against the stand-in);
//! - [`nodes`]: the driver of the NetworkManager node harness (`hack/nodes.sh`);
//! - [`poll`]: the one `eventually` every test waits with;
//! - [`builders`]: typed `nmstate.io` and core objects for tests;
//! - [`golden`]: the runner of golden and fixture directories.
//!
//! The light part (no feature) depends on `knmstate-api` only, so every crate of the workspace,
//! the pure state-engine included, can use it as a dev-dependency. Production code never depends
//! on this crate.

#[cfg(feature = "apiserver")]
pub mod apiserver;
#[cfg(feature = "boxlet")]
pub mod boxlet;
pub mod builders;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod golden;
pub mod nodes;
pub mod poll;
#[cfg(feature = "scale")]
pub mod scale;
