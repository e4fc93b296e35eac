//! The Lease I/O of state-engine's slot protocol ([`knmstate_state_engine::slot`]): a `Lease`
//! per policy in the handler's namespace, whose annotation [`LEDGER_ANNOTATION`] holds the
//! [`SlotLedger`] as JSON. Writes carry the `resourceVersion` that was read (creation fails if
//! someone else created it first), so two handlers racing for the last slot cannot both win.
//! The Lease is owned by the policy and goes away with it.
//!
//! Also here: the heartbeat that renews this node's leases while it applies, the release of a
//! slot, and what a handler process remembers for the rollout (its incarnation, how long a
//! policy has waited for an earlier one).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_nm_backend::Backend;
use knmstate_state_engine::concurrency::SlotState;
use knmstate_state_engine::slot::{self, SlotLedger, SlotTiming};
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};

use crate::context::Context;
use crate::error::{Error, Result};
use knmstate_api::names::{
    SLOT_LEDGER_ANNOTATION as LEDGER_ANNOTATION, slot_lease_name as lease_name,
};

/// What one handler process remembers across the reconciles of a rollout.
#[derive(Debug)]
pub struct RolloutMemory {
    /// This process's incarnation, written into its slot leases: a node that resumes a slot
    /// of another incarnation restarted while holding it.
    pub incarnation: String,
    /// Per policy: since when it waits for an earlier policy (name order) on this node.
    pub waiting_since: Mutex<HashMap<String, Instant>>,
    /// Per policy: how many applies in a row a checkpoint of another tool kept from starting.
    foreign_waits: Mutex<HashMap<String, u32>>,
}

impl RolloutMemory {
    /// A new process's memory (incarnation: process id and start time).
    pub fn new() -> Self {
        let started = k8s_openapi::jiff::Timestamp::now();
        Self {
            incarnation: format!("{}-{}", std::process::id(), started.as_nanosecond()),
            waiting_since: Mutex::new(HashMap::new()),
            foreign_waits: Mutex::new(HashMap::new()),
        }
    }

    /// Count one more apply of `policy` that a foreign checkpoint kept from starting; the
    /// count in a row, from 1.
    pub fn foreign_wait(&self, policy: &str) -> u32 {
        let mut waits = self
            .foreign_waits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = waits.entry(policy.to_owned()).or_default();
        *n = n.saturating_add(1);
        *n
    }

    /// An apply of `policy` started: the waits for foreign checkpoints are over.
    pub fn forget_foreign_waits(&self, policy: &str) {
        self.foreign_waits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(policy);
    }
}

impl Default for RolloutMemory {
    fn default() -> Self {
        Self::new()
    }
}

/// A ledger as read, with the `resourceVersion` to write against (`None`: no Lease yet).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadLedger {
    /// The ledger, if any.
    pub ledger: Option<SlotLedger>,
    /// Version of the Lease read.
    pub resource_version: Option<String>,
}

/// The clock, as state-engine takes it.
pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// The handler's Leases API.
pub fn leases<B: Backend>(ctx: &Context<B>) -> Api<Lease> {
    Api::namespaced(ctx.requests.client(), &ctx.config.namespace)
}

/// Read the ledger of `policy` from the API server (after a conflict, or to fence: the slot
/// path reads it from the watch cache first, [`cached`]).
pub async fn read(leases: &Api<Lease>, policy: &str) -> Result<ReadLedger> {
    let name = lease_name(policy);
    let lease = leases
        .get_opt(&name)
        .await
        .map_err(|e| Error::read(format!("lease {name}"), e))?;
    Ok(ledger_of(lease.as_ref()))
}

/// How long a writer that lost a ledger write waits for its watch to show the newer ledger
/// before it reads it from the API server.
const CATCH_UP: Duration = Duration::from_millis(100);

/// The ledger of `policy` after a write against version `lost` failed its precondition: the
/// newer one the watch shows (usually within milliseconds: the conflicting write's event), or,
/// when the watch does not show one within 100 ms, a read from the API server. One
/// request fewer per conflict, and conflicts come in bursts when many holders end together.
pub async fn after_conflict<B: Backend>(
    ctx: &Context<B>,
    leases: &Api<Lease>,
    policy: &str,
    lost: Option<&str>,
) -> Result<ReadLedger> {
    let until = tokio::time::Instant::now() + CATCH_UP;
    loop {
        let seen = cached(ctx, policy);
        if seen.resource_version.is_some() && seen.resource_version.as_deref() != lost {
            return Ok(seen);
        }
        if tokio::time::Instant::now() >= until {
            return read(leases, policy).await;
        }
        tokio::time::sleep(CATCH_UP / 20).await;
    }
}

