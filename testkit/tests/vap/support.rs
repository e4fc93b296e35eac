//! Creating policies and bindings, config maps to admit, and reading refusals.

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

/// Creates a ValidatingAdmissionPolicy with this spec.
/// Match constraints: creates of `ConfigMaps`.
pub fn on_configmaps() -> Value {
    json!({"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}]})
}

pub async fn policy(client: &kube::Client, name: &str, spec: Value) {
    let api: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let p = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("a ValidatingAdmissionPolicy");
    api.create(&PostParams::default(), &p)
        .await
        .expect("create the policy");
}

/// Creates a binding of `policy` with these actions and further spec fields.
pub async fn binding(
    client: &kube::Client,
    name: &str,
    policy: &str,
    actions: &[&str],
    more: Value,
) {
    let api: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    let mut spec = json!({"policyName": policy, "validationActions": actions});
    if let (Some(s), Some(m)) = (spec.as_object_mut(), more.as_object()) {
        s.extend(m.clone());
    }
    let b = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("a ValidatingAdmissionPolicyBinding");
    api.create(&PostParams::default(), &b)
        .await
        .expect("create the binding");
}

/// A policy named `p` on config maps for these operations with these validations, bound by
/// `b` with `Deny`.
pub async fn deny_configmaps(client: &kube::Client, ops: &[&str], validations: Value) {
    policy(
        client,
        "p",
        json!({
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ops,
                "resources": ["configmaps"],
            }]},
            "validations": validations,
        }),
    )
    .await;
    binding(client, "b", "p", &["Deny"], json!({})).await;
}

/// A ConfigMap with labels and data.
pub fn cm(name: &str, labels: Value, data: Value) -> ConfigMap {
    let mut c = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
    c["metadata"]["labels"] = labels;
    c["data"] = data;
    serde_json::from_value(c).expect("a ConfigMap")
}

/// The config maps of a namespace.
pub fn cms(client: &kube::Client, ns: &str) -> Api<ConfigMap> {
    Api::namespaced(client.clone(), ns)
}

/// Creates a ConfigMap in `ns`; `Ok(())` or the refusal as (code, reason, message).
pub async fn create(
    client: &kube::Client,
    ns: &str,
    c: &ConfigMap,
) -> Result<(), (u16, String, String)> {
    cms(client, ns)
        .create(&PostParams::default(), c)
        .await
        .map(drop)
        .map_err(refusal)
}

/// An API error's code, reason and message.
pub fn refusal(e: kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other}"),
    }
}

/// The refusal message of policy `p` with binding `b` for ConfigMap `name`.
pub fn denied(name: &str, message: &str) -> String {
    format!(
        "configmaps \"{name}\" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'b' denied request: {message}"
    )
}
