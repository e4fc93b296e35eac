//! Failed applies: rollback and retries, a killed or stopped handler, what the kernel cannot do.

use super::*;

#[tokio::test]
async fn a_policy_breaking_the_gateway_ends_failing_after_its_retries_rolled_back() -> Result<()> {
    let c = Cluster::start().await?;
    c.add_node("n1", &[]).await?;
    let b = MemoryBackend::harness_like("198.18.0.101");
    let before = b.state();
    let h = c.start_handler("n1", b.clone(), Duration::ZERO);
    // Static addressing without a gateway drops the DHCP default route.
    c.create_policy(json!({
        "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": "no-gateway"},
        "spec": {"desiredState": {"interfaces": [{"name": "eth0", "type": "ethernet", "state": "up",
            "ipv4": {"enabled": true, "dhcp": false,
                     "address": [{"ip": "198.18.0.101", "prefix-length": 24}]},
            "802.1x": {"identity": "node", "password": "hunter2-secret"}}]}}
    }))
    .await?;
    let e = wait_condition(&c, "n1.no-gateway", "Failing", T).await?;
    // Failing=True is also written while retrying: wait for the final set.
    let e = if e
        .status
        .as_ref()
        .is_some_and(|s| s.conditions.is_true("Progressing"))
    {
        failing_for_good(&c, "n1.no-gateway").await?
    } else {
        e
    };
    let s = e.status.expect("status");
    assert_eq!(s.retry_count.get("1"), Some(&3), "three attempts");
    let failing = s.conditions.find("Failing").expect("Failing");
    assert_eq!(failing.reason, "FailedToConfigure");
    assert!(
        failing.message.starts_with(
            "error reconciling NodeNetworkConfigurationPolicy on node n1 at desired state apply: \"rolling back"
        ),
        "{}",
        failing.message
    );
    assert!(
        failing.message.contains("default-gateway"),
        "{}",
        failing.message
    );
    assert!(failing.message.len() <= 16 * 1024);
    let report = s.last_apply.expect("lastApply");
    assert!(report.rolled_back);
    assert_eq!(report.rollback_reason, "probe-failed");
    assert!(
        report
            .probes
            .iter()
            .any(|p| p.name == "default-gateway" && !p.succeeded)
    );
    // The node is as it was, nothing pending.
    assert_eq!(b.state(), before);
    assert!(b.checkpoints().is_empty());
    // Secrets never reach the status.
    let text = serde_json::to_string(&c.enactments().get("n1.no-gateway").await?)?;
    assert!(!text.contains("hunter2-secret"), "secret leaked: {text}");
    assert!(text.contains("<_password_hid_by_nmstate>"));
    // Upstream's warning event.
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    let list = events.list(&ListParams::default()).await?;
    assert!(
        list.items
            .iter()
            .any(|ev| ev.reason.as_deref() == Some("ReconcileFailed")
                && ev.type_.as_deref() == Some("Warning")
                && ev.note.as_deref()
                    == Some(
                        "reconciliation of enactment \"n1.no-gateway\" has failed after 3 retries"
                    )),
        "{:?}",
        list.items.iter().map(|e| &e.note).collect::<Vec<_>>()
    );
    // A new generation starts over: fresh conditions and retry counts, applied again.
    c.policies()
        .patch(
            "no-gateway",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"desiredState": {"interfaces": [
                {"name": "eth2", "type": "ethernet", "state": "up", "mtu": 1280}]}}})),
        )
        .await?;
    let e = eventually("generation 2 Available", T, || {
        let api = c.enactments();
        async move {
            let e = api.get("n1.no-gateway").await.ok()?;
            let s = e.status.as_ref()?;
            (s.policy_generation == Some(2) && s.conditions.is_true("Available")).then_some(e)
        }
    })
    .await?;
    let s = e.status.expect("status");
    assert!(s.retry_count.is_empty(), "{:?}", s.retry_count);
    assert!(!s.conditions.is_true("Failing"));
    assert_eq!(iface(&b.state(), "eth2").expect("eth2")["mtu"], 1280);
    h.stop().await
}

