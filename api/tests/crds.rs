//! The generated CRDs: freshness of `config/crd/`, versions, names, columns, and schemas.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use knmstate_api::crd;
use pretty_assertions::assert_eq;
use std::path::Path;

fn stored(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/crd")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn committed_crds_are_fresh() {
    for (file, crd) in crd::all().unwrap() {
        assert_eq!(
            stored(file),
            crd::to_yaml(&crd).unwrap(),
            "config/crd/{file} is stale: run `cargo run -p knmstate-api --bin crdgen`"
        );
    }
}

#[test]
fn stored_yaml_parses_back_to_the_generated_crd() {
    for (file, crd) in crd::all().unwrap() {
        let parsed: CustomResourceDefinition = serde_saphyr::from_str(&stored(file)).unwrap();
        assert_eq!(parsed, crd, "{file}");
    }
}

struct Expect {
    name: &'static str,
    short: Option<&'static str>,
    versions: &'static [(&'static str, bool, bool)], // (name, storage, deprecated)
    columns: &'static [&'static str],
}

#[rstest::rstest]
#[case(Expect {
    name: "nodenetworkconfigurationpolicies.nmstate.io",
    short: Some("nncp"),
    versions: &[("v1", true, false), ("v1beta1", false, true)],
    columns: &["Status", "Reason"],
})]
#[case(Expect {
    name: "nodenetworkconfigurationenactments.nmstate.io",
    short: Some("nnce"),
    versions: &[("v1beta1", true, false)],
    columns: &["Status", "Status Age", "Reason"],
})]
#[case(Expect {
    name: "nodenetworkstates.nmstate.io",
    short: Some("nns"),
    versions: &[("v1beta1", true, false)],
    columns: &[],
})]
#[case(Expect {
    name: "nmstates.nmstate.io",
    short: None,
    versions: &[("v1", true, false), ("v1beta1", false, true)],
    columns: &["Status", "Reason"],
})]
fn crd_shape(#[case] e: Expect) {
    let all = crd::all().unwrap();
    let crd = all
        .iter()
        .map(|(_, c)| c)
        .find(|c| c.metadata.name.as_deref() == Some(e.name))
        .unwrap();
    assert_eq!(crd.spec.group, "nmstate.io");
    assert_eq!(crd.spec.scope, "Cluster");
    assert_eq!(
        crd.spec.names.short_names.clone().unwrap_or_default(),
        e.short.map(|s| vec![s.to_owned()]).unwrap_or_default()
    );
    let got: Vec<_> = crd
        .spec
        .versions
        .iter()
        .map(|v| (v.name.as_str(), v.storage, v.deprecated.unwrap_or(false)))
        .collect();
    assert_eq!(got, e.versions.to_vec());
    for v in &crd.spec.versions {
        assert!(v.served);
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let cols: Vec<_> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(cols, e.columns.to_vec());
    }
    // identical schemas across versions: no conversion needed
    let schemas: Vec<_> = crd.spec.versions.iter().map(|v| &v.schema).collect();
    assert!(schemas.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn nmstate_v1beta1_carries_upstream_deprecation_warning() {
    let crd = crd::nmstate().unwrap();
    let v = crd
        .spec
        .versions
        .iter()
        .find(|v| v.name == "v1beta1")
        .unwrap();
    assert_eq!(
        v.deprecation_warning.as_deref(),
        Some("nmstate/v1beta1 deprecated, use nmstate/v1 instead")
    );
}

#[test]
fn free_form_states_and_node_selector_rules_are_in_the_schema() {
    let crd = serde_json::to_value(crd::node_network_configuration_policy().unwrap()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let ds = &spec["properties"]["desiredState"];
    assert_eq!(ds["type"], "object");
    assert_eq!(ds["x-kubernetes-preserve-unknown-fields"], true);
    let ns = &spec["properties"]["nodeSelector"];
    assert_eq!(ns["maxProperties"], 256);
    assert_eq!(
        ns["x-kubernetes-validations"][0]["message"],
        "nodeSelector keys must be valid qualified names"
    );
    assert_eq!(
        spec["properties"]["maxUnavailable"]["x-kubernetes-int-or-string"],
        true
    );
    let nnce = serde_json::to_value(crd::node_network_configuration_enactment()).unwrap();
    assert_eq!(
        nnce["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-preserve-unknown-fields"],
        true
    );
}

/// Every schema property carries a description: it is what `kubectl explain` prints.
#[test]
fn every_field_is_documented() {
    fn walk(path: &str, v: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
            for (name, s) in props {
                let p = format!("{path}.{name}");
                let is_meta = matches!(name.as_str(), "apiVersion" | "kind" | "metadata");
                if !is_meta && s.get("description").is_none() {
                    missing.push(p.clone());
                }
                walk(&p, s, missing);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(s) = v.get(key).filter(|s| s.is_object()) {
                walk(&format!("{path}[]"), s, missing);
            }
        }
    }
    let mut missing = Vec::new();
    for (file, c) in crd::all().unwrap() {
        for v in c.spec.versions {
            let s = serde_json::to_value(v.schema.unwrap().open_api_v3_schema.unwrap()).unwrap();
            walk(&format!("{file}:{}", v.name), &s, &mut missing);
        }
    }
    // k8s-openapi types (tolerations, affinity, label selector requirements) carry their own
    // upstream descriptions; everything of ours must be described.
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:#?}"
    );
}
