//! Benchmarks of the decision core: policy aggregation over 5,000 enactments, the slot
//! decision over 5,000 nodes, and NodeNetworkState filtering of 1,000- and 5,000-interface
//! states.

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use knmstate_api::shared::NodeNetworkConfigurationEnactmentStatus;
use knmstate_api::v1beta1::NodeNetworkConfigurationEnactment;
use knmstate_state_engine::aggregate::aggregate_policy;
use knmstate_state_engine::concurrency::SlotState;
use knmstate_state_engine::conditions::{EnactmentTransition, initial_enactment_conditions};
use knmstate_state_engine::filter::{FilterOptions, filter_state};
use knmstate_state_engine::slot::{SlotInput, SlotLedger, decide};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;

fn enactments(n: usize) -> Vec<NodeNetworkConfigurationEnactment> {
    let now = Time(Timestamp::from_second(1_000).unwrap());
    (0..n)
        .map(|i| {
            let mut conditions = initial_enactment_conditions(&now);
            let tr = match i % 10 {
                0 => EnactmentTransition::Progressing,
                1 => EnactmentTransition::Pending,
                _ => EnactmentTransition::Success,
            };
            tr.apply(&mut conditions, &now);
            let mut e = NodeNetworkConfigurationEnactment::new(
                &format!("node{i:05}.br1"),
                Default::default(),
            );
            e.metadata.labels = Some(BTreeMap::from([
                ("nmstate.io/node".to_string(), format!("node{i:05}")),
                ("nmstate.io/policy".to_string(), "br1".to_string()),
            ]));
            e.status = Some(NodeNetworkConfigurationEnactmentStatus {
                policy_generation: Some(1),
                conditions,
                ..Default::default()
            });
            e
        })
        .collect()
}

fn big_state(n: usize) -> Value {
    let mut ifaces = vec![json!({"name": "eth0", "type": "ethernet", "state": "up",
        "ipv4": {"enabled": true, "dhcp": true, "address": [{"ip": "198.18.0.10", "prefix-length": 24,
            "valid-life-time": "3600sec", "preferred-life-time": "3600sec"}]}})];
    for i in 0..n {
        ifaces.push(json!({
            "name": format!("eth0.{i}"), "type": "vlan", "state": "up", "mtu": 1500,
            "mac-address": "02:00:00:00:00:01", "accept-all-mac-addresses": false,
            "ethtool": {"feature": {"rx-checksum": true, "tx-generic-segmentation": true}},
            "lldp": {"enabled": false}, "wait-ip": "any",
            "ipv4": {"enabled": false}, "ipv6": {"enabled": true, "autoconf": false, "dhcp": false,
                "address": [{"ip": "2001:db8::1", "prefix-length": 64, "valid-life-time": "forever",
                             "preferred-life-time": "forever"}]},
            "vlan": {"base-iface": "eth0", "id": i % 4094 + 1}
        }));
        ifaces.push(json!({"name": format!("veth{i}"), "type": "veth", "state": "ignore"}));
    }
    json!({
        "hostname": {"running": "node01"},
        "interfaces": ifaces,
        "routes": {"running": [{"destination": "0.0.0.0/0", "next-hop-interface": "eth0",
                                "next-hop-address": "198.18.0.1", "table-id": 254}]},
        "dns-resolver": {"running": {"server": ["198.18.0.1"]}}
    })
}

fn benches(c: &mut Criterion) {
    let es = enactments(5_000);
    let nodes: BTreeSet<String> = (0..5_000).map(|i| format!("node{i:05}")).collect();
    c.bench_function("aggregate_policy/5000 enactments", |b| {
        b.iter(|| aggregate_policy(1, black_box(&es), &nodes, &nodes));
    });

    let states: BTreeMap<String, SlotState> = es
        .iter()
        .map(|e| {
            (
                e.metadata.labels.as_ref().unwrap()["nmstate.io/node"].clone(),
                SlotState::of(e.status.as_ref(), 1),
            )
        })
        .collect();
    let mut ledger = SlotLedger::new(1);
    ledger.holders = states
        .iter()
        .filter(|(_, s)| **s == SlotState::Progressing)
        .map(|(n, _)| n.clone())
        .collect();
    c.bench_function("decide_slot/5000 nodes", |b| {
        b.iter(|| {
            decide(&SlotInput {
                node: "node00001",
                incarnation: "a",
                generation: 1,
                ledger: Some(black_box(&ledger)),
                states: &states,
                max_unavailable: 2_500,
                now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ),
                hold_for: std::time::Duration::from_mins(10),
            })
        });
    });

    for n in [1_000, 5_000] {
        let state = big_state(n);
        c.bench_function(
            &format!("filter_state/{n} vlans + {n} unmanaged veths"),
            |b| b.iter(|| filter_state(black_box(&state), &FilterOptions::default())),
        );
    }
}

criterion_group!(engine, benches);
criterion_main!(engine);
