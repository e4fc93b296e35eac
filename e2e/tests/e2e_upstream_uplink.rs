//! End-to-end: upstream's `default_bridged_network` tests, the riskiest everyday change — the
//! node's primary NIC (the one with its DHCP address and default route, over which its handler
//! reaches the API) moved under a linux bridge that takes over the address and the default
//! route, written out (with the NIC's MAC address) and then found by captures; the node keeps
//! reaching the API and its name servers throughout (its handler's probes and its state
//! reports say so); then the node is rebooted (upstream's "after reboot" cases: its
//! NetworkManager and handler stopped and started again on the persisted keyfiles) and comes
//! back the same, its policy reconciled again; and it is restored afterwards. While the node
//! is down, a policy with an enactment there is deleted (upstream's `nncp_cleanup` "while one
//! of the nodes is down"): the enactment is gone once the node is back. Needs a cluster
//! (`KUBECONFIG`), and for the reboots `KNMSTATE_E2E_RESTART_NODE`, `KNMSTATE_E2E_NODE_EXEC`
//! and `KNMSTATE_E2E_LOGS` (the cluster in a box sets them); skips without them.

use std::time::Duration;

use std::path::PathBuf;

use knmstate_testkit::cluster::{
    E2e, NodeExec, NodeRestart, absent, addresses, bridge, connect, default_routes, dns_servers,
    on_node, policy,
};
use serde_json::{Value, json};

/// The bridge the primary NIC goes under.
const BRIDGE: &str = "brext";

/// The node these tests run on: the last one.
async fn uplink_node(e2e: &E2e) -> anyhow::Result<String> {
    Ok(e2e
        .handler_nodes()
        .await?
        .pop()
        .expect("handler_nodes is never empty"))
}

/// DHCP and router advertisements on both stacks, their gateways and name servers taken.
fn dhcp_both_stacks() -> (Value, Value) {
    (
        json!({"enabled": true, "dhcp": true, "auto-dns": true, "auto-gateway": true}),
        json!({"enabled": true, "dhcp": true, "autoconf": true, "auto-dns": true,
               "auto-gateway": true}),
    )
}

/// Apply `spec` on `node`, wait until it is Available, then check that `node` reports the
/// primary NIC `nic` under the bridge, the bridge with an IPv4 address from DHCP in the NIC's
/// old subnet, the default routes through the bridge and working name servers; and that its
/// state kept being reported (the handler reached the API throughout).
async fn expect_bridged(
    e2e: &E2e,
    name: &str,
    node: &str,
    nic: &str,
    mut spec: Value,
) -> anyhow::Result<()> {
    let before = e2e.state(node).await?;
    let gateways = default_routes(&before.data["status"]["currentState"]).len();
    spec["nodeSelector"] = on_node(node);
    e2e.apply_policy(&policy(name, spec)).await?;
    e2e.wait_policy(name, "Available", Duration::from_mins(3))
        .await?;
    wait_reported_bridged(e2e, node, nic, gateways).await?;
    let after = e2e.state(node).await?;
    let stamp = |o: &kube::api::DynamicObject| o.data["status"]["lastSuccessfulUpdateTime"].clone();
    anyhow::ensure!(
        stamp(&after) != stamp(&before),
        "{node}'s state was not reported again after the change"
    );
    Ok(())
}

/// Wait until `node` reports `nic` under the bridge, which holds a DHCP address in the NIC's
/// old subnet and all its `gateways` default routes, and working name servers.
async fn wait_reported_bridged(
    e2e: &E2e,
    node: &str,
    nic: &str,
    gateways: usize,
) -> anyhow::Result<()> {
    // Up to 2 min: the IPv6 default route comes with a router advertisement, and a bridge whose
    // first solicitations went unanswered waits for NetworkManager's next ones (their interval
    // doubles) or the switch's next unsolicited advertisement.
    e2e.wait_until(
        &format!("{node} to report {nic} under {BRIDGE} with its address and default routes"),
        Duration::from_mins(2),
        || async {
            let s = e2e.current_state(node).await?;
            let port = e2e.reported_interface(node, nic).await?.unwrap_or_default();
            let br = e2e
                .reported_interface(node, BRIDGE)
                .await?
                .unwrap_or_default();
            let v4 = addresses(&br, "ipv4");
            let routes = default_routes(&s);
            let ok = port["controller"] == BRIDGE
                && br["ipv4"]["dhcp"] == true
                && v4.iter().any(|(ip, _)| ip.starts_with("198.18.0."))
                && addresses(&port, "ipv4").is_empty()
                && routes.len() == gateways
                && routes.iter().all(|(_, iface)| iface == BRIDGE)
                && !dns_servers(&s, "running").is_empty();
            Ok(ok.then_some(()))
        },
    )
    .await
}

