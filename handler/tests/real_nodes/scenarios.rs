//! The scenarios, in order, on the two harness nodes: each step names what it shows.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use knmstate_api::v1beta1::NodeNetworkState;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::{
    Cluster, HandlerProcess, HarnessNodes, T, checkpoints, eventually, example, has_checkpoint,
    iface, set_ready, wait_condition,
};

pub(crate) fn step(name: &str, started: Instant) {
    println!("  {name}: ok ({:.1} s)", started.elapsed().as_secs_f64());
}

pub(crate) async fn run_all(
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

    super::killed_probing_dns::run(c, h, kubeconfig, dir, handlers).await?;
    super::fault_points::run(c, h, kubeconfig, dir, handlers).await?;
    super::table200::run(c, h).await
}
