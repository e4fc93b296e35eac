//! The project's own ValidatingAdmissionPolicy and binding, as `deploygen` renders them into
//! `config/default/admission.yaml`, evaluated on NodeNetworkConfigurationPolicies: what it
//! allows and what it refuses, with the exact messages a cluster would print.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use knmstate_testkit::poll::eventually;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use crate::common;
use crate::support::refusal;

pub fn config(path: &str) -> Vec<Value> {
    let file = format!("{}/../config/{path}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// The stand-in with the NNCP CRD and the bundle's policy and binding; the NNCP API.
async fn installed(c: &kube::Client) -> Api<DynamicObject> {
    let crd = config("crd/nmstate.io_nodenetworkconfigurationpolicies.yaml").remove(0);
    let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(crd).unwrap(),
    )
    .await
    .unwrap();
    let mut installed = 0;
    for doc in config("default/admission.yaml") {
        match doc["kind"].as_str() {
            Some("ValidatingAdmissionPolicy") => {
                let p: ValidatingAdmissionPolicy = serde_json::from_value(doc).unwrap();
                Api::all(c.clone())
                    .create(&PostParams::default(), &p)
                    .await
                    .unwrap();
                installed += 1;
            }
            Some("ValidatingAdmissionPolicyBinding") => {
                let b: ValidatingAdmissionPolicyBinding = serde_json::from_value(doc).unwrap();
                Api::all(c.clone())
                    .create(&PostParams::default(), &b)
                    .await
                    .unwrap();
                installed += 1;
            }
            _ => {}
        }
    }
    assert_eq!(
        installed, 4,
        "the bundle has two policies (rules, node restriction) and their bindings"
    );
    let gvk = GroupVersionKind::gvk("nmstate.io", "v1", "NodeNetworkConfigurationPolicy");
    let api: Api<DynamicObject> = Api::all_with(c.clone(), &ApiResource::from_gvk(&gvk));
    eventually("policies served", Duration::from_secs(3), || async {
        api.list(&Default::default()).await.is_ok()
    })
    .await
    .expect("the NNCP CRD is served");
    api
}

fn nncp(name: &str, spec: Value) -> DynamicObject {
    let mut p = json!({
        "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": name},
    });
    p["spec"] = spec;
    serde_json::from_value(p).unwrap()
}

fn denied(name: &str, message: &str) -> String {
    format!(
        "nodenetworkconfigurationpolicies.nmstate.io \"{name}\" is forbidden: ValidatingAdmissionPolicy 'nncp-validation-policy' with binding 'nncp-validation-policy-binding' denied request: {message}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundle_policy_allows_and_refuses_as_written() {
    let server = common::server().await;
    let c = server.client().unwrap();
    let api = installed(&c).await;
    let pp = PostParams::default();
    let good = json!({
        "desiredState": {"interfaces": []},
        "nodeSelector": {"kubernetes.io/hostname": "node01"},
        "maxUnavailable": "50%",
        "capture": {"eth": "interfaces.name == \"eth0\""},
        "nodeSelectorExpressions": [{"key": "role", "operator": "Exists"}],
    });
    api.create(&pp, &nncp("good", good.clone()))
        .await
        .expect("a valid policy");
    api.create(&pp, &nncp("count", json!({"maxUnavailable": 3})))
        .await
        .expect("a count");

    let long = "a".repeat(64);
    let cases = [
        (long.as_str(), json!({}), 422, "Invalid", format!("invalid policy name: \"{long}\": must be no more than 63 characters or match label value format")),
        ("bad-selector", json!({"nodeSelector": {"k": "not a label value"}}), 422, "Invalid", "nodeSelector values must be valid label values".to_owned()),
        ("bad-percent", json!({"maxUnavailable": "150%"}), 422, "Invalid", "spec.maxUnavailable: 150% is neither a non-negative count nor a percentage like \"50%\"".to_owned()),
        ("bad-count", json!({"maxUnavailable": -1}), 422, "Invalid", "spec.maxUnavailable: -1 is neither a non-negative count nor a percentage like \"50%\"".to_owned()),
        ("bad-expr", json!({"nodeSelectorExpressions": [{"key": "role", "operator": "In"}]}), 422, "Invalid", "spec.nodeSelectorExpressions: In/NotIn need values, Exists/DoesNotExist take none".to_owned()),
    ];
    for (name, spec, code, reason, message) in cases {
        let e = api
            .create(&pp, &nncp(name, spec))
            .await
            .map_err(refusal)
            .unwrap_err();
        assert_eq!(
            e,
            (code, reason.to_owned(), denied(name, &message)),
            "{name}"
        );
    }

    let ps = PatchParams::default();
    let capture =
        Patch::Merge(json!({"spec": {"capture": {"eth": "interfaces.name == \"eth1\""}}}));
    let e = api
        .patch("good", &ps, &capture)
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(
        e,
        (
            422,
            "Invalid".to_owned(),
            denied(
                "good",
                "invalid policy operation: capture field cannot be modified"
            )
        )
    );
    let progressing = Patch::Merge(
        json!({"status": {"conditions": [{"type": "Progressing", "status": "True"}]}}),
    );
    api.patch_status("good", &ps, &progressing)
        .await
        .expect("status writes are not matched");
    let change = Patch::Merge(json!({"spec": {"maxUnavailable": "10%"}}));
    let e = api
        .patch("good", &ps, &change)
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(
        e,
        (
            403,
            "Forbidden".to_owned(),
            denied("good", "policy good is still in progress")
        )
    );
    let labels = Patch::Merge(json!({"metadata": {"labels": {"team": "net"}}}));
    api.patch("good", &ps, &labels)
        .await
        .expect("metadata only: the spec is unchanged");
    let done = Patch::Merge(
        json!({"status": {"conditions": [{"type": "Progressing", "status": "False"}]}}),
    );
    api.patch_status("good", &ps, &done).await.unwrap();
    api.patch("good", &ps, &change)
        .await
        .expect("no longer in progress");
}
