//! End-to-end: upstream's `rollback_test` cases the `e2e_rollback` suite does not run — an
//! error while configuring rolls the whole desired state back (the bridge it created is gone
//! and stays gone), a default route in a table other than main is not probed (so a gateway
//! there that does not answer is no reason to roll back), and a link-local IPv6 name server in
//! place of the working ones is rolled back. Needs a cluster (`KUBECONFIG`); skips without one.

use std::time::Duration;

use knmstate_testkit::cluster::{
    E2e, absent, active_condition, bad_dns_spec, bridge, connect, dns_servers, healthy_uplink_spec,
    on_node, policy,
};
use serde_json::{Value, json};

/// The spare NIC, alone on its link.
const SPARE: &str = "eth2";

fn spare_released() -> Value {
    json!({"name": SPARE, "type": "ethernet", "state": "up",
           "ipv4": {"enabled": false}, "ipv6": {"enabled": false}})
}

/// Whether `node` reports an interface called `iface`.
async fn reports(e2e: &E2e, node: &str, iface: &str) -> anyhow::Result<bool> {
    Ok(e2e.reported_interface(node, iface).await?.is_some())
}

/// Upstream "when an error happens during state configuration": a policy for every node that
/// creates a bridge and sets a MTU the link cannot take fails; the policy is Degraded and on
/// every node the bridge was rolled back and stays gone, the MTU unchanged.
#[tokio::test]
async fn an_error_during_configuration_is_rolled_back() -> anyhow::Result<()> {
    let Some(e2e) = connect("error during configuration").await else {
        return Ok(());
    };
    let nodes = e2e.handler_nodes().await?;
    let name = "e2e-ups-config-error";
    let br = "e2eerr0";
    let mtu_before = e2e
        .reported_interface(&nodes[0], "eth1")
        .await?
        .map(|i| i["mtu"].clone())
        .unwrap_or_default();
    e2e.delete_policy(name).await?;
    let outcome = async {
        e2e.apply_policy(&policy(
            name,
            json!({"desiredState": {"interfaces": [
                bridge(br),
                {"name": "eth1", "type": "ethernet", "state": "up", "mtu": 70000}]}}),
        ))
        .await?;
        let p = e2e
            .wait_policy(name, "Degraded", Duration::from_mins(3))
            .await?;
        let (_, reason, _) = active_condition(&p).unwrap_or_default();
        anyhow::ensure!(reason == "FailedToConfigure", "policy reason {reason}");
        for node in &nodes {
            e2e.wait_until(
                &format!("{br} rolled back on {node}"),
                Duration::from_secs(30),
                || async { Ok((!reports(&e2e, node, br).await?).then_some(())) },
            )
            .await?;
        }
        // And it stays so (upstream: Consistently).
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for node in &nodes {
                anyhow::ensure!(!reports(&e2e, node, br).await?, "{br} is back on {node}");
                let mtu = e2e
                    .reported_interface(node, "eth1")
                    .await?
                    .map(|i| i["mtu"].clone())
                    .unwrap_or_default();
                anyhow::ensure!(
                    mtu == mtu_before,
                    "{node}: eth1 mtu {mtu}, was {mtu_before}"
                );
            }
        }
        anyhow::Ok(())
    }
    .await;
    e2e.delete_policy(name).await?;
    e2e.restore(
        &format!("{name}-undo"),
        None,
        json!({"interfaces": [absent(br)]}),
    )
    .await?;
    outcome
}

