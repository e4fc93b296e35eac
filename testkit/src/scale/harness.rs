//! One scale scenario: the stand-in, N nodes and their handlers, the controller, one policy
//! rolled out and an idle window, measured (see the module page of [`crate::scale`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use knmstate_api::names;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::{NodeNetworkConfigurationEnactment, NodeNetworkState};
use knmstate_handler::probes::ModelProbes;
use knmstate_nm_backend::MemoryBackend;
use knmstate_state_engine::concurrency::{self, SlotState};
use knmstate_state_engine::slot::SlotLedger;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

use super::figures::Figures;
use super::handlers::{self, track_applying};
use super::processes::{Controller, Layout, StandIn, Usage};
use crate::builders;

/// The policy rolled out: a linux bridge over `eth1` (the repository's example).
const POLICY: &str = include_str!("../../../examples/linux-bridge.yaml");

/// Interface types whose apply fails on a failing node.
const FAILING_TYPE: &str = "linux-bridge";

/// Requests in flight at once while the harness sets up nodes.
const SETUP_CONCURRENCY: usize = 32;

/// Handlers started together; the next wave starts once these are ready.
const START_WAVE: usize = 100;

/// One scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Simulated nodes (N).
    pub nodes: usize,
    /// The policy's maxUnavailable, as written (`"10%"`, `"5"`).
    pub max_unavailable: String,
    /// How long each apply takes (t): the node-readiness probe holds it.
    pub apply_time: Duration,
    /// How many nodes fail their apply (spread evenly).
    pub failing: usize,
    /// The idle window after the rollout (counts are scaled to a minute).
    pub idle_window: Duration,
    /// Where the stand-in and the controller run.
    pub layout: Layout,
    /// How long the rollout may take before the run fails (default: 4 × the ideal + 1 min +
    /// 20 ms per node).
    pub rollout_timeout: Option<Duration>,
}

impl Scenario {
    /// The slots maxUnavailable gives over the nodes (M).
    pub fn slots(&self) -> usize {
        concurrency::max_unavailable(
            Some(&IntOrString::String(self.max_unavailable.clone())),
            self.nodes,
        )
        .value
    }

    /// `ceil(N/M)·t`.
    pub fn ideal(&self) -> Duration {
        let waves = self.nodes.div_ceil(self.slots().max(1));
        self.apply_time
            .saturating_mul(u32::try_from(waves).unwrap_or(u32::MAX))
    }

    /// Whether node `i` fails its apply.
    fn fails(&self, i: usize) -> bool {
        let stride = (self.nodes / self.failing.max(1)).max(1);
        self.failing > 0 && i.is_multiple_of(stride) && i / stride < self.failing
    }
}

fn node_name(i: usize) -> String {
    format!("node-{i:04}")
}

