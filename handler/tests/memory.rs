//! The handler against the API stand-in with in-memory node networks (no root needed).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::events::v1::Event;
use knmstate_api::v1beta1::NodeNetworkState;
use knmstate_handler::probes::{ModelProbes, ProbeEnv, ProbeFactory};
use knmstate_nm_backend::probe::{Probe, ProbeContext, ProbeFuture, ProbeOutcome};
use knmstate_nm_backend::{ApplyOptions, Backend, MemoryBackend};
use knmstate_state_engine::rollback::{ProbeKind, ProbeSpec};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::*;

const T: Duration = Duration::from_secs(20);

/// Highest number of nodes holding a checkpoint (applying) at once, sampled until `stop`.
fn track_applying(
    backends: Vec<MemoryBackend>,
    stop: Arc<AtomicBool>,
) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let max = Arc::new(AtomicUsize::new(0));
    let m = max.clone();
    let task = tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            let n = backends
                .iter()
                .filter(|b| !b.checkpoints().is_empty())
                .count();
            m.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    (max, task)
}

async fn rollout(max_unavailable: Option<Value>) -> Result<(usize, Vec<MemoryBackend>, Cluster)> {
    let c = Cluster::start().await?;
    let mut policy = example("linux-bridge.yaml")?;
    if let Some(m) = max_unavailable {
        policy["spec"]["maxUnavailable"] = m;
    }
    let mut backends = Vec::new();
    let mut handlers = Vec::new();
    for i in 1..=3 {
        let node = format!("n{i}");
        c.add_node(&node, &[]).await?;
        let b = MemoryBackend::harness_like(&format!("198.18.0.10{i}"));
        handlers.push(c.start_handler(&node, b.clone(), Duration::from_millis(400)));
        backends.push(b);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (max, tracker) = track_applying(backends.clone(), stop.clone());
    c.create_policy(policy).await?;
    for i in 1..=3 {
        wait_condition(&c, &format!("n{i}.linux-bridge"), "Available", T).await?;
    }
    stop.store(true, Ordering::SeqCst);
    tracker.await?;
    for h in handlers {
        h.stop().await?;
    }
    Ok((max.load(Ordering::SeqCst), backends, c))
}

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
        eventually("retries exhausted", T, || {
            let api = c.enactments();
            async move {
                let e = api.get("n1.no-gateway").await.ok()?;
                let s = e.status.as_ref()?;
                (s.conditions.is_true("Failing") && !s.conditions.is_true("Progressing"))
                    .then_some(e)
            }
        })
        .await?
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
