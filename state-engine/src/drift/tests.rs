use super::*;
use crate::conditions::EnactmentTransition as T;
use knmstate_api::State;
use knmstate_testkit::builders::at;
use pretty_assertions::assert_eq;
use rstest::rstest;

/// A node with the linux-bridge example applied: br1 over eth1, a static route, DNS.
fn applied() -> Value {
    json!({
        "interfaces": [
            {"name": "eth0", "type": "ethernet", "state": "up", "mac-address": "02:00:00:AA:BB:CC",
             "ipv6": {"enabled": true, "address": [{"ip": "fe80::1", "prefix-length": 64}]}},
            {"name": "eth1", "type": "ethernet", "state": "up", "controller": "br1", "mtu": 1500},
            {"name": "br1", "type": "linux-bridge", "state": "up", "ipv4": {"enabled": false},
             "bridge": {"options": {"stp": {"enabled": false, "forward-delay": 15}},
                        "port": [{"name": "eth1", "stp-priority": 32}]}}
        ],
        "routes": {"config": [{"destination": "198.19.0.0/24", "next-hop-interface": "eth0",
                               "next-hop-address": "198.18.0.1", "table-id": 254}]},
        "dns-resolver": {"config": {"server": ["198.18.0.1"]}}
    })
}

fn desired() -> Value {
    json!({
        "interfaces": [
            {"name": "eth0", "type": "ethernet", "state": "up", "mac-address": "02:00:00:aa:bb:cc",
             "ipv6": {"enabled": true, "address": []}},
            {"name": "br1", "type": "linux-bridge", "state": "up", "ipv4": {"enabled": false},
             "bridge": {"options": {"stp": {"enabled": false}}, "port": [{"name": "eth1"}]}},
            {"name": "dummy9", "type": "dummy", "state": "absent"}
        ],
        "routes": {"config": [{"destination": "198.19.0.0/24", "next-hop-interface": "eth0",
                               "next-hop-address": "198.18.0.1"}]},
        "dns-resolver": {"config": {"server": ["198.18.0.1"]}}
    })
}

/// `applied()` with `edit` done to it by hand.
fn edited(edit: impl FnOnce(&mut Value)) -> Value {
    let mut v = applied();
    edit(&mut v);
    v
}

#[rstest]
#[case::as_applied(applied(), &[])]
#[case::port_detached(
    edited(|v| { v["interfaces"][2]["bridge"]["port"] = json!([]); v["interfaces"][1].as_object_mut().unwrap().remove("controller"); }),
    &["interfaces[br1].bridge.port"])]
#[case::stp_switched_on(
    edited(|v| v["interfaces"][2]["bridge"]["options"]["stp"]["enabled"] = json!(true)),
    &["interfaces[br1].bridge.options.stp.enabled"])]
#[case::bridge_deleted(
    edited(|v| { v["interfaces"].as_array_mut().unwrap().remove(2); }),
    &["interfaces[br1]"])]
#[case::absent_interface_back(
    edited(|v| v["interfaces"].as_array_mut().unwrap().push(json!({"name": "dummy9", "type": "dummy", "state": "up"}))),
    &["interfaces[dummy9]"])]
#[case::address_added_on_a_bridge(
    edited(|v| v["interfaces"][2]["ipv4"] = json!({"enabled": true, "address": [{"ip": "198.18.5.1", "prefix-length": 24}]})),
    &["interfaces[br1].ipv4.enabled"])]
#[case::route_deleted(edited(|v| v["routes"]["config"] = json!([])), &["routes.config[198.19.0.0/24]"])]
#[case::dns_changed(
    edited(|v| v["dns-resolver"]["config"]["server"] = json!(["2001:db8::53"])),
    &["dns-resolver.config"])]
#[case::bridge_down_and_route_gone(
    edited(|v| { v["interfaces"][2]["state"] = json!("down"); v["routes"]["config"] = json!([]); }),
    &["interfaces[br1].state", "routes.config[198.19.0.0/24]"])]
fn paths(#[case] current: Value, #[case] expected: &[&str]) {
    let got = differing_paths(&desired(), &current);
    assert_eq!(got, expected);
    // The same rule as "the node still satisfies the policy" in the apply decision.
    assert_eq!(
        got.is_empty(),
        crate::plan::plan(&current, &desired()).is_empty()
    );
}

