//! A slot holder that stalls and then resumes (a frozen process, not a dead one): its lease
//! runs out while it is stalled, the next claimant prunes it (Aborted, `SlotExpired`) and
//! applies, and once the stalled handler runs again the slot fence stops it: it neither
//! applies nor commits, and never more than maxUnavailable nodes hold a checkpoint at once.
//!
//! The stalled handler runs on its own thread and runtime, like a process of its own; one of
//! its probes blocks that thread (`std::thread::sleep`), which freezes the whole handler, its
//! lease heartbeat included, as SIGSTOP would. NetworkManager (the in-memory backend) keeps
//! running: its checkpoint times out meanwhile.

use std::thread;

use knmstate_api::v1beta1::NodeNetworkConfigurationEnactment;
use knmstate_handler::Handler;
use knmstate_state_engine::rollback::HandlerDefaults;
use knmstate_state_engine::slot::SlotTiming;
use tokio::sync::oneshot;

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

/// The lease of [`short_leases`] (as `ghost.rs` computes it).
fn lease() -> Duration {
    SlotTiming::new(Duration::from_secs(2), Duration::from_millis(400)).hold_for
}

/// The model probes, except that the first run of the `kind` probe freezes the handler's
/// thread for `stall` (then sets `resumed`, and fails when `then_fail`). The API-server probe
/// passes at once: a real one in flight during the freeze (probes may run together) would find
/// its deadline passed when the handler resumes, and fail the attempt before the commit.
struct Stalling {
    kind: ProbeKind,
    then_fail: bool,
    stall: Duration,
    fired: Arc<AtomicBool>,
    resumed: Arc<AtomicBool>,
}

struct StallingProbe {
    inner: Box<dyn Probe>,
    then_fail: bool,
    stall: Duration,
    fired: Arc<AtomicBool>,
    resumed: Arc<AtomicBool>,
}

impl Probe for StallingProbe {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn run<'a>(&'a self, ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a> {
        Box::pin(async move {
            if !self.fired.swap(true, Ordering::SeqCst) {
                tracing::warn!(probe = self.name(), stall = ?self.stall, "stalling the handler");
                // Blocks the handler's only thread: every task of it stops, as under SIGSTOP.
                thread::sleep(self.stall);
                self.resumed.store(true, Ordering::SeqCst);
                if self.then_fail {
                    return Err(knmstate_nm_backend::BackendError::Probe {
                        probe: self.name().to_owned(),
                        message: "failed after the stall".into(),
                    });
                }
            }
            self.inner.run(ctx).await
        })
    }
}

/// An API-server probe that passes at once.
struct InstantApi;

impl Probe for InstantApi {
    fn name(&self) -> &str {
        ProbeKind::ApiServer.name()
    }

    fn run<'a>(&'a self, _: &'a ProbeContext<'a>) -> ProbeFuture<'a> {
        Box::pin(async { Ok(ProbeOutcome::Passed("modelled".into())) })
    }
}

impl ProbeFactory for Stalling {
    fn build(&self, spec: &ProbeSpec, env: &ProbeEnv) -> Box<dyn Probe> {
        if spec.kind == ProbeKind::ApiServer {
            return Box::new(InstantApi);
        }
        let inner = ModelProbes::default().build(spec, env);
        if spec.kind != self.kind {
            return inner;
        }
        Box::new(StallingProbe {
            inner,
            then_fail: self.then_fail,
            stall: self.stall,
            fired: self.fired.clone(),
            resumed: self.resumed.clone(),
        })
    }
}

/// A handler on a thread and runtime of its own (its own client too), so that freezing it
/// freezes nothing else.
struct OwnThread {
    stop: oneshot::Sender<()>,
    thread: thread::JoinHandle<()>,
}

impl OwnThread {
    fn start(c: &Cluster, node: &str, backend: MemoryBackend, probes: Arc<Stalling>) -> Self {
        let config = short_leases(c, node);
        let kube_config = c.kube_config();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                let client = kube::Client::try_from(kube_config.clone()).expect("a client");
                let handler = Handler {
                    client,
                    kube_config,
                    backend,
                    config,
                    probes,
                };
                if let Err(e) = handler
                    .run(async move {
                        let _ = stopped.await;
                    })
                    .await
                {
                    tracing::warn!(error = %e, "the stalled handler ended with an error");
                }
            });
        });
        Self { stop, thread }
    }

    async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        tokio::task::spawn_blocking(move || self.thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the stalled handler's thread panicked"))
    }
}

