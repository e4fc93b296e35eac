//! A desired state nmstate rejects fails inside a slot: with `maxUnavailable: 1` exactly one
//! node fails and the others abort (nmstate's feature statistics, which fail on such a state,
//! never fail the policy).

use knmstate_state_engine::aggregate::{EnactmentCounts, decide};

use super::*;

/// An ethernet interface no node has: only the apply can find that out.
fn missing_ethernet_policy(name: &str) -> Value {
    json!({
        "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": name},
        "spec": {"maxUnavailable": 1,
                 "desiredState": {"interfaces": [{"name": "eth9", "type": "ethernet", "state": "up",
            "ipv4": {"enabled": true, "dhcp": false,
                     "address": [{"ip": "198.18.9.1", "prefix-length": 24}]}}]}}
    })
}

#[tokio::test]
async fn a_rejected_desired_state_fails_on_max_unavailable_nodes_and_aborts_the_others()
-> Result<()> {
    let c = Cluster::start().await?;
    let mut handlers = Vec::new();
    let mut backends = Vec::new();
    for i in 1..=3 {
        let node = format!("n{i}");
        c.add_node(&node, &[]).await?;
        let b = MemoryBackend::harness_like(&format!("198.18.0.10{i}"));
        handlers.push(c.start_handler(&node, b.clone(), Duration::from_millis(100)));
        backends.push(b);
    }
    let before: Vec<Value> = backends.iter().map(MemoryBackend::state).collect();
    c.create_policy(missing_ethernet_policy("missing-nic"))
        .await?;
    let list = eventually("one Failing, two Aborted", T, || {
        let api = c.enactments();
        async move {
            let list = api.list(&ListParams::default()).await.ok()?;
            let mut states: Vec<String> = list.items.iter().filter_map(active).collect();
            states.sort();
            (states == ["Aborted", "Aborted", "Failing"]).then_some(list)
        }
    })
    .await?;
    let mut counts = EnactmentCounts::default();
    for e in &list.items {
        let s = e.status.as_ref().expect("status");
        counts.add_conditions(&s.conditions);
        if active(e).as_deref() == Some("Failing") {
            let failing = s.conditions.find("Failing").expect("Failing");
            assert_eq!(failing.reason, "FailedToConfigure");
            assert!(
                failing.message.contains("eth9"),
                "the apply's error names the interface: {}",
                failing.message
            );
            assert!(
                !failing.message.contains("feature statistics"),
                "{}",
                failing.message
            );
            assert!(
                s.last_apply.is_some(),
                "the failure came from an apply inside the slot"
            );
            assert!(s.features.is_empty(), "{:?}", s.features);
        } else {
            assert!(s.last_apply.is_none(), "an aborted node never applied");
        }
    }
    assert_eq!(
        decide(&counts, 3, 3).message,
        "1/3 nodes failed to configure, 2 nodes aborted configuration"
    );
    // No node changed, nothing is pending.
    for (b, was) in backends.iter().zip(&before) {
        assert_eq!(&b.state(), was);
        assert!(b.checkpoints().is_empty());
    }
    for h in handlers {
        h.stop().await?;
    }
    Ok(())
}
