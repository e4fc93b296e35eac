//! End-to-end: upstream's node-selection scenarios not covered by `e2e_selectors` — removing the
//! node selector reaches every node, and set-based selection (`nodeSelectorExpressions`) picks
//! exactly the nodes its requirements hold for. Needs a cluster (`KUBECONFIG`) with at least two
//! handler nodes; skips without one.

use std::time::Duration;

use knmstate_testkit::cluster::{E2e, absent, active_condition, bridge, connect, policy};
use serde_json::{Value, json};

const LABEL: &str = "knmstate-e2e/ups-selected";

/// The nodes holding an enactment of `name`, sorted.
async fn enacted(e2e: &E2e, name: &str) -> anyhow::Result<Vec<String>> {
    Ok(e2e.enactments(name).await?.into_keys().collect())
}

/// Remove `iface` from every node and `LABEL` from `nodes`.
async fn clean(e2e: &E2e, nodes: &[String], undo: &str, iface: &str) -> anyhow::Result<()> {
    for n in nodes {
        e2e.label_node(n, LABEL, None).await?;
    }
    e2e.restore(undo, None, json!({"interfaces": [absent(iface)]}))
        .await
}

/// Upstream `node_selector`: a policy whose selector matches one node is applied there only;
/// removing the selector applies it to every node ("N/N nodes successfully configured").
#[tokio::test]
async fn removing_the_node_selector_reaches_every_node() -> anyhow::Result<()> {
    let Some(e2e) = connect("node selector removed").await else {
        return Ok(());
    };
    let nodes = e2e.handler_nodes().await?;
    let node = nodes[0].clone();
    let name = "e2e-ups-unselect";
    e2e.delete_policy(name).await?;
    e2e.label_node(&node, LABEL, Some("yes")).await?;
    let desired = json!({"interfaces": [bridge("e2eunsel0")]});
    e2e.apply_policy(&policy(
        name,
        json!({"maxUnavailable": "100%", "nodeSelector": {LABEL: "yes"}, "desiredState": desired}),
    ))
    .await?;
    let outcome = async {
        let p = e2e
            .wait_policy(name, "Available", Duration::from_mins(2))
            .await?;
        let message = active_condition(&p).map(|c| c.2).unwrap_or_default();
        anyhow::ensure!(message == "1/1 nodes successfully configured", "{message}");
        let got = enacted(&e2e, name).await?;
        anyhow::ensure!(got == vec![node.clone()], "enactments on {got:?}");
        for other in &nodes[1..] {
            anyhow::ensure!(
                e2e.reported_interface(other, "e2eunsel0").await?.is_none(),
                "{other} is not selected but got the bridge"
            );
        }
        // The same policy without a node selector (server-side apply drops the field).
        e2e.apply_policy(&policy(
            name,
            json!({"maxUnavailable": "100%", "desiredState": desired}),
        ))
        .await?;
        let n = nodes.len();
        let want = format!("{n}/{n} nodes successfully configured");
        e2e.wait_until(
            &format!("{name} to be Available on all {n} nodes"),
            Duration::from_mins(2),
            || async {
                let p = e2e.nncp.get(name).await?;
                Ok(active_condition(&p)
                    .is_some_and(|(t, _, m)| t == "Available" && m == want)
                    .then_some(()))
            },
        )
        .await?;
        let got = enacted(&e2e, name).await?;
        anyhow::ensure!(got == nodes, "enactments on {got:?}, want {nodes:?}");
        for n in &nodes {
            e2e.wait_reported(n, "e2eunsel0", true).await?;
        }
        anyhow::Ok(())
    }
    .await;
    e2e.delete_policy(name).await?;
    clean(&e2e, &nodes, "e2e-ups-unselect-undo", "e2eunsel0").await?;
    outcome
}

/// Set-based selection end to end: `Exists` on a label two nodes carry together with `NotIn`
/// on the first node's hostname selects the second node only; `In` over two hostnames selects
/// exactly those two. Nodes not selected get no enactment and no bridge.
#[tokio::test]
async fn set_based_selection_picks_the_right_nodes() -> anyhow::Result<()> {
    let Some(e2e) = connect("set-based node selection").await else {
        return Ok(());
    };
    let nodes = e2e.handler_nodes().await?;
    if nodes.len() < 2 {
        knmstate_testkit::cluster::skip("set-based node selection", "fewer than two nodes");
        return Ok(());
    }
    let (first, second, last) = (&nodes[0], &nodes[1], nodes.last().expect("a node"));
    let name = "e2e-ups-setbased";
    e2e.delete_policy(name).await?;
    for n in [first, second] {
        e2e.label_node(n, LABEL, Some("yes")).await?;
    }
    let run = |exprs: Value| {
        let e2e = e2e.clone();
        async move {
            e2e.delete_policy(name).await?;
            e2e.apply_policy(&policy(
                name,
                json!({"maxUnavailable": "100%", "nodeSelectorExpressions": exprs,
                       "desiredState": {"interfaces": [bridge("e2eset0")]}}),
            ))
            .await?;
            e2e.wait_policy(name, "Available", Duration::from_mins(2))
                .await?;
            enacted(&e2e, name).await
        }
    };
    let outcome = async {
        let got = run(json!([
            {"key": LABEL, "operator": "Exists"},
            {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": [first]}
        ]))
        .await?;
        anyhow::ensure!(got == vec![second.clone()], "Exists + NotIn: {got:?}");
        e2e.wait_reported(second, "e2eset0", true).await?;
        for other in nodes.iter().filter(|n| *n != second) {
            anyhow::ensure!(
                e2e.reported_interface(other, "e2eset0").await?.is_none(),
                "{other} is not selected but got the bridge"
            );
        }

        let mut want = vec![first.clone(), last.clone()];
        want.dedup();
        let got = run(json!([
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [first, last]}
        ]))
        .await?;
        anyhow::ensure!(got == want, "In: {got:?}, want {want:?}");
        anyhow::Ok(())
    }
    .await;
    e2e.delete_policy(name).await?;
    clean(&e2e, &nodes, "e2e-ups-setbased-undo", "e2eset0").await?;
    outcome
}
