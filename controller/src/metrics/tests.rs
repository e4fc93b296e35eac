//! The registry: every family registered as documented, reports counted once, series removed
//! with their objects. The counts themselves are tested in state-engine's census.

use super::*;
use knmstate_api::shared::{ApplyReport, ProbeReport};
use knmstate_state_engine::conditions::{EnactmentTransition, PolicyConditionKind, PolicyVerdict};
use knmstate_testkit::builders::{self, at};

fn nnce(node: &str, features: &[&str]) -> NodeNetworkConfigurationEnactment {
    let mut e = builders::enactment_with_features(node, "p", features);
    EnactmentTransition::Success.apply(&mut e.status.get_or_insert_default().conditions, &at(0));
    e
}

fn available_policy() -> NodeNetworkConfigurationPolicy {
    let mut p = builders::policy("p", &[], serde_json::json!({}));
    PolicyVerdict {
        kind: PolicyConditionKind::Success,
        message: "m".into(),
    }
    .apply(&mut p.status.get_or_insert_default().conditions, &at(0));
    p
}

fn report(start: i64, rolled_back: bool) -> ApplyReport {
    ApplyReport {
        start_time: Some(at(start)),
        duration_seconds: 1.5,
        rolled_back,
        connectivity_restored: None,
        steps: None,
        slot_claim: None,
        rollback_reason: if rolled_back {
            "probe-failed".into()
        } else {
            String::new()
        },
        probes: vec![ProbeReport {
            name: "dns".into(),
            succeeded: !rolled_back,
            duration_seconds: 0.2,
            message: String::new(),
        }],
    }
}

fn assert_has(text: &str, line: &str) {
    assert!(text.contains(line), "missing {line}: {text}");
}

#[test]
fn each_report_is_counted_once() {
    let m = Metrics::new();
    let mut e = nnce("a", &[]);
    e.status.as_mut().unwrap().last_apply = Some(report(10, true));
    assert_eq!(m.observe_reports([&e]), 1);
    assert_eq!(m.observe_reports([&e]), 0);
    e.status.as_mut().unwrap().last_apply = Some(report(20, false));
    assert_eq!(m.observe_reports([&e]), 1);
    let text = m.encode();
    assert_has(&text, "knmstate_rollbacks_total{reason=\"probe-failed\"} 1");
    assert_has(
        &text,
        "knmstate_apply_duration_seconds_count{result=\"rolled-back\"} 1",
    );
    assert_has(
        &text,
        "knmstate_apply_duration_seconds_count{result=\"committed\"} 1",
    );
    assert_has(
        &text,
        "knmstate_probe_duration_seconds_count{probe=\"dns\",result=\"failure\"} 1",
    );
}

#[test]
fn refresh_removes_series_of_gone_objects() {
    let m = Metrics::new();
    let nns = builders::node_network_state(
        "n1",
        serde_json::json!({"interfaces": [{"name": "eth0", "type": "ethernet"}]}),
    );
    let e = nnce("n1", &["static_route"]);
    let p = available_policy();
    let now = Timestamp::from_second(10).unwrap();
    m.refresh(&[&p], &[&e], &[&nns], now);
    let text = m.encode();
    assert_has(
        &text,
        "kubernetes_nmstate_network_interfaces{type=\"ethernet\",node=\"n1\"} 1",
    );
    assert_has(
        &text,
        "kubernetes_nmstate_features_applied{name=\"static_route\"} 1",
    );
    assert_has(
        &text,
        "kubernetes_nmstate_enactments_status{node=\"n1\",status=\"Aborted\"} 0",
    );
    m.refresh(&[&p], &[], &[], now);
    let text = m.encode();
    for gone in [
        "kubernetes_nmstate_network_interfaces{",
        "kubernetes_nmstate_features_applied{",
        "kubernetes_nmstate_enactments_status{",
    ] {
        assert!(!text.contains(gone), "{gone}: {text}");
    }
    assert_has(
        &text,
        "kubernetes_nmstate_policies_status{status=\"Available\"} 1",
    );
    m.clear_cluster();
    assert!(!m.encode().contains("kubernetes_nmstate_policies_status{"));
}

#[test]
fn readme_table_is_current() {
    let readme = include_str!("../../README.md");
    let table = readme
        .split_once("<!-- metrics:begin -->\n")
        .and_then(|(_, rest)| rest.split_once("<!-- metrics:end -->"))
        .map(|(t, _)| t)
        .expect("README.md has the metrics markers");
    assert_eq!(
        table,
        describe(),
        "README.md is stale: paste `knmstate-controller --print-metrics` between the markers"
    );
}

#[test]
fn describe_lists_every_metric_with_help_and_matches_the_exposition() {
    let m = Metrics::new();
    let nns = builders::node_network_state(
        "n1",
        serde_json::json!({
            "interfaces": [{"name": "eth0", "type": "ethernet"}],
            "routes": {"running": [{"destination": "0.0.0.0/0"}]}
        }),
    );
    let mut e = nnce("n1", &["static_route"]);
    e.status.as_mut().unwrap().last_apply = Some(report(1, true));
    // Drifted too, so that every family has a series.
    e.status.as_mut().unwrap().drift = Some(knmstate_api::shared::DriftReport {
        paths: vec!["interfaces[br1]".into()],
        ..Default::default()
    });
    let p = available_policy();
    m.refresh(&[&p], &[&e], &[&nns], Timestamp::from_second(10).unwrap());
    m.count_error("write-policy-status-failed");
    let text = m.encode();
    let d = describe();
    for info in METRICS {
        assert!(
            d.contains(info.name) && d.contains(info.help),
            "{}",
            info.name
        );
        let family = info.registered_name();
        assert_has(&text, &format!("# HELP {family} {}", info.help));
        assert_has(&text, &format!("# TYPE {family} {}", info.kind));
    }
    // Exposition order is the documented order.
    let positions: Vec<usize> = METRICS
        .iter()
        .map(|i| {
            text.find(&format!("# HELP {} ", i.registered_name()))
                .unwrap()
        })
        .collect();
    assert!(positions.is_sorted(), "{text}");
}
