//! nmstate's offline validation at admission, case by case: what every node refuses is denied
//! with the field at fault; what only a node can decide is admitted.

use knmstate_webhook::capture::capture_problems;
use knmstate_webhook::offline::validate_desired_state;
use knmstate_webhook::rules::{Rejection, validate_create};
use rstest::rstest;
use serde_json::{Value, json};

fn eth1(ipv4: &Value) -> Value {
    json!({"interfaces": [{"name": "eth1", "type": "ethernet", "state": "up", "ipv4": ipv4}]})
}

#[rstest]
#[case::ipv4_prefix_33(
    eth1(&json!({"enabled": true, "address": [{"ip": "198.18.0.1", "prefix-length": 33}]})),
    "spec.desiredState.interfaces[0].ipv4.address[0].prefix-length"
)]
#[case::ipv6_prefix_129(
    json!({"interfaces": [{"name": "eth1", "type": "ethernet", "state": "up", "ipv6":
        {"enabled": true, "address": [{"ip": "2001:db8::1", "prefix-length": 129}]}}]}),
    "spec.desiredState.interfaces[0].ipv6.address[0].prefix-length"
)]
#[case::dns_server_300_1_1_1(
    json!({"dns-resolver": {"config": {"server": ["198.18.0.53", "300.1.1.1"]}}}),
    "spec.desiredState.dns-resolver.config.server[1]"
)]
#[case::route_destination_not_a_cidr(
    json!({"routes": {"config": [{"destination": "not-a-cidr", "next-hop-interface": "eth1"}]}}),
    "spec.desiredState.routes.config[0].destination"
)]
#[case::ipv6_address_in_ipv4(
    eth1(&json!({"enabled": true, "address": [{"ip": "2001:db8::1", "prefix-length": 64}]})),
    "spec.desiredState.interfaces[0].ipv4.address[0].ip"
)]
#[case::bridge_is_its_own_port(
    json!({"interfaces": [{"name": "br1", "type": "linux-bridge", "state": "up",
        "bridge": {"port": [{"name": "br1"}]}}]}),
    "spec.desiredState.interfaces[0].bridge.port[0].name"
)]
#[case::stp_of_the_wrong_type(
    json!({"interfaces": [{"name": "br1", "type": "linux-bridge", "state": "up",
        "bridge": {"options": {"stp": 1}, "port": [{"name": "eth1"}]}}]}),
    "spec.desiredState.interfaces[0].bridge.options.stp"
)]
#[case::undecodable_mtu(
    json!({"interfaces": [{"name": "eth1", "type": "ethernet", "mtu": "jumbo"}]}),
    "spec.desiredState.interfaces[0].mtu"
)]
fn what_every_node_refuses_is_denied_at_its_field(#[case] state: Value, #[case] field: &str) {
    let refusal = validate_desired_state(&state).unwrap_err();
    assert_eq!(refusal.field, field, "{refusal}");
    assert!(refusal.to_string().starts_with(field));
    // and through the policy rules, with the same field
    let policy = json!({"spec": {"desiredState": state}});
    let Err(Rejection::Invalid(problems)) = validate_create("p", &policy) else {
        panic!("admitted");
    };
    assert_eq!(problems[0].field, field);
}

#[rstest]
#[case::next_hop_interface_the_state_does_not_define(json!({"routes": {"config": [{
    "destination": "198.19.0.0/24", "next-hop-interface": "eth9",
    "next-hop-address": "198.18.0.1"}]}}))]
#[case::dns_without_an_interface_to_carry_it(
    json!({"dns-resolver": {"config": {"server": ["198.18.0.53"]}}})
)]
#[case::route_over_an_interface_whose_ip_the_node_keeps(json!({
    "interfaces": [{"name": "eth1", "type": "ethernet", "state": "up"}],
    "routes": {"config": [{"destination": "198.19.0.0/24", "next-hop-interface": "eth1",
        "next-hop-address": "198.18.0.1"}]}}))]
#[case::vlan_on_an_interface_of_the_node(json!({"interfaces": [{"name": "eth1.5", "type": "vlan",
    "state": "up", "vlan": {"base-iface": "eth1", "id": 5}}]}))]
#[case::bond_of_node_ports(json!({"interfaces": [{"name": "bond0", "type": "bond", "state": "up",
    "link-aggregation": {"mode": "active-backup", "port": ["eth1", "eth2"]}}]}))]
// nmstate reads an unknown type as "whatever the node has under that name" (offline: ethernet),
// so it is no refusal by itself; it is refused when its settings do not fit (next test).
#[case::unknown_type_with_ethernet_settings(json!({"interfaces": [{"name": "eth1",
    "type": "frobnicator", "state": "up", "mtu": 1500}]}))]
#[case::absent_interface(json!({"interfaces": [{"name": "eth7", "state": "absent"}]}))]
fn what_only_a_node_can_decide_is_admitted(#[case] state: Value) {
    assert_eq!(validate_desired_state(&state), Ok(()));
}

#[test]
fn an_unknown_type_whose_settings_fit_no_ethernet_is_refused_at_them() {
    let state = json!({"interfaces": [{"name": "br1", "type": "linux-brige", "state": "up",
        "bridge": {"port": [{"name": "eth1"}]}}]});
    let refusal = validate_desired_state(&state).unwrap_err();
    assert_eq!(refusal.field, "spec.desiredState.interfaces[0].bridge");
}

#[rstest]
#[case::dangling_operator("interfaces.name ==", "spec.capture.bad")]
#[case::unclosed_quote("routes.running.destination==\"0.0.0.0/0", "spec.capture.bad")]
#[case::pipe_without_source("| interfaces.name", "spec.capture.bad")]
fn a_capture_nmstate_cannot_parse_is_denied_at_its_name(#[case] expr: &str, #[case] field: &str) {
    let capture = json!({"gw": "routes.running.destination==\"0.0.0.0/0\"", "bad": expr});
    let problems = capture_problems(&capture);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].field, field);
    let policy = json!({"spec": {"capture": capture, "desiredState": {"interfaces": []}}});
    let Err(Rejection::Invalid(problems)) = validate_create("p", &policy) else {
        panic!("admitted");
    };
    assert!(problems.iter().any(|p| p.field == field));
}

#[test]
fn valid_captures_and_their_templated_state_are_admitted() {
    let policy = json!({"spec": {
        "capture": {
            "gw": "routes.running.destination==\"0.0.0.0/0\"",
            "gw-iface": "interfaces.name==capture.gw.routes.running.0.next-hop-interface"
        },
        "desiredState": {"interfaces": [{"name": "br1", "type": "linux-bridge", "state": "up",
            "ipv4": "{{ capture.gw-iface.interfaces.0.ipv4 }}"}]}
    }});
    assert_eq!(validate_create("p", &policy), Ok(()));
    assert!(
        capture_problems(&json!({"x": 7}))[0]
            .message
            .contains("is a string")
    );
    assert_eq!(capture_problems(&json!([]))[0].field, "spec.capture");
}
