//! Driver of the NetworkManager node harness (`hack/nodes.sh`).
//!
//! A [`Cluster`] is a set of harness nodes: each a network namespace with its own mount and UTS
//! namespaces, a private system D-Bus and its own NetworkManager, plugged into a "switch"
//! namespace that serves DHCP, DNS and a default gateway. [`Node::exec`] runs a command on a
//! node (inside its network, mount and UTS namespaces). Dropping a cluster tears it down;
//! `hack/nodes.sh --prefix P down` cleans up after a crashed test as well. Needs root.

use std::{
    path::PathBuf,
    process::{Command, Output},
    sync::Arc,
};

/// What can go wrong driving the harness.
#[derive(Debug, thiserror::Error)]
pub enum NodesError {
    /// The harness script could not be started.
    #[error("failed to run {script}")]
    Spawn {
        /// Path of the script.
        script: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A harness command exited with an error.
    #[error("failed to run `nodes.sh {action}` ({status}): {stderr}")]
    Command {
        /// The sub-command (`up 2`, `exec node1 ...`).
        action: String,
        /// Exit status.
        status: std::process::ExitStatus,
        /// What the command printed on stderr.
        stderr: String,
    },
}

impl NodesError {
    /// Stable name of the failure class.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Spawn { .. } => "harness-spawn-failed",
            Self::Command { .. } => "harness-command-failed",
        }
    }
}

#[derive(Debug)]
struct Harness {
    script: PathBuf,
    prefix: String,
    state_dir: Option<PathBuf>,
}

