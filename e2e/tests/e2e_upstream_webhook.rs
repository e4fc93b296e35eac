//! End-to-end: upstream's admission scenarios not covered by `e2e_webhook` — a spec edit while
//! the policy is Progressing is refused, the mutation timestamp strictly increases on update,
//! and a policy written as `nmstate.io/v1beta1` is applied and reads back as `v1`. Needs a
//! cluster (`KUBECONFIG`); skips without one.

use std::time::Duration;

use knmstate_testkit::cluster::{
    absent, bad_gateway_spec, bridge, connect, healthy_uplink_spec, is_true, on_node, policy,
};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const STAMP: &str = "nmstate.io/webhook-mutating-timestamp";

/// The mutation timestamp of a policy, as unix nanoseconds.
fn stamp(p: &DynamicObject) -> u128 {
    let s = p
        .annotations()
        .get(STAMP)
        .unwrap_or_else(|| panic!("{} has no {STAMP} annotation", p.name_any()));
    s.parse()
        .unwrap_or_else(|e| panic!("{STAMP} is not unix nanoseconds: {s:?}: {e}"))
}

/// Upstream: "should have an annotation with newer mutation timestamp" — a policy is created
/// (stamped), then updated (the bridge made absent): the new stamp is strictly greater.
#[tokio::test]
async fn the_mutation_timestamp_strictly_increases_on_update() -> anyhow::Result<()> {
    let Some(e2e) = connect("mutation timestamp").await else {
        return Ok(());
    };
    let node = e2e.handler_nodes().await?.remove(0);
    let name = "e2e-ups-stamp";
    e2e.delete_policy(name).await?;
    let spec =
        |iface| json!({"nodeSelector": on_node(&node), "desiredState": {"interfaces": [iface]}});
    let outcome = async {
        let created = e2e
            .apply_policy(&policy(name, spec(bridge("e2estamp0"))))
            .await?;
        let first = stamp(&created);
        e2e.wait_policy(name, "Available", Duration::from_mins(2))
            .await?;
        let updated = e2e
            .apply_policy(&policy(name, spec(absent("e2estamp0"))))
            .await?;
        let second = stamp(&updated);
        anyhow::ensure!(
            second > first,
            "mutation timestamp not updated: {first} then {second}"
        );
        // The stored object carries the newer stamp too.
        let stored = stamp(&e2e.nncp.get(name).await?);
        anyhow::ensure!(stored == second, "stored {stored}, returned {second}");
        e2e.wait_policy(name, "Available", Duration::from_mins(2))
            .await?;
        e2e.wait_reported(&node, "e2estamp0", false).await
    }
    .await;
    e2e.delete_policy(name).await?;
    if outcome.is_err() {
        e2e.restore(
            "e2e-ups-stamp-undo",
            Some(on_node(&node)),
            json!({"interfaces": [absent("e2estamp0")]}),
        )
        .await?;
    }
    outcome
}

/// Upstream: a spec change is refused while the policy is in progress ("policy <name> is still
/// in progress", Forbidden). A default route through a gateway that does not answer keeps the
/// policy Progressing for the probe timeout; an edit then is refused; once the policy settled
/// (Degraded, rolled back) the same edit is accepted and the node's uplink is healthy again.
#[tokio::test]
async fn an_edit_while_progressing_is_refused() -> anyhow::Result<()> {
    let Some(e2e) = connect("edit while progressing").await else {
        return Ok(());
    };
    let node = e2e.handler_nodes().await?.remove(0);
    let name = "e2e-ups-progressing";
    e2e.delete_policy(name).await?;
    let with_node = |mut spec: serde_json::Value| {
        spec["nodeSelector"] = on_node(&node);
        spec
    };
    e2e.apply_policy(&policy(name, with_node(bad_gateway_spec())))
        .await?;
    e2e.wait_policy(name, "Progressing", Duration::from_mins(1))
        .await?;
    let refused = e2e
        .apply_policy(&policy(name, with_node(healthy_uplink_spec())))
        .await;
    // Settle before judging, so that the node is never left with the bad route.
    let settled = e2e
        .wait_until(
            &format!("{name} to settle (Degraded or Available)"),
            Duration::from_mins(4),
            || async {
                let p = e2e.nncp.get(name).await?;
                Ok((is_true(&p, "Degraded") || is_true(&p, "Available")).then_some(p))
            },
        )
        .await;
    let fixed = e2e
        .apply_policy(&policy(name, with_node(healthy_uplink_spec())))
        .await;
    let healthy = e2e
        .wait_policy(name, "Available", Duration::from_mins(2))
        .await;
    e2e.delete_policy(name).await?;

    let err = refused.expect_err("a spec change while Progressing must be refused");
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!("policy {name} is still in progress")),
        "{msg}"
    );
    assert!(
        is_true(&settled?, "Degraded"),
        "the bad gateway must not become Available"
    );
    fixed?;
    healthy?;
    Ok(())
}

/// Upstream serves policies as `v1beta1` too: a policy created through `nmstate.io/v1beta1`
/// is stamped by the webhook, becomes Available, and reads back as `nmstate.io/v1` with the
/// same spec (and still reads as `v1beta1` for old clients).
#[tokio::test]
async fn a_v1beta1_policy_is_available_and_reads_back_as_v1() -> anyhow::Result<()> {
    let Some(e2e) = connect("v1beta1 policy").await else {
        return Ok(());
    };
    let node = e2e.handler_nodes().await?.remove(0);
    let name = "e2e-ups-v1beta1";
    e2e.delete_policy(name).await?;
    let beta = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("nmstate.io", "v1beta1", "NodeNetworkConfigurationPolicy"),
        "nodenetworkconfigurationpolicies",
    );
    let beta_api: Api<DynamicObject> = Api::all_with(e2e.client.clone(), &beta);
    let spec = json!({"nodeSelector": on_node(&node),
                      "desiredState": {"interfaces": [bridge("e2ebeta0")]}});
    let mut p = DynamicObject::new(name, &beta);
    p.data = json!({ "spec": spec });
    let created = beta_api.create(&PostParams::default(), &p).await?;
    stamp(&created);
    let available = e2e
        .wait_policy(name, "Available", Duration::from_mins(2))
        .await;
    let reported = e2e.wait_reported(&node, "e2ebeta0", true).await;
    let as_v1 = e2e.nncp.get(name).await;
    let as_beta = beta_api.get(name).await;
    e2e.delete_policy(name).await?;
    e2e.restore(
        "e2e-ups-v1beta1-undo",
        Some(on_node(&node)),
        json!({"interfaces": [absent("e2ebeta0")]}),
    )
    .await?;

    available?;
    reported?;
    let as_v1 = as_v1?;
    assert_eq!(
        as_v1.types.as_ref().map(|t| t.api_version.as_str()),
        Some("nmstate.io/v1")
    );
    for field in ["nodeSelector", "desiredState"] {
        assert_eq!(as_v1.data["spec"][field], spec[field], "v1 {field}");
    }
    let as_beta = as_beta?;
    assert_eq!(
        as_beta.types.as_ref().map(|t| t.api_version.as_str()),
        Some("nmstate.io/v1beta1")
    );
    for field in ["nodeSelector", "desiredState"] {
        assert_eq!(as_beta.data["spec"][field], spec[field], "v1beta1 {field}");
    }
    Ok(())
}
