//! Node selection, the NodeNetworkState, and restarts.

use super::*;

#[tokio::test]
async fn node_selector_changes_add_and_remove_the_enactment() -> Result<()> {
    let c = Cluster::start().await?;
    c.add_node("n1", &[]).await?;
    c.add_node("n2", &[]).await?;
    let h1 = c.start_handler(
        "n1",
        MemoryBackend::harness_like("198.18.0.101"),
        Duration::ZERO,
    );
    let h2 = c.start_handler(
        "n2",
        MemoryBackend::harness_like("198.18.0.102"),
        Duration::ZERO,
    );
    c.create_policy(json!({
        "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": "mtu"},
        "spec": {"nodeSelector": {"knmstate.test/mtu": "yes"},
                 "desiredState": {"interfaces": [{"name": "eth2", "type": "ethernet", "mtu": 1400}]}}
    }))
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        c.enactments().get_opt("n1.mtu").await?.is_none(),
        "no match, no enactment"
    );
    // The node gets the label: the enactment appears and succeeds.
    c.label_node("n1", "knmstate.test/mtu", Some("yes")).await?;
    wait_condition(&c, "n1.mtu", "Available", T).await?;
    assert!(c.enactments().get_opt("n2.mtu").await?.is_none());
    // The policy's selector changes to another label: n1's enactment goes, n2's comes.
    c.label_node("n2", "knmstate.test/other", Some("yes"))
        .await?;
    c.policies()
        .patch(
            "mtu",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"nodeSelector": {"knmstate.test/mtu": null,
                "knmstate.test/other": "yes"}}})),
        )
        .await?;
    wait_condition(&c, "n2.mtu", "Available", T).await?;
    eventually("n1.mtu deleted", T, || {
        let api = c.enactments();
        async move { api.get_opt("n1.mtu").await.ok()?.is_none().then_some(()) }
    })
    .await?;
    // Deleting the policy deletes the enactment.
    c.policies().delete("mtu", &DeleteParams::default()).await?;
    eventually("n2.mtu deleted", T, || {
        let api = c.enactments();
        async move { api.get_opt("n2.mtu").await.ok()?.is_none().then_some(()) }
    })
    .await?;
    h1.stop().await?;
    h2.stop().await
}

#[tokio::test]
async fn node_network_state_appears_follows_changes_is_recreated_and_idle_nodes_do_not_write()
-> Result<()> {
    let c = Cluster::start().await?;
    c.add_node("n1", &[]).await?;
    let b = MemoryBackend::harness_like("198.18.0.101");
    let h = c.start_handler("n1", b.clone(), Duration::ZERO);
    let nns: Api<NodeNetworkState> = Api::all(c.client.clone());
    let first = eventually("NNS", T, || {
        let nns = nns.clone();
        async move {
            let o = nns.get_opt("n1").await.ok()??;
            o.status.as_ref()?.current_state.as_ref()?;
            Some(o)
        }
    })
    .await?;
    let status = first.status.clone().expect("status");
    let state = status.current_state.expect("state").to_value();
    assert!(iface(&state, "eth0").is_some());
    assert!(status.last_successful_update_time.is_some());
    assert!(!status.handler_nmstate_version.is_empty());
    assert_eq!(
        first.metadata.owner_references.expect("owner")[0].name,
        "n1"
    );
    let readiness = c.dir.path().join("n1.healthy");
    eventually("readiness file", Duration::from_secs(5), || {
        let f = readiness.clone();
        async move { f.exists().then_some(()) }
    })
    .await?;

    // Idle: no NNS writes at all.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let writes = |c: &Cluster| {
        c.requests("patch", "nodenetworkstates.nmstate.io/status")
            + c.requests("create", "nodenetworkstates.nmstate.io")
            + c.requests("update", "nodenetworkstates.nmstate.io/status")
    };
    let before = writes(&c);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(writes(&c), before, "an idle node writes nothing");

    // An out-of-band change shows within 2 s.
    let p = b
        .apply(
            &json!({"interfaces": [{"name": "br-oob", "type": "linux-bridge", "state": "up"}]}),
            &ApplyOptions::default(),
        )
        .await?;
    b.commit(&p.checkpoint).await?;
    let started = std::time::Instant::now();
    eventually("br-oob in the NNS", Duration::from_secs(2), || {
        let nns = nns.clone();
        async move {
            let o = nns.get("n1").await.ok()?;
            let s = o.status?.current_state?.to_value();
            iface(&s, "br-oob").map(|_| ())
        }
    })
    .await?;
    assert!(started.elapsed() < Duration::from_secs(2));

    // Deleted: recreated.
    let uid = nns.get("n1").await?.metadata.uid;
    nns.delete("n1", &DeleteParams::default()).await?;
    eventually("NNS recreated", T, || {
        let nns = nns.clone();
        let uid = uid.clone();
        async move {
            let o = nns.get_opt("n1").await.ok()??;
            (o.metadata.uid != uid && o.status.as_ref()?.current_state.is_some()).then_some(())
        }
    })
    .await?;

    // The force-refresh label triggers a re-read.
    let reads = c.requests("patch", "nodenetworkstates.nmstate.io/status");
    // Make the state differ from what was reported, without a change signal, by a label-only
    // refresh: the re-read sees the same state, so no write follows.
    nns.patch(
        "n1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"nmstate.io/force-nns-refresh": "1"}}})),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        c.requests("patch", "nodenetworkstates.nmstate.io/status"),
        reads,
        "an unchanged state is not rewritten"
    );
    h.stop().await?;
    assert!(!readiness.exists(), "readiness file removed on shutdown");
    Ok(())
}

