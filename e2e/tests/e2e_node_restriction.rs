//! End-to-end: node-restricted handlers on the box, with authentication, RBAC and admission
//! enforced (`KNMSTATE_BOX_AUTH=1`). The suite takes a token of the handler's ServiceAccount
//! bound to the second node's handler Pod (as the box kubelet does for the pod itself), and with
//! it writes the third node's NodeNetworkState, enactment and slot-ledger entry, the
//! controller's leader Lease and a policy: each is refused with a message that says why; the
//! second node's own enactment and its own slot-ledger entry pass. The refusals come from the
//! installed bundle: the node-restriction ValidatingAdmissionPolicy, the webhook's slot-ledger
//! validation and RBAC. On a box without enforcement (`KNMSTATE_BOX_AUTH=0`) nothing is
//! refused, so the suite says so and checks nothing.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use knmstate_testkit::cluster::{E2e, connect, identity};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

const NS: &str = "nmstate";
const HANDLER_SA: &str = "nmstate-handler";
const LEDGER: &str = "nncp-slots-e2e-node-restriction";
const ANNOTATION: &str = "nmstate.io/slot-ledger";

/// The message and code of an API refusal.
fn refusal<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> anyhow::Result<(u16, String)> {
    match r {
        Err(kube::Error::Api(s)) => Ok((s.code, s.message)),
        other => Err(anyhow::anyhow!("expected a refusal, got {other:?}")),
    }
}

/// A client of `node`'s handler: the handler ServiceAccount's token bound to its Pod.
async fn handler_client(e2e: &E2e, node: &str) -> anyhow::Result<Client> {
    let pod = identity::pod_on(&e2e.client, NS, HANDLER_SA, node).await?;
    let token = identity::token(&e2e.client, NS, HANDLER_SA, Some(&pod)).await?;
    identity::client_with_token(token).await
}

