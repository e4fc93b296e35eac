//! End-to-end: a policy's node selector as node labels come and go. Needs a cluster
//! (`KUBECONFIG`); skips without one.

use std::time::Duration;

use knmstate_testkit::cluster::{absent, active_condition, bridge, connect, on_node, policy};
use serde_json::json;

const LABEL: &str = "knmstate-e2e/selected";

/// No node matches: Ignored, no enactment. A node gets the label: its enactment appears and the
/// policy becomes Available on that node only. The label goes: the enactment is deleted and the
/// policy is Ignored again.
#[tokio::test]
async fn enactments_follow_the_node_selector() -> anyhow::Result<()> {
    let Some(e2e) = connect("node selector").await else {
        return Ok(());
    };
    let nodes = e2e.handler_nodes().await?;
    let node = nodes.last().expect("a node").clone();
    let name = "e2e-selector";
    e2e.delete_policy(name).await?;
    for n in &nodes {
        e2e.label_node(n, LABEL, None).await?;
    }
    e2e.apply_policy(&policy(
        name,
        json!({"nodeSelector": {LABEL: "yes"}, "desiredState": {"interfaces": [bridge("e2esel0")]}}),
    ))
    .await?;
    let p = e2e
        .wait_policy(name, "Ignored", Duration::from_secs(60))
        .await?;
    let (_, reason, message) = active_condition(&p).expect("active");
    assert_eq!(reason, "NoMatchingNode");
    assert_eq!(message, "Policy does not match any node");
    assert!(e2e.enactments(name).await?.is_empty());

    // Select one node.
    e2e.label_node(&node, LABEL, Some("yes")).await?;
    let p = e2e
        .wait_policy(name, "Available", Duration::from_secs(120))
        .await?;
    assert_eq!(
        active_condition(&p).expect("active").2,
        "1/1 nodes successfully configured"
    );
    let es = e2e.enactments(name).await?;
    assert_eq!(es.keys().collect::<Vec<_>>(), vec![&node]);
    e2e.wait_reported(&node, "e2esel0", true).await?;
    for other in nodes.iter().filter(|n| **n != node) {
        assert!(
            e2e.reported_interface(other, "e2esel0").await?.is_none(),
            "{other} is not selected but got the bridge"
        );
    }

    // Unselect it.
    e2e.label_node(&node, LABEL, None).await?;
    e2e.wait_until(
        "the enactment of the unselected node to be deleted",
        Duration::from_secs(60),
        || async { Ok(e2e.enactments(name).await?.is_empty().then_some(())) },
    )
    .await?;
    e2e.wait_policy(name, "Ignored", Duration::from_secs(60))
        .await?;

    e2e.delete_policy(name).await?;
    e2e.restore(
        "e2e-selector-undo",
        Some(on_node(&node)),
        json!({"interfaces": [absent("e2esel0")]}),
    )
    .await?;
    Ok(())
}

/// A policy selecting by role only reaches the nodes with that role.
#[tokio::test]
async fn a_role_selector_reaches_only_that_role() -> anyhow::Result<()> {
    let Some(e2e) = connect("role selector").await else {
        return Ok(());
    };
    let handler_nodes = e2e.handler_nodes().await?;
    let workers: Vec<String> = e2e
        .nodes
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|n| {
            n.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key("node-role.kubernetes.io/worker"))
        })
        .filter_map(|n| n.metadata.name)
        .filter(|n| handler_nodes.contains(n))
        .collect();
    if workers.is_empty() {
        knmstate_testkit::cluster::skip(
            "role selector",
            "no node labelled node-role.kubernetes.io/worker",
        );
        return Ok(());
    }
    let name = "e2e-workers";
    e2e.delete_policy(name).await?;
    e2e.apply_policy(&policy(
        name,
        json!({"nodeSelector": {"node-role.kubernetes.io/worker": ""},
               "desiredState": {"interfaces": [bridge("e2ewrk0")]}}),
    ))
    .await?;
    let p = e2e
        .wait_policy(name, "Available", Duration::from_secs(120))
        .await?;
    assert_eq!(
        active_condition(&p).expect("active").2,
        format!("{n}/{n} nodes successfully configured", n = workers.len())
    );
    let mut enacted: Vec<String> = e2e.enactments(name).await?.into_keys().collect();
    enacted.sort();
    let mut expected = workers.clone();
    expected.sort();
    assert_eq!(enacted, expected);
    e2e.delete_policy(name).await?;
    e2e.restore(
        "e2e-workers-undo",
        Some(json!({"node-role.kubernetes.io/worker": ""})),
        json!({"interfaces": [absent("e2ewrk0")]}),
    )
    .await?;
    Ok(())
}