#[tokio::test]
async fn killed_during_an_apply_the_next_handler_leaves_no_checkpoint_and_converges() -> Result<()>
{
    let c = Cluster::start().await?;
    c.add_node("n1", &[]).await?;
    let b = MemoryBackend::harness_like("198.18.0.101");
    let h = c.start_handler("n1", b.clone(), Duration::from_secs(30));
    c.create_policy(example("linux-bridge.yaml")?).await?;
    eventually("a checkpoint held", T, || {
        let b = b.clone();
        async move { (!b.checkpoints().is_empty()).then_some(()) }
    })
    .await?;
    h.kill().await;
    b.crash();
    assert_eq!(
        b.checkpoints().len(),
        1,
        "the killed apply left its checkpoint"
    );
    // Start-up recovery, as `start` runs it before the controllers.
    let recovery = knmstate_handler::start::recover(&b).await?;
    assert!(recovery.rolled_back.is_some(), "{recovery:?}");
    let h = c.start_handler("n1", b.clone(), Duration::ZERO);
    wait_condition(&c, "n1.linux-bridge", "Available", T).await?;
    assert!(b.checkpoints().is_empty(), "no checkpoint left");
    assert!(iface(&b.state(), "br1").is_some());
    h.stop().await
}

#[tokio::test]
async fn sigterm_during_an_apply_rolls_it_back_before_exiting() -> Result<()> {
    let c = Cluster::start().await?;
    c.add_node("n1", &[]).await?;
    let b = MemoryBackend::harness_like("198.18.0.101");
    let before = b.state();
    let h = c.start_handler("n1", b.clone(), Duration::from_secs(30));
    c.create_policy(example("linux-bridge.yaml")?).await?;
    eventually("a checkpoint held", T, || {
        let b = b.clone();
        async move { (!b.checkpoints().is_empty()).then_some(()) }
    })
    .await?;
    h.stop().await?;
    assert!(b.checkpoints().is_empty(), "rolled back, not left pending");
    assert_eq!(b.state(), before);
    Ok(())
}

#[tokio::test]
async fn bridge_port_vlans_fail_fast_and_clearly_on_a_kernel_without_vlan_filtering() -> Result<()>
{
    let c = Cluster::start().await?;
    let mut handlers = Vec::new();
    let mut backends = Vec::new();
    for (i, filtering) in [(1, false), (2, true)] {
        let node = format!("n{i}");
        c.add_node(&node, &[]).await?;
        let b = MemoryBackend::harness_like(&format!("198.18.0.10{i}"));
        let mut config = c.config(&node);
        config.bridge_vlan = knmstate_handler::config::BridgeVlanMode::Auto;
        config.bridge_vlan_filtering = Some(filtering);
        handlers.push(c.start_handler_with(
            config,
            b.clone(),
            Arc::new(ModelProbes {
                hold: Duration::from_millis(50),
            }),
        ));
        backends.push(b);
    }
    let mut policy = example("linux-bridge-vlan.yaml")?;
    // Room for the failure, so the other node is not aborted.
    policy["spec"]["maxUnavailable"] = json!(2);
    c.create_policy(policy).await?;
    let failed = wait_condition(&c, "n1.linux-bridge-vlan", "Failing", T).await?;
    wait_condition(&c, "n2.linux-bridge-vlan", "Available", T).await?;
    for h in handlers {
        h.stop().await?;
    }
    let status = failed.status.expect("status");
    let failing = status
        .conditions
        .find("Failing")
        .expect("Failing condition");
    assert!(
        failing.message.contains(
            "linux-bridge br1: port vlan configuration needs bridge VLAN filtering, \
             which this kernel does not support"
        ),
        "clear message, got {:?}",
        failing.message
    );
    assert!(
        status.last_apply.is_none(),
        "nothing was applied on the node without VLAN filtering"
    );
    assert!(iface(&backends[0].state(), "br1").is_none(), "no br1 on n1");
    assert!(backends[0].checkpoints().is_empty());
    let n2 = backends[1].state();
    let br = iface(&n2, "br1").expect("br1 on n2");
    assert_eq!(br["bridge"]["port"][0]["vlan"]["mode"], "trunk");
    // The failure is for good (until the policy changes): no retry was counted.
    assert!(status.retry_count.values().all(|n| *n == 0));
    let error = knmstate_handler::Error::CheckBridgeVlanFiltering {
        interface: "br1".into(),
        what: "port vlan configuration".into(),
    };
    assert_eq!(error.category(), "bridge-vlan-filtering-unsupported");
    Ok(())
}