/// The ledger of `policy` as the handler's watch of the ledgers last saw it. Written against,
/// a stale read only fails its precondition.
pub fn cached<B: Backend>(ctx: &Context<B>, policy: &str) -> ReadLedger {
    let key = ObjectRef::new(&lease_name(policy)).within(&ctx.config.namespace);
    ledger_of(ctx.caches.ledgers.get(&key).as_deref())
}

/// The ledger a Lease holds (none in a Lease that is missing or holds no valid ledger).
fn ledger_of(lease: Option<&Lease>) -> ReadLedger {
    match lease {
        None => ReadLedger {
            ledger: None,
            resource_version: None,
        },
        Some(l) => ReadLedger {
            ledger: l
                .annotations()
                .get(LEDGER_ANNOTATION)
                .and_then(|s| serde_json::from_str(s).ok()),
            resource_version: l.resource_version(),
        },
    }
}

/// Give this node's lease in `ledger` (the plan of a claim or a resume) a new claim name,
/// which its apply reports in `status.lastApply.slotClaim`; the name, or `None` without a
/// lease to name.
pub fn name_claim(ledger: Option<&mut SlotLedger>, node: &str) -> Option<String> {
    let lease = ledger?.leases.get_mut(node)?;
    lease.claim = format!("{:016x}", fastrand::u64(..));
    Some(lease.claim.clone())
}

/// Write `next` against what was read. `Ok(false)` on a conflict (someone wrote in between).
pub async fn write(
    leases: &Api<Lease>,
    policy: &NodeNetworkConfigurationPolicy,
    read: &ReadLedger,
    next: &SlotLedger,
) -> Result<bool> {
    let policy_name = policy.name_any();
    let json = serde_json::to_string(next).map_err(|source| Error::Serialize {
        what: "slot ledger".into(),
        source,
    })?;
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(lease_name(&policy_name)),
            resource_version: read.resource_version.clone(),
            annotations: Some(BTreeMap::from([(LEDGER_ANNOTATION.to_owned(), json)])),
            labels: Some(BTreeMap::from([(
                knmstate_api::names::POLICY_LABEL.to_owned(),
                policy_name.clone(),
            )])),
            owner_references: policy.owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        spec: None,
    };
    let pp = PostParams {
        field_manager: Some(knmstate_api::names::field_manager::HANDLER.to_owned()),
        ..Default::default()
    };
    let res = match read.resource_version {
        None => leases.create(&pp, &lease).await.map(|_| ()),
        Some(_) => leases
            .replace(&lease_name(&policy_name), &pp, &lease)
            .await
            .map(|_| ()),
    };
    match res {
        Ok(()) => Ok(true),
        Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => Ok(false),
        Err(source) => Err(Error::WriteSlotLedger {
            policy: policy_name,
            source,
        }),
    }
}

/// Attempts of a release: an entry left behind no longer counts, and once the enactment shows
/// its end under the entry's claim nobody reads it again, so a release that conflicts twice
/// leaves it (the next generation's ledger drops it).
const RELEASE_ATTEMPTS: usize = 2;

/// Attempts of a heartbeat write before giving up until the next time (a conflict
/// is another node's write of the same ledger: with many holders they come in bursts, so the
/// attempts are spread by a random pause of up to [`CONFLICT_PAUSE`], doubling per attempt).
const WRITE_ATTEMPTS: usize = 8;
/// The longest pause between the first two attempts of [`update_own_entry`].
const CONFLICT_PAUSE: Duration = Duration::from_millis(50);
/// Per holder in the ledger, the longest pause before a release's first attempt: holders
/// whose applies took the same time end together, and their releases need not collide.
const RELEASE_SPREAD: Duration = Duration::from_millis(10);
/// The longest of those pauses.
const RELEASE_SPREAD_MAX: Duration = Duration::from_secs(1);

