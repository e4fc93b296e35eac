//! The controller against the API stand-in with simulated handlers: aggregation with
//! upstream's messages, node removal, orphan cleanup, leader change.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{Cluster, eventually};
use k8s_openapi::api::core::v1::Node;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::NodeNetworkState;
use knmstate_state_engine::conditions::{EnactmentTransition as T, failed_to_configure_message};
use kube::api::Api;

fn node_name(i: usize) -> String {
    format!("node-{i:03}")
}

async fn available_since(c: &Cluster, policy: &str) -> Result<Option<String>> {
    let api: Api<NodeNetworkConfigurationPolicy> = Api::all(c.client.clone());
    let p = api.get(policy).await?;
    Ok(p.status
        .and_then(|s| s.conditions.find("Available").cloned())
        .and_then(|c| c.last_transition_time)
        .map(|t| t.0.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_over_100_nodes_progresses_then_becomes_available() -> Result<()> {
    let c = Cluster::start().await?;
    for i in 0..100 {
        let zone = if i < 10 { "a" } else { "b" };
        c.add_node(
            &node_name(i),
            &[("role", "worker"), ("zone", zone)],
            true,
            true,
        )
        .await?;
    }
    // Matches but runs no handler (no NodeNetworkState): never counted.
    c.add_node("no-handler", &[("role", "worker")], true, false)
        .await?;
    let ctl = c.start_controller("a").await?;

    let generation = c.create_policy("br1", &[("role", "worker")]).await?;
    c.wait_policy(
        "br1",
        "Progressing",
        "Policy is progressing 0/100 nodes finished",
    )
    .await?;
    for i in 0..100 {
        c.create_enactment(&node_name(i), "br1").await?;
        c.enact(&node_name(i), "br1", generation, T::Progressing, |_| {})
            .await?;
    }
    for i in 0..50 {
        c.enact(&node_name(i), "br1", generation, T::Success, |_| {})
            .await?;
    }
    c.wait_policy(
        "br1",
        "Progressing",
        "Policy is progressing 50/100 nodes finished",
    )
    .await?;
    for i in 50..100 {
        c.enact(&node_name(i), "br1", generation, T::Success, |_| {})
            .await?;
    }
    c.wait_policy("br1", "Available", "100/100 nodes successfully configured")
        .await?;
    let since = available_since(&c, "br1").await?;

    // A node going NotReady is reported, not waited for; Available does not transition.
    c.set_ready(&node_name(99), false).await?;
    c.wait_policy(
        "br1",
        "Available",
        "100/100 nodes successfully configured, 1 nodes ignored due to NotReady state",
    )
    .await?;
    assert_eq!(available_since(&c, "br1").await?, since);

    // Nothing matches: Ignored.
    c.create_policy("gpu", &[("role", "gpu")]).await?;
    c.wait_policy("gpu", "Ignored", "Policy does not match any node")
        .await?;

    // One of ten fails: Degraded at once.
    let g = c.create_policy("bond", &[("zone", "a")]).await?;
    c.wait_policy(
        "bond",
        "Progressing",
        "Policy is progressing 0/10 nodes finished",
    )
    .await?;
    for i in 0..10 {
        c.create_enactment(&node_name(i), "bond").await?;
        let t = if i == 0 {
            T::FailedToConfigure {
                message: failed_to_configure_message(&node_name(i), "", "boom"),
            }
        } else {
            T::Success
        };
        c.enact(&node_name(i), "bond", g, t, |_| {}).await?;
    }
    c.wait_policy("bond", "Degraded", "1/10 nodes failed to configure")
        .await?;
    let (_, reason, _) = c.policy_state("bond").await?.unwrap_or_default();
    assert_eq!(reason, "FailedToConfigure");
    // Transitions of the active condition are announced as events on the policy.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(c.client.clone(), "default");
    let seen = eventually("policy events", Duration::from_secs(10), || async {
        let list = events.list(&Default::default()).await?;
        let about = |policy: &str| -> Vec<(String, String)> {
            list.items
                .iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(policy))
                .map(|e| {
                    (
                        e.type_.clone().unwrap_or_default(),
                        e.reason.clone().unwrap_or_default(),
                    )
                })
                .collect()
        };
        let (bond, gpu, br1) = (about("bond"), about("gpu"), about("br1"));
        let done = bond.contains(&("Warning".into(), "FailedToConfigure".into()))
            && gpu.contains(&("Normal".into(), "NoMatchingNode".into()))
            && br1.contains(&("Normal".into(), "SuccessfullyConfigured".into()));
        Ok(done.then_some(br1))
    })
    .await?;
    // One Progressing and one Available event for a whole 100-node rollout.
    assert_eq!(seen.len(), 2, "{seen:?}");

    // A new generation: old enactments count as Unknown until handlers report again.
    let api: Api<NodeNetworkConfigurationPolicy> = Api::all(c.client.clone());
    let patch = serde_json::json!({"spec": {"desiredState": {"interfaces": [
        {"name": "bond0", "type": "bond", "state": "up"}]}}});
    let updated = api
        .patch(
            "bond",
            &Default::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await?;
    assert_eq!(updated.metadata.generation, Some(g + 1));
    c.wait_policy(
        "bond",
        "Progressing",
        "Policy is progressing 0/10 nodes finished",
    )
    .await?;

    ctl.shutdown().await;
    c.server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_selection_is_reported_as_reconcile_failed() -> Result<()> {
    let c = Cluster::start().await?;
    c.add_node("node-000", &[], true, true).await?;
    let ctl = c.start_controller("a").await?;
    // The webhook refuses this; the CRD's CEL rules are not evaluated by the stand-in.
    let api: Api<NodeNetworkConfigurationPolicy> = Api::all(c.client.clone());
    let p: NodeNetworkConfigurationPolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": "odd"},
        "spec": {"nodeSelectorExpressions": [{"key": "zone", "operator": "Near"}]}
    }))?;
    api.create(&Default::default(), &p).await?;
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(c.client.clone(), "default");
    let note = eventually("ReconcileFailed event", Duration::from_secs(10), || async {
        let list = events.list(&Default::default()).await?;
        Ok(list
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("ReconcileFailed")
                    && e.type_.as_deref() == Some("Warning")
            })
            .and_then(|e| e.note))
    })
    .await?;
    assert!(note.starts_with("select-nodes-failed: "), "{note}");
    let (_, text) = common::http_get(ctl.addr, "/metrics").await?;
    assert!(
        text.contains(r#"knmstate_controller_errors_total{category="select-nodes-failed"}"#),
        "{text}"
    );
    ctl.shutdown().await;
    c.server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_removal_and_orphans_update_counts_and_are_cleaned_up() -> Result<()> {
    let c = Cluster::start().await?;
    for i in 0..3 {
        c.add_node(&node_name(i), &[("role", "worker")], true, true)
            .await?;
    }
    let ctl = c.start_controller("a").await?;
    let g = c.create_policy("p", &[("role", "worker")]).await?;
    for i in 0..3 {
        c.create_enactment(&node_name(i), "p").await?;
        c.enact(&node_name(i), "p", g, T::Success, |_| {}).await?;
    }
    c.wait_policy("p", "Available", "3/3 nodes successfully configured")
        .await?;

    // Upstream #1098: removing a node must update the count.
    c.delete_node(&node_name(2)).await?;
    c.wait_policy("p", "Available", "2/2 nodes successfully configured")
        .await?;
    let states: Api<NodeNetworkState> = Api::all(c.client.clone());
    eventually(
        "orphans of node-002 deleted",
        Duration::from_secs(20),
        || async {
            let names = c.enactment_names().await?;
            let nns = states.get_opt(&node_name(2)).await?;
            Ok((!names.contains(&"node-002.p".to_string()) && nns.is_none()).then_some(()))
        },
    )
    .await?;

    // The node no longer matches: its enactment goes, the count follows.
    c.set_labels(&node_name(1), &[("role", "infra")]).await?;
    c.wait_policy("p", "Available", "1/1 nodes successfully configured")
        .await?;
    eventually("node-001.p deleted", Duration::from_secs(20), || async {
        let names = c.enactment_names().await?;
        Ok((!names.contains(&"node-001.p".to_string())).then_some(()))
    })
    .await?;

    // An enactment of a policy that does not exist (its node was down when it was deleted).
    c.create_enactment(&node_name(0), "ghost").await?;
    // The policy is deleted: its enactments go.
    c.delete_policy("p").await?;
    eventually(
        "every orphan enactment deleted",
        Duration::from_secs(20),
        || async {
            let names = c.enactment_names().await?;
            Ok(names.is_empty().then_some(()))
        },
    )
    .await?;
    // The live node's state is untouched.
    assert!(states.get_opt(&node_name(0)).await?.is_some());
    let nodes: Api<Node> = Api::all(c.client.clone());
    assert!(nodes.get_opt(&node_name(0)).await?.is_some());

    ctl.shutdown().await;
    c.server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replica_takes_over_when_the_leader_dies() -> Result<()> {
    let c = Cluster::start().await?;
    for i in 0..3 {
        c.add_node(&node_name(i), &[], true, true).await?;
    }
    let a = c.start_controller("a").await?;
    let b = c.start_controller("b").await?;
    let holder = eventually("a lease holder", Duration::from_secs(10), || async {
        c.lease_holder().await
    })
    .await?;
    assert!(holder == a.identity || holder == b.identity, "{holder}");
    let g = c.create_policy("p", &[]).await?;
    c.wait_policy(
        "p",
        "Progressing",
        "Policy is progressing 0/3 nodes finished",
    )
    .await?;

    // The leader crashes: no release; the other replica waits out the lease.
    let (dead, alive) = if holder == a.identity { (a, b) } else { (b, a) };
    dead.task.abort();
    for i in 0..3 {
        c.create_enactment(&node_name(i), "p").await?;
        c.enact(&node_name(i), "p", g, T::Success, |_| {}).await?;
    }
    c.wait_policy("p", "Available", "3/3 nodes successfully configured")
        .await?;
    assert_eq!(c.lease_holder().await?, Some(alive.identity.clone()));

    // It keeps the status correct as handlers report.
    c.enact(
        &node_name(0),
        "p",
        g,
        T::FailedToConfigure {
            message: "boom".into(),
        },
        |_| {},
    )
    .await?;
    c.wait_policy("p", "Degraded", "1/3 nodes failed to configure")
        .await?;

    // A graceful stop releases the Lease at once.
    alive.shutdown().await;
    eventually("lease released", Duration::from_secs(5), || async {
        Ok(c.lease_holder().await?.is_none().then_some(()))
    })
    .await?;
    c.server.shutdown().await;
    Ok(())
}
