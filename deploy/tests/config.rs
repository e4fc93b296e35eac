//! Every manifest under `config/` parses into its typed Kubernetes object, so a typo in a field
//! name fails here rather than at `kubectl apply` time; the generated kustomize trees render
//! with `kubectl kustomize` and hold the same objects.

use k8s_openapi::api::admissionregistration::v1 as adm;
use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1 as rbac;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use knmstate_api::v1::NMState;
use knmstate_deploy::monitoring::{PrometheusRule, ServiceMonitor};
use serde::{Deserialize, Serialize};
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
        // `3600` and `3600.0` are one number (kubectl prints the schema's floats as integers).
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| v.clone(), Value::Number),
        other => other.clone(),
    }
}

/// `kustomization.yaml`: only what the generated trees use, unknown fields refused.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Kustomization {
    api_version: String,
    kind: String,
    resources: Vec<String>,
}

fn documents(text: &str, file: &Path) -> Vec<Value> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Holds one document to its type; returns its kind.
fn check_typed(doc: &Value, file: &Path) -> String {
    let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
    match kind.as_str() {
        "CustomResourceDefinition" => typed::<CustomResourceDefinition>(doc, file),
        "MutatingWebhookConfiguration" => typed::<adm::MutatingWebhookConfiguration>(doc, file),
        "ValidatingWebhookConfiguration" => typed::<adm::ValidatingWebhookConfiguration>(doc, file),
        "ValidatingAdmissionPolicy" => typed::<adm::ValidatingAdmissionPolicy>(doc, file),
        "ValidatingAdmissionPolicyBinding" => {
            typed::<adm::ValidatingAdmissionPolicyBinding>(doc, file);
        }
        "Namespace" => typed::<core::Namespace>(doc, file),
        "ServiceAccount" => typed::<core::ServiceAccount>(doc, file),
        "Service" => typed::<core::Service>(doc, file),
        "ClusterRole" => typed::<rbac::ClusterRole>(doc, file),
        "ClusterRoleBinding" => typed::<rbac::ClusterRoleBinding>(doc, file),
        "Role" => typed::<rbac::Role>(doc, file),
        "RoleBinding" => typed::<rbac::RoleBinding>(doc, file),
        "DaemonSet" => typed::<apps::DaemonSet>(doc, file),
        "Deployment" => typed::<apps::Deployment>(doc, file),
        "PodDisruptionBudget" => typed::<PodDisruptionBudget>(doc, file),
        "NetworkPolicy" => typed::<NetworkPolicy>(doc, file),
        "ServiceMonitor" => typed::<ServiceMonitor>(doc, file),
        "PrometheusRule" => typed::<PrometheusRule>(doc, file),
        "NMState" => typed::<NMState>(doc, file),
        "Kustomization" => {
            typed::<Kustomization>(doc, file);
            for r in doc["resources"].as_array().unwrap() {
                let path = file.parent().unwrap().join(r.as_str().unwrap());
                assert!(
                    path.exists(),
                    "{}: {} does not exist",
                    file.display(),
                    path.display()
                );
            }
        }
        other => panic!("{}: no typed check for kind {other:?}", file.display()),
    }
    kind
}

#[test]
fn every_config_manifest_is_a_valid_typed_object() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    let mut kinds = Vec::new();
    for file in files {
        for doc in documents(&std::fs::read_to_string(&file).unwrap(), &file) {
            kinds.push(check_typed(&doc, &file));
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

/// `kubectl kustomize <dir>`: the rendered documents.
fn kustomize(dir: &str) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config")
        .join(dir);
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(&root)
        .output()
        .expect("kubectl runs (hack/install-deps.sh checks it is installed)");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    documents(&String::from_utf8(out.stdout).unwrap(), &root)
}

fn rendered_kinds(dir: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config")
        .join(dir);
    let mut kinds: Vec<String> = kustomize(dir)
        .iter()
        .map(|d| check_typed(d, &root))
        .collect();
    kinds.sort();
    kinds
}

#[test]
fn the_default_tree_renders_the_whole_installation() {
    let kinds = rendered_kinds("default");
    let installation = knmstate_deploy::render(
        &knmstate_api::v1::NMStateSpec::default(),
        &knmstate_deploy::InstallSettings::default(),
    )
    .unwrap();
    let mut want: Vec<String> = installation
        .objects
        .iter()
        .map(knmstate_deploy::Object::kind)
        .filter(|k| k != "ServiceMonitor" && k != "PrometheusRule")
        .collect();
    want.sort();
    assert_eq!(kinds, want);
    assert_eq!(
        rendered_kinds("monitoring"),
        ["PrometheusRule", "ServiceMonitor"]
    );
}

#[test]
fn the_operator_tree_renders_crds_and_the_operator() {
    let kinds = rendered_kinds("operator");
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!(count("CustomResourceDefinition"), 4, "{kinds:?}");
    assert_eq!(count("Deployment"), 1, "{kinds:?}");
    assert_eq!(count("ClusterRole"), 1, "{kinds:?}");
    assert_eq!(count("Namespace"), 1, "{kinds:?}");
}
