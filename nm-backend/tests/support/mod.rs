//! Runs a test or bench binary on a harness node, through the test kit's driver of
//! `hack/nodes.sh`.
//!
//! The outer process (on the host, as root) brings a node up, then runs
//! `nodes.sh exec node1 <this binary> --inner <scenario>` so the scenario runs inside the node's
//! network, mount and UTS namespaces and finds the node's system bus at the default path.

use std::{
    cell::RefCell,
    process::Output,
    time::{Duration, Instant},
};

use knmstate_testkit::nodes::Cluster;

/// Why node tests cannot run here, if they cannot (the harness driver's rule, shared by every
/// real-node test in the workspace).
pub fn skip_reason() -> Option<String> {
    Cluster::skip_reason()
}

/// A harness cluster with a name prefix of its own, recreated by each [`Nodes::up`].
pub struct Nodes {
    prefix: String,
    cluster: RefCell<Option<Cluster>>,
}

impl Nodes {
    /// A cluster handle; nothing runs until [`Nodes::up`].
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
            cluster: RefCell::new(None),
        }
    }

    /// (Re)create `n` nodes; how long that took.
    pub fn up(&self, n: u32) -> Result<Duration, String> {
        let started = Instant::now();
        // The earlier cluster goes first: dropping it later would tear down the new one.
        self.down();
        let cluster = Cluster::up(&self.prefix, n).map_err(message)?;
        *self.cluster.borrow_mut() = Some(cluster);
        Ok(started.elapsed())
    }

    /// Remove every node.
    pub fn down(&self) {
        if let Some(cluster) = self.cluster.borrow_mut().take() {
            // A failed teardown is redone by the next `up` with this prefix.
            let _ = cluster.teardown();
        }
    }

    /// Run this binary on `node` with `args`, whatever its exit status.
    pub fn run_self(&self, node: &str, args: &[&str]) -> Result<Output, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let exe = exe.to_string_lossy();
        let cluster = self.cluster.borrow();
        let node = cluster
            .as_ref()
            .and_then(|c| c.node(node))
            .ok_or_else(|| format!("no harness node {node} is up"))?;
        let cmd: Vec<&str> = std::iter::once(exe.as_ref())
            .chain(args.iter().copied())
            .collect();
        node.exec_output(&cmd).map_err(message)
    }
}

/// The error with its causes, for a test's report.
fn message(e: knmstate_testkit::nodes::NodesError) -> String {
    format!("{:#}", anyhow::Error::new(e))
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.down();
    }
}
