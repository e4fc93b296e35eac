//! Commands on the cluster's nodes, out of band (`KNMSTATE_E2E_NODE_EXEC`).

use std::process::Command;

use anyhow::{Context as _, Result, bail};

use super::skip;

/// Runs commands on nodes through `KNMSTATE_E2E_NODE_EXEC`.
#[derive(Debug, Clone)]
pub struct NodeExec {
    prefix: Vec<String>,
}

/// The command prefix in variable `var` (words split on white space), or print why `test` is
/// skipped — `var` is not set: `what` it is — and return `None`.
pub fn command_prefix(var: &str, test: &str, what: &str) -> Option<Vec<String>> {
    let prefix: Vec<String> = std::env::var(var)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if prefix.is_empty() {
        skip(test, &format!("{var} is not set ({what})"));
        return None;
    }
    Some(prefix)
}

impl NodeExec {
    /// From `KNMSTATE_E2E_NODE_EXEC`, or print why the test is skipped and return `None`.
    pub fn from_env(test: &str) -> Option<Self> {
        let prefix = command_prefix(
            "KNMSTATE_E2E_NODE_EXEC",
            test,
            "a command prefix that runs a command on a node; the cluster in a box: \
             hack/cluster.sh exec",
        )?;
        Some(Self { prefix })
    }

    /// Run `cmd` on `node`; fail with its output when it exits non-zero. Returns stdout.
    pub fn run(&self, node: &str, cmd: &[&str]) -> Result<String> {
        let out = Command::new(&self.prefix[0])
            .args(&self.prefix[1..])
            .arg(node)
            .args(cmd)
            .output()
            .with_context(|| format!("running {cmd:?} on {node}"))?;
        if !out.status.success() {
            bail!(
                "{cmd:?} on {node} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