/// Change this node's entry in `policy`'s ledger with `change` (`None`: nothing to change),
/// first against the cached ledger, then, after a conflict, against a fresh read. Returns
/// whether a write succeeded.
async fn update_own_entry<B: Backend>(
    ctx: &Context<B>,
    leases: &Api<Lease>,
    policy: &NodeNetworkConfigurationPolicy,
    attempts: usize,
    change: impl Fn(&SlotLedger) -> Option<SlotLedger>,
) -> Result<bool> {
    let name = policy.name_any();
    let mut read_ledger = cached(ctx, &name);
    for attempt in 0..attempts {
        if attempt > 0 {
            let doubled = CONFLICT_PAUSE.saturating_mul(1 << attempt.min(5) >> 1);
            tokio::time::sleep(doubled.mul_f64(fastrand::f64())).await;
            let lost = read_ledger.resource_version.clone();
            read_ledger = after_conflict(ctx, leases, &name, lost.as_deref()).await?;
        }
        if read_ledger.ledger.as_ref().and_then(&change).is_none() {
            // A cache that does not show this node's entry yet may be behind its claim.
            read_ledger = read(leases, &name).await?;
        }
        let Some(next) = read_ledger.ledger.as_ref().and_then(&change) else {
            return Ok(false);
        };
        if write(leases, policy, &read_ledger, &next).await? {
            return Ok(true);
        }
    }
    tracing::debug!(policy = %name, attempts, "gave up changing this node's ledger entry: every write conflicted");
    Ok(false)
}

/// Free this node's slot of `policy` (its apply ended), after a random pause that grows with
/// the holders ([`RELEASE_SPREAD`]). Only this node may remove its entry
/// (`ledger_guard`); left behind, it no longer counts once the enactment shows the end, but
/// every decision would read that enactment again until its version changes.
pub async fn release<B: Backend>(
    ctx: &Context<B>,
    policy: &NodeNetworkConfigurationPolicy,
) -> Result<bool> {
    let node = ctx.node_name();
    let holders = cached(ctx, &policy.name_any())
        .ledger
        .map_or(0, |l| l.holders.len());
    let spread = RELEASE_SPREAD
        .saturating_mul(u32::try_from(holders).unwrap_or(u32::MAX))
        .min(RELEASE_SPREAD_MAX);
    tokio::time::sleep(spread.mul_f64(fastrand::f64())).await;
    update_own_entry(ctx, &leases(ctx), policy, RELEASE_ATTEMPTS, |l| {
        slot::release(l, node)
    })
    .await
}

/// Renew this node's lease on the slot of `policy` and of every policy whose enactment on this
/// node is progressing, every [`SlotTiming::renew_every`], for as long as it is polled (the
/// policy reconcile polls it beside an apply). Failures are logged and tried again next time.
pub async fn heartbeat<B: Backend>(
    ctx: &Context<B>,
    policy: &NodeNetworkConfigurationPolicy,
) -> Infallible {
    let retry = &ctx.config.defaults.retry;
    let every = SlotTiming::new(ctx.config.defaults.checkpoint_timeout, retry.max_backoff)
        .renew_every
        .max(Duration::from_millis(500));
    loop {
        tokio::time::sleep(every).await;
        // Read each time: the connections are renewed after an apply.
        let api = leases(ctx);
        let mut held: Vec<NodeNetworkConfigurationPolicy> = vec![policy.clone()];
        for e in ctx.enactments.state() {
            let progressing = e.status.as_ref().is_some_and(|s| {
                s.policy_generation
                    .is_some_and(|g| SlotState::of(Some(s), g) == SlotState::Progressing)
            });
            let other = e.policy_name().filter(|p| *p != policy.name_any());
            if let (true, Some(name)) = (progressing, other)
                && let Some(p) = ctx
                    .policies
                    .get(&kube::runtime::reflector::ObjectRef::new(name))
            {
                held.push((*p).clone());
            }
        }
        for p in &held {
            let renewed = update_own_entry(ctx, &api, p, WRITE_ATTEMPTS, |l| {
                slot::renew(l, ctx.node_name(), &ctx.rollout.incarnation, &now())
            })
            .await;
            match renewed {
                Ok(true) => tracing::debug!(policy = %p.name_any(), "renewed the slot lease"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(policy = %p.name_any(), error = %e.report(), "failed to renew the slot lease");
                }
            }
        }
    }
}