fn nmstate_api(client: &Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("nmstate.io", "v1beta1", kind);
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

fn ledger_lease(ledger: &Value) -> Lease {
    serde_json::from_value(json!({
        "metadata": {"name": LEDGER, "namespace": NS,
                     "annotations": {ANNOTATION: ledger.to_string()}},
    }))
    .expect("a Lease")
}

/// `other` holds a slot leased for ten minutes from now.
fn held_by(other: &str) -> Value {
    let now = Timestamp::now();
    let later = now + Duration::from_mins(10);
    json!({"generation": 1, "holders": [other],
           "leases": {other: {"renewed": Time(now), "expires": Time(later), "incarnation": "e2e"}}})
}

#[tokio::test]
async fn a_handler_writes_only_its_own_nodes_objects() -> anyhow::Result<()> {
    let Some(e2e) = connect("node restriction").await else {
        return Ok(());
    };
    if std::env::var("KNMSTATE_E2E_AUTH").as_deref() != Ok("1") {
        eprintln!(
            "node restriction: this box does not enforce authentication and admission \
             (KNMSTATE_BOX_AUTH=0), so nothing is refused and nothing is checked"
        );
        return Ok(());
    }
    let nodes = e2e.handler_nodes().await?;
    anyhow::ensure!(nodes.len() >= 3, "three nodes needed: {nodes:?}");
    let (me, other) = (nodes[1].as_str(), nodes[2].as_str());
    let mine = handler_client(&e2e, me).await?;
    let pp = PostParams::default();
    let restriction = "ValidatingAdmissionPolicy 'nmstate-node-restriction'";

    // The other node's NodeNetworkState (through `/status`, the write its Role allows).
    let nns = nmstate_api(&mine, "NodeNetworkState", "nodenetworkstates");
    let label = json!({"metadata": {"labels": {"e2e-node-restriction": "x"}}});
    let (code, message) = refusal(
        nns.patch_status(other, &PatchParams::default(), &Patch::Merge(&label))
            .await,
    )?;
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains(restriction)
            && message.contains(&format!(
                "the handler of node {me} may write only the NodeNetworkState of its node, not {other}"
            )),
        "{message}"
    );

    // The other node's enactment; its own passes.
    let nnce = nmstate_api(
        &mine,
        "NodeNetworkConfigurationEnactment",
        "nodenetworkconfigurationenactments",
    );
    let enactment = |node: &str| -> anyhow::Result<DynamicObject> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "nmstate.io/v1beta1", "kind": "NodeNetworkConfigurationEnactment",
            "metadata": {"name": format!("{node}.e2e-node-restriction"),
                         "labels": {"nmstate.io/node": node}},
        }))?)
    };
    let (code, message) = refusal(nnce.create(&pp, &enactment(other)?).await)?;
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains(restriction)
            && message.contains(&format!(
                "the handler of node {me} may write only enactments named {me}.<policy>"
            )),
        "{message}"
    );
    let own = nnce.create(&pp, &enactment(me)?).await;
    let admin_nnce = nmstate_api(
        &e2e.client,
        "NodeNetworkConfigurationEnactment",
        "nodenetworkconfigurationenactments",
    );
    let _ = admin_nnce
        .delete(
            &format!("{me}.e2e-node-restriction"),
            &DeleteParams::default(),
        )
        .await;
    own.map_err(|e| anyhow::anyhow!("{me}'s own enactment refused: {e}"))?;

    // A slot ledger in which the other node holds a live slot: the handler may not free it,
    // nor prune it early, but may claim a slot of its own beside it.
    let admin_leases: Api<Lease> = Api::namespaced(e2e.client.clone(), NS);
    let _ = admin_leases.delete(LEDGER, &DeleteParams::default()).await;
    let theirs = held_by(other);
    admin_leases.create(&pp, &ledger_lease(&theirs)).await?;
    let leases: Api<Lease> = Api::namespaced(mine.clone(), NS);
    let outcome = async {
        let read = leases.get(LEDGER).await?;
        let with = |ledger: Value| {
            let mut l = read.clone();
            l.metadata
                .annotations
                .get_or_insert_default()
                .insert(ANNOTATION.into(), ledger.to_string());
            l
        };
        let freed = json!({"generation": 1, "holders": []});
        let (code, message) = refusal(leases.replace(LEDGER, &pp, &with(freed)).await)?;
        assert_eq!(code, 403, "{message}");
        assert!(
            message.contains(&format!(
                "{me} may change only its own entry of the slot ledger, and this write changes {other}'s (it removes its slot); only {other}'s handler may"
            )),
            "{message}"
        );
        let mut early = json!({"generation": 1, "holders": []});
        early["expired"] = json!({other: theirs["leases"][other]});
        let (code, message) = refusal(leases.replace(LEDGER, &pp, &with(early)).await)?;
        assert_eq!(code, 403, "{message}");
        assert!(
            message.contains(&format!("{me} prunes {other}'s slot, but {other}'s lease runs until"))
                && message.contains("only an expired holder may be pruned"),
            "{message}"
        );
        let mut claim = theirs.clone();
        claim["holders"] = json!([other, me]);
        claim["leases"][me] = theirs["leases"][other].clone();
        leases
            .replace(LEDGER, &pp, &with(claim))
            .await
            .map_err(|e| anyhow::anyhow!("{me}'s own claim refused: {e}"))?;
        anyhow::Ok(())
    }
    .await;
    let _ = admin_leases.delete(LEDGER, &DeleteParams::default()).await;
    outcome?;

    // The controller's leader Lease: the Role allows updating Leases, admission does not.
    let leader = leases.get("nmstate-controller").await?;
    let (code, message) = refusal(leases.replace("nmstate-controller", &pp, &leader).await)?;
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains(restriction)
            && message.contains(&format!(
                "the handler of node {me} may write only the slot-ledger Leases nncp-slots-<policy>, not nmstate-controller"
            )),
        "{message}"
    );

    // A policy: RBAC gives a handler no write on policies.
    let policies = nmstate_api(
        &mine,
        "NodeNetworkConfigurationPolicy",
        "nodenetworkconfigurationpolicies",
    );
    let policy: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "nmstate.io/v1beta1", "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": "e2e-node-restriction"},
        "spec": {"desiredState": {"interfaces": []}},
    }))?;
    let (code, message) = refusal(policies.create(&pp, &policy).await)?;
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains(&format!(
            "User \"system:serviceaccount:{NS}:{HANDLER_SA}\" cannot create resource \"nodenetworkconfigurationpolicies\""
        )),
        "{message}"
    );
    Ok(())
}
