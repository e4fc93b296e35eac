//! Leader election on a `coordination.k8s.io/v1` Lease, the way client-go does it: the holder
//! renews `renewTime` every `retry_period`; a candidate takes the Lease over once the record it
//! last saw has not changed for `leaseDurationSeconds` (measured on its own clock, so clock
//! skew between machines does not matter). Every write is an update carrying the
//! `resourceVersion` that was read, so two candidates can never both win: the loser gets a
//! conflict. A leader that cannot renew for `renew_deadline` (shorter than the lease
//! duration) steps down before anyone else may take over. On shutdown the leader releases
//! the Lease so that a successor takes over at once.
//!
//! Only the leader writes: [`Leadership::is_leader`] is checked right before every write.
//!
//! Why not a crate (compared for kube 5.0 / k8s-openapi 0.29):
//!
//! | crate | version | kube it needs | verdict |
//! |---|---|---|---|
//! | `kube-leader-election` | 0.44.0 | kube 4 | a second kube and k8s-openapi in the build |
//! | `kube-coordinate` | 2.0.0-rc.0 | kube 2 | the same, and a release candidate |
//! | `kube-lease-manager` | 0.13.1 | kube 5, k8s-openapi 0.29 | builds, but durations are whole seconds with `grace < duration` (no sub-second test timings, no renew deadline); expiry is judged from the holder's `renewTime` on the local wall clock (skew-sensitive); renewal and forced takeover are patches without a `resourceVersion` precondition, and takeover is two writes (release, then lock) another candidate can interleave; pulls `rand` 0.10 |
//!
//! This election measures expiry on its own clock and makes every write a
//! `resourceVersion`-checked update, which is what the behaviour tests assert.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

use crate::Error;
use crate::metrics::Metrics;
use std::sync::Arc;

/// Where the Lease lives and how it is held.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This candidate's identity (pod name plus a random suffix).
    pub identity: String,
    /// How long a holder's claim lasts without renewal (`leaseDurationSeconds`).
    pub lease_duration: Duration,
    /// How long a leader keeps leading while renewals fail; must be below `lease_duration`.
    pub renew_deadline: Duration,
    /// How often candidates try to acquire and leaders renew.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's defaults (15 s lease, 10 s renew deadline, 2 s retry) for a Lease.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// A unique candidate identity: `<base>-<random>`, where `base` is usually the pod name
/// (`POD_NAME`) or the host name.
pub fn identity(base: &str) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{base}-{}", &random[..8])
}

/// Whether this process currently leads; cheap to clone and check.
#[derive(Debug, Clone)]
pub struct Leadership(watch::Receiver<bool>);

impl Leadership {
    /// A fixed answer, for callers that run without election.
    pub fn fixed(leader: bool) -> Self {
        // The receiver keeps the last value once the sender is gone.
        let (_, rx) = watch::channel(leader);
        Self(rx)
    }

    /// Whether this process leads right now.
    pub fn is_leader(&self) -> bool {
        *self.0.borrow()
    }

    /// A receiver of leadership changes.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.clone()
    }
}

/// The record a candidate last saw and when it first saw it.
#[derive(Debug)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    since: Instant,
}

/// Runs the election loop for one candidate.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    tx: watch::Sender<bool>,
    observed: Option<Observed>,
    /// The Lease as this leader last wrote it (renewals skip the read).
    held: Option<Lease>,
    metrics: Option<Arc<Metrics>>,
}

impl LeaderElector {
    /// A candidate and the [`Leadership`] view of it.
    pub fn new(client: Client, config: LeaseConfig) -> (Self, Leadership) {
        let (tx, rx) = watch::channel(false);
        let api = Api::namespaced(client, &config.namespace);
        (
            Self {
                api,
                config,
                tx,
                observed: None,
                held: None,
                metrics: None,
            },
            Leadership(rx),
        )
    }

