//! Drives `hack/nodes.sh` from a test or bench binary that re-runs itself on a harness node.
//!
//! The outer process (on the host, as root) brings a node up, then runs
//! `nodes.sh exec node1 <this binary> --inner <scenario>` so the scenario runs inside the node's
//! network, mount and UTS namespaces and finds the node's system bus at the default path.

use std::{
    path::PathBuf,
    process::{Command, Output},
    time::{Duration, Instant},
};

/// Path of the harness script.
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../hack/nodes.sh")
}

/// Why node tests cannot run here, if they cannot (the harness driver's rule, shared by every
/// real-node test in the workspace).
pub fn skip_reason() -> Option<String> {
    knmstate_e2e::nodes::Cluster::skip_reason()
}

/// A harness cluster with a name prefix of its own.
pub struct Nodes {
    prefix: String,
}

impl Nodes {
    /// A cluster handle; nothing runs until [`Nodes::up`].
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("bash");
        c.arg(script()).arg("--prefix").arg(&self.prefix);
        c
    }

    /// (Re)create `n` nodes.
    pub fn up(&self, n: u32) -> Result<Duration, String> {
        let started = Instant::now();
        let out = self
            .cmd()
            .args(["up", &n.to_string()])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "nodes.sh up failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(started.elapsed())
    }

    /// Remove every node.
    pub fn down(&self) {
        let _ = self.cmd().arg("down").status();
    }

    /// Run this binary on `node` with `args`.
    pub fn run_self(&self, node: &str, args: &[&str]) -> Result<Output, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        self.cmd()
            .args(["exec", node])
            .arg(exe)
            .args(args)
            .output()
            .map_err(|e| e.to_string())
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.down();
    }
}
