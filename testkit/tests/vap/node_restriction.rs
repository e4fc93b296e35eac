//! The bundle's node restriction of handlers (`config/default/admission.yaml`): a handler's
//! identity — its ServiceAccount with a token bound to a pod on its node — may write only its
//! node's NodeNetworkState and enactments; the same writes by the administrator (no node in
//! its token) are not matched.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use knmstate_testkit::apiserver::auth::{BoundPod, Subject};
use knmstate_testkit::poll::eventually;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use crate::common;
use crate::project::config;
use crate::support::refusal;

pub fn api(c: &kube::Client, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("nmstate.io", "v1beta1", kind);
    Api::all_with(c.clone(), &ApiResource::from_gvk(&gvk))
}

pub fn object(kind: &str, name: &str, labels: Value) -> DynamicObject {
    let mut o =
        json!({"apiVersion": "nmstate.io/v1beta1", "kind": kind, "metadata": {"name": name}});
    o["metadata"]["labels"] = labels;
    serde_json::from_value(o).unwrap()
}

/// Installs the NNS and NNCE CRDs and every policy and binding of the bundle.
pub async fn install(c: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
    for file in [
        "crd/nmstate.io_nodenetworkstates.yaml",
        "crd/nmstate.io_nodenetworkconfigurationenactments.yaml",
    ] {
        let crd = config(file).remove(0);
        crds.create(
            &PostParams::default(),
            &serde_json::from_value(crd).unwrap(),
        )
        .await
        .unwrap();
    }
    for doc in config("default/admission.yaml") {
        match doc["kind"].as_str() {
            Some("ValidatingAdmissionPolicy") => {
                let p: ValidatingAdmissionPolicy = serde_json::from_value(doc).unwrap();
                Api::all(c.clone())
                    .create(&PostParams::default(), &p)
                    .await
                    .unwrap();
            }
            Some("ValidatingAdmissionPolicyBinding") => {
                let b: ValidatingAdmissionPolicyBinding = serde_json::from_value(doc).unwrap();
                Api::all(c.clone())
                    .create(&PostParams::default(), &b)
                    .await
                    .unwrap();
            }
            _ => {}
        }
    }
    for kind in ["NodeNetworkState", "NodeNetworkConfigurationEnactment"] {
        let a = api(c, kind);
        eventually(kind, Duration::from_secs(3), || async {
            a.list(&Default::default()).await.is_ok()
        })
        .await
        .expect("served");
    }
}

/// A client as the handler pod of `node`: the bundle's handler ServiceAccount with a token
/// bound to a pod on that node.
pub async fn handler_of(
    server: &knmstate_testkit::apiserver::ApiServer,
    admin: &kube::Client,
    node: &str,
) -> kube::Client {
    let pod = format!("nmstate-handler-{node}");
    let pod_obj: Pod = serde_json::from_value(json!({
        "metadata": {"name": pod, "namespace": "nmstate"},
        "spec": {"nodeName": node, "serviceAccountName": "nmstate-handler", "containers": [{"name": "h", "image": "x"}]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(admin.clone(), "nmstate")
        .create(&PostParams::default(), &pod_obj)
        .await
        .unwrap();
    let token = server.token_for(Subject::Pod(BoundPod {
        namespace: "nmstate".into(),
        service_account: "nmstate-handler".into(),
        pod_name: pod,
        node_name: node.into(),
        ..BoundPod::default()
    }));
    server.client_with_token(&token).unwrap()
}

pub fn refused(resource: &str, name: &str, why: &str) -> (u16, String, String) {
    (
        403,
        "Forbidden".to_owned(),
        format!(
            "{resource}.nmstate.io \"{name}\" is forbidden: ValidatingAdmissionPolicy 'nmstate-node-restriction' with binding 'nmstate-node-restriction-binding' denied request: {why}"
        ),
    )
}

/// The stand-in with the bundle's admission objects, the handler's namespace and
/// ServiceAccount: the server, the administrator's client and node2's handler's.
pub async fn with_node2() -> (
    knmstate_testkit::apiserver::ApiServer,
    kube::Client,
    kube::Client,
) {
    let server = common::server().await;
    let admin = server.client().unwrap();
    install(&admin).await;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "nmstate"}})).unwrap();
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "nmstate-handler"}})).unwrap();
    Api::<ServiceAccount>::namespaced(admin.clone(), "nmstate")
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let node2 = handler_of(&server, &admin, "node2").await;
    (server, admin, node2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_writes_only_its_own_nodes_objects() {
    let (_server, admin, node2) = with_node2().await;
    let pp = PostParams::default();
    let label = |node: &str| json!({"nmstate.io/node": node});

    // NodeNetworkStates: its own, not node3's.
    let nns = api(&node2, "NodeNetworkState");
    nns.create(&pp, &object("NodeNetworkState", "node2", json!({})))
        .await
        .expect("its own NNS");
    let e = nns
        .create(&pp, &object("NodeNetworkState", "node3", json!({})))
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(
        e,
        refused(
            "nodenetworkstates",
            "node3",
            "the handler of node node2 may write only the NodeNetworkState of its node, not node3"
        )
    );
    api(&admin, "NodeNetworkState")
        .create(&pp, &object("NodeNetworkState", "node3", json!({})))
        .await
        .expect("the administrator is not matched");
    let status = Patch::Merge(json!({"status": {"currentState": {"interfaces": []}}}));
    nns.patch_status("node2", &PatchParams::default(), &status)
        .await
        .expect("its own NNS status");
    let e = nns
        .patch_status("node3", &PatchParams::default(), &status)
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(
        e,
        refused(
            "nodenetworkstates",
            "node3",
            "the handler of node node2 may write only the NodeNetworkState of its node, not node3"
        )
    );
    let e = nns
        .delete("node3", &DeleteParams::default())
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(e.0, 403);

    // Enactments: named `node2.<policy>` and labelled for node2.
    let kind = "NodeNetworkConfigurationEnactment";
    let nnce = api(&node2, kind);
    nnce.create(&pp, &object(kind, "node2.p1", label("node2")))
        .await
        .expect("its own NNCE");
    let e = nnce
        .create(&pp, &object(kind, "node3.p1", label("node3")))
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(
        e,
        refused(
            "nodenetworkconfigurationenactments",
            "node3.p1",
            "the handler of node node2 may write only enactments named node2.<policy>, not node3.p1"
        )
    );
    let e = nnce
        .create(&pp, &object(kind, "node2.p2", label("node3")))
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(
        e,
        refused(
            "nodenetworkconfigurationenactments",
            "node2.p2",
            "the handler of node node2 may write only enactments labelled nmstate.io/node=node2"
        )
    );
    api(&admin, kind)
        .create(&pp, &object(kind, "node3.p1", label("node3")))
        .await
        .expect("the administrator is not matched");
    let e = nnce
        .patch_status("node3.p1", &PatchParams::default(), &status)
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(e.0, 403, "{e:?}");
    let e = nnce
        .delete("node3.p1", &DeleteParams::default())
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(
        e,
        refused(
            "nodenetworkconfigurationenactments",
            "node3.p1",
            "the handler of node node2 may write only enactments named node2.<policy>, not node3.p1"
        )
    );
    let relabel = Patch::Merge(json!({"metadata": {"labels": {"nmstate.io/node": "node3"}}}));
    let e = nnce
        .patch("node2.p1", &PatchParams::default(), &relabel)
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(e.0, 403);
    nnce.patch_status("node2.p1", &PatchParams::default(), &status)
        .await
        .expect("its own NNCE status");
    nnce.delete("node2.p1", &DeleteParams::default())
        .await
        .expect("its own NNCE");
}
