//! End-to-end: the maxUnavailable slot protocol between the handler processes of the box —
//! one node at a time with `maxUnavailable: 1`, and a rollout that leaves no slot taken: every
//! holder released its entry in the policy's slot ledger (a `Lease` labelled with the policy),
//! and no ghost is left to prune. Needs a cluster (`KUBECONFIG`); skips without one.

use std::time::Duration;

use knmstate_testkit::cluster::{EnactmentWatch, bridge, connect, policy};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::{Value, json};

const ROLLOUT: Duration = Duration::from_mins(3);

/// The slot ledger of `name`: the JSON in the annotation of the Lease labelled with it.
async fn ledger(client: &kube::Client, name: &str) -> anyhow::Result<Option<Value>> {
    let gvk = GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease");
    let leases: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk));
    let list = leases
        .list(&ListParams::default().labels(&format!("nmstate.io/policy={name}")))
        .await?;
    let Some(lease) = list.items.first() else {
        return Ok(None);
    };
    let json = lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("nmstate.io/slot-ledger"))
        .ok_or_else(|| anyhow::anyhow!("the slot Lease has no ledger annotation"))?;
    Ok(Some(serde_json::from_str(json)?))
}

#[tokio::test]
async fn a_one_at_a_time_rollout_releases_every_slot() -> anyhow::Result<()> {
    let Some(e2e) = connect("slot ledger release").await else {
        return Ok(());
    };
    let nodes = e2e.handler_nodes().await?;
    let name = "e2e-rollout-release";
    e2e.delete_policy(name).await?;
    let watch = EnactmentWatch::start(&e2e, name);
    tokio::time::sleep(Duration::from_millis(300)).await;
    e2e.apply_policy(&policy(
        name,
        json!({"maxUnavailable": 1, "desiredState": {"interfaces": [bridge("e2eslot0")]}}),
    ))
    .await?;
    let outcome = e2e.wait_policy(name, "Available", ROLLOUT).await;
    let log = watch.stop();
    // A node releases its slot right after writing Available.
    let released = e2e
        .wait_until("every slot released", Duration::from_secs(30), || async {
            let l = ledger(&e2e.client, name).await?;
            Ok(l.filter(|l| l.get("holders") == Some(&json!([]))))
        })
        .await;
    let last = ledger(&e2e.client, name).await;
    e2e.delete_policy(name).await?;
    outcome?;
    let ledger = released.map_err(|e| e.context(format!("last ledger: {last:?}")))?;
    assert!(
        log.peak.get("Progressing").copied().unwrap_or(0) <= 1,
        "more than one node progressing at once: {log:?}"
    );
    assert_eq!(ledger["generation"], json!(1), "{ledger}");
    assert_eq!(
        ledger.get("holders"),
        Some(&json!([])),
        "every node released its slot once Available: {ledger}"
    );
    assert!(
        ledger.get("expired").is_none(),
        "no ghost on a healthy box: {ledger}"
    );
    assert_eq!(nodes.len(), 3, "the box has three nodes: {nodes:?}");
    Ok(())
}
