//! The handler on real NetworkManager nodes from the harness (`hack/nodes.sh`), against the API
//! stand-in. Needs root; skipped (with a message) otherwise or when `KNMSTATE_SKIP_NODE_TESTS`
//! is set.
//!
//! The nodes reach the stand-in over their own network: the test brings the nodes up, then
//! re-runs itself inside the harness's switch namespace, where the stand-in listens on the
//! switch's gateway address; each handler is started on its node with `nodes.sh exec`, so it
//! runs in the node's network, mount and UTS namespaces and talks to the node's own
//! NetworkManager. `KNMSTATE_HANDLER_TEST_LOG` overrides the handlers' `RUST_LOG`.

#[path = "../support/mod.rs"]
mod support;

mod fault_points;
mod killed_probing_dns;
mod scenarios;
mod table200;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::Node as KubeNode;
use knmstate_testkit::apiserver::Config;
use knmstate_testkit::nodes::Cluster as Nodes;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::{Cluster, eventually, example, iface, wait_condition};

const PREFIX: &str = "knmh";
const PHASE_ENV: &str = "KNMSTATE_HANDLER_TEST_PHASE";
/// Set (to a backend state directory) for a run of the handler's start-up recovery before
/// [`show`].
const RECOVER_ENV: &str = "KNMSTATE_HANDLER_TEST_RECOVER";
const T: Duration = Duration::from_mins(2);

