//! Dry-run policies and drift reports.

use super::*;

use knmstate_api::v1beta1::NodeNetworkConfigurationEnactment;

/// The reason on `Available`, when it is `True`.
fn available_reason(e: &NodeNetworkConfigurationEnactment) -> Option<String> {
    let c = e.status.as_ref()?.conditions.find("Available")?;
    (c.status == knmstate_api::ConditionStatus::True).then(|| c.reason.clone())
}

/// Wait until `name` is `Available` with `reason`.
async fn wait_available(
    c: &Cluster,
    name: &str,
    reason: &str,
) -> Result<NodeNetworkConfigurationEnactment> {
    Ok(eventually(&format!("{name} Available/{reason}"), T, || {
        let api = c.enactments();
        async move {
            let e = api.get(name).await.ok()?;
            (available_reason(&e).as_deref() == Some(reason)).then_some(e)
        }
    })
    .await?)
}

async fn annotate(c: &Cluster, policy: &str, key: &str, value: Option<&str>) -> Result<()> {
    c.policies()
        .patch(
            policy,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
        )
        .await?;
    Ok(())
}

async fn warnings(c: &Cluster, reason: &str) -> Result<Vec<String>> {
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    Ok(events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|ev| ev.reason.as_deref() == Some(reason) && ev.type_.as_deref() == Some("Warning"))
        .filter_map(|ev| ev.note)
        .collect())
}

#[tokio::test]
async fn a_dry_run_plans_on_every_node_and_applies_once_the_annotation_goes() -> Result<()> {
    let c = Cluster::start().await?;
    let mut backends = Vec::new();
    let mut handlers = Vec::new();
    for i in 1..=2 {
        let node = format!("n{i}");
        c.add_node(&node, &[]).await?;
        let b = MemoryBackend::harness_like(&format!("198.18.0.10{i}"));
        handlers.push(c.start_handler(&node, b.clone(), Duration::ZERO));
        backends.push(b);
    }
    let before: Vec<Value> = backends.iter().map(MemoryBackend::state).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let (applying, tracker) = track_applying(backends.clone(), stop.clone());
    let mut policy = example("linux-bridge.yaml")?;
    policy["metadata"]["annotations"] = json!({"nmstate.io/dry-run": "true"});
    c.create_policy(policy).await?;
    for i in 1..=2 {
        let e = wait_available(&c, &format!("n{i}.linux-bridge"), "ConfigurationPlanned").await?;
        let s = e.status.expect("status");
        let plan = s.plan.expect("status.plan");
        assert_eq!(
            plan.summary,
            [
                "create interface br1 (linux-bridge)",
                "attach port eth1: becomes a port of br1"
            ]
        );
        assert_eq!(
            plan.probes,
            ["default-gateway", "dns", "api-server", "node-readiness"]
        );
        assert!(s.last_apply.is_none(), "nothing applied");
        assert_eq!(
            s.conditions.find("Available").map(|c| c.message.as_str()),
            Some("planned, not applied (dry run): 2 changes, see status.plan")
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    tracker.await?;
    assert_eq!(
        applying.load(Ordering::SeqCst),
        0,
        "no checkpoint was ever taken"
    );
    let after: Vec<Value> = backends.iter().map(MemoryBackend::state).collect();
    assert_eq!(after, before, "the networks are untouched");

    // Removing the annotation applies the policy.
    annotate(&c, "linux-bridge", "nmstate.io/dry-run", None).await?;
    for (i, b) in backends.iter().enumerate() {
        let e = wait_available(
            &c,
            &format!("n{}.linux-bridge", i + 1),
            "SuccessfullyConfigured",
        )
        .await?;
        let s = e.status.expect("status");
        assert!(
            s.plan.is_none(),
            "the plan goes with the dry run: {:?}",
            s.plan
        );
        assert!(s.last_apply.is_some());
        assert!(iface(&b.state(), "br1").is_some());
    }
    for h in handlers {
        h.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn drift_is_reported_and_repaired_only_when_the_policy_opts_in() -> Result<()> {
    let c = Cluster::start().await?;
    c.add_node("n1", &[]).await?;
    let b = MemoryBackend::harness_like("198.18.0.101");
    let h = c.start_handler("n1", b.clone(), Duration::ZERO);
    c.create_policy(example("linux-bridge.yaml")?).await?;
    let e = wait_condition(&c, "n1.linux-bridge", "Available", T).await?;
    let applied_at = e.status.and_then(|s| s.last_apply).map(|r| r.start_time);

    // eth1 leaves the bridge behind the handler's back.
    let p = b
        .apply(
            &json!({"interfaces": [{"name": "br1", "type": "linux-bridge", "state": "up",
                "bridge": {"port": []}}]}),
            &ApplyOptions::default(),
        )
        .await?;
    b.commit(&p.checkpoint).await?;
    let e = eventually("drift reported", T, || {
        let api = c.enactments();
        async move {
            let e = api.get("n1.linux-bridge").await.ok()?;
            e.status.as_ref()?.drift.as_ref()?;
            Some(e)
        }
    })
    .await?;
    let s = e.status.expect("status");
    let report = s.drift.expect("drift");
    assert_eq!(report.paths, ["interfaces[br1].bridge.port"]);
    assert!(!report.reapply);
    assert!(s.conditions.is_true("Available"), "no condition changes");
    let notes = warnings(&c, "ConfigurationDrifted").await?;
    assert!(
        notes
            .iter()
            .any(|n| n
                .contains("node n1 no longer satisfies the policy at interfaces[br1].bridge.port")),
        "{notes:?}"
    );
    // Reported only: not applied again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = c
        .enactments()
        .get("n1.linux-bridge")
        .await?
        .status
        .expect("status");
    assert_eq!(
        s.last_apply.map(|r| r.start_time),
        applied_at,
        "not re-applied"
    );
    assert!(s.drift.is_some());

    // The opt-in re-applies through the ordinary apply, and the report goes.
    annotate(
        &c,
        "linux-bridge",
        "nmstate.io/reapply-on-drift",
        Some("true"),
    )
    .await?;
    let e = eventually("repaired", T, || {
        let api = c.enactments();
        async move {
            let e = api.get("n1.linux-bridge").await.ok()?;
            let s = e.status.as_ref()?;
            (s.drift.is_none() && s.conditions.is_true("Available")).then_some(e)
        }
    })
    .await?;
    let s = e.status.expect("status");
    assert_ne!(s.last_apply.map(|r| r.start_time), applied_at, "re-applied");
    let ports = iface(&b.state(), "br1").expect("br1")["bridge"]["port"].clone();
    assert_eq!(ports[0]["name"], "eth1", "{ports}");
    assert!(b.checkpoints().is_empty());
    h.stop().await
}