/// The message of the `Aborted` condition.
fn aborted(e: &NodeNetworkConfigurationEnactment) -> String {
    e.status
        .as_ref()
        .and_then(|s| s.conditions.find("Aborted"))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// n1 claims the only slot and stalls at `kind`'s first probe run for longer than its lease;
/// n2 (whose apply lasts `n2_hold`) prunes it and applies; n1 resumes while n2 applies. Returns
/// n1's enactment once it resumed and settled, the highest count of nodes holding a checkpoint
/// at once, and n1's backend.
async fn stall_while_another_prunes(
    kind: ProbeKind,
    then_fail: bool,
) -> Result<(
    NodeNetworkConfigurationEnactment,
    usize,
    MemoryBackend,
    Cluster,
)> {
    let c = Cluster::start().await?;
    let mut policy = example("linux-bridge.yaml")?;
    policy["spec"]["maxUnavailable"] = json!(1);
    c.add_node("n1", &[]).await?;
    c.add_node("n2", &[]).await?;
    let b1 = MemoryBackend::harness_like("198.18.0.101");
    let b2 = MemoryBackend::harness_like("198.18.0.102");
    let stop = Arc::new(AtomicBool::new(false));
    let (max, tracker) = track_applying(vec![b1.clone(), b2.clone()], stop.clone());
    // n1 resumes a few seconds after its lease ran out, while n2 (which waited for the lease)
    // is still probing its own apply.
    let stall = lease() + Duration::from_secs(3);
    let n2_hold = Duration::from_secs(8);
    let resumed = Arc::new(AtomicBool::new(false));
    let probes = Arc::new(Stalling {
        kind,
        then_fail,
        stall,
        fired: Arc::new(AtomicBool::new(false)),
        resumed: resumed.clone(),
    });
    let h1 = OwnThread::start(&c, "n1", b1.clone(), probes);
    c.create_policy(policy).await?;
    wait_condition(&c, "n1.linux-bridge", "Progressing", T).await?;
    // n2's checkpoint outlasts its long probes (the default minute).
    let h2 = c.start_handler("n2", b2.clone(), n2_hold);
    // The next claimant prunes the stalled holder once its lease ran out, and applies.
    let pruned = wait_condition(&c, "n1.linux-bridge", "Aborted", lease() + T).await?;
    assert!(
        aborted(&pruned).contains("did not renew the maxUnavailable slot"),
        "{}",
        aborted(&pruned)
    );
    eventually("n2 applying", T, || {
        let b = b2.clone();
        async move { (!b.checkpoints().is_empty()).then_some(()) }
    })
    .await?;
    eventually("n1 resumed", stall + T, || {
        let r = resumed.clone();
        async move { r.load(Ordering::SeqCst).then_some(()) }
    })
    .await?;
    assert!(
        !b2.checkpoints().is_empty(),
        "n1 resumed while n2 still applies"
    );
    wait_condition(&c, "n2.linux-bridge", "Available", n2_hold + T).await?;
    // Long enough for a resumed n1 without a fence to apply and commit.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let n1 = c.enactments().get("n1.linux-bridge").await?;
    stop.store(true, Ordering::SeqCst);
    tracker.await?;
    h2.stop().await?;
    h1.stop().await?;
    Ok((n1, max.load(Ordering::SeqCst), b1, c))
}

#[tokio::test]
async fn a_holder_stalled_before_its_apply_past_its_lease_never_applies() -> Result<()> {
    // The gateway probe's first run is its check before the apply.
    let (n1, max, b1, _c) = stall_while_another_prunes(ProbeKind::DefaultGateway, false).await?;
    assert_eq!(max, 1, "never two nodes holding a checkpoint at once");
    assert_eq!(active(&n1).as_deref(), Some("Aborted"));
    assert!(
        aborted(&n1).contains("did not renew the maxUnavailable slot"),
        "left as the pruner marked it: {}",
        aborted(&n1)
    );
    let status = n1.status.expect("status");
    assert!(status.last_apply.is_none(), "n1 never applied: {status:?}");
    assert!(
        iface(&b1.state(), "br1").is_none() && b1.checkpoints().is_empty(),
        "n1's network untouched"
    );
    Ok(())
}

#[tokio::test]
async fn a_holder_stalled_before_its_commit_past_its_lease_rolls_back_and_reports_aborted()
-> Result<()> {
    // The readiness probe runs only after the apply, with the checkpoint held.
    let (n1, max, b1, c) = stall_while_another_prunes(ProbeKind::NodeReadiness, false).await?;
    assert_eq!(max, 1, "never two nodes holding a checkpoint at once");
    assert_eq!(active(&n1).as_deref(), Some("Aborted"));
    let message = aborted(&n1);
    assert!(
        message.starts_with(
            "reconciliation of enactment \"n1.linux-bridge\" has aborted: the handler lost its \
             maxUnavailable slot while it was stalled ("
        ) && message.ends_with("); the applied state was rolled back, never committed"),
        "{message}"
    );
    let last = n1.status.expect("status").last_apply.expect("lastApply");
    assert!(last.rolled_back, "{last:?}");
    assert_eq!(last.rollback_reason, "slot-lost");
    assert!(
        last.probes
            .iter()
            .any(|p| p.name == "slot-fence" && !p.succeeded),
        "{:?}",
        last.probes
    );
    assert!(
        iface(&b1.state(), "br1").is_none() && b1.checkpoints().is_empty(),
        "n1 never committed"
    );
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    let list = events.list(&ListParams::default()).await?;
    assert!(
        list.items.iter().any(|e| {
            e.reason.as_deref() == Some("SlotExpired")
                && e.note.as_deref().is_some_and(|n| {
                    n.contains("lost its maxUnavailable slot while it was stalled")
                })
        }),
        "a SlotExpired event from the stalled node"
    );
    Ok(())
}

#[tokio::test]
async fn a_holder_stalled_mid_probe_past_its_lease_reports_aborted_not_its_failure() -> Result<()> {
    // The stalled probe fails once n1 resumes (as a probe whose deadline passed during the
    // freeze does): the attempt is rolled back, and a pruned holder reports Aborted, not
    // Retrying (which would overwrite its Aborted and use a slot it no longer holds).
    let (n1, max, b1, _c) = stall_while_another_prunes(ProbeKind::NodeReadiness, true).await?;
    assert_eq!(max, 1, "never two nodes holding a checkpoint at once");
    assert_eq!(active(&n1).as_deref(), Some("Aborted"));
    let message = aborted(&n1);
    assert!(
        message.contains("lost its maxUnavailable slot while it was stalled")
            && message.ends_with("; the failed attempt was rolled back and is not counted"),
        "{message}"
    );
    let status = n1.status.expect("status");
    assert!(status.last_apply.expect("lastApply").rolled_back);
    assert!(
        iface(&b1.state(), "br1").is_none() && b1.checkpoints().is_empty(),
        "n1 never committed"
    );
    Ok(())
}