/// What the reboot case needs besides the API.
struct Reboot {
    restart: NodeRestart,
    exec: NodeExec,
    logs: PathBuf,
}

impl Reboot {
    fn from_env(test: &str) -> Option<Self> {
        let restart = NodeRestart::from_env(test)?;
        let exec = NodeExec::from_env(test)?;
        let Some(logs) = std::env::var_os("KNMSTATE_E2E_LOGS") else {
            knmstate_testkit::cluster::skip(test, "KNMSTATE_E2E_LOGS is not set");
            return None;
        };
        Some(Self {
            restart,
            exec,
            logs: PathBuf::from(logs),
        })
    }

    fn handler_log(&self, node: &str) -> String {
        std::fs::read_to_string(self.logs.join(format!("pod-nmstate-handler-{node}.log")))
            .unwrap_or_default()
    }

    /// Reboot `node` (down `down` seconds; `while_down` runs meanwhile), then check that it
    /// came back bridged — on the node itself and in its reported state — and that its new
    /// handler reconciled `name` again.
    async fn reboot_and_check<F: Future<Output = anyhow::Result<()>>>(
        &self,
        e2e: &E2e,
        (name, node, nic): (&str, &str, &str),
        down: u32,
        while_down: F,
    ) -> anyhow::Result<()> {
        let gateways = default_routes(&e2e.current_state(node).await?).len();
        let log_from = self.handler_log(node).len();
        let rebooting = self.restart.start(node, down)?;
        let during = while_down.await;
        rebooting.wait().await?;
        during?;
        // On the node: the bridge came up from its keyfile with the DHCP lease and the route.
        let addr = self
            .exec
            .run(node, &["ip", "-4", "-o", "addr", "show", "dev", BRIDGE])?;
        let port = self
            .exec
            .run(node, &["ip", "-o", "link", "show", "dev", nic])?;
        let route = self
            .exec
            .run(node, &["ip", "-4", "route", "show", "default"])?;
        anyhow::ensure!(
            addr.contains("inet 198.18.0.")
                && port.contains(&format!("master {BRIDGE}"))
                && route.contains(&format!("dev {BRIDGE}")),
            "{node} after its reboot:\n{addr}{port}{route}"
        );
        wait_reported_bridged(e2e, node, nic, gateways).await?;
        // The new handler reconciled the policy again, and it is still Available there.
        e2e.wait_until(
            &format!("{node}'s new handler to reconcile {name}"),
            Duration::from_mins(1),
            || async {
                let log = self.handler_log(node);
                let seen = log.get(log_from..).is_some_and(|l| l.contains(name));
                let available = e2e
                    .enactments(name)
                    .await?
                    .get(node)
                    .is_some_and(|e| knmstate_testkit::cluster::is_true(e, "Available"));
                Ok((seen && available).then_some(()))
            },
        )
        .await
    }
}

/// Put the NIC back on its own, on DHCP, and the bridge away; check the node reports so.
async fn restore(e2e: &E2e, name: &str, node: &str, nic: &str) -> anyhow::Result<()> {
    let (v4, v6) = dhcp_both_stacks();
    e2e.restore(
        &format!("{name}-undo"),
        Some(on_node(node)),
        json!({"interfaces": [
            absent(BRIDGE),
            {"name": nic, "type": "ethernet", "state": "up", "ipv4": v4, "ipv6": v6}]}),
    )
    .await?;
    e2e.wait_until(
        &format!("{node} to report {nic} on its own with its default route again"),
        Duration::from_secs(30),
        || async {
            let s = e2e.current_state(node).await?;
            let ok = e2e.reported_interface(node, BRIDGE).await?.is_none()
                && default_routes(&s).iter().any(|(_, iface)| iface == nic);
            Ok(ok.then_some(()))
        },
    )
    .await
}

