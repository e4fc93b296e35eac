//! Killed (SIGKILL) while probing a policy that sets a wrong global name server: start-up
//! recovery puts NetworkManager's global DNS back as it was before the apply (the backend
//! recorded it beside the node lock), so the re-apply keeps its DNS probe, which fails again,
//! and the policy never ends Available.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;

use super::{Cluster, HandlerProcess, HarnessNodes, Node, T, eventually, has_checkpoint};

/// Nobody answers DNS there.
const BOGUS_DNS: &str = "198.19.255.254";

/// NetworkManager's `GlobalDnsConfiguration`, as dbus-send prints it.
fn global_dns(node: &Node) -> Result<String> {
    node.exec(&[
        "dbus-send",
        "--system",
        "--print-reply",
        "--dest=org.freedesktop.NetworkManager",
        "/org/freedesktop/NetworkManager",
        "org.freedesktop.DBus.Properties.Get",
        "string:org.freedesktop.NetworkManager",
        "string:GlobalDnsConfiguration",
    ])
}

pub(crate) async fn run(
    c: &Cluster,
    h: &HarnessNodes,
    kubeconfig: &Path,
    dir: &Path,
    handlers: &mut Vec<HandlerProcess>,
) -> Result<()> {
    let t = Instant::now();
    let node2 = h.get("node2");
    let original = global_dns(node2)?;
    if original.contains(BOGUS_DNS) {
        bail!("node2 starts with the wrong name server: {original}");
    }
    c.create_policy(json!({
        "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": "bogus-dns"},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": "node2"},
            "desiredState": {"dns-resolver": {"config": {"server": [BOGUS_DNS]}}}}
    }))
    .await?;
    // Applied, checkpoint held, the DNS probe running against the wrong server.
    eventually(
        "node2 probing the wrong name server",
        Duration::from_mins(1),
        || {
            let n = node2.clone();
            async move {
                let probing = has_checkpoint(&n).ok()? && global_dns(&n).ok()?.contains(BOGUS_DNS);
                probing.then_some(())
            }
        },
    )
    .await?;
    let killed = handlers.remove(1);
    killed.kill()?;
    if !global_dns(node2)?.contains(BOGUS_DNS) {
        bail!("the wrong name server vanished before the restart");
    }
    handlers.push(HandlerProcess::start("node2", kubeconfig, dir)?);
    eventually("node2's global DNS restored", T, || {
        let n = node2.clone();
        let original = original.clone();
        async move { (global_dns(&n).ok()? == original).then_some(()) }
    })
    .await?;
    // The re-apply probes DNS again (it works before the apply), fails, rolls back: Failing
    // once its retries are spent, never Available.
    let e = eventually("node2.bogus-dns Failing for good", T, || {
        let api = c.enactments();
        async move {
            let e = api.get("node2.bogus-dns").await.ok()?;
            let s = e.status.as_ref()?;
            if s.conditions.is_true("Available") {
                return Some(Err(e));
            }
            (s.conditions.is_true("Failing") && !s.conditions.is_true("Progressing"))
                .then_some(Ok(e))
        }
    })
    .await?;
    let e = match e {
        Ok(e) => e,
        Err(e) => bail!("the policy that broke DNS ended Available: {:?}", e.status),
    };
    let report = e.status.and_then(|s| s.last_apply);
    if !report
        .as_ref()
        .is_some_and(|r| r.rolled_back && r.probes.iter().any(|p| p.name == "dns" && !p.succeeded))
    {
        bail!("the last apply was not rolled back by its DNS probe: {report:?}");
    }
    let now = global_dns(node2)?;
    if now != original {
        bail!("node2's global DNS is not the original after the rollback: {now}");
    }
    if has_checkpoint(node2)? {
        bail!("node2: a checkpoint was left");
    }
    super::scenarios::step(
        "killed while probing a wrong DNS, restarted: DNS restored, policy Failing",
        t,
    );
    Ok(())
}
