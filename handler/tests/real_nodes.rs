//! The handler on real NetworkManager nodes from the harness (`hack/nodes.sh`), against the API
//! stand-in. Needs root; skipped (with a message) otherwise or when `KNMSTATE_SKIP_NODE_TESTS`
//! is set.
//!
//! The nodes reach the stand-in over their own network: the test brings the nodes up, then
//! re-runs itself inside the harness's switch namespace, where the stand-in listens on the
//! switch's gateway address; each handler is started on its node with `nodes.sh exec`, so it
//! runs in the node's network, mount and UTS namespaces and talks to the node's own
//! NetworkManager.

#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::Node as KubeNode;
use knmstate_api::v1beta1::NodeNetworkState;
use knmstate_testkit::apiserver::Config;
use knmstate_testkit::nodes::Cluster as Nodes;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::{Cluster, eventually, example, iface, wait_condition};

const PREFIX: &str = "knmh";
const PHASE_ENV: &str = "KNMSTATE_HANDLER_TEST_PHASE";
const T: Duration = Duration::from_mins(2);

fn main() -> ExitCode {
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
            .env(
                "NMSTATE_INSTANCE_NODE_LOCK_FILE",
                dir.join(format!("{node}.lock")),
            )
            .env("READINESS_FILE", dir.join(format!("{node}.healthy")))
            .env("NNCP_MAX_RETRIES", "2")
            .env("NNCP_INITIAL_BACKOFF_SECONDS", "1")
            .env("NNCP_MAX_BACKOFF_SECONDS", "2")
            .env("PROBE_TIMEOUT_SECONDS", "15")
            .env("CHECKPOINT_TIMEOUT_SECONDS", "120")
            .env("NNS_DEBOUNCE_MILLISECONDS", "200")
            .env("PROBE_DNS_HOST", "gw.knmstate.test")
            .env("RUST_LOG", "info,nispor=error,nmstate=warn")
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

fn checkpoints(node: &Node) -> Result<String> {
    node.exec(&[
        "dbus-send",
        "--system",
        "--print-reply",
        "--dest=org.freedesktop.NetworkManager",
        "/org/freedesktop/NetworkManager",
        "org.freedesktop.DBus.Properties.Get",
        "string:org.freedesktop.NetworkManager",
        "string:Checkpoints",
    ])
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
    let res = run_all(&c, &harness, &kubeconfig, &dir, &mut handlers).await;
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

fn step(name: &str, started: Instant) {
    println!("  {name}: ok ({:.1} s)", started.elapsed().as_secs_f64());
}

async fn run_all(
    c: &Cluster,
    h: &HarnessNodes,
    kubeconfig: &Path,
    dir: &Path,
    handlers: &mut Vec<HandlerProcess>,
) -> Result<()> {
    let nns: Api<NodeNetworkState> = Api::all(c.client.clone());

    // NodeNetworkStates appear with the nodes' real state.
    let t = Instant::now();
    for n in ["node1", "node2"] {
        eventually(&format!("NNS {n}"), T, || {
            let nns = nns.clone();
            async move {
                let s = nns
                    .get_opt(n)
                    .await
                    .ok()??
                    .status?
                    .current_state?
                    .to_value();
                iface(&s, "eth0").map(|_| ())
            }
        })
        .await?;
    }
    step("NodeNetworkStates reported", t);

    // An out-of-band change shows in the NNS within 2 s.
    let t = Instant::now();
    h.get("node1")
        .exec(&["ip", "link", "add", "oob0", "type", "bridge"])?;
    let changed = Instant::now();
    eventually("oob0 in node1's NNS", Duration::from_secs(2), || {
        let nns = nns.clone();
        async move {
            let s = nns
                .get("node1")
                .await
                .ok()?
                .status?
                .current_state?
                .to_value();
            iface(&s, "oob0").map(|_| ())
        }
    })
    .await?;
    println!("    seen after {:.2} s", changed.elapsed().as_secs_f64());
    step("out-of-band change reported", t);

    // Idle nodes make no NodeNetworkState writes (NetworkManager's own chatter aside).
    let t = Instant::now();
    let idle = std::env::var("KNMSTATE_IDLE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes = |c: &Cluster| {
        c.requests("patch", "nodenetworkstates.nmstate.io/status")
            + c.requests("create", "nodenetworkstates.nmstate.io")
    };
    let before = writes(c);
    tokio::time::sleep(Duration::from_secs(idle)).await;
    let after = writes(c);
    if after != before {
        bail!(
            "idle nodes wrote their NodeNetworkState {} times in {idle} s",
            after - before
        );
    }
    step(&format!("no NNS write in {idle} s of idling"), t);

    // The linux-bridge example reaches Available and the bridge exists on both nodes.
    let t = Instant::now();
    c.create_policy(example("linux-bridge.yaml")?).await?;
    for n in ["node1", "node2"] {
        wait_condition(c, &format!("{n}.linux-bridge"), "Available", T).await?;
        let link = h.get(n).exec(&["ip", "-d", "link", "show", "eth1"])?;
        if !link.contains("master br1") {
            bail!("{n}: eth1 is not a port of br1: {link}");
        }
        if has_checkpoint(h.get(n))? {
            bail!("{n}: a checkpoint was left: {}", checkpoints(h.get(n))?);
        }
    }
    step("linux-bridge Available, br1 on both nodes", t);

    // A policy that takes the default gateway away ends Failing, rolled back, API reachable.
    let t = Instant::now();
    let routes_before = h.get("node1").exec(&["ip", "route", "show", "default"])?;
    c.create_policy(json!({
        "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": "no-gateway"},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": "node1"},
            "desiredState": {"interfaces": [{"name": "eth0", "type": "ethernet", "state": "up",
                "ipv4": {"enabled": true, "dhcp": false,
                         "address": [{"ip": "198.18.0.250", "prefix-length": 24}]},
                "ipv6": {"enabled": false}}]}}
    }))
    .await?;
    let e = eventually("no-gateway Failing after its retries", T, || {
        let api = c.enactments();
        async move {
            let e = api.get("node1.no-gateway").await.ok()?;
            let s = e.status.as_ref()?;
            (s.conditions.is_true("Failing") && !s.conditions.is_true("Progressing")).then_some(e)
        }
    })
    .await?;
    let s = e.status.expect("status");
    if s.retry_count.get("1") != Some(&2) {
        bail!("expected 2 attempts, got {:?}", s.retry_count);
    }
    let routes_after = eventually("default route back", Duration::from_secs(30), || {
        let n = h.get("node1").clone();
        async move {
            let r = n.exec(&["ip", "route", "show", "default"]).ok()?;
            r.contains("via 198.18.0.1").then_some(r)
        }
    })
    .await?;
    if !routes_before.contains("via 198.18.0.1") {
        bail!("node1 had no default route to start with: {routes_before}");
    }
    let addr = h
        .get("node1")
        .exec(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"])?;
    if addr.contains("198.18.0.250") {
        bail!("the static address was not rolled back: {addr}");
    }
    let port = c.server.addr().port();
    h.get("node1")
        .exec(&["bash", "-c", &format!("exec 3<>/dev/tcp/198.18.0.1/{port}")])?;
    if has_checkpoint(h.get("node1"))? {
        bail!("node1: a checkpoint was left after the rollback");
    }
    println!("    default route after: {}", routes_after.trim());
    step(
        "gateway-breaking policy Failing, node1 intact, API reachable",
        t,
    );

    // Killed while an apply holds its checkpoint: the next handler leaves none and converges.
    let t = Instant::now();
    set_ready(c, "node2", false).await?;
    c.create_policy(json!({
        "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": "eth2-mtu"},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": "node2"},
            "desiredState": {"interfaces": [{"name": "eth2", "type": "ethernet", "state": "up",
                "mtu": 1400}]}}
    }))
    .await?;
    // The readiness probe waits for the node to be Ready: the checkpoint is held meanwhile.
    eventually("node2 holding a checkpoint", Duration::from_mins(1), || {
        let n = h.get("node2").clone();
        async move { has_checkpoint(&n).ok()?.then_some(()) }
    })
    .await?;
    let killed = handlers.remove(1);
    killed.kill()?;
    if !has_checkpoint(h.get("node2"))? {
        bail!("the killed handler's checkpoint vanished by itself");
    }
    set_ready(c, "node2", true).await?;
    handlers.push(HandlerProcess::start("node2", kubeconfig, dir)?);
    wait_condition(c, "node2.eth2-mtu", "Available", T).await?;
    if has_checkpoint(h.get("node2"))? {
        bail!("node2: a checkpoint was left after the restart");
    }
    let log = std::fs::read_to_string(dir.join("node2.log"))?;
    if !log.contains("left by a handler that died mid-apply") {
        bail!("the restarted handler did not roll the stale checkpoint back first");
    }
    let link = h.get("node2").exec(&["ip", "link", "show", "eth2"])?;
    if !link.contains("mtu 1400") {
        bail!("node2: eth2 did not converge: {link}");
    }
    step("killed mid-apply, restarted: no checkpoint, converged", t);

    // SIGTERM while an apply holds its checkpoint: rolled back before the process exits.
    let t = Instant::now();
    set_ready(c, "node2", false).await?;
    c.policies()
        .patch(
            "eth2-mtu",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"desiredState": {"interfaces": [
                {"name": "eth2", "type": "ethernet", "state": "up", "mtu": 1300}]}}})),
        )
        .await?;
    eventually("node2 holding a checkpoint", Duration::from_mins(1), || {
        let n = h.get("node2").clone();
        async move { has_checkpoint(&n).ok()?.then_some(()) }
    })
    .await?;
    let stopping = handlers.remove(1);
    stopping.stop()?;
    if has_checkpoint(h.get("node2"))? {
        bail!("node2: SIGTERM left a checkpoint");
    }
    let link = h.get("node2").exec(&["ip", "link", "show", "eth2"])?;
    if !link.contains("mtu 1400") {
        bail!("node2: eth2 was not rolled back: {link}");
    }
    set_ready(c, "node2", true).await?;
    handlers.push(HandlerProcess::start("node2", kubeconfig, dir)?);
    eventually("node2.eth2-mtu generation 2 Available", T, || {
        let api = c.enactments();
        async move {
            let e = api.get("node2.eth2-mtu").await.ok()?;
            let s = e.status.as_ref()?;
            (s.policy_generation == Some(2) && s.conditions.is_true("Available")).then_some(())
        }
    })
    .await?;
    let link = h.get("node2").exec(&["ip", "link", "show", "eth2"])?;
    if !link.contains("mtu 1300") {
        bail!("node2: eth2 did not converge: {link}");
    }
    step("SIGTERM mid-apply rolled back, restarted and converged", t);
    Ok(())
}
