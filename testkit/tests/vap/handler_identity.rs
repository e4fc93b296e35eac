//! The handler's identity under the bundle's RBAC (`config/default/rbac.yaml`) and node
//! restriction together, with authorization enforced: node2's handler writes its own objects
//! and its policies' slot ledgers; the controller's leader Lease and a policy are refused, each
//! with a message that says why.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use knmstate_testkit::apiserver::{ApiServer, Config};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use crate::node_restriction::{api, handler_of, install, object};
use crate::project::config;
use crate::support::refusal;

/// Creates every object of `docs` as `client` (RBAC objects and ServiceAccounts).
async fn create_all(client: &kube::Client, docs: Vec<Value>) {
    for doc in docs {
        let (group, version) = match doc["apiVersion"].as_str().unwrap().split_once('/') {
            Some((g, v)) => (g.to_owned(), v.to_owned()),
            None => (
                String::new(),
                doc["apiVersion"].as_str().unwrap().to_owned(),
            ),
        };
        let gvk = GroupVersionKind::gvk(&group, &version, doc["kind"].as_str().unwrap());
        let ar = ApiResource::from_gvk(&gvk);
        let obj: DynamicObject = serde_json::from_value(doc).unwrap();
        let api: Api<DynamicObject> = match obj.metadata.namespace.as_deref() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        api.create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("create {gvk:?}: {e}"));
    }
}

fn lease(name: &str) -> Lease {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": "nmstate"}})).unwrap()
}

fn vap_refusal(resource: &str, name: &str, why: &str) -> (u16, String, String) {
    (
        403,
        "Forbidden".to_owned(),
        format!(
            "{resource} \"{name}\" is forbidden: ValidatingAdmissionPolicy 'nmstate-node-restriction' with binding 'nmstate-node-restriction-binding' denied request: {why}"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node2s_handler_may_not_write_the_leader_lease_or_a_policy() {
    let server = ApiServer::start(Config {
        enforce_auth: true,
        ..Config::default()
    })
    .await
    .unwrap();
    let admin = server.client().unwrap();
    create_all(&admin, config("default/namespace.yaml")).await;
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let nncp = config("crd/nmstate.io_nodenetworkconfigurationpolicies.yaml").remove(0);
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(nncp).unwrap(),
    )
    .await
    .unwrap();
    install(&admin).await;
    create_all(&admin, config("default/rbac.yaml")).await;
    let node2 = handler_of(&server, &admin, "node2").await;
    let pp = PostParams::default();

    // The slot ledgers of the policies: created and replaced.
    let leases: Api<Lease> = Api::namespaced(node2.clone(), "nmstate");
    let mine = leases
        .create(&pp, &lease("nncp-slots-p1"))
        .await
        .expect("a slot ledger");
    leases
        .replace("nncp-slots-p1", &pp, &mine)
        .await
        .expect("a slot ledger replaced");

    // The controller's leader Lease: its Role allows updating Leases, the admission does not.
    let why = "the handler of node node2 may write only the slot-ledger Leases \
               nncp-slots-<policy>, not nmstate-controller";
    let e = leases
        .create(&pp, &lease("nmstate-controller"))
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(
        e,
        vap_refusal("leases.coordination.k8s.io", "nmstate-controller", why)
    );
    let leader = Api::<Lease>::namespaced(admin.clone(), "nmstate")
        .create(&pp, &lease("nmstate-controller"))
        .await
        .expect("the controller's identity is not matched");
    let e = leases
        .replace("nmstate-controller", &pp, &leader)
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(
        e,
        vap_refusal("leases.coordination.k8s.io", "nmstate-controller", why)
    );

    // A policy: RBAC gives the handler no write on policies.
    let policy: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": "p1"}, "spec": {"desiredState": {"interfaces": []}},
    }))
    .unwrap();
    let gvk = GroupVersionKind::gvk("nmstate.io", "v1", "NodeNetworkConfigurationPolicy");
    let policies: Api<DynamicObject> = Api::all_with(node2.clone(), &ApiResource::from_gvk(&gvk));
    let (code, reason, message) = policies
        .create(&pp, &policy)
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!((code, reason.as_str()), (403, "Forbidden"), "{message}");
    assert_eq!(
        message,
        "nodenetworkconfigurationpolicies.nmstate.io is forbidden: User \
         \"system:serviceaccount:nmstate:nmstate-handler\" cannot create resource \
         \"nodenetworkconfigurationpolicies\" in API group \"nmstate.io\" at the cluster scope"
    );

    // Its own NodeNetworkState and enactments pass RBAC and admission (node3's are refused by
    // the admission alone: node_restriction.rs).
    api(&node2, "NodeNetworkState")
        .create(&pp, &object("NodeNetworkState", "node2", json!({})))
        .await
        .expect("its own NNS under the bundle's RBAC");
    let kind = "NodeNetworkConfigurationEnactment";
    api(&node2, kind)
        .create(
            &pp,
            &object(kind, "node2.p1", json!({"nmstate.io/node": "node2"})),
        )
        .await
        .expect("its own NNCE under the bundle's RBAC");
}
