//! Unit tests of the census counts.

use super::*;
use crate::conditions::{EnactmentTransition, PolicyConditionKind, PolicyVerdict};
use knmstate_testkit::builders::{self, at};
use pretty_assertions::assert_eq;
use rstest::rstest;

fn nnce(
    node: &str,
    policy: &str,
    tr: Option<EnactmentTransition>,
    features: &[&str],
) -> NodeNetworkConfigurationEnactment {
    let mut e = builders::enactment_with_features(node, policy, features);
    if let Some(tr) = tr {
        tr.apply(&mut e.status.get_or_insert_default().conditions, &at(0));
    }
    e
}

fn policy(
    name: &str,
    kind: Option<PolicyConditionKind>,
    since: i64,
) -> NodeNetworkConfigurationPolicy {
    let mut p = builders::policy(name, &[], serde_json::json!({}));
    let status = p.status.get_or_insert_default();
    if let Some(kind) = kind {
        PolicyVerdict {
            kind,
            message: "m".into(),
        }
        .apply(&mut status.conditions, &at(since));
    }
    p
}

fn report(start: Option<i64>, rolled_back: bool, reason: &str) -> ApplyReport {
    ApplyReport {
        start_time: start.map(at),
        duration_seconds: 1.5,
        rolled_back,
        connectivity_restored: None,
        rollback_reason: reason.into(),
        probes: vec![],
        steps: None,
        slot_claim: None,
    }
}

#[test]
fn features_are_a_set_not_a_count() {
    let es = [
        nnce("a", "p1", None, &["static_route", "ovs_bond"]),
        nnce("b", "p2", None, &["static_route"]),
    ];
    assert_eq!(
        features_applied(&es),
        BTreeSet::from(["ovs_bond".to_string(), "static_route".to_string()])
    );
}

#[test]
fn interfaces_are_counted_by_type() {
    let s = builders::state(serde_json::json!({"interfaces": [
        {"name": "eth0", "type": "ethernet"}, {"name": "eth1", "type": "ethernet"},
        {"name": "br1", "type": "linux-bridge"}, {"name": "x"}
    ]}));
    let got = interfaces_by_type(&s);
    assert_eq!(got["ethernet"], 2);
    assert_eq!(got["linux-bridge"], 1);
    assert_eq!(got["unknown"], 1);
}

#[rstest]
#[case::none(serde_json::json!({}), &[])]
#[case::mixed(
    serde_json::json!({"routes": {
        "config": [{"destination": "198.18.5.0/24"}, {"destination": "2001:db8:1::/64"}],
        "running": [
            {"destination": "198.18.5.0/24"}, {"destination": "0.0.0.0/0"},
            {"destination": "198.18.0.0/24"}, {"destination": "2001:db8:1::/64"},
            {"destination": "fe80::/64"}
        ]}}),
    &[(("ipv4", "dynamic"), 2), (("ipv4", "static"), 1), (("ipv6", "dynamic"), 1), (("ipv6", "static"), 1)]
)]
fn routes_by_stack_and_type(
    #[case] s: serde_json::Value,
    #[case] want: &[((&'static str, &'static str), i64)],
) {
    let got: Vec<_> = routes_by_kind(&builders::state(s)).into_iter().collect();
    assert_eq!(got, want.to_vec());
}

#[test]
fn policies_status_always_has_four_series() {
    let ps = [
        policy("a", Some(PolicyConditionKind::Success), 0),
        policy("b", Some(PolicyConditionKind::Success), 0),
        policy("c", Some(PolicyConditionKind::FailedToConfigure), 0),
        policy("d", Some(PolicyConditionKind::Unknown), 0),
    ];
    let got = policies_by_status(&ps);
    assert_eq!(
        got,
        BTreeMap::from([
            ("Available", 2),
            ("Degraded", 1),
            ("Ignored", 0),
            ("Progressing", 0)
        ])
    );
}

#[test]
fn enactments_status_emits_all_five_per_node() {
    let es = [
        nnce("a", "p1", Some(EnactmentTransition::Success), &[]),
        nnce("a", "p2", Some(EnactmentTransition::Pending), &[]),
        nnce(
            "b",
            "p1",
            Some(EnactmentTransition::Retrying {
                message: "x".into(),
            }),
            &[],
        ),
        nnce("c", "p1", None, &[]),
    ];
    let got = enactments_by_node_status(&es);
    assert_eq!(got.len(), 15);
    assert_eq!(got[&("a".to_string(), "Available")], 1);
    assert_eq!(got[&("a".to_string(), "Pending")], 1);
    assert_eq!(got[&("a".to_string(), "Failing")], 0);
    // Retrying: Failing is the first True condition in upstream's order.
    assert_eq!(got[&("b".to_string(), "Failing")], 1);
    assert_eq!(got[&("b".to_string(), "Progressing")], 0);
    assert!(
        got.iter()
            .filter(|((n, _), _)| n == "c")
            .all(|(_, v)| *v == 0)
    );
}

