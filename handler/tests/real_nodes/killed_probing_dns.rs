//! Killed (SIGKILL) while probing a policy that sets a wrong global name server: start-up
//! recovery puts NetworkManager's global DNS back as it was before the apply (the backend
//! recorded it beside the node lock), so the re-apply keeps its DNS probe, which fails again,
//! and the policy never ends Available.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use knmstate_api::v1beta1::NodeNetworkState;
use kube::Api;
use serde_json::{Value, json};

use super::{
    Cluster, HandlerProcess, HarnessNodes, Node, T, eventually, has_checkpoint, nm_property,
};

/// Nobody answers DNS there.
const BOGUS_DNS: &str = "198.19.255.254";

/// NetworkManager's `GlobalDnsConfiguration`, as dbus-send prints it.
fn global_dns(node: &Node) -> Result<String> {
    nm_property(node, "GlobalDnsConfiguration")
}

/// nmstate's view of node2's DNS (`dns-resolver`), as its NodeNetworkState reports it.
async fn reported_dns(c: &Cluster) -> Option<Value> {
    let nns: Api<NodeNetworkState> = Api::all(c.client.clone());
    let state = nns
        .get("node2")
        .await
        .ok()?
        .status?
        .current_state?
        .to_value();
    state.get("dns-resolver").cloned()
}

/// Wait until node2's NodeNetworkState reports `want` as its DNS.
async fn wait_reported_dns(c: &Cluster, what: &str, want: &Value) -> Result<()> {
    eventually(what, T, || async {
        (reported_dns(c).await.as_ref() == Some(want)).then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}: want {want}"))
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
    let Some(original_dns) = reported_dns(c).await else {
        bail!("node2's NodeNetworkState reports no DNS");
    };
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
    // Start-up recovery restored the saved DNS before the handler started reconciling.
    let log = dir.join("node2.log");
    let log = eventually("the restarted handler started", T, || {
        let log = log.clone();
        async move {
            let text = std::fs::read_to_string(&log).ok()?;
            text.contains("handler started").then_some(text)
        }
    })
    .await?;
    let started = log.find("handler started").unwrap_or(log.len());
    if !log[..started].contains("restored NetworkManager's global DNS configuration") {
        bail!("start-up recovery did not restore the global DNS:\n{log}");
    }
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
    wait_reported_dns(c, "node2's DNS as before after the rollback", &original_dns).await?;
    let now = global_dns(node2)?;
    if now.contains(BOGUS_DNS) {
        bail!("node2's global DNS after the rollback: {now}");
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
