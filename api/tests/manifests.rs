//! Manifests: the examples, version equivalence, and lossless round-trips.

use knmstate_api::crd;
use knmstate_api::schema::{CrdValidator, SchemaError};
use knmstate_api::{v1, v1beta1};
use knmstate_testkit::golden::load;
use pretty_assertions::assert_eq;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The check every example passes and a broken manifest fails: typed deserialisation, the
/// generated CRD's schema, and nmstate's own parser for the desired state.
fn check_manifest(manifest: &Value) -> Result<v1::NodeNetworkConfigurationPolicy, String> {
    let validator = CrdValidator::new(&crd::node_network_configuration_policy().unwrap()).unwrap();
    validator.validate(manifest).map_err(|e| e.to_string())?;
    let policy: v1::NodeNetworkConfigurationPolicy =
        serde_json::from_value(manifest.clone()).map_err(|e| format!("deserialising: {e}"))?;
    if let Some(state) = &policy.spec.desired_state {
        serde_json::from_value::<nmstate::NetworkState>(state.to_value())
            .map_err(|e| format!("spec.desiredState: {e}"))?;
    }
    Ok(policy)
}

const EXAMPLES: [&str; 17] = [
    "ethernet",
    "per-interface-ipv4-forwarding",
    "linux-bridge",
    "linux-bridge-vlan",
    "detach-bridge-port-and-restore-eth",
    "ovs-bridge",
    "ovs-bridge-iface",
    "bond",
    "bond-vlan",
    "vlan",
    "dhcp",
    "static-ip",
    "route",
    "dns",
    "dns-cleanup",
    "lldp",
    "worker-selector",
];

#[rstest::rstest]
fn example_passes_every_check(#[files("../examples/*.yaml")] path: PathBuf) {
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let manifest = load(&path);
    let policy = check_manifest(&manifest).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(policy.metadata.name.as_deref(), Some(name.as_str()));
    assert!(policy.spec.desired_state.is_some_and(|s| !s.is_empty()));
}

#[test]
fn examples_dir_holds_exactly_the_documented_set() {
    let mut found: Vec<String> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".yaml")
                .to_owned()
        })
        .collect();
    found.sort();
    let mut want: Vec<String> = EXAMPLES
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
    want.sort();
    assert_eq!(found, want);
}

#[test]
fn broken_spec_is_rejected_naming_the_fields() {
    let manifest = load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken-max-unavailable.yaml"),
    );
    let err = check_manifest(&manifest).unwrap_err();
    assert!(err.contains("/spec/maxUnavailable"), "{err}");
    assert!(err.contains("nodeSelectr"), "{err}");
}

#[test]
fn broken_desired_state_is_rejected_by_nmstate_naming_the_field() {
    let manifest = load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken-desired-state.yaml"),
    );
    let err = check_manifest(&manifest).unwrap_err();
    assert!(err.starts_with("spec.desiredState"), "{err}");
    assert!(err.contains("adress"), "{err}");
}

#[test]
fn unserved_version_is_rejected() {
    let validator = CrdValidator::new(&crd::node_network_configuration_policy().unwrap()).unwrap();
    let err = validator
        .validate(&serde_json::json!({"apiVersion": "nmstate.io/v1alpha1", "kind": "NodeNetworkConfigurationPolicy"}))
        .unwrap_err();
    assert!(matches!(err, SchemaError::UnknownVersion(v) if v == "nmstate.io/v1alpha1"));
}

#[test]
fn v1beta1_and_v1_with_the_same_body_have_equal_specs() {
    let mut manifest = load(&examples_dir().join("worker-selector.yaml"));
    manifest["spec"]["maxUnavailable"] = "30%".into();
    manifest["spec"]["capture"] =
        serde_json::json!({"gw": "routes.running.destination==\"0.0.0.0/0\""});
    let v1: v1::NodeNetworkConfigurationPolicy = serde_json::from_value(manifest.clone()).unwrap();
    manifest["apiVersion"] = "nmstate.io/v1beta1".into();
    check_manifest(&{
        let mut m = manifest.clone();
        m["apiVersion"] = "nmstate.io/v1".into();
        m
    })
    .unwrap();
    let beta: v1beta1::NodeNetworkConfigurationPolicy = serde_json::from_value(manifest).unwrap();
    assert_eq!(
        v1::NodeNetworkConfigurationPolicySpec::from(beta.spec),
        v1.spec
    );
}

#[test]
fn unknown_desired_state_fields_round_trip() {
    let manifest = serde_json::json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": "future"},
        "spec": {"desiredState": {
            "interfaces": [{"name": "eth1", "type": "ethernet", "state": "up",
                "some-future-knob": {"nested": [1, 2, {"deep": true}]}}],
            "a-top-level-key-nobody-knows": "kept",
            "ovs-db": {"external_ids": {"k": "v"}}
        }}
    });
    let policy: v1::NodeNetworkConfigurationPolicy =
        serde_json::from_value(manifest.clone()).unwrap();
    let back = serde_json::to_value(&policy).unwrap();
    assert_eq!(
        back["spec"]["desiredState"],
        manifest["spec"]["desiredState"]
    );
    // and through YAML, as kubectl would send it
    let yaml = serde_saphyr::to_string(&policy).unwrap();
    let again: v1::NodeNetworkConfigurationPolicy = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(again.spec, policy.spec);
}

#[test]
fn enactment_status_round_trips_every_field() {
    let nnce = serde_json::json!({
        "apiVersion": "nmstate.io/v1beta1",
        "kind": "NodeNetworkConfigurationEnactment",
        "metadata": {"name": "node01.br1", "labels": {"nmstate.io/node": "node01", "nmstate.io/policy": "br1"}},
        "status": {
            "desiredState": {"interfaces": [{"name": "br1", "type": "linux-bridge"}]},
            "capturedStates": {"gw": {"state": {"routes": {"running": []}}, "metaInfo": {"version": "0", "time": "2026-01-01T00:00:00Z"}}},
            "policyGeneration": 3,
            "features": ["linux-bridge"],
            "retryCount": {"3": 1},
            "conditions": [{"type": "Available", "status": "True", "reason": "SuccessfullyConfigured",
                "message": "successfully reconciled",
                "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
        }
    });
    let e: v1beta1::NodeNetworkConfigurationEnactment =
        serde_json::from_value(nnce.clone()).unwrap();
    assert_eq!(serde_json::to_value(&e).unwrap(), nnce);
    let validator = CrdValidator::new(&crd::node_network_configuration_enactment()).unwrap();
    validator.validate(&nnce).unwrap();
}