fn main() -> ExitCode {
    if std::env::var(PHASE_ENV).as_deref() == Ok("show") {
        return show(std::env::var_os(RECOVER_ENV).map(Into::into));
    }
    if std::env::var_os(PHASE_ENV).is_some() {
        return match in_switch() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("real-node handler tests failed: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(reason) = Nodes::skip_reason() {
        println!("real-node handler tests skipped: {reason}");
        return ExitCode::SUCCESS;
    }
    match outside() {
        Ok(()) => {
            println!("real-node handler tests: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("real-node handler tests failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Print nmstate's own view of the node this runs on (JSON), for [`Node::nmstate_view`];
/// with a backend state directory, after the handler's start-up recovery from it (logged to
/// stderr).
fn show(recover_from: Option<std::path::PathBuf>) -> ExitCode {
    use knmstate_nm_backend::{Backend, NmBackend};
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .try_init();
    let shown = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(async {
                if let Some(dir) = recover_from {
                    knmstate_handler::start::recover(&NmBackend::with_state_dir(dir)).await?;
                }
                Ok(NmBackend::new().current_state().await?)
            })
        });
    match shown {
        Ok(current) => {
            println!("{}", current.state);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("failed to retrieve the state: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Bring the nodes up, run the scenarios inside the switch namespace, tear down.
fn outside() -> Result<()> {
    let nodes = Nodes::up(PREFIX, 2).context("bringing up harness nodes")?;
    let exe = std::env::current_exe()?;
    let status = Command::new("ip")
        .args(["netns", "exec", &format!("{PREFIX}-sw")])
        .arg(&exe)
        .env(PHASE_ENV, "switch")
        .status()
        .context("running the scenarios in the switch namespace")?;
    nodes.teardown().context("tearing down")?;
    if !status.success() {
        bail!("scenarios failed ({status})");
    }
    Ok(())
}

fn in_switch() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(scenarios())
}

/// A handler process running on a harness node.
struct HandlerProcess {
    child: Child,
}

impl HandlerProcess {
    fn start(node: &str, kubeconfig: &Path, dir: &Path) -> Result<Self> {
        Self::start_with(node, kubeconfig, dir, &[])
    }

    /// [`start`](Self::start) with extra environment (fault points).
    fn start_with(node: &str, kubeconfig: &Path, dir: &Path, env: &[(&str, &str)]) -> Result<Self> {
        let log = std::fs::File::create(dir.join(format!("{node}.log")))?;
        let child = Command::new("bash")
            .arg(Nodes::script())
            .args([
                "--prefix",
                PREFIX,
                "exec",
                node,
                env!("CARGO_BIN_EXE_handler"),
            ])
            .env("NODE_NAME", node)
            .env("KUBECONFIG", kubeconfig)
            // A directory of its own per node, as on a real host: the backend keeps its
            // recovery record beside the lock.
            .env(
                "NMSTATE_INSTANCE_NODE_LOCK_FILE",
                dir.join(node).join("handler_lock"),
            )
            .env("READINESS_FILE", dir.join(format!("{node}.healthy")))
            .env("NNCP_MAX_RETRIES", "2")
            .env("NNCP_INITIAL_BACKOFF_SECONDS", "1")
            .env("NNCP_MAX_BACKOFF_SECONDS", "2")
            .env("PROBE_TIMEOUT_SECONDS", "15")
            .env("CHECKPOINT_TIMEOUT_SECONDS", "120")
            .env("NNS_DEBOUNCE_MILLISECONDS", "200")
            .env("PROBE_DNS_HOST", "gw.knmstate.test")
            .env(
                "RUST_LOG",
                std::env::var("KNMSTATE_HANDLER_TEST_LOG")
                    .unwrap_or_else(|_| "info,nispor=error,nmstate=warn".into()),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?;
        Ok(Self { child })
    }

    /// SIGTERM, then wait.
    fn stop(mut self) -> Result<()> {
        // bash's builtin `kill`: no procps needed.
        Command::new("bash")
            .args(["-c", &format!("kill -TERM {}", self.child.id())])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        bail!("handler did not stop on SIGTERM")
    }

    /// SIGKILL, as a crash.
    fn kill(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

/// A property of the node's NetworkManager, as dbus-send prints it.
fn nm_property(node: &Node, name: &str) -> Result<String> {
    node.exec(&[
        "dbus-send",
        "--system",
        "--print-reply",
        "--dest=org.freedesktop.NetworkManager",
        "/org/freedesktop/NetworkManager",
        "org.freedesktop.DBus.Properties.Get",
        "string:org.freedesktop.NetworkManager",
        &format!("string:{name}"),
    ])
}

fn checkpoints(node: &Node) -> Result<String> {
    nm_property(node, "Checkpoints")
}

fn has_checkpoint(node: &Node) -> Result<bool> {
    Ok(checkpoints(node)?.contains("/org/freedesktop/NetworkManager/Checkpoint/"))
}

async fn set_ready(c: &Cluster, node: &str, ready: bool) -> Result<()> {
    let nodes: Api<KubeNode> = Api::all(c.client.clone());
    let status = if ready { "True" } else { "False" };
    nodes
        .patch_status(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [
                {"type": "Ready", "status": status, "reason": "Test"}]}})),
        )
        .await?;
    Ok(())
}

async fn scenarios() -> Result<()> {
    let c = Cluster::start_on(Config {
        listen: SocketAddr::from(([198, 18, 0, 1], 0)),
        ..Config::default()
    })
    .await?;
    let dir = c.dir.path().to_path_buf();
    let kubeconfig = dir.join("kubeconfig");
    c.server.write_kubeconfig(&kubeconfig)?;
    let harness = HarnessNodes::new();
    c.add_node("node1", &[]).await?;
    c.add_node("node2", &[]).await?;
    let mut handlers = vec![
        HandlerProcess::start("node1", &kubeconfig, &dir)?,
        HandlerProcess::start("node2", &kubeconfig, &dir)?,
    ];
    let res = scenarios::run_all(&c, &harness, &kubeconfig, &dir, &mut handlers).await;
    for h in handlers {
        let _ = h.stop();
    }
    if res.is_err() {
        for n in ["node1", "node2"] {
            if let Ok(log) = std::fs::read_to_string(dir.join(format!("{n}.log"))) {
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- {n} handler log (last lines) ---");
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
    res
}

/// A harness node addressed by name (the cluster itself is owned by the outer process).
#[derive(Debug, Clone)]
struct Node {
    name: String,
}

impl Node {
    /// nmstate's own view of the node's network (what the handler's backend retrieves).
    fn nmstate_view(&self) -> Result<serde_json::Value> {
        Ok(self.view_after(None)?.0)
    }

    /// The handler's start-up recovery from the backend state directory of the handler that
    /// ran in `dir` (the test's directory), then nmstate's view, as [`nmstate_view`] gives it,
    /// and the recovery's log.
    fn recover_then_view(&self, dir: &Path) -> Result<(serde_json::Value, String)> {
        self.view_after(Some(&dir.join(&self.name).join("knmstate-handler-state")))
    }

    fn view_after(&self, recover_from: Option<&Path>) -> Result<(serde_json::Value, String)> {
        let mut cmd = Command::new("bash");
        cmd.arg(Nodes::script())
            .args(["--prefix", PREFIX, "exec", &self.name])
            .arg(std::env::current_exe()?)
            .env(PHASE_ENV, "show");
        if let Some(dir) = recover_from {
            cmd.env(RECOVER_ENV, dir);
        }
        let out = cmd.output()?;
        if !out.status.success() {
            bail!(
                "nmstate's view of {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok((
            serde_json::from_slice(&out.stdout)?,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Run `cmd` on the node; its stdout when it succeeded.
    fn exec(&self, cmd: &[&str]) -> Result<String> {
        let out = Command::new("bash")
            .arg(Nodes::script())
            .args(["--prefix", PREFIX, "exec", &self.name])
            .args(cmd)
            .output()?;
        if !out.status.success() {
            bail!(
                "{} on {}: {}",
                cmd.join(" "),
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The harness nodes.
struct HarnessNodes {
    nodes: Vec<Node>,
}

impl HarnessNodes {
    fn new() -> Self {
        Self {
            nodes: ["node1", "node2"]
                .map(|n| Node { name: n.to_owned() })
                .to_vec(),
        }
    }

    fn get(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .expect("harness node")
    }
}
