//! Slots whose holder died: a node that dies for good mid-apply keeps its slot until its
//! lease expires, then the next claimant prunes it (enactment Aborted, `SlotExpired` event)
//! and the rollout completes on the others; a handler restarted while holding its slot
//! resumes it with a `HandlerRestarted` event.

use std::time::Instant;

use knmstate_state_engine::rollback::HandlerDefaults;
use knmstate_state_engine::slot::SlotTiming;

use super::*;

/// Short checkpoints and probes, so that a lease runs out within a test.
fn short_leases(c: &Cluster, node: &str) -> knmstate_handler::config::HandlerConfig {
    let mut config = c.config(node);
    config.defaults = HandlerDefaults {
        probe_timeout: Duration::from_secs(1),
        checkpoint_timeout: Duration::from_secs(2),
        ..config.defaults
    };
    config
}

fn start(c: &Cluster, node: &str, b: &MemoryBackend, hold: Duration) -> Running {
    c.start_handler_with(
        short_leases(c, node),
        b.clone(),
        Arc::new(ModelProbes { hold }),
    )
}

/// Whether some Warning event on a policy has `reason` and a note containing `part`.
async fn event_seen(c: &Cluster, reason: &str, part: &str) -> Result<()> {
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    eventually(&format!("a {reason} event"), T, || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some(reason)
                        && e.note.as_deref().is_some_and(|n| n.contains(part))
                })
                .then_some(())
        }
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_node_dead_for_good_mid_apply_frees_its_slot_once_its_lease_expires() -> Result<()> {
    let c = Cluster::start().await?;
    let mut policy = example("linux-bridge.yaml")?;
    policy["spec"]["maxUnavailable"] = json!(1);
    let backends: Vec<MemoryBackend> = (1..=3)
        .map(|i| MemoryBackend::harness_like(&format!("198.18.0.10{i}")))
        .collect();
    for i in 1..=3 {
        c.add_node(&format!("n{i}"), &[]).await?;
    }
    // n1 alone first: it takes the only slot, and its probes hang.
    let n1 = start(&c, "n1", &backends[0], Duration::from_mins(1));
    c.create_policy(policy).await?;
    wait_condition(&c, "n1.linux-bridge", "Progressing", T).await?;
    eventually("n1 holds a checkpoint", T, || {
        let b = backends[0].clone();
        async move { (!b.checkpoints().is_empty()).then_some(()) }
    })
    .await?;
    // It dies for good: its handler never comes back.
    n1.kill().await;
    let died = Instant::now();
    let others: Vec<Running> = (2..=3)
        .map(|i| {
            start(
                &c,
                &format!("n{i}"),
                &backends[i - 1],
                Duration::from_millis(100),
            )
        })
        .collect();
    // While its lease holds (at least the checkpoint timeout), nobody else applies.
    let lease = SlotTiming::new(Duration::from_secs(2), Duration::from_millis(400)).hold_for;
    wait_condition(&c, "n2.linux-bridge", "Pending", T).await?;
    wait_condition(&c, "n3.linux-bridge", "Pending", T).await?;
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(died.elapsed())).await;
    for b in &backends[1..] {
        assert!(
            b.checkpoints().is_empty(),
            "nobody applied within the lease"
        );
        assert!(iface(&b.state(), "br1").is_none());
    }
    // Then the next claimant prunes it and the rollout completes on the others.
    let long = lease * 2 + T;
    let ghost = wait_condition(&c, "n1.linux-bridge", "Aborted", long).await?;
    assert!(
        died.elapsed() >= Duration::from_secs(2),
        "pruned after the checkpoint timeout at the earliest: {:?}",
        died.elapsed()
    );
    let message = ghost
        .status
        .expect("status")
        .conditions
        .find("Aborted")
        .expect("Aborted")
        .message
        .clone();
    assert!(
        message.starts_with("reconciliation of enactment \"n1.linux-bridge\" has aborted: its handler did not renew the maxUnavailable slot since "),
        "{message}"
    );
    wait_condition(&c, "n2.linux-bridge", "Available", long).await?;
    wait_condition(&c, "n3.linux-bridge", "Available", long).await?;
    event_seen(&c, "SlotExpired", "n1.linux-bridge").await?;
    for h in others {
        h.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_handler_restarted_while_holding_its_slot_resumes_it_with_an_event() -> Result<()> {
    let c = Cluster::start().await?;
    let mut policy = example("linux-bridge.yaml")?;
    policy["spec"]["maxUnavailable"] = json!(1);
    c.add_node("n1", &[]).await?;
    c.add_node("n2", &[]).await?;
    let b1 = MemoryBackend::harness_like("198.18.0.101");
    let b2 = MemoryBackend::harness_like("198.18.0.102");
    let h1 = start(&c, "n1", &b1, Duration::from_mins(1));
    c.create_policy(policy).await?;
    eventually("n1 holds a checkpoint", T, || {
        let b = b1.clone();
        async move { (!b.checkpoints().is_empty()).then_some(()) }
    })
    .await?;
    h1.kill().await;
    b1.crash();
    knmstate_handler::start::recover(&b1).await?;
    let h1 = start(&c, "n1", &b1, Duration::ZERO);
    let h2 = start(&c, "n2", &b2, Duration::ZERO);
    wait_condition(&c, "n1.linux-bridge", "Available", T).await?;
    wait_condition(&c, "n2.linux-bridge", "Available", T).await?;
    event_seen(&c, "HandlerRestarted", "the handler of node n1 restarted").await?;
    h1.stop().await?;
    h2.stop().await
}

#[tokio::test]
async fn a_live_holder_retrying_for_longer_than_a_lease_keeps_its_slot() -> Result<()> {
    let c = Cluster::start().await?;
    let mut policy = example("linux-bridge.yaml")?;
    policy["spec"]["maxUnavailable"] = json!(1);
    c.add_node("n1", &[]).await?;
    c.add_node("n2", &[]).await?;
    let b1 = MemoryBackend::harness_like("198.18.0.101");
    let b2 = MemoryBackend::harness_like("198.18.0.102");
    let stop = Arc::new(AtomicBool::new(false));
    let (max, tracker) = track_applying(vec![b1.clone(), b2.clone()], stop.clone());
    // Every attempt of n1 outlasts its checkpoint (rolled back, retried): five attempts span
    // several leases, kept by the renewal at each attempt and the heartbeat during it.
    let mut config = short_leases(&c, "n1");
    config.defaults.retry.max_retries = 5;
    let lease = SlotTiming::new(Duration::from_secs(2), Duration::from_millis(400)).hold_for;
    let h1 = c.start_handler_with(config, b1.clone(), Arc::new(ModelProbes { hold: lease }));
    c.create_policy(policy).await?;
    wait_condition(&c, "n1.linux-bridge", "Progressing", T).await?;
    let started = Instant::now();
    let h2 = start(&c, "n2", &b2, Duration::ZERO);
    let long = lease * 10 + T;
    let n1 = wait_condition(&c, "n1.linux-bridge", "Failing", long).await?;
    let held = started.elapsed();
    wait_condition(&c, "n2.linux-bridge", "Aborted", T).await?;
    stop.store(true, Ordering::SeqCst);
    tracker.await?;
    assert!(
        held > lease,
        "the slot was held for {held:?}, longer than a lease ({lease:?})"
    );
    assert_eq!(max.load(Ordering::SeqCst), 1, "n2 never applied beside n1");
    let conditions = &n1.status.expect("status").conditions;
    assert!(!conditions.is_true("Aborted"), "n1 was never pruned");
    assert!(b2.checkpoints().is_empty() && iface(&b2.state(), "br1").is_none());
    h1.stop().await?;
    h2.stop().await
}
