//! The API server restarted mid-rollout: the stand-in is stopped while a node holds the only
//! slot and applies, stays down for a while, and comes back on the same address from its data
//! file. The handlers' clients reconnect by themselves (watches re-list); the rollout completes
//! with exactly one apply per node, no slot left held and the policy Available.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use knmstate_api::names;
use knmstate_handler::Handler;
use knmstate_nm_backend::{
    Attempt, ChangeStream, Checkpoint, CurrentState, PendingApply, Recovery,
};
use knmstate_state_engine::aggregate::{policy_verdict, select_nodes};
use knmstate_state_engine::conditions::PolicyConditionKind;
use knmstate_state_engine::slot::SlotLedger;
use knmstate_testkit::apiserver::{ApiServer, Config};
use knmstate_testkit::poll::eventually_every;
use tokio::sync::oneshot;

use super::*;

/// An in-memory node that counts the applies handed to it.
#[derive(Clone)]
struct Counted {
    inner: MemoryBackend,
    applies: Arc<AtomicUsize>,
}

impl Counted {
    fn new(address: &str) -> Self {
        Self {
            inner: MemoryBackend::harness_like(address),
            applies: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Backend for Counted {
    async fn current_state(&self) -> knmstate_nm_backend::Result<CurrentState> {
        self.inner.current_state().await
    }

    async fn apply(
        &self,
        desired: &Value,
        options: &ApplyOptions,
    ) -> knmstate_nm_backend::Result<PendingApply> {
        self.applies.fetch_add(1, Ordering::SeqCst);
        self.inner.apply(desired, options).await
    }

    async fn commit(&self, checkpoint: &Checkpoint) -> knmstate_nm_backend::Result<()> {
        self.inner.commit(checkpoint).await
    }

    async fn rollback(&self, checkpoint: &Checkpoint) -> knmstate_nm_backend::Result<()> {
        self.inner.rollback(checkpoint).await
    }

    async fn roll_back_stale_checkpoints(&self) -> knmstate_nm_backend::Result<Recovery> {
        self.inner.roll_back_stale_checkpoints().await
    }

    fn interrupted_attempts(&self) -> Vec<Attempt> {
        self.inner.interrupted_attempts()
    }

    fn forget_interrupted(&self, attempt: &Attempt) {
        self.inner.forget_interrupted(attempt);
    }

    async fn supports_bridge_vlan_filtering(&self) -> bool {
        self.inner.supports_bridge_vlan_filtering().await
    }

    async fn changes(&self, debounce: Duration) -> knmstate_nm_backend::Result<ChangeStream> {
        self.inner.changes(debounce).await
    }
}

/// A handler over a [`Counted`] node, stopped gracefully by [`Started::stop`].
struct Started {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<knmstate_handler::Result<()>>,
}

impl Started {
    fn new(c: &Cluster, node: &str, backend: &Counted, hold: Duration) -> Self {
        let (stop, rx) = oneshot::channel::<()>();
        let handler = Handler {
            client: c.client.clone(),
            kube_config: c.kube_config(),
            backend: backend.clone(),
            config: c.config(node),
            probes: Arc::new(ModelProbes { hold }),
        };
        let task = tokio::spawn(handler.run(async move {
            let _ = rx.await;
        }));
        Self { stop, task }
    }

    async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        tokio::time::timeout(T, self.task).await???;
        Ok(())
    }
}

/// The slot ledger of `policy`, once its Lease exists.
async fn ledger(c: &Cluster, policy: &str) -> Option<SlotLedger> {
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), &c.config("n1").namespace);
    let lease = leases
        .get_opt(&names::slot_lease_name(policy))
        .await
        .ok()??;
    let json = lease
        .metadata
        .annotations?
        .remove(names::SLOT_LEDGER_ANNOTATION)?;
    serde_json::from_str(&json).ok()
}

/// When, in the first node's apply, the stand-in goes down.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// While the node holds its checkpoint (probing).
    MidApply,
    /// Right after the node committed, before or while it reports Available and releases its
    /// slot.
    AtCommit,
}

#[tokio::test]
async fn the_api_server_restarted_mid_apply_leaves_one_apply_per_node() -> Result<()> {
    restarted_mid_rollout(Moment::MidApply).await
}

#[tokio::test]
async fn the_api_server_restarted_at_a_commit_leaves_one_apply_per_node() -> Result<()> {
    restarted_mid_rollout(Moment::AtCommit).await
}