/// Create `n` Ready nodes.
async fn add_nodes(client: &kube::Client, n: usize) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    futures::stream::iter(0..n)
        .map(|i| {
            let nodes = nodes.clone();
            async move {
                let name = node_name(i);
                nodes
                    .create(&PostParams::default(), &builders::node(&name, &[]))
                    .await?;
                nodes
                    .patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(builders::node_status_patch(true)),
                    )
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Wait until every handler wrote its readiness file.
async fn handlers_ready(files: &[PathBuf], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    for f in files {
        while !f.exists() {
            if Instant::now() > deadline {
                bail!("handler not ready: {}", f.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// The harness's watch caches of the policies and enactments.
struct View {
    policies: Store<NodeNetworkConfigurationPolicy>,
    enactments: Store<NodeNetworkConfigurationEnactment>,
    states: Store<NodeNetworkState>,
    ledgers: Store<Lease>,
}

/// The tasks feeding a [`View`].
struct Watch(Vec<tokio::task::JoinHandle<()>>);

impl Watch {
    /// Watch the policies and enactments; returns once both caches are filled.
    async fn start(client: &kube::Client) -> (Self, View) {
        let (policies, pw) = reflector::store();
        let (enactments, ew) = reflector::store();
        let (states, sw) = reflector::store();
        let (ledgers, lw) = reflector::store();
        let ledger_config = watcher::Config::default().labels(names::POLICY_LABEL);
        let tasks = vec![
            tokio::spawn(follow(
                Api::all(client.clone()),
                watcher::Config::default(),
                pw,
            )),
            tokio::spawn(follow(
                Api::all(client.clone()),
                watcher::Config::default(),
                ew,
            )),
            tokio::spawn(follow(
                Api::all(client.clone()),
                watcher::Config::default(),
                sw,
            )),
            tokio::spawn(follow(
                Api::namespaced(client.clone(), "default"),
                ledger_config,
                lw,
            )),
        ];
        let _ = policies.wait_until_ready().await;
        let _ = enactments.wait_until_ready().await;
        let _ = states.wait_until_ready().await;
        let _ = ledgers.wait_until_ready().await;
        let view = View {
            policies,
            enactments,
            states,
            ledgers,
        };
        (Self(tasks), view)
    }

    fn abort(self) {
        for t in self.0 {
            t.abort();
        }
    }
}

/// How long after the rollout the handlers may take to release their slots.
const RELEASE_WAIT: Duration = Duration::from_secs(30);

/// How long the ledgers stay unchanged once the releases are done.
const LEDGER_QUIET: Duration = Duration::from_secs(2);

/// Feed `writer` from a watch of `api` until aborted.
async fn follow<K>(api: Api<K>, config: watcher::Config, writer: reflector::store::Writer<K>)
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .for_each(|_| futures::future::ready(()))
        .await;
}

impl View {
    /// The versions of everything a handler writes: enactments, node states, slot ledgers.
    fn handler_objects(&self) -> std::collections::BTreeMap<String, String> {
        let key = |kind: &str, m: &kube::api::ObjectMeta| {
            (
                format!("{kind}/{}", m.name.clone().unwrap_or_default()),
                m.resource_version.clone().unwrap_or_default(),
            )
        };
        let e = self
            .enactments
            .state()
            .into_iter()
            .map(|o| key("enactment", &o.metadata));
        let n = self
            .states
            .state()
            .into_iter()
            .map(|o| key("state", &o.metadata));
        let l = self
            .ledgers
            .state()
            .into_iter()
            .map(|o| key("ledger", &o.metadata));
        e.chain(n).chain(l).collect()
    }

    /// How many enactments are in each slot state, and the policy's conditions.
    fn summary(&self) -> String {
        let generation = self
            .policies
            .state()
            .first()
            .and_then(|p| p.metadata.generation)
            .unwrap_or(0);
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for e in self.enactments.state() {
            *counts
                .entry(format!(
                    "{:?}",
                    SlotState::of(e.status.as_ref(), generation)
                ))
                .or_default() += 1;
        }
        let policy = self
            .policies
            .state()
            .first()
            .and_then(|p| p.status.clone())
            .map(|s| format!("{:?}", s.conditions))
            .unwrap_or_default();
        format!("enactments {counts:?}; policy {policy}")
    }

    /// The nodes the slot ledgers name as holders.
    fn holders(&self) -> Vec<String> {
        self.ledgers
            .state()
            .iter()
            .filter_map(|l| {
                let json = l.annotations().get(names::SLOT_LEDGER_ANNOTATION)?;
                serde_json::from_str::<SlotLedger>(json).ok()
            })
            .flat_map(|l| l.holders)
            .collect()
    }

    /// Wait until the slot ledgers stayed unchanged for [`LEDGER_QUIET`] (the releases after
    /// the last ends are done; a release that conflicted leaves its entry, uncounted).
    async fn released(&self) {
        let versions = || {
            self.ledgers
                .state()
                .iter()
                .map(|l| l.resource_version())
                .collect::<Vec<_>>()
        };
        let mut last = versions();
        let mut since = Instant::now();
        while since.elapsed() < LEDGER_QUIET {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = versions();
            if now != last {
                last = now;
                since = Instant::now();
            }
        }
    }

    /// Wait until each of `nodes` enactments ended for the policy's generation and the
    /// controller wrote the policy's verdict (Available, or Degraded when some failed).
    async fn rolled_out(&self, nodes: usize) {
        loop {
            if let Some(p) = self.policies.state().first() {
                let generation = p.metadata.generation.unwrap_or(0);
                let ended = self
                    .enactments
                    .state()
                    .iter()
                    .filter(|e| SlotState::of(e.status.as_ref(), generation).is_final())
                    .count();
                let verdict = p.status.as_ref().is_some_and(|s| {
                    let t = |ty: &str| s.conditions.is(ty, knmstate_api::ConditionStatus::True);
                    t(names::policy::AVAILABLE) || t(names::policy::DEGRADED)
                });
                if ended == nodes && verdict {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Run `scenario` and measure it.
pub async fn run(scenario: &Scenario) -> Result<Figures> {
    let n = scenario.nodes;
    let dir = std::env::temp_dir().join(format!("knmstate-scale-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // Every handler watches every enactment and ledger: keep enough history that a slow
    // watcher resumes instead of listing again.
    let stand_in = StandIn::start(&scenario.layout, (n * 50).max(20_000), &dir).await?;
    let result = measure(scenario, &stand_in, &dir).await;
    stand_in.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(scenario: &Scenario, stand_in: &StandIn, dir: &Path) -> Result<Figures> {
    let n = scenario.nodes;
    let client = &stand_in.client()?;
    add_nodes(client, n)
        .await
        .context("failed to create the nodes")?;
    let controller = Controller::start(&scenario.layout, stand_in)?;

    let kube_config = kube::Config::new(stand_in.url().parse()?);
    let mut backends = Vec::with_capacity(n);
    let mut running = Vec::with_capacity(n);
    let mut ready = Vec::with_capacity(n);
    let probes = Arc::new(ModelProbes {
        hold: scenario.apply_time,
    });
    for i in 0..n {
        let name = node_name(i);
        let backend = MemoryBackend::harness_like(&format!("198.18.{}.{}", i / 250, i % 250 + 2));
        if scenario.fails(i) {
            backend.set_unsupported_types([FAILING_TYPE]);
        }
        let config = handlers::test_config(dir, &name);
        ready.push(config.readiness_file.clone());
        // Each handler has clients of its own, as on its own node.
        let own = kube::Client::try_from(kube_config.clone())?;
        running.push(handlers::start(
            own,
            kube_config.clone(),
            config,
            backend.clone(),
            probes.clone(),
        ));
        backends.push(backend);
        // Handlers start in waves, as a DaemonSet's pods come up: a thousand handlers opening
        // their watches at once overflowed the stand-in's accept queue (connect errors, then
        // handlers backing off past the readiness timeout).
        if (i + 1) % START_WAVE == 0 || i + 1 == n {
            let wave = &ready[ready.len() - ((i % START_WAVE) + 1)..];
            handlers_ready(wave, Duration::from_mins(1))
                .await
                .with_context(|| {
                    format!("handlers {}..={i} did not get ready", i + 1 - wave.len())
                })?;
        }
    }
    // Let the start-up lists, NodeNetworkState writes and the election settle.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut policy: serde_json::Value = serde_saphyr::from_str(POLICY)?;
    policy["spec"]["maxUnavailable"] = scenario.max_unavailable.clone().into();
    let policy: NodeNetworkConfigurationPolicy = serde_json::from_value(policy)?;
    let policies: Api<NodeNetworkConfigurationPolicy> = Api::all(client.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let (max_applying, tracker) = track_applying(backends.clone(), stop.clone());

    // The harness's own view, opened before the count starts: its lists are not counted.
    let (watch, view) = Watch::start(client).await;

    let before = stand_in.requests().await?;
    let usage_before = (Usage::of("self"), stand_in.usage(), controller.usage());
    let started = Instant::now();
    policies.create(&PostParams::default(), &policy).await?;
    let timeout = scenario.rollout_timeout.unwrap_or_else(|| {
        scenario.ideal() * 4
            + Duration::from_mins(1)
            + Duration::from_millis(20) * u32::try_from(n).unwrap_or(u32::MAX)
    });
    if tokio::time::timeout(timeout, view.rolled_out(n))
        .await
        .is_err()
    {
        bail!("the rollout did not end in {timeout:?}: {}", view.summary());
    }
    let rollout = started.elapsed();
    // The handlers release their slots after their enactments ended (spread over up to a
    // second): those writes belong to the rollout, not to the idle window. The wall time
    // stays the rollout's.
    if tokio::time::timeout(RELEASE_WAIT, view.released())
        .await
        .is_err()
    {
        bail!(
            "the slot ledgers still changed {RELEASE_WAIT:?} after the rollout (holders {:?}): {}",
            view.holders(),
            view.summary()
        );
    }
    let after = stand_in.requests().await?;
    let usage_after = (Usage::of("self"), stand_in.usage(), controller.usage());
    stop.store(true, Ordering::SeqCst);
    tracker.await?;

    let idle_start = view.handler_objects();
    tokio::time::sleep(scenario.idle_window).await;
    let idle_end = stand_in.requests().await?;
    let cpu_idle = Usage::of("self").cpu;
    let idle_after = view.handler_objects();
    let idle_handler_writes = idle_after
        .iter()
        .filter(|(k, v)| idle_start.get(*k) != Some(*v))
        .count();
    watch.abort();

    check_outcome(client, scenario).await?;
    futures::future::join_all(running.into_iter().map(handlers::Running::stop)).await;
    controller.stop().await;
    let apart = |after: Option<Usage>, before: Option<Usage>| Some(after?.since(before?));
    Ok(Figures {
        nodes: n,
        max_unavailable: scenario.max_unavailable.clone(),
        slots: scenario.slots(),
        apply_time: scenario.apply_time,
        failing: scenario.failing,
        rollout,
        ideal: scenario.ideal(),
        max_applying: max_applying.load(Ordering::SeqCst),
        rollout_requests: after.since(&before),
        idle_requests: idle_end.since(&after),
        idle_window: scenario.idle_window,
        idle_handler_writes,
        harness: usage_after.0.since(usage_before.0),
        idle_cpu: cpu_idle.saturating_sub(usage_after.0.cpu),
        stand_in: apart(usage_after.1, usage_before.1),
        controller: apart(usage_after.2, usage_before.2),
    })
}

/// Every node ended: the failing ones failed, the others are Available.
async fn check_outcome(client: &kube::Client, scenario: &Scenario) -> Result<()> {
    let enactments: Api<NodeNetworkConfigurationEnactment> = Api::all(client.clone());
    let list = enactments.list(&ListParams::default()).await?;
    let mut available = 0;
    let mut failed = 0;
    for e in &list.items {
        let generation = e
            .status
            .as_ref()
            .and_then(|s| s.policy_generation)
            .unwrap_or(0);
        match SlotState::of(e.status.as_ref(), generation) {
            SlotState::Available => available += 1,
            SlotState::FailedFinal => failed += 1,
            _ => {}
        }
    }
    if available != scenario.nodes - scenario.failing || failed != scenario.failing {
        bail!(
            "the rollout ended with {available} nodes Available and {failed} failed of {} ({} meant to fail)",
            scenario.nodes,
            scenario.failing
        );
    }
    Ok(())
}