/// Upstream "default route in another table": a default route in table 100 through a gateway
/// that does not answer is not the node's default gateway — the probe leaves it alone and the
/// policy is Available, the route reported in its table and the main table's default route
/// unchanged.
#[tokio::test]
async fn a_default_route_in_another_table_is_not_probed() -> anyhow::Result<()> {
    let Some(e2e) = connect("default route in another table").await else {
        return Ok(());
    };
    let node = e2e.handler_nodes().await?.remove(0);
    let name = "e2e-ups-other-table";
    let gateway = "198.18.251.254";
    let main_before = knmstate_testkit::cluster::default_routes(&e2e.current_state(&node).await?);
    e2e.delete_policy(name).await?;
    let outcome = async {
        e2e.apply_policy(&policy(
            name,
            json!({"nodeSelector": on_node(&node), "desiredState": {
                "interfaces": [{"name": SPARE, "type": "ethernet", "state": "up",
                    "ipv4": {"enabled": true, "dhcp": false,
                             "address": [{"ip": "198.18.251.1", "prefix-length": 24}]},
                    "ipv6": {"enabled": false}}],
                "routes": {"config": [{"destination": "0.0.0.0/0", "next-hop-address": gateway,
                                       "next-hop-interface": SPARE, "table-id": 100}]}}}),
        ))
        .await?;
        let enactment = e2e
            .wait_enactment_settled(name, &node, Duration::from_mins(2))
            .await?;
        let (t, reason, message) = active_condition(&enactment).unwrap_or_default();
        anyhow::ensure!(t == "Available", "{t}/{reason}: {message}");
        e2e.wait_until(
            &format!("{node} to report the table-100 default route"),
            Duration::from_secs(10),
            || async {
                let s = e2e.current_state(&node).await?;
                let found = s["routes"]["running"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| {
                        r["destination"] == "0.0.0.0/0"
                            && r["next-hop-address"] == gateway
                            && r["table-id"] == 100
                    });
                Ok(found.then_some(()))
            },
        )
        .await?;
        let main_after =
            knmstate_testkit::cluster::default_routes(&e2e.current_state(&node).await?);
        anyhow::ensure!(
            main_after == main_before,
            "main table default routes {main_after:?}, were {main_before:?}"
        );
        anyhow::Ok(())
    }
    .await;
    e2e.delete_policy(name).await?;
    e2e.restore(
        &format!("{name}-undo"),
        Some(on_node(&node)),
        json!({"interfaces": [spare_released()],
               "routes": {"config": [{"next-hop-interface": SPARE, "state": "absent"}]}}),
    )
    .await?;
    outcome
}

/// A link-local IPv6 name server (scoped to the primary NIC, nobody answering there) in place
/// of the working ones: the DNS probe has no server it can ask, the change is rolled back, the
/// enactment Failing with a message that says so and the node's working name servers back.
#[tokio::test]
async fn a_link_local_ipv6_name_server_is_rolled_back() -> anyhow::Result<()> {
    let Some(e2e) = connect("link-local name server").await else {
        return Ok(());
    };
    let nodes = e2e.handler_nodes().await?;
    let node = nodes[2 % nodes.len()].clone();
    let nic = e2e.primary_nic(&node).await?;
    let server = format!("fe80::dead:beef%{nic}");
    let name = "e2e-ups-link-local-dns";
    e2e.delete_policy(name).await?;
    let mut spec = bad_dns_spec(&[&server]);
    spec["nodeSelector"] = on_node(&node);
    let outcome = async {
        e2e.apply_policy(&policy(name, spec)).await?;
        let enactment = e2e
            .wait_enactment_settled(name, &node, Duration::from_mins(4))
            .await?;
        let (t, reason, message) = active_condition(&enactment).unwrap_or_default();
        anyhow::ensure!(
            t == "Failing" && reason == "FailedToConfigure",
            "{name} on {node}: {t}/{reason}: {message}"
        );
        anyhow::ensure!(
            message.contains("rolling back") && message.contains("dns"),
            "the message must say the dns probe failed and the change was rolled back: {message}"
        );
        e2e.wait_policy(name, "Degraded", Duration::from_secs(30))
            .await?;
        e2e.wait_until(
            &format!("{node} to run its working name servers again"),
            Duration::from_mins(1),
            || async {
                let s = e2e.current_state(&node).await?;
                let running = dns_servers(&s, "running");
                let ok = !running.is_empty()
                    && !running.iter().any(|r| r.starts_with("fe80"))
                    && !dns_servers(&s, "config")
                        .iter()
                        .any(|r| r.starts_with("fe80"));
                Ok(ok.then_some(()))
            },
        )
        .await?;
        anyhow::Ok(())
    }
    .await;
    e2e.delete_policy(name).await?;
    e2e.restore_spec(
        &format!("{name}-undo"),
        Some(on_node(&node)),
        healthy_uplink_spec(),
    )
    .await?;
    outcome
}
