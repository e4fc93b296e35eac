//! maxUnavailable: how many nodes apply at once, and the Aborted rule.

use super::*;

#[tokio::test]
async fn linux_bridge_example_reaches_available_on_three_nodes_within_max_unavailable() -> Result<()>
{
    // The example has no maxUnavailable: 50 % of 3 nodes, rounded up, is 2.
    let (max, backends, c) = rollout(None).await?;
    assert!(
        (1..=2).contains(&max),
        "at most 2 nodes applied at once, saw {max}"
    );
    for b in &backends {
        let state = b.state();
        let br = iface(&state, "br1").expect("br1 exists on every node");
        assert_eq!(br["bridge"]["port"][0]["name"], "eth1");
        // The default VLAN trunk was injected on the port.
        assert_eq!(br["bridge"]["port"][0]["vlan"]["mode"], "trunk");
        assert_eq!(iface(&state, "eth1").expect("eth1")["controller"], "br1");
        assert!(b.checkpoints().is_empty(), "every apply was committed");
    }
    let e = c.enactments().get("n1.linux-bridge").await?;
    let status = e.status.expect("status");
    assert_eq!(status.policy_generation, Some(1));
    let desired = status.desired_state.expect("rendered").to_value();
    assert_eq!(
        desired["interfaces"][0]["bridge"]["port"][0]["vlan"]["trunk-tags"][0]["id-range"],
        json!({"min": 2, "max": 4094})
    );
    let report = status.last_apply.expect("lastApply");
    assert!(!report.rolled_back);
    assert!(
        report
            .probes
            .iter()
            .any(|p| p.name == "api-server" && p.succeeded)
    );
    assert!(
        report
            .probes
            .iter()
            .any(|p| p.name == "node-readiness" && p.succeeded)
    );
    assert_eq!(
        e.metadata.labels.as_ref().expect("labels")["nmstate.io/node"],
        "n1"
    );
    assert_eq!(
        e.metadata.owner_references.as_ref().expect("owner")[0].kind,
        "Node"
    );
    Ok(())
}

#[tokio::test]
async fn max_unavailable_one_applies_one_node_at_a_time() -> Result<()> {
    let (max, _, _) = rollout(Some(json!(1))).await?;
    assert_eq!(max, 1, "one node at a time");
    Ok(())
}

/// Highest number of enactments of `generation` seen `Progressing=True` at once, from every
/// change the stand-in streams out, until `stop`.
fn track_progressing(
    c: &Cluster,
    generation: i64,
    stop: Arc<AtomicBool>,
) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<Result<()>>) {
    use futures::StreamExt;
    use kube::api::WatchEvent;
    let api = c.enactments();
    let max = Arc::new(AtomicUsize::new(0));
    let m = max.clone();
    let task = tokio::spawn(async move {
        let mut progressing = std::collections::BTreeMap::<String, bool>::new();
        let mut stream = api
            .watch(&kube::api::WatchParams::default().timeout(60), "0")
            .await?
            .boxed();
        while !stop.load(Ordering::SeqCst) {
            let next = tokio::time::timeout(Duration::from_millis(50), stream.next()).await;
            let event = match next {
                Err(_) => continue,
                Ok(None) => break,
                Ok(Some(event)) => event?,
            };
            let (e, deleted) = match event {
                WatchEvent::Added(e) | WatchEvent::Modified(e) => (e, false),
                WatchEvent::Deleted(e) => (e, true),
                WatchEvent::Bookmark(_) => continue,
                WatchEvent::Error(e) => anyhow::bail!("watch error: {e:?}"),
            };
            let on = !deleted
                && e.status.as_ref().is_some_and(|s| {
                    s.policy_generation == Some(generation)
                        && s.conditions
                            .is("Progressing", knmstate_api::ConditionStatus::True)
                });
            progressing.insert(e.metadata.name.clone().unwrap_or_default(), on);
            m.fetch_max(
                progressing.values().filter(|p| **p).count(),
                Ordering::SeqCst,
            );
        }
        Ok(())
    });
    (max, task)
}

