//! End-to-end: policies that break a node's connectivity are rolled back by the probes, and the
//! node keeps working. Needs a cluster (`KUBECONFIG`); skips without one. Each case runs on one
//! node, a different one per case when there are three.

use std::time::Duration;

use knmstate_testkit::cluster::{
    E2e, active_condition, bad_dns_spec, bad_gateway_spec, connect, healthy_uplink_spec, is_true,
    on_node, policy,
};
use serde_json::Value;

/// Apply `spec` on `node` alone, expect it to fail with a rollback naming `probe`, and the node's
/// reported state to show `healthy` again afterwards.
async fn expect_rollback(
    e2e: &E2e,
    name: &str,
    node: &str,
    mut spec: Value,
    probe: &str,
    healthy: impl Fn(&Value) -> bool,
) -> anyhow::Result<()> {
    e2e.delete_policy(name).await?;
    spec["nodeSelector"] = on_node(node);
    e2e.apply_policy(&policy(name, spec)).await?;
    let checked = check_rolled_back(e2e, name, node, probe, healthy).await;
    // Whatever happened, put the node's uplink back.
    e2e.delete_policy(name).await?;
    e2e.restore_spec(
        &format!("{name}-undo"),
        Some(on_node(node)),
        healthy_uplink_spec(),
    )
    .await?;
    checked
}

async fn check_rolled_back(
    e2e: &E2e,
    name: &str,
    node: &str,
    probe: &str,
    healthy: impl Fn(&Value) -> bool,
) -> anyhow::Result<()> {
    // Settled: Available (wrong), or Failing with the retries over (no longer Progressing).
    let enactment = e2e
        .wait_until(
            &format!("{name}: the enactment on {node} to settle"),
            Duration::from_secs(240),
            || async {
                let es = e2e.enactments(name).await?;
                Ok(es.get(node).cloned().filter(|e| {
                    is_true(e, "Available") || (is_true(e, "Failing") && !is_true(e, "Progressing"))
                }))
            },
        )
        .await?;
    let (kind, reason, message) = active_condition(&enactment).unwrap_or_default();
    anyhow::ensure!(
        kind == "Failing",
        "{name} was committed on {node} although it breaks connectivity: {kind}/{reason}: \
         {message}"
    );
    anyhow::ensure!(reason == "FailedToConfigure", "{name}: {reason}: {message}");
    anyhow::ensure!(
        message.contains("rolling back") && message.contains(probe),
        "{name}: the message must say the {probe} probe failed and the change was rolled back: \
         {message}"
    );
    let p = e2e
        .wait_policy(name, "Degraded", Duration::from_secs(30))
        .await?;
    anyhow::ensure!(
        active_condition(&p).unwrap_or_default().1 == "FailedToConfigure",
        "{name}: policy {:?}",
        active_condition(&p)
    );
    // The node is back: its state is reported (the handler reaches the API again) and healthy.
    e2e.wait_until(
        &format!("{name}: {node} to report a healthy state again"),
        Duration::from_secs(60),
        || async {
            let s = e2e.state(node).await?;
            Ok(healthy(&s.data["status"]["currentState"]).then_some(()))
        },
    )
    .await?;
    Ok(())
}

fn has_default_route_via(state: &Value, gateway_prefix: &str) -> bool {
    state["routes"]["running"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| {
            r["destination"] == "0.0.0.0/0"
                && r["next-hop-address"]
                    .as_str()
                    .is_some_and(|a| a.starts_with(gateway_prefix))
        })
}

fn has_no_default_route_via(state: &Value, bad: &str) -> bool {
    !state["routes"]["running"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["next-hop-address"] == bad)
}

fn dns_servers(state: &Value) -> Vec<String> {
    state["dns-resolver"]["running"]["server"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// The node a case runs on: each case on its own node when there are enough.
async fn node_for(e2e: &E2e, i: usize) -> anyhow::Result<String> {
    let nodes = e2e.handler_nodes().await?;
    Ok(nodes[i % nodes.len()].clone())
}

/// A default route through a gateway that does not answer is rolled back.
#[tokio::test]
async fn a_bad_default_gateway_is_rolled_back() -> anyhow::Result<()> {
    let Some(e2e) = connect("rollback of a bad gateway").await else {
        return Ok(());
    };
    let node = node_for(&e2e, 0).await?;
    expect_rollback(
        &e2e,
        "e2e-rollback-gateway",
        &node,
        bad_gateway_spec(),
        "default-gateway",
        |s| has_no_default_route_via(s, "198.18.0.250") && has_default_route_via(s, ""),
    )
    .await
}

/// Removing every DNS server is rolled back.
#[tokio::test]
async fn removing_all_dns_servers_is_rolled_back() -> anyhow::Result<()> {
    let Some(e2e) = connect("rollback of no DNS").await else {
        return Ok(());
    };
    let node = node_for(&e2e, 1).await?;
    let before = dns_servers(&e2e.state(&node).await?.data["status"]["currentState"]);
    assert!(!before.is_empty(), "{node} has no DNS server to start with");
    expect_rollback(
        &e2e,
        "e2e-rollback-no-dns",
        &node,
        bad_dns_spec(&[]),
        "dns",
        |s| !dns_servers(s).is_empty(),
    )
    .await
}

/// A DNS server that does not answer, in place of the working ones, is rolled back.
#[tokio::test]
async fn a_bogus_dns_server_is_rolled_back() -> anyhow::Result<()> {
    let Some(e2e) = connect("rollback of a bogus DNS server").await else {
        return Ok(());
    };
    let node = node_for(&e2e, 2).await?;
    expect_rollback(
        &e2e,
        "e2e-rollback-bogus-dns",
        &node,
        bad_dns_spec(&["198.18.0.253"]),
        "dns",
        |s| {
            let d = dns_servers(s);
            !d.is_empty() && !d.iter().any(|d| d == "198.18.0.253")
        },
    )
    .await
}
