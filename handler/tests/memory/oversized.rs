//! An enactment whose status would be over the size cap (a huge desiredState): written Failing
//! without the large fields inside a slot, on at most maxUnavailable nodes, the others Aborted;
//! the slot is released and a later-named policy still applies everywhere.

use knmstate_state_engine::status_cap::MAX_ENACTMENT_STATUS_BYTES;

use super::*;

/// A policy whose desired state alone is over the cap (an interface description).
fn huge_policy(name: &str) -> Value {
    json!({
        "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": name},
        "spec": {"maxUnavailable": 1,
                 "desiredState": {"interfaces": [{"name": "eth1", "type": "ethernet", "state": "up",
                     "description": "x".repeat(MAX_ENACTMENT_STATUS_BYTES + 1)}]}}
    })
}

fn small_policy(name: &str) -> Value {
    json!({
        "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": name},
        "spec": {"desiredState": {"interfaces": [{"name": "eth1", "type": "ethernet",
            "state": "up", "mtu": 1400}]}}
    })
}

#[tokio::test]
async fn an_oversized_enactment_fails_in_a_slot_with_a_clear_message_and_frees_it() -> Result<()> {
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
    c.create_policy(huge_policy("a-huge")).await?;
    c.create_policy(small_policy("b-small")).await?;
    let list = eventually("one Failing, two Aborted", T, || {
        let api = c.enactments();
        async move {
            let list = api
                .list(&ListParams::default().labels("nmstate.io/policy=a-huge"))
                .await
                .ok()?;
            let mut states: Vec<String> = list.items.iter().filter_map(active).collect();
            states.sort();
            (states == ["Aborted", "Aborted", "Failing"]).then_some(list)
        }
    })
    .await?;
    for e in &list.items {
        let s = e.status.as_ref().expect("status");
        assert!(s.desired_state.is_none(), "the large field is not stored");
        if active(e).as_deref() == Some("Failing") {
            let failing = s.conditions.find("Failing").expect("Failing");
            assert_eq!(failing.reason, "FailedToConfigure");
            assert!(
                failing.message.contains(&format!(
                    "over the {MAX_ENACTMENT_STATUS_BYTES}-byte cap: desiredState and capturedStates are not stored"
                )),
                "{}",
                failing.message
            );
        }
    }
    // The later policy is not held back and no slot stays taken.
    for i in 1..=3 {
        wait_condition(&c, &format!("n{i}.b-small"), "Available", T).await?;
    }
    for b in &backends {
        assert_eq!(iface(&b.state(), "eth1").expect("eth1")["mtu"], 1400);
        assert!(b.checkpoints().is_empty());
    }
    for h in handlers {
        h.stop().await?;
    }
    Ok(())
}