/// A rollout of three nodes with `maxUnavailable: 1` whose stand-in restarts at `moment` of
/// the first apply.
async fn restarted_mid_rollout(moment: Moment) -> Result<()> {
    let data = tempfile::tempdir()?;
    let config = Config {
        data_file: Some(data.path().join("store.json")),
        ..Config::default()
    };
    let c = Cluster::start_on(config.clone()).await?;
    let mut policy = example("linux-bridge.yaml")?;
    policy["spec"]["maxUnavailable"] = json!(1);
    let nodes: Vec<Counted> = (1..=3)
        .map(|i| Counted::new(&format!("198.18.0.10{i}")))
        .collect();
    let mut handlers = Vec::new();
    for (i, b) in nodes.iter().enumerate() {
        let node = format!("n{}", i + 1);
        c.add_node(&node, &[]).await?;
        // Each apply holds its checkpoint for a while (the readiness probe), so that the
        // restart falls inside one.
        handlers.push(Started::new(&c, &node, b, Duration::from_secs(2)));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let memory: Vec<MemoryBackend> = nodes.iter().map(|b| b.inner.clone()).collect();
    let (max, tracker) = track_applying(memory.clone(), stop.clone());
    c.create_policy(policy).await?;
    let holder = eventually("a node applies, holding the only slot", T, || {
        let memory = memory.clone();
        async move { memory.iter().position(|b| !b.checkpoints().is_empty()) }
    })
    .await?;
    if let Moment::AtCommit = moment {
        // Polled closely: the stand-in should go down before the node's next write.
        eventually_every(
            "the first node committed",
            T,
            Duration::from_millis(1),
            || {
                let b = memory[holder].clone();
                async move { b.checkpoints().is_empty().then_some(()) }
            },
        )
        .await?;
    }

    // Stop the stand-in (it writes its data file a last time), keep it down for a second, and
    // start it again on the same address from that file.
    let addr = c.server.addr();
    let rv = c.server.store().resource_version();
    let Cluster {
        server,
        client,
        dir,
    } = c;
    server.shutdown().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Moment::MidApply = moment {
        assert!(
            !memory[holder].checkpoints().is_empty(),
            "the restart fell inside n{}'s apply",
            holder + 1
        );
    }
    let server = ApiServer::start(Config {
        listen: addr,
        ..config
    })
    .await?;
    assert!(
        server.store().resource_version() >= rv,
        "the restarted stand-in lost writes"
    );
    let c = Cluster {
        server,
        client,
        dir,
    };

    for i in 1..=3 {
        wait_condition(&c, &format!("n{i}.linux-bridge"), "Available", T * 2).await?;
    }
    let released = eventually("every slot released", T, || async {
        ledger(&c, "linux-bridge")
            .await
            .filter(|l| l.holders.is_empty())
    })
    .await?;
    assert!(
        released.expired.is_empty(),
        "nobody was pruned as a ghost: {released:?}"
    );
    // A second apply would come from a reconcile run again after the restart: give it time.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    tracker.await?;
    for (i, b) in nodes.iter().enumerate() {
        assert_eq!(
            b.applies.load(Ordering::SeqCst),
            1,
            "node n{} applied exactly once",
            i + 1
        );
        assert!(b.inner.checkpoints().is_empty(), "n{} committed", i + 1);
        assert!(
            iface(&b.inner.state(), "br1").is_some(),
            "n{} has br1",
            i + 1
        );
    }
    assert_eq!(max.load(Ordering::SeqCst), 1, "one node applied at a time");

    // The policy's verdict from what the stand-in now holds, as the controller computes it.
    let policy = c.policies().get("linux-bridge").await?;
    let enactments = c.enactments().list(&ListParams::default()).await?.items;
    assert!(
        enactments
            .iter()
            .all(|e| active(e).as_deref() == Some("Available")),
        "nothing Pending or Progressing"
    );
    let all_nodes = Api::<Node>::all(c.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let (matching, ready) = select_nodes(&policy, &all_nodes, |_| true)?;
    assert_eq!(matching.len(), 3);
    let verdict = policy_verdict(&policy, &enactments, &matching, &ready);
    assert_eq!(verdict.kind, PolicyConditionKind::Success, "{verdict:?}");
    for h in handlers {
        h.stop().await?;
    }
    Ok(())
}