#[tokio::test]
async fn with_max_unavailable_one_no_two_enactments_are_ever_progressing_at_once() -> Result<()> {
    // Progressing is written only once the slot is won: a node that loses the ledger race
    // never shows Progressing before falling back to Pending.
    let c = Cluster::start().await?;
    let mut policy = example("linux-bridge.yaml")?;
    policy["spec"]["maxUnavailable"] = json!(1);
    let stop = Arc::new(AtomicBool::new(false));
    let (max, tracker) = track_progressing(&c, 1, stop.clone());
    let mut handlers = Vec::new();
    let nodes = 4;
    for i in 1..=nodes {
        let node = format!("n{i}");
        c.add_node(&node, &[]).await?;
        let b = MemoryBackend::harness_like(&format!("198.18.0.10{i}"));
        handlers.push(c.start_handler(&node, b, Duration::from_millis(100)));
    }
    // Let the watch start before the policy exists.
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.create_policy(policy).await?;
    for i in 1..=nodes {
        wait_condition(&c, &format!("n{i}.linux-bridge"), "Available", T).await?;
    }
    stop.store(true, Ordering::SeqCst);
    tracker.await??;
    for h in handlers {
        h.stop().await?;
    }
    assert_eq!(
        max.load(Ordering::SeqCst),
        1,
        "exactly one enactment Progressing at a time"
    );
    Ok(())
}

fn no_gateway_policy(name: &str, max_unavailable: i32) -> Value {
    json!({
        "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": name},
        "spec": {"maxUnavailable": max_unavailable,
                 "desiredState": {"interfaces": [{"name": "eth0", "type": "ethernet", "state": "up",
            "ipv4": {"enabled": true, "dhcp": false,
                     "address": [{"ip": "198.18.0.200", "prefix-length": 24}]}}]}}
    })
}

#[tokio::test]
async fn once_max_unavailable_nodes_failed_the_others_abort_with_an_event() -> Result<()> {
    let c = Cluster::start().await?;
    let mut handlers = Vec::new();
    let mut backends = Vec::new();
    for i in 1..=2 {
        let node = format!("n{i}");
        c.add_node(&node, &[]).await?;
        let b = MemoryBackend::harness_like(&format!("198.18.0.10{i}"));
        handlers.push(c.start_handler(&node, b.clone(), Duration::from_millis(100)));
        backends.push(b);
    }
    c.create_policy(no_gateway_policy("no-gw", 1)).await?;
    // One node takes the only slot and fails for good; the other must abort.
    let aborted = eventually("one Aborted, one Failing", T, || {
        let api = c.enactments();
        async move {
            let list = api.list(&ListParams::default()).await.ok()?;
            let states: Vec<Option<String>> = list.items.iter().map(active).collect();
            let failing = list.items.iter().find(|e| {
                e.status.as_ref().is_some_and(|s| {
                    s.conditions.is_true("Failing") && !s.conditions.is_true("Progressing")
                })
            });
            let aborted = list
                .items
                .iter()
                .find(|e| active(e).as_deref() == Some("Aborted"));
            (states.len() == 2 && failing.is_some())
                .then_some(aborted.cloned())
                .flatten()
        }
    })
    .await?;
    let name = aborted.metadata.name.clone().expect("name");
    let s = aborted.status.expect("status");
    assert_eq!(
        s.conditions.find("Aborted").expect("Aborted").message,
        format!("reconciliation of enactment \"{name}\" has aborted")
    );
    assert!(s.last_apply.is_none(), "an aborted node never applied");
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    let want = format!("reconciliation of enactment \"{name}\" has aborted");
    eventually("abort event", T, || {
        let events = events.clone();
        let want = want.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("ReconcileFailed")
                        && e.note.as_deref() == Some(want.as_str())
                })
                .then_some(())
        }
    })
    .await?;
    for b in &backends {
        assert!(b.checkpoints().is_empty());
    }
    for h in handlers {
        h.stop().await?;
    }
    Ok(())
}