    /// Count failed Lease calls in `metrics` (`knmstate_controller_errors_total`).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn report(&self, e: &Error) {
        if let Some(m) = &self.metrics {
            m.failed(e);
        } else {
            tracing::warn!(category = e.category(), "{}", e.report());
        }
    }

    fn lease_error(&self, source: kube::Error) -> Error {
        Error::RenewLease {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source,
        }
    }

    fn set_leader(&self, leader: bool) {
        self.tx.send_if_modified(|v| {
            let changed = *v != leader;
            *v = leader;
            changed
        });
        if leader {
            tracing::debug!(identity = %self.config.identity, "holding lease");
        }
    }

    /// Try and acquire or renew the Lease once. `Ok(true)` when this candidate holds it now.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, Error> {
        let now = MicroTime(Timestamp::now());
        let duration_secs = i32::try_from(self.config.lease_duration.as_secs())
            .unwrap_or(i32::MAX)
            .max(1);
        // A leader renews the copy it wrote last; a conflict sends it back to reading.
        if let Some(mut lease) = self.held.take() {
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.renew_time = Some(now.clone());
            spec.lease_duration_seconds = Some(duration_secs);
            match self
                .api
                .replace(&self.config.name, &PostParams::default(), &lease)
                .await
            {
                Ok(written) => {
                    self.held = Some(written);
                    return Ok(true);
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(self.lease_error(e)),
            }
        }
        let current = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.lease_error(e))?;
        let Some(lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(written) => {
                    self.held = Some(written);
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(self.lease_error(e)),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let mine = holder.as_deref() == Some(self.config.identity.as_str());
        let unchanged = self
            .observed
            .as_ref()
            .is_some_and(|o| o.holder == holder && o.renew_time == spec.renew_time);
        if !unchanged {
            self.observed = Some(Observed {
                holder: holder.clone(),
                renew_time: spec.renew_time.clone(),
                since: Instant::now(),
            });
        }
        let their_duration = spec
            .lease_duration_seconds
            .map_or(self.config.lease_duration, |s| {
                Duration::from_secs(u64::try_from(s).unwrap_or(0))
            });
        let expired = self
            .observed
            .as_ref()
            .is_some_and(|o| o.since.elapsed() >= their_duration);
        if holder.is_some() && !mine && !expired {
            return Ok(false);
        }
        let mut next = lease;
        let spec = next.spec.get_or_insert_with(Default::default);
        if !mine {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.holder_identity = Some(self.config.identity.clone());
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(duration_secs);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &next)
            .await
        {
            Ok(written) => {
                if !mine {
                    tracing::info!(identity = %self.config.identity, "acquired lease");
                }
                self.held = Some(written);
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.lease_error(e)),
        }
    }

    /// Give the Lease up (empty holder, 1 s duration) if this candidate holds it.
    pub async fn release(&mut self) -> Result<(), Error> {
        let Some(mut lease) = self.held.take() else {
            return Ok(());
        };
        self.set_leader(false);
        let spec = lease.spec.get_or_insert_with(Default::default);
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                tracing::info!(identity = %self.config.identity, "released lease");
                Ok(())
            }
            // Somebody else already took it over: nothing to release.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
            Err(source) => Err(Error::ReleaseLease {
                namespace: self.config.namespace.clone(),
                name: self.config.name.clone(),
                source,
            }),
        }
    }

    /// Acquire, renew and step down until `shutdown` completes, then release.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut last_renew: Option<Instant> = None;
        loop {
            let attempt =
                tokio::time::timeout(self.config.renew_deadline, self.try_acquire_or_renew()).await;
            match attempt {
                Ok(Ok(true)) => {
                    last_renew = Some(Instant::now());
                    self.set_leader(true);
                }
                Ok(Ok(false)) => {
                    if last_renew.take().is_some() {
                        tracing::warn!(identity = %self.config.identity, "lost lease to another candidate");
                    }
                    self.held = None;
                    self.set_leader(false);
                }
                Ok(Err(e)) => self.report(&e),
                Err(_) => tracing::warn!("lease request timed out"),
            }
            if last_renew.is_some_and(|t| t.elapsed() >= self.config.renew_deadline) {
                tracing::warn!(identity = %self.config.identity, "could not renew lease in time, stepping down");
                last_renew = None;
                self.held = None;
                self.set_leader(false);
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.retry_period) => {}
                () = &mut shutdown => break,
            }
        }
        if let Err(e) = self.release().await {
            self.report(&e);
        }
        self.set_leader(false);
    }
}
