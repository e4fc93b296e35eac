//! Every manifest under `config/` parses into its typed Kubernetes object, so a typo in a field
//! name fails here rather than at `kubectl apply` time.

use k8s_openapi::api::admissionregistration::v1 as adm;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::rbac::v1 as rbac;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml") {
            out.push(p);
        }
    }
}

/// Deserialises into the typed object and checks nothing was dropped on the way: an unknown
/// field would vanish in the typed round trip.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value, file: &Path) {
    let t: T =
        serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let back = serde_json::to_value(&t).unwrap();
    assert_eq!(
        strip_nulls(&back),
        strip_nulls(doc),
        "{}: fields lost",
        file.display()
    );
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

#[test]
fn every_config_manifest_is_a_valid_typed_object() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    let mut kinds = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            match kind.as_str() {
                "CustomResourceDefinition" => typed::<CustomResourceDefinition>(&doc, &file),
                "MutatingWebhookConfiguration" => {
                    typed::<adm::MutatingWebhookConfiguration>(&doc, &file)
                }
                "ValidatingWebhookConfiguration" => {
                    typed::<adm::ValidatingWebhookConfiguration>(&doc, &file)
                }
                "ValidatingAdmissionPolicy" => typed::<adm::ValidatingAdmissionPolicy>(&doc, &file),
                "ValidatingAdmissionPolicyBinding" => {
                    typed::<adm::ValidatingAdmissionPolicyBinding>(&doc, &file)
                }
                "ServiceAccount" => typed::<core::ServiceAccount>(&doc, &file),
                "ClusterRole" => typed::<rbac::ClusterRole>(&doc, &file),
                "ClusterRoleBinding" => typed::<rbac::ClusterRoleBinding>(&doc, &file),
                "Role" => typed::<rbac::Role>(&doc, &file),
                "RoleBinding" => typed::<rbac::RoleBinding>(&doc, &file),
                other => panic!("{}: no typed check for kind {other:?}", file.display()),
            }
            kinds.push(kind);
        }
    }
    assert!(
        kinds
            .iter()
            .filter(|k| *k == "CustomResourceDefinition")
            .count()
            == 4,
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "ValidatingAdmissionPolicy"));
    assert!(kinds.iter().any(|k| k == "MutatingWebhookConfiguration"));
}