#[tokio::test]
async fn a_restart_does_not_reapply_a_succeeded_generation_unless_the_node_drifted() -> Result<()> {
    let c = Cluster::start().await?;
    c.add_node("n1", &[]).await?;
    let b = MemoryBackend::harness_like("198.18.0.101");
    let h = c.start_handler("n1", b.clone(), Duration::ZERO);
    c.create_policy(example("linux-bridge.yaml")?).await?;
    let e = wait_condition(&c, "n1.linux-bridge", "Available", T).await?;
    let started = e
        .status
        .as_ref()
        .and_then(|s| s.last_apply.clone())
        .expect("lastApply")
        .start_time;
    h.stop().await?;

    // Restart: nothing is applied again.
    let status_writes = c.requests(
        "patch",
        "nodenetworkconfigurationenactments.nmstate.io/status",
    );
    let h = c.start_handler("n1", b.clone(), Duration::ZERO);
    eventually("ready again", T, || {
        let f = c.dir.path().join("n1.healthy");
        async move { f.exists().then_some(()) }
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let e = c.enactments().get("n1.linux-bridge").await?;
    let s = e.status.expect("status");
    assert!(s.conditions.is_true("Available"));
    assert_eq!(
        s.last_apply.expect("lastApply").start_time,
        started,
        "not re-applied"
    );
    assert_eq!(
        c.requests(
            "patch",
            "nodenetworkconfigurationenactments.nmstate.io/status"
        ),
        status_writes,
        "no status write either"
    );
    h.stop().await?;

    // The bridge disappears behind the handler's back: the next start re-applies.
    let p = b
        .apply(
            &json!({"interfaces": [{"name": "br1", "state": "absent"}]}),
            &ApplyOptions::default(),
        )
        .await?;
    b.commit(&p.checkpoint).await?;
    assert!(iface(&b.state(), "br1").is_none());
    let h = c.start_handler("n1", b.clone(), Duration::ZERO);
    eventually("br1 back", T, || {
        let b = b.clone();
        async move { iface(&b.state(), "br1").map(|_| ()) }
    })
    .await?;
    let e = wait_condition(&c, "n1.linux-bridge", "Available", T).await?;
    assert_ne!(
        e.status
            .expect("status")
            .last_apply
            .expect("lastApply")
            .start_time,
        started
    );
    h.stop().await
}
