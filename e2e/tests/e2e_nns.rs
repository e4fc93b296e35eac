//! End-to-end: NodeNetworkState reporting. Needs a cluster (`KUBECONFIG`); the out-of-band test
//! also needs `KNMSTATE_E2E_NODE_EXEC`. Skips without them.

use std::time::Duration;

use knmstate_testkit::cluster::{NodeExec, connect};
use kube::ResourceExt;
use kube::api::DeleteParams;

/// Every node that runs a handler has a NodeNetworkState named after it, owned by its Node,
/// with interfaces, routes and versions.
#[tokio::test]
async fn every_node_reports_its_state() -> anyhow::Result<()> {
    let Some(e2e) = connect("NNS present").await else {
        return Ok(());
    };
    for node in e2e.handler_nodes().await? {
        let nns = e2e.state(&node).await?;
        let owner = nns
            .owner_references()
            .iter()
            .find(|o| o.kind == "Node")
            .cloned()
            .expect("owned by its Node");
        assert_eq!(owner.name, node);
        let status = &nns.data["status"];
        let ifaces = status["currentState"]["interfaces"]
            .as_array()
            .expect("interfaces");
        assert!(
            ifaces.iter().any(|i| i["type"] != "loopback"),
            "{node}: no interface besides loopback"
        );
        assert!(
            status["currentState"]["routes"]["running"].is_array(),
            "{node}: routes.running missing"
        );
        assert!(
            status["lastSuccessfulUpdateTime"].is_string(),
            "{node}: no lastSuccessfulUpdateTime"
        );
        assert!(
            status["hostNetworkManagerVersion"]
                .as_str()
                .is_some_and(|v| !v.is_empty()),
            "{node}: no hostNetworkManagerVersion"
        );
        assert!(
            status["handlerNmstateVersion"]
                .as_str()
                .is_some_and(|v| !v.is_empty()),
            "{node}: no handlerNmstateVersion"
        );
        // Address lifetimes are filtered out (they change every second).
        for i in ifaces {
            for fam in ["ipv4", "ipv6"] {
                for a in i[fam]["address"].as_array().into_iter().flatten() {
                    assert!(
                        a.get("valid-life-time").is_none(),
                        "{node}: lifetimes reported: {a}"
                    );
                }
            }
        }
    }
    Ok(())
}

/// A deleted NodeNetworkState is created again by the node's handler.
#[tokio::test]
async fn a_deleted_state_is_recreated() -> anyhow::Result<()> {
    let Some(e2e) = connect("NNS recreated").await else {
        return Ok(());
    };
    let node = e2e.handler_nodes().await?.remove(0);
    let before = e2e.state(&node).await?;
    let old_uid = before.uid().expect("uid");
    e2e.nns.delete(&node, &DeleteParams::default()).await?;
    let after = e2e
        .wait_until(
            "the NodeNetworkState to be recreated",
            Duration::from_secs(60),
            || async {
                Ok(e2e
                    .nns
                    .get_opt(&node)
                    .await?
                    .filter(|n| n.uid().as_deref() != Some(old_uid.as_str()))
                    .filter(|n| n.data["status"]["currentState"]["interfaces"].is_array()))
            },
        )
        .await?;
    assert_eq!(after.name_any(), node);
    Ok(())
}

/// Nothing changes on the node: the state is not rewritten (same resourceVersion and
/// lastSuccessfulUpdateTime). An out-of-band change (an MTU set with `ip link`) is reported,
/// and moves the timestamp.
#[tokio::test]
async fn the_state_is_written_only_on_change_and_reports_out_of_band_changes() -> anyhow::Result<()>
{
    let Some(e2e) = connect("NNS timestamp").await else {
        return Ok(());
    };
    let node = e2e.handler_nodes().await?.remove(0);
    // Let any update in flight settle, then watch for a quiet period.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = e2e.state(&node).await?;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let later = e2e.state(&node).await?;
    assert_eq!(
        before.resource_version(),
        later.resource_version(),
        "{node}: the state was rewritten while nothing changed: {} then {}",
        before.data["status"]["lastSuccessfulUpdateTime"],
        later.data["status"]["lastSuccessfulUpdateTime"]
    );
    assert_eq!(
        before.data["status"]["lastSuccessfulUpdateTime"],
        later.data["status"]["lastSuccessfulUpdateTime"]
    );

    let Some(exec) = NodeExec::from_env("out-of-band change") else {
        return Ok(());
    };
    // eth2 exists on harness nodes; on another cluster, pick an interface the test may touch.
    let iface = std::env::var("KNMSTATE_E2E_SPARE_INTERFACE").unwrap_or_else(|_| "eth2".into());
    let mtu = |v: &serde_json::Value| v["mtu"].as_u64();
    let original = e2e
        .reported_interface(&node, &iface)
        .await?
        .and_then(|i| mtu(&i))
        .expect("the spare interface is reported with an MTU");
    let changed = if original == 1400 { 1380 } else { 1400 };
    exec.run(
        &node,
        &["ip", "link", "set", &iface, "mtu", &changed.to_string()],
    )?;
    let result = e2e
        .wait_until(
            "the MTU change to be reported",
            Duration::from_secs(30),
            || async {
                let s = e2e.state(&node).await?;
                let reported = s.data["status"]["currentState"]["interfaces"]
                    .as_array()
                    .and_then(|l| l.iter().find(|i| i["name"] == iface.as_str()).cloned());
                Ok(reported.filter(|i| mtu(i) == Some(changed)).map(|_| s))
            },
        )
        .await;
    exec.run(
        &node,
        &["ip", "link", "set", &iface, "mtu", &original.to_string()],
    )?;
    let after = result?;
    assert_ne!(
        after.data["status"]["lastSuccessfulUpdateTime"],
        before.data["status"]["lastSuccessfulUpdateTime"],
        "the timestamp must move with a change"
    );
    e2e.wait_until(
        "the MTU restore to be reported",
        Duration::from_secs(30),
        || async {
            Ok(e2e
                .reported_interface(&node, &iface)
                .await?
                .filter(|i| mtu(i) == Some(original)))
        },
    )
    .await?;
    Ok(())
}
