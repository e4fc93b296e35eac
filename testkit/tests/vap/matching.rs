//! Which requests a policy applies to: resource rules (operations, resource names,
//! exclusions), namespace and object selectors, a binding's narrowing, matchConditions.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::common;
use crate::support::{binding, cm, cms, create, denied, on_configmaps, policy, refusal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_rules_select_operations_and_names() {
    let server = common::server().await;
    let c = server.client().unwrap();
    policy(
        &c,
        "p",
        json!({
            "matchConstraints": {
                "resourceRules": [{
                    "apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE", "DELETE"],
                    "resources": ["configmaps"], "resourceNames": ["guarded", "spared"],
                }],
                "excludeResourceRules": [{
                    "apiGroups": [""], "apiVersions": ["*"], "operations": ["*"],
                    "resources": ["configmaps"], "resourceNames": ["spared"],
                }],
            },
            "validations": [{"expression": "false", "message": "guarded"}],
        }),
    )
    .await;
    binding(&c, "b", "p", &["Deny"], json!({})).await;
    for n in ["guarded", "spared", "free"] {
        create(&c, "default", &cm(n, json!({}), json!({})))
            .await
            .expect("CREATE is not matched");
    }
    let patch = Patch::Merge(json!({"data": {"x": "1"}}));
    let api = cms(&c, "default");
    let e = api
        .patch("guarded", &PatchParams::default(), &patch)
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(e, (422, "Invalid".to_owned(), denied("guarded", "guarded")));
    api.patch("spared", &PatchParams::default(), &patch)
        .await
        .expect("excluded by name");
    api.patch("free", &PatchParams::default(), &patch)
        .await
        .expect("not a listed name");
    let e = api
        .delete("guarded", &DeleteParams::default())
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(e.2, denied("guarded", "guarded"));
    api.delete("free", &DeleteParams::default())
        .await
        .expect("not a listed name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_and_object_selectors() {
    let server = common::server().await;
    let c = server.client().unwrap();
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "prod", "labels": {"env": "prod"}}}))
            .unwrap();
    Api::<Namespace>::all(c.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    policy(
        &c,
        "p",
        json!({
            "matchConstraints": {
                "resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}],
                "namespaceSelector": {"matchLabels": {"env": "prod"}},
                "objectSelector": {"matchExpressions": [{"key": "guard", "operator": "Exists"}]},
            },
            "validations": [{"expression": "false", "message": "no guarded maps in prod"}],
        }),
    )
    .await;
    binding(&c, "b", "p", &["Deny"], json!({})).await;
    let guarded = cm("g", json!({"guard": "yes"}), json!({}));
    let e = create(&c, "prod", &guarded).await.unwrap_err();
    assert_eq!(e.2, denied("g", "no guarded maps in prod"));
    create(&c, "default", &guarded)
        .await
        .expect("namespace not selected");
    create(&c, "prod", &cm("u", json!({}), json!({})))
        .await
        .expect("object not selected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_narrows_and_unbound_policies_do_nothing() {
    let server = common::server().await;
    let c = server.client().unwrap();
    let rules = json!({"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}]});
    policy(&c, "p", json!({"matchConstraints": rules, "validations": [{"expression": "false", "message": "team a only"}]})).await;
    policy(
        &c,
        "unbound",
        json!({"matchConstraints": rules, "validations": [{"expression": "false"}]}),
    )
    .await;
    binding(&c, "other", "missing-policy", &["Deny"], json!({})).await;
    create(&c, "default", &cm("free", json!({"team": "a"}), json!({})))
        .await
        .expect("no binding of p yet");
    binding(
        &c,
        "b",
        "p",
        &["Deny"],
        json!({"matchResources": {"objectSelector": {"matchLabels": {"team": "b"}}}}),
    )
    .await;
    create(&c, "default", &cm("a", json!({"team": "a"}), json!({})))
        .await
        .expect("outside the binding");
    let e = create(&c, "default", &cm("b1", json!({"team": "b"}), json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.2, denied("b1", "team a only"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_conditions_must_all_hold() {
    let server = common::server().await;
    let c = server.client().unwrap();
    policy(
        &c,
        "p",
        json!({
            "matchConstraints": on_configmaps(),
            "matchConditions": [
                {"name": "x-prefix", "expression": "object.metadata.name.startsWith('x')"},
                {"name": "not-exempt", "expression": "!('exempt' in object.metadata.labels)"},
            ],
            "validations": [{"expression": "has(object.data) && 'owner' in object.data", "message": "x maps need an owner"}],
        }),
    )
    .await;
    binding(&c, "b", "p", &["Deny"], json!({})).await;
    let e = create(&c, "default", &cm("x1", json!({}), json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.2, denied("x1", "x maps need an owner"));
    create(&c, "default", &cm("x2", json!({}), json!({"owner": "me"})))
        .await
        .expect("valid");
    create(&c, "default", &cm("y1", json!({}), json!({})))
        .await
        .expect("first condition false");
    create(&c, "default", &cm("x3", json!({"exempt": ""}), json!({})))
        .await
        .expect("second condition false");
}