impl Harness {
    fn command(&self) -> Command {
        let mut c = Command::new("bash");
        c.arg(&self.script).arg("--prefix").arg(&self.prefix);
        if let Some(dir) = &self.state_dir {
            c.arg("--state-dir").arg(dir);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Result<Output, NodesError> {
        let out = self
            .command()
            .args(args)
            .output()
            .map_err(|source| NodesError::Spawn {
                script: self.script.display().to_string(),
                source,
            })?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(NodesError::Command {
                action: args.join(" "),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
    }
}

/// A running set of harness nodes; torn down on drop.
#[derive(Debug)]
pub struct Cluster {
    harness: Arc<Harness>,
    nodes: Vec<Node>,
    down: bool,
}

/// One harness node.
#[derive(Debug, Clone)]
pub struct Node {
    harness: Arc<Harness>,
    name: String,
}

impl Cluster {
    /// Path of `hack/nodes.sh` (or `$KNMSTATE_NODES_SCRIPT`).
    pub fn script() -> PathBuf {
        std::env::var_os("KNMSTATE_NODES_SCRIPT").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../hack/nodes.sh"),
            PathBuf::from,
        )
    }

    /// Why harness nodes cannot run here (not root, script missing, opted out), if so.
    ///
    /// With `KNMSTATE_REQUIRE_NODE_TESTS` set (the project's test command sets it), a reason
    /// other than the explicit opt-out `KNMSTATE_SKIP_NODE_TESTS` is a failure, not a skip: CI
    /// must never pass by silently skipping the tests that touch real NetworkManager.
    pub fn skip_reason() -> Option<String> {
        if std::env::var_os("KNMSTATE_SKIP_NODE_TESTS").is_some() {
            return Some("KNMSTATE_SKIP_NODE_TESTS is set".into());
        }
        let reason = Self::cannot_run()?;
        assert!(
            std::env::var_os("KNMSTATE_REQUIRE_NODE_TESTS").is_none(),
            "node tests are required (KNMSTATE_REQUIRE_NODE_TESTS) but cannot run: {reason}"
        );
        Some(reason)
    }

    fn cannot_run() -> Option<String> {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next().map(str::to_string));
        if uid.as_deref() != Some("0") {
            return Some("harness nodes need root (network namespaces, mounts)".into());
        }
        if !Self::script().exists() {
            return Some(format!("{} not found", Self::script().display()));
        }
        None
    }

    /// Bring up `n` nodes under the name prefix `prefix` (1-8 lowercase letters or digits);
    /// leftovers of an earlier cluster with that prefix are removed first.
    pub fn up(prefix: &str, n: u32) -> Result<Self, NodesError> {
        Self::up_in(prefix, n, None)
    }

    /// Like [`Cluster::up`], keeping the harness state under `state_dir`.
    pub fn up_in(prefix: &str, n: u32, state_dir: Option<PathBuf>) -> Result<Self, NodesError> {
        let harness = Arc::new(Harness {
            script: Self::script(),
            prefix: prefix.to_string(),
            state_dir,
        });
        let mut cluster = Self {
            harness: Arc::clone(&harness),
            nodes: Vec::new(),
            down: false,
        };
        // On failure the half-made cluster is dropped, which tears it down.
        harness.run(&["up", &n.to_string()])?;
        cluster.nodes = (1..=n)
            .map(|i| Node {
                harness: Arc::clone(&harness),
                name: format!("node{i}"),
            })
            .collect();
        Ok(cluster)
    }

    /// The nodes, `node1` first.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Run `cmd` in the switch namespace (host mounts, the nodes' gateway addresses 198.18.0.1
    /// and `2001:db8::1)`: a process started there is reachable from every node. Its stdout when
    /// it succeeded.
    pub fn switch_exec(&self, cmd: &[&str]) -> Result<String, NodesError> {
        let mut args = vec!["switch"];
        args.extend_from_slice(cmd);
        let out = self.harness.run(&args)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A `Command` that runs `cmd` in the switch namespace, for long-running processes (an API
    /// server the nodes' handlers talk to); the caller spawns and stops it.
    pub fn switch_command(&self, cmd: &[&str]) -> Command {
        let mut c = self.harness.command();
        c.arg("switch").args(cmd);
        c
    }

    /// Output of `nodes.sh status`.
    pub fn status(&self) -> Result<String, NodesError> {
        let out = self.harness.run(&["status"])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Remove every namespace, process, mount and directory the cluster made.
    pub fn teardown(mut self) -> Result<(), NodesError> {
        self.down = true;
        self.harness.run(&["down"]).map(|_| ())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.down {
            // Drop cannot report: a failed teardown is redone by the next `up` with this prefix.
            let _ = self.harness.run(&["down"]);
        }
    }
}

impl Node {
    /// The node's name (`node1`, ...), which is also its hostname.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Run `cmd` on the node and return its output, whatever its exit status.
    pub fn exec_output(&self, cmd: &[&str]) -> Result<Output, NodesError> {
        self.harness
            .command()
            .args(["exec", &self.name])
            .args(cmd)
            .output()
            .map_err(|source| NodesError::Spawn {
                script: self.harness.script.display().to_string(),
                source,
            })
    }

    /// Run `cmd` on the node; its stdout when it succeeded.
    pub fn exec(&self, cmd: &[&str]) -> Result<String, NodesError> {
        let out = self.exec_output(cmd)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(NodesError::Command {
                action: format!("exec {} {}", self.name, cmd.join(" ")),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_harness_command_is_reported_by_category_with_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("nodes.sh");
        std::fs::write(&script, "echo 'no such node' >&2; exit 3\n").unwrap();
        let harness = Harness {
            script,
            prefix: "t".into(),
            state_dir: None,
        };
        let err = harness.run(&["exec", "node9", "true"]).unwrap_err();
        assert_eq!(err.category(), "harness-command-failed");
        let text = err.to_string();
        assert!(
            text.starts_with("failed to run `nodes.sh exec node9 true`"),
            "{text}"
        );
        assert!(text.contains("no such node"), "{text}");
    }

    #[test]
    fn a_harness_that_cannot_start_is_reported_by_category() {
        let err = NodesError::Spawn {
            script: "/nonexistent/nodes.sh".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(err.category(), "harness-spawn-failed");
        assert_eq!(err.to_string(), "failed to run /nonexistent/nodes.sh");
        assert!(std::error::Error::source(&err).is_some());
    }
}