/// Upstream `default_bridged_network`: the primary NIC, named, becomes the only port of a
/// linux bridge that has the NIC's MAC address (so DHCP hands it the NIC's lease) and takes
/// DHCP and the router advertisements on both stacks.
#[tokio::test]
async fn the_primary_nic_goes_under_a_bridge_and_back() -> anyhow::Result<()> {
    let Some(e2e) = connect("primary NIC under a bridge").await else {
        return Ok(());
    };
    let node = uplink_node(&e2e).await?;
    let nic = e2e.primary_nic(&node).await?;
    let mac = e2e
        .reported_interface(&node, &nic)
        .await?
        .and_then(|i| i["mac-address"].as_str().map(str::to_owned))
        .ok_or_else(|| anyhow::anyhow!("{node}: {nic} has no MAC address"))?;
    let (v4, v6) = dhcp_both_stacks();
    let name = "e2e-ups-bridged";
    e2e.delete_policy(name).await?;
    let spec = json!({"desiredState": {"interfaces": [{
        "name": BRIDGE, "type": "linux-bridge", "state": "up", "mac-address": mac,
        "ipv4": v4, "ipv6": v6,
        "bridge": {"options": {"stp": {"enabled": false}}, "port": [{"name": nic}]}}]}});
    let gone = "e2e-ups-deleted-while-down";
    e2e.delete_policy(gone).await?;
    let outcome = async {
        expect_bridged(&e2e, name, &node, &nic, spec).await?;
        let Some(reboot) = Reboot::from_env("primary NIC under a bridge, rebooted") else {
            return Ok(());
        };
        e2e.apply_policy(&policy(
            gone,
            json!({"nodeSelector": on_node(&node),
                   "desiredState": {"interfaces": [bridge("e2edown0")]}}),
        ))
        .await?;
        e2e.wait_policy(gone, "Available", Duration::from_mins(2))
            .await?;
        // Down for 10 s: the policy is deleted meanwhile.
        let delete_while_down = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            e2e.nncp
                .delete(gone, &kube::api::DeleteParams::default())
                .await?;
            anyhow::Ok(())
        };
        reboot
            .reboot_and_check(&e2e, (name, &node, &nic), 10, delete_while_down)
            .await?;
        e2e.wait_until(
            &format!("{gone}'s enactment on {node} to be removed"),
            Duration::from_mins(1),
            || async { Ok(e2e.enactments(gone).await?.is_empty().then_some(())) },
        )
        .await
    }
    .await;
    e2e.delete_policy(gone).await?;
    e2e.delete_policy(name).await?;
    restore(&e2e, name, &node, &nic).await?;
    e2e.restore(
        &format!("{gone}-undo"),
        Some(on_node(&node)),
        json!({"interfaces": [absent("e2edown0")]}),
    )
    .await?;
    outcome
}

/// Upstream `default_bridged_network_with_nmpolicy`: the same, with the NIC, its MAC address
/// and its IP settings found by captures (the default route's interface), as the policy is
/// written for any node.
#[tokio::test]
async fn the_captured_primary_nic_goes_under_a_bridge_and_back() -> anyhow::Result<()> {
    let Some(e2e) = connect("captured primary NIC under a bridge").await else {
        return Ok(());
    };
    let node = uplink_node(&e2e).await?;
    let nic = e2e.primary_nic(&node).await?;
    let name = "e2e-ups-bridged-capture";
    e2e.delete_policy(name).await?;
    let spec = json!({
        "capture": {
            "default-gw": "routes.running.destination==\"0.0.0.0/0\"",
            "base-iface": "interfaces.name==capture.default-gw.routes.running.0.next-hop-interface"
        },
        "desiredState": {"interfaces": [{
            "name": BRIDGE, "type": "linux-bridge", "state": "up",
            "mac-address": "{{ capture.base-iface.interfaces.0.mac-address }}",
            "ipv4": "{{ capture.base-iface.interfaces.0.ipv4 }}",
            "ipv6": "{{ capture.base-iface.interfaces.0.ipv6 }}",
            "bridge": {"options": {"stp": {"enabled": false}},
                       "port": [{"name": "{{ capture.base-iface.interfaces.0.name }}"}]}
        }]}
    });
    let outcome = async {
        expect_bridged(&e2e, name, &node, &nic, spec).await?;
        if let Some(reboot) = Reboot::from_env("captured primary NIC under a bridge, rebooted") {
            reboot
                .reboot_and_check(&e2e, (name, &node, &nic), 1, async { Ok(()) })
                .await?;
        }
        // The captures resolved to this node's NIC: the enactment says what they found.
        let enactment = e2e.enactments(name).await?.remove(&node);
        let desired = enactment.map(|e| e.data["status"]["desiredState"].clone());
        let port = desired
            .as_ref()
            .map(|d| d["interfaces"][0]["bridge"]["port"][0]["name"].clone());
        anyhow::ensure!(
            port == Some(json!(nic)),
            "the enactment's desired state: {desired:?}"
        );
        anyhow::Ok(())
    }
    .await;
    e2e.delete_policy(name).await?;
    restore(&e2e, name, &node, &nic).await?;
    outcome
}
