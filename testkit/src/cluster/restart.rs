//! Node reboots, out of band (`KNMSTATE_E2E_RESTART_NODE`, the box's
//! `hack/cluster.sh restart-node`).

use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, Result, bail};

use super::command_prefix;

/// Reboots nodes through `KNMSTATE_E2E_RESTART_NODE`: `<prefix> <node> <seconds down>`.
#[derive(Debug, Clone)]
pub struct NodeRestart {
    prefix: Vec<String>,
}

/// A reboot under way: the node is going down, staying down, or booting.
#[derive(Debug)]
pub struct Rebooting {
    node: String,
    child: Child,
}

impl NodeRestart {
    /// From `KNMSTATE_E2E_RESTART_NODE`, or print why the test is skipped and return `None`.
    pub fn from_env(test: &str) -> Option<Self> {
        let prefix = command_prefix(
            "KNMSTATE_E2E_RESTART_NODE",
            test,
            "a command prefix that reboots a node: <prefix> <node> <seconds down>; the cluster \
             in a box: hack/cluster.sh restart-node",
        )?;
        Some(Self { prefix })
    }

    /// Start rebooting `node`, down for `down_seconds`; [`Rebooting::wait`] for it to be up.
    pub fn start(&self, node: &str, down_seconds: u32) -> Result<Rebooting> {
        let child = Command::new(&self.prefix[0])
            .args(&self.prefix[1..])
            .arg(node)
            .arg(down_seconds.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("rebooting {node}"))?;
        Ok(Rebooting {
            node: node.to_owned(),
            child,
        })
    }
}

impl Rebooting {
    /// Wait until the node is up again (its NetworkManager running, its network configured);
    /// fail with the command's output when the reboot failed.
    pub async fn wait(self) -> Result<()> {
        let node = self.node;
        let out = tokio::task::spawn_blocking(move || self.child.wait_with_output()).await??;
        if !out.status.success() {
            bail!(
                "rebooting {node} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}