#[test]
fn keys_the_desired_state_does_not_write_may_differ() {
    let current = edited(|v| {
        v["interfaces"][1]["mtu"] = json!(9000);
        v["interfaces"][2]["bridge"]["options"]["stp"]["forward-delay"] = json!(4);
    });
    assert!(differing_paths(&desired(), &current).is_empty());
}

fn status(
    generation: i64,
    t: Option<T>,
    desired: Value,
) -> NodeNetworkConfigurationEnactmentStatus {
    let mut s = NodeNetworkConfigurationEnactmentStatus {
        policy_generation: Some(generation),
        desired_state: State::try_from(desired).ok(),
        ..Default::default()
    };
    if let Some(t) = t {
        t.apply(&mut s.conditions, &at(0));
    }
    s
}

#[rstest]
#[case::available(status(2, Some(T::Success), desired()), true)]
#[case::other_generation(status(1, Some(T::Success), desired()), false)]
#[case::progressing(status(2, Some(T::Progressing), desired()), false)]
#[case::failed(status(2, Some(T::FailedToConfigure { message: "x".into() }), desired()), false)]
#[case::dry_run(status(2, Some(T::Planned { message: "p".into() }), desired()), false)]
#[case::empty_desired_state(status(2, Some(T::Success), json!({})), false)]
#[case::no_condition(status(2, None, desired()), false)]
fn which_enactments_are_watched(
    #[case] s: NodeNetworkConfigurationEnactmentStatus,
    #[case] expected: bool,
) {
    assert_eq!(watched(Some(&s), 2), expected);
}

#[test]
fn the_report_keeps_its_start_while_the_node_stays_drifted() {
    let paths = vec!["interfaces[br1].bridge.port".to_owned()];
    let first = next_report(None, paths.clone(), false, &at(10)).unwrap();
    assert_eq!(first.since, Some(at(10)));
    assert!(!first.reapply);
    let more = vec!["dns-resolver.config".to_owned(), paths[0].clone()];
    let later = next_report(Some(&first), more.clone(), true, &at(20)).unwrap();
    assert_eq!(
        (later.since, later.paths, later.reapply),
        (Some(at(10)), more, true)
    );
    assert_eq!(next_report(Some(&first), Vec::new(), false, &at(30)), None);
}

#[test]
fn a_report_differs_only_by_its_paths() {
    let r = next_report(None, vec!["a".into()], false, &at(0)).unwrap();
    assert!(!report_differs(Some(&r), &["a".to_owned()]));
    assert!(report_differs(Some(&r), &[]));
    assert!(report_differs(None, &["a".to_owned()]));
    assert!(!report_differs(None, &[]));
}

#[test]
fn an_enactment_is_looked_at_when_its_report_is_out_of_date() {
    let detached = edited(|v| v["interfaces"][2]["bridge"]["port"] = json!([]));
    let s = status(2, Some(T::Success), desired());
    assert!(!needs_look(Some(&s), 2, &applied()));
    assert!(needs_look(Some(&s), 2, &detached));
    let mut reported = s.clone();
    reported.drift = next_report(None, differing_paths(&desired(), &detached), false, &at(0));
    assert!(!needs_look(Some(&reported), 2, &detached));
    assert!(
        needs_look(Some(&reported), 2, &applied()),
        "repaired: the report goes"
    );
    // Applying again (no longer Available) with a report left: looked at once it settles.
    let mut applying = reported.clone();
    T::Progressing.apply(&mut applying.conditions, &at(1));
    assert!(needs_look(Some(&applying), 2, &applied()));
    assert!(!needs_look(
        Some(&status(2, Some(T::Progressing), desired())),
        2,
        &detached
    ));
    assert!(!needs_look(None, 2, &detached));
}

#[test]
fn drifted_enactments_by_node_and_policy() {
    let mut a = knmstate_testkit::builders::enactment("n1", "br");
    let b = knmstate_testkit::builders::enactment("n2", "br");
    let mut s = status(1, Some(T::Success), desired());
    s.drift = next_report(None, vec!["interfaces[br1]".into()], false, &at(0));
    a.status = Some(s);
    let both = [a, b];
    assert_eq!(drifted(&both).collect::<Vec<_>>(), [("n1", "br")]);
}
