//! Order of policies on a node, enactments of gone policies, captures.

use super::*;

/// Model probes plus a readiness probe that records eth2's MTU while the checkpoint is held.
struct Recording {
    seen: Arc<std::sync::Mutex<Vec<u64>>>,
}

struct RecordMtu {
    seen: Arc<std::sync::Mutex<Vec<u64>>>,
}

impl Probe for RecordMtu {
    fn name(&self) -> &'static str {
        "node-readiness"
    }

    fn run<'a>(&'a self, ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a> {
        Box::pin(async move {
            let now = ctx.current.network_state().await?;
            let mtu = iface(&now, "eth2")
                .and_then(|i| i["mtu"].as_u64())
                .unwrap_or_default();
            self.seen.lock().expect("lock").push(mtu);
            Ok(ProbeOutcome::Passed(format!("eth2 mtu {mtu}")))
        })
    }
}

impl ProbeFactory for Recording {
    fn build(&self, spec: &ProbeSpec, env: &ProbeEnv) -> Box<dyn Probe> {
        match spec.kind {
            ProbeKind::NodeReadiness => Box::new(RecordMtu {
                seen: self.seen.clone(),
            }),
            _ => ModelProbes::default().build(spec, env),
        }
    }
}

#[tokio::test]
async fn policies_apply_one_at_a_time_in_name_order() -> Result<()> {
    let c = Cluster::start().await?;
    c.add_node("n1", &[]).await?;
    let b = MemoryBackend::harness_like("198.18.0.101");
    // Created before the handler starts: its first list sees all three at once.
    for (name, mtu) in [("c-mtu", 1300), ("a-mtu", 1400), ("b-mtu", 1500)] {
        c.create_policy(json!({
            "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
            "metadata": {"name": name},
            "spec": {"desiredState": {"interfaces": [{"name": "eth2", "type": "ethernet", "mtu": mtu}]}}
        }))
        .await?;
    }
    // Every apply is observed while its checkpoint is held: the MTU it set on eth2.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let probes = Arc::new(Recording { seen: seen.clone() });
    let h = c.start_handler_with(c.config("n1"), b.clone(), probes);
    for name in ["a-mtu", "b-mtu", "c-mtu"] {
        wait_condition(&c, &format!("n1.{name}"), "Available", T).await?;
    }
    assert_eq!(
        *seen.lock().expect("lock"),
        [1400, 1500, 1300],
        "applied one at a time, in name order"
    );
    // The last one applied wins on the node.
    assert_eq!(iface(&b.state(), "eth2").expect("eth2")["mtu"], 1300);
    h.stop().await
}

#[tokio::test]
async fn an_enactment_whose_policy_went_while_the_handler_was_down_is_removed() -> Result<()> {
    let c = Cluster::start().await?;
    c.add_node("n1", &[]).await?;
    let b = MemoryBackend::harness_like("198.18.0.101");
    let h = c.start_handler("n1", b.clone(), Duration::ZERO);
    c.create_policy(example("linux-bridge.yaml")?).await?;
    wait_condition(&c, "n1.linux-bridge", "Available", T).await?;
    h.stop().await?;
    c.policies()
        .delete("linux-bridge", &DeleteParams::default())
        .await?;
    assert!(c.enactments().get_opt("n1.linux-bridge").await?.is_some());
    let h = c.start_handler("n1", b, Duration::ZERO);
    eventually("orphan enactment deleted", T, || {
        let api = c.enactments();
        async move {
            api.get_opt("n1.linux-bridge")
                .await
                .ok()?
                .is_none()
                .then_some(())
        }
    })
    .await?;
    h.stop().await
}

#[tokio::test]
async fn captures_are_resolved_on_the_node_cached_and_features_reported() -> Result<()> {
    let c = Cluster::start().await?;
    c.add_node("n1", &[]).await?;
    let b = MemoryBackend::harness_like("198.18.0.101");
    let h = c.start_handler("n1", b.clone(), Duration::ZERO);
    c.create_policy(json!({
        "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": "via-gw"},
        "spec": {
            "capture": {"gw": "routes.running.destination==\"0.0.0.0/0\""},
            "desiredState": {"routes": {"config": [{"destination": "198.19.9.0/24",
                "next-hop-interface": "{{ capture.gw.routes.running.0.next-hop-interface }}",
                "next-hop-address": "{{ capture.gw.routes.running.0.next-hop-address }}"}]}}}
    }))
    .await?;
    let e = wait_condition(&c, "n1.via-gw", "Available", T).await?;
    let s = e.status.expect("status");
    let desired = s.desired_state.expect("desired").to_value();
    assert_eq!(
        desired["routes"]["config"][0]["next-hop-address"],
        "198.18.0.1"
    );
    let gw = s.captured_states.get("gw").expect("captured gw");
    assert_eq!(
        gw.state.as_ref().expect("state").to_value()["routes"]["running"][0]["next-hop-interface"],
        "eth0"
    );
    assert_eq!(s.features, ["static-route"]);
    let routes = b.state()["routes"]["config"].clone();
    assert!(
        routes
            .as_array()
            .expect("routes")
            .iter()
            .any(|r| r["destination"] == "198.19.9.0/24"),
        "{routes}"
    );
    h.stop().await
}