#[test]
fn condition_age_is_cumulative() {
    let ps = [
        policy("a", Some(PolicyConditionKind::Success), 1_000),
        policy("b", Some(PolicyConditionKind::Success), 1_000 - 3_000),
        policy("c", Some(PolicyConditionKind::Progressing), 1_000 - 100),
    ];
    let got = policies_by_condition_age(&ps, Timestamp::from_second(1_000).unwrap());
    let get = |s: &str, le: &str| got[&(s.to_string(), le.to_string())];
    assert_eq!(get("Available", "60"), 1);
    assert_eq!(get("Available", "1800"), 1);
    assert_eq!(get("Available", "3600"), 2);
    assert_eq!(get("Available", "+Inf"), 2);
    assert_eq!(get("Progressing", "60"), 0);
    assert_eq!(get("Progressing", "300"), 1);
    assert!(!got.contains_key(&("Degraded".to_string(), "+Inf".to_string())));
}

#[test]
fn census_counts_states_per_node() {
    let nns = builders::node_network_state(
        "n1",
        serde_json::json!({
            "interfaces": [{"name": "eth0", "type": "ethernet"}],
            "routes": {"running": [{"destination": "0.0.0.0/0"}]}
        }),
    );
    let no_state = NodeNetworkState::new("n2", Default::default());
    let e = nnce(
        "n1",
        "p",
        Some(EnactmentTransition::Success),
        &["static_route"],
    );
    let p = policy("p", Some(PolicyConditionKind::Success), 0);
    let c = Census::take(
        &[&p],
        &[&e],
        &[&nns, &no_state],
        Timestamp::from_second(10).unwrap(),
    );
    assert_eq!(
        c.interfaces,
        BTreeMap::from([(("n1".to_string(), "ethernet".to_string()), 1)])
    );
    assert_eq!(
        c.routes,
        BTreeMap::from([(("n1".to_string(), "ipv4", "dynamic"), 1)])
    );
    assert_eq!(c.features, BTreeSet::from(["static_route".to_string()]));
    assert_eq!(c.policies["Available"], 1);
    assert_eq!(c.enactments[&("n1".to_string(), "Available")], 1);
    assert_eq!(
        c.condition_age[&("Available".to_string(), "60".to_string())],
        1
    );
}

#[rstest]
#[case::committed(report(Some(1), false, ""), "committed", None)]
#[case::rolled_back(
    report(Some(1), true, "probe-failed"),
    "rolled-back",
    Some("probe-failed")
)]
#[case::rolled_back_without_reason(report(Some(1), true, ""), "rolled-back", Some("unknown"))]
fn report_labels(#[case] r: ApplyReport, #[case] result: &str, #[case] reason: Option<&str>) {
    assert_eq!((apply_result(&r), rollback_reason(&r)), (result, reason));
}

#[rstest]
#[case::success(true, "success")]
#[case::failure(false, "failure")]
fn probe_labels(#[case] succeeded: bool, #[case] result: &str) {
    let probe = ProbeReport {
        succeeded,
        ..Default::default()
    };
    assert_eq!(probe_result(&probe), result);
}

#[test]
fn each_report_is_handed_out_once() {
    let mut ledger = ReportLedger::default();
    let mut e = nnce("a", "p", Some(EnactmentTransition::Success), &[]);
    let quiet = nnce("b", "p", None, &[]);
    e.status.as_mut().unwrap().last_apply = Some(report(Some(10), true, "probe-failed"));
    assert_eq!(ledger.take_new([&e, &quiet]).len(), 1);
    assert!(ledger.take_new([&e, &quiet]).is_empty());
    e.status.as_mut().unwrap().last_apply = Some(report(Some(20), false, ""));
    let new = ledger.take_new([&e]);
    assert_eq!(new.len(), 1);
    assert!(!new[0].rolled_back);
    // A report without a start time is known by its duration and outcome.
    e.status.as_mut().unwrap().last_apply = Some(report(None, false, ""));
    assert_eq!(ledger.take_new([&e]).len(), 1);
    assert!(ledger.take_new([&e]).is_empty());
    // Forgotten once the enactment is gone: a new one of the same name counts again.
    ledger.retain([]);
    assert_eq!(ledger.take_new([&e]).len(), 1);
}