/// Kill the handler (and what it held in memory) while an apply holds its checkpoint, then
/// recover as start-up does.
async fn kill_mid_apply(h: Running, b: &MemoryBackend) -> Result<knmstate_nm_backend::Recovery> {
    eventually("a checkpoint held", T, || {
        let b = b.clone();
        async move { (!b.checkpoints().is_empty()).then_some(()) }
    })
    .await?;
    h.kill().await;
    b.crash();
    Ok(knmstate_handler::start::recover(b).await?)
}

#[tokio::test]
async fn a_policy_that_kills_the_handler_every_time_ends_failing_after_its_retries() -> Result<()> {
    let c = Cluster::start().await?;
    c.add_node("n1", &[]).await?;
    let b = MemoryBackend::harness_like("198.18.0.101");
    let before = b.state();
    let mut h = c.start_handler("n1", b.clone(), Duration::from_secs(30));
    c.create_policy(example("linux-bridge.yaml")?).await?;
    // Three attempts (the retry limit), each dying mid-apply: each one counted.
    for attempt in 1..=3u32 {
        let recovery = kill_mid_apply(h, &b).await?;
        let died = recovery.interrupted.expect("the attempt was recorded");
        assert_eq!(
            (died.policy.as_str(), died.generation, died.number),
            ("linux-bridge", 1, attempt)
        );
        assert_eq!(b.state(), before, "rolled back at start-up");
        h = c.start_handler("n1", b.clone(), Duration::from_secs(30));
        if attempt < 3 {
            eventually(&format!("attempt {attempt} counted"), T, || {
                let api = c.enactments();
                async move {
                    let e = api.get("n1.linux-bridge").await.ok()?;
                    let counted = e.status?.retry_count.get("1").copied();
                    (counted == Some(i64::from(attempt))).then_some(())
                }
            })
            .await?;
        }
    }
    let e = failing_for_good(&c, "n1.linux-bridge").await?;
    let s = e.status.expect("status");
    assert_eq!(s.retry_count.get("1"), Some(&3));
    let failing = s.conditions.find("Failing").expect("Failing");
    assert_eq!(failing.reason, "FailedToConfigure");
    assert!(
        failing
            .message
            .contains("the handler died during the apply (attempt 3"),
        "{}",
        failing.message
    );
    let report = s.last_apply.expect("lastApply");
    assert!(report.rolled_back);
    assert_eq!(report.rollback_reason, "handler-died");
    // Not applied again: the node stays as before, nothing pending, nothing left to count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.state(), before);
    assert!(b.checkpoints().is_empty());
    assert!(b.interrupted_attempts().is_empty());
    h.stop().await
}

#[tokio::test]
async fn a_rollback_reports_whether_connectivity_came_back() -> Result<()> {
    let c = Cluster::start().await?;
    c.add_node("n1", &[]).await?;
    let b = MemoryBackend::harness_like("198.18.0.101");
    let h = c.start_handler("n1", b.clone(), Duration::ZERO);
    // Static addressing without a gateway: the gateway probe fails, the rollback restores it.
    c.create_policy(json!({
        "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": "no-gateway"},
        "spec": {"desiredState": {"interfaces": [{"name": "eth0", "type": "ethernet", "state": "up",
            "ipv4": {"enabled": true, "dhcp": false,
                     "address": [{"ip": "198.18.0.101", "prefix-length": 24}]}}]}}
    }))
    .await?;
    // The Retrying message is upstream's (no error): judge the final FailedToConfigure one.
    let e = failing_for_good(&c, "n1.no-gateway").await?;
    let s = e.status.expect("status");
    let report = s.last_apply.expect("lastApply");
    assert!(report.rolled_back);
    assert_eq!(report.connectivity_restored, Some(true), "{report:?}");
    let failing = s.conditions.find("Failing").expect("Failing");
    assert!(
        failing
            .message
            .contains("connectivity came back after the rollback"),
        "{}",
        failing.message
    );
    h.stop().await
}

/// The enactment `name` once Failing for good (not retrying any more).
async fn failing_for_good(
    c: &Cluster,
    name: &str,
) -> Result<knmstate_api::v1beta1::NodeNetworkConfigurationEnactment> {
    Ok(eventually(&format!("{name} Failing for good"), T, || {
        let api = c.enactments();
        async move {
            let e = api.get(name).await.ok()?;
            let s = e.status.as_ref()?;
            (s.conditions.is_true("Failing") && !s.conditions.is_true("Progressing")).then_some(e)
        }
    })
    .await?)
}
