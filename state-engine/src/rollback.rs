//! Rollback policy: which probes guard an apply, how long each may take, whether the result
//! commits or rolls back, the retry schedule per policy generation, and whether a node should
//! apply at all.
//!
//! Defaults are upstream's: 120 s per probe, a 480 s checkpoint, 5 attempts per generation,
//! backoff 1 s doubling up to 30 s. A policy may override probes (`spec.probes`, upstream
//! #831): disable one, change its timeout, the DNS host, or the checkpoint timeout.
//!
//! ```
//! use knmstate_state_engine::plan::plan;
//! use knmstate_state_engine::rollback::{select_probes, HandlerDefaults, ProbeKind};
//! use serde_json::json;
//!
//! // A node without a default route: no gateway probe.
//! let current = json!({"interfaces": [{"name": "eth0", "type": "ethernet", "state": "up"}],
//!                      "dns-resolver": {"running": {"server": ["198.18.0.1"]}}});
//! let desired = json!({"interfaces": [{"name": "eth0", "mtu": 9000}]});
//! let p = select_probes(&plan(&current, &desired), &current, None, &HandlerDefaults::default());
//! let kinds: Vec<_> = p.probes.iter().map(|p| p.kind).collect();
//! assert_eq!(kinds, [ProbeKind::Dns, ProbeKind::ApiServer, ProbeKind::NodeReadiness]);
//! assert_eq!(p.checkpoint_timeout.as_secs(), 480);
//! ```

use crate::concurrency::SlotState;
use crate::plan::Plan;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use knmstate_api::condition::{ConditionList, ConditionStatus};
use knmstate_api::shared::{
    DnsProbeOverride, NodeNetworkConfigurationEnactmentStatus, PolicyProbes, ProbeOverride,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Upstream's per-probe budget.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_mins(2);
/// Upstream's checkpoint timeout (`2 × (120 s + 120 s)`).
pub const DEFAULT_CHECKPOINT_TIMEOUT: Duration = Duration::from_mins(8);
/// Upstream's DNS probe host.
pub const DEFAULT_DNS_HOST: &str = "root-servers.net";
/// Upstream's `NNCP_MAX_RETRIES`.
pub const DEFAULT_MAX_RETRIES: u32 = 5;
/// Upstream's `NNCP_INITIAL_BACKOFF_SECONDS`.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Upstream's `NNCP_MAX_BACKOFF_SECONDS`.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The handler's settings (from its environment), before any per-policy override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerDefaults {
    /// Budget of each probe.
    pub probe_timeout: Duration,
    /// How long NetworkManager holds the checkpoint before rolling back by itself.
    pub checkpoint_timeout: Duration,
    /// Name the DNS probe resolves (`PROBE_DNS_HOST`).
    pub dns_host: String,
    /// Retry schedule.
    pub retry: RetryPolicy,
}

impl Default for HandlerDefaults {
    fn default() -> Self {
        Self {
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
            checkpoint_timeout: DEFAULT_CHECKPOINT_TIMEOUT,
            dns_host: DEFAULT_DNS_HOST.to_owned(),
            retry: RetryPolicy::default(),
        }
    }
}

/// A connectivity probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeKind {
    /// Ping the default gateway through its interface.
    DefaultGateway,
    /// Resolve a name through the node's running name servers.
    Dns,
    /// Reach the Kubernetes API server.
    ApiServer,
    /// The node's `Ready` condition is true.
    NodeReadiness,
}

impl ProbeKind {
    /// The probe's name in reports (`default-gateway`, `dns`, `api-server`, `node-readiness`).
    pub fn name(self) -> &'static str {
        match self {
            Self::DefaultGateway => "default-gateway",
            Self::Dns => "dns",
            Self::ApiServer => "api-server",
            Self::NodeReadiness => "node-readiness",
        }
    }

    /// External probes test the network outside the cluster; upstream keeps them only if they
    /// pass before the apply, since a probe that already fails would always roll back.
    pub fn is_external(self) -> bool {
        matches!(self, Self::DefaultGateway | Self::Dns)
    }
}

/// One probe to run after the apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ProbeSpec {
    /// Which probe.
    pub kind: ProbeKind,
    /// How long it may keep failing (polled every second) before it counts as failed.
    pub timeout: Duration,
    /// Whether to run it once before the apply and drop it if it already fails.
    pub precheck: bool,
    /// For the DNS probe: the name to resolve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// Why a probe is not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    /// The policy's `spec.probes` disables it.
    DisabledByPolicy,
    /// No main-table default route exists before the apply, so there is no gateway to ping.
    NoDefaultRoute,
    /// The policy removes every default route on purpose.
    DefaultRouteRemovedByPolicy,
    /// The node has no running name server before the apply.
    NoNameServer,
}

/// The probes that guard one apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ProbePlan {
    /// Probes to run after the apply, in this order.
    pub probes: Vec<ProbeSpec>,
    /// Probes not run, and why.
    pub skipped: Vec<(ProbeKind, SkipReason)>,
    /// Checkpoint timeout: the configured one, raised if needed to cover every probe's
    /// budget so NetworkManager does not roll back while probes still run.
    pub checkpoint_timeout: Duration,
}

fn has_running_dns(current: &Value) -> bool {
    current
        .get("dns-resolver")
        .and_then(|d| d.get("running"))
        .and_then(|r| r.get("server"))
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty())
}

/// Choose the probes for `plan` on a node whose current state is `current`.
pub fn select_probes(
    plan: &Plan,
    current: &Value,
    overrides: Option<&PolicyProbes>,
    defaults: &HandlerDefaults,
) -> ProbePlan {
    let none = ProbeOverride::default();
    let none_dns = DnsProbeOverride::default();
    let o =
        |get: fn(&PolicyProbes) -> Option<&ProbeOverride>| overrides.and_then(get).unwrap_or(&none);
    let dns_o = overrides.and_then(|p| p.dns.as_ref()).unwrap_or(&none_dns);
    let timeout = |secs: Option<u32>| {
        secs.map_or(defaults.probe_timeout, |s| {
            Duration::from_secs(u64::from(s))
        })
    };

    let mut out = ProbePlan {
        probes: Vec::new(),
        skipped: Vec::new(),
        checkpoint_timeout: overrides
            .and_then(|p| p.checkpoint_timeout_seconds)
            .map_or(defaults.checkpoint_timeout, |s| {
                Duration::from_secs(u64::from(s))
            }),
    };
    let mut add = |kind: ProbeKind,
                   enabled: Option<bool>,
                   secs: Option<u32>,
                   skip: Option<SkipReason>,
                   host: Option<String>| {
        if enabled == Some(false) {
            out.skipped.push((kind, SkipReason::DisabledByPolicy));
        } else if let Some(r) = skip {
            out.skipped.push((kind, r));
        } else {
            out.probes.push(ProbeSpec {
                kind,
                timeout: timeout(secs),
                precheck: kind.is_external(),
                host,
            });
        }
    };

    let gw = o(|p| p.default_gateway.as_ref());
    let gw_skip = if !plan.has_default_route {
        Some(SkipReason::NoDefaultRoute)
    } else if plan.removes_all_default_routes {
        Some(SkipReason::DefaultRouteRemovedByPolicy)
    } else {
        None
    };
    add(
        ProbeKind::DefaultGateway,
        gw.enabled,
        gw.timeout_seconds,
        gw_skip,
        None,
    );
    add(
        ProbeKind::Dns,
        dns_o.enabled,
        dns_o.timeout_seconds,
        (!has_running_dns(current)).then_some(SkipReason::NoNameServer),
        Some(
            dns_o
                .host
                .clone()
                .unwrap_or_else(|| defaults.dns_host.clone()),
        ),
    );
    let api = o(|p| p.api_server.as_ref());
    add(
        ProbeKind::ApiServer,
        api.enabled,
        api.timeout_seconds,
        None,
        None,
    );
    let ready = o(|p| p.node_readiness.as_ref());
    add(
        ProbeKind::NodeReadiness,
        ready.enabled,
        ready.timeout_seconds,
        None,
        None,
    );

    let budget: Duration = out.probes.iter().map(|p| p.timeout).sum();
    out.checkpoint_timeout = out.checkpoint_timeout.max(budget);
    out
}

/// What one probe did after the apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// Which probe.
    pub kind: ProbeKind,
    /// Whether it passed within its timeout.
    pub succeeded: bool,
}

/// Commit or roll back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitVerdict {
    /// Every selected probe passed: commit the checkpoint.
    Commit,
    /// Roll back; these probes failed or did not report.
    Rollback {
        /// The failing (or missing) probes, in plan order.
        failed: Vec<ProbeKind>,
    },
}

/// Commit only if every probe of `plan` reported success.
///
/// ```
/// use knmstate_state_engine::rollback::*;
/// let plan = ProbePlan { probes: vec![ProbeSpec { kind: ProbeKind::ApiServer,
///     timeout: DEFAULT_PROBE_TIMEOUT, precheck: false, host: None }], skipped: vec![],
///     checkpoint_timeout: DEFAULT_CHECKPOINT_TIMEOUT };
/// assert_eq!(commit_or_rollback(&plan, &[ProbeOutcome { kind: ProbeKind::ApiServer, succeeded: true }]),
///            CommitVerdict::Commit);
/// assert_eq!(commit_or_rollback(&plan, &[]),
///            CommitVerdict::Rollback { failed: vec![ProbeKind::ApiServer] });
/// ```
pub fn commit_or_rollback(plan: &ProbePlan, outcomes: &[ProbeOutcome]) -> CommitVerdict {
    let failed: Vec<ProbeKind> = plan
        .probes
        .iter()
        .filter(|p| !outcomes.iter().any(|o| o.kind == p.kind && o.succeeded))
        .map(|p| p.kind)
        .collect();
    if failed.is_empty() {
        CommitVerdict::Commit
    } else {
        CommitVerdict::Rollback { failed }
    }
}

/// Attempts per generation and the backoff between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total apply attempts per generation (`NNCP_MAX_RETRIES`).
    pub max_retries: u32,
    /// First backoff (`NNCP_INITIAL_BACKOFF_SECONDS`).
    pub initial_backoff: Duration,
    /// Backoff cap (`NNCP_MAX_BACKOFF_SECONDS`).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: DEFAULT_MAX_RETRIES,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryDecision {
    /// Write `Retrying` (message from [`crate::conditions::retrying_message`] with
    /// `failures`), keep the slot, try again after `delay`.
    Retry {
        /// Failed attempts so far, including this one (the new `retryCount[gen]`).
        failures: u32,
        /// Wait before the next attempt.
        delay: Duration,
    },
    /// Retries exhausted: write `FailedToConfigure`, emit the event, stop.
    GiveUp {
        /// Failed attempts, the new `retryCount[gen]`.
        failures: u32,
    },
}

impl RetryPolicy {
    /// Backoff before the next attempt after `failures` failures: `initial × 2^(failures-1)`,
    /// capped (1 s, 2 s, 4 s, 8 s, 16 s, 30 s, 30 s … with the defaults).
    pub fn backoff(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(31);
        self.initial_backoff
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }

    /// Decide after a failed attempt, given `retryCount[gen]` before it.
    ///
    /// ```
    /// use knmstate_state_engine::rollback::{RetryPolicy, RetryDecision};
    /// use std::time::Duration;
    /// let r = RetryPolicy::default();
    /// assert_eq!(r.after_failure(0), RetryDecision::Retry { failures: 1, delay: Duration::from_secs(1) });
    /// assert_eq!(r.after_failure(4), RetryDecision::GiveUp { failures: 5 });
    /// ```
    pub fn after_failure(&self, failures_before: u32) -> RetryDecision {
        let failures = failures_before.saturating_add(1);
        if failures >= self.max_retries {
            RetryDecision::GiveUp { failures }
        } else {
            RetryDecision::Retry {
                failures,
                delay: self.backoff(failures),
            }
        }
    }

    /// Whether the attempts of a generation are used up.
    pub fn exhausted(&self, failures: u32) -> bool {
        failures >= self.max_retries
    }
}

/// `retryCount[generation]` of an enactment status (0 when absent or invalid).
pub fn retry_count(
    status: Option<&NodeNetworkConfigurationEnactmentStatus>,
    generation: i64,
) -> u32 {
    status
        .and_then(|s| s.retry_count.get(&generation.to_string()))
        .and_then(|n| u32::try_from(*n).ok())
        .unwrap_or(0)
}

/// Set `retryCount[generation]` and drop counts of older generations.
pub fn record_retry_count(counts: &mut BTreeMap<String, i64>, generation: i64, failures: u32) {
    counts.retain(|g, _| g.parse::<i64>().is_ok_and(|g| g >= generation));
    counts.insert(generation.to_string(), i64::from(failures));
}

/// The wait of an apply that did not start because NetworkManager holds checkpoints another
/// tool created (nm-backend's `foreign-checkpoint`; NetworkManager would refuse the apply's own
/// checkpoint beside them). Such an apply touched nothing and is not the policy's failure, so
/// it uses no attempt (`retryCount` stays): the node gives its slot back, shows that it waits
/// ([`mark_waiting_for_foreign_checkpoints`]) and tries again after `delay`. knmstate never
/// commits, rolls back or destroys such a checkpoint: its owner does, or NetworkManager at its
/// rollback timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignCheckpointWait {
    /// Shown on `Pending` (and on `Progressing`, false).
    pub message: String,
    /// Before the next try.
    pub delay: Duration,
}

impl RetryPolicy {
    /// The wait after the `waits`-th apply in a row (1 for the first) that NetworkManager's
    /// `checkpoints` (D-Bus paths) of another tool kept from starting: the retry backoff of
    /// `waits`, and no attempt used.
    ///
    /// ```
    /// use knmstate_state_engine::rollback::RetryPolicy;
    /// use std::time::Duration;
    /// let w = RetryPolicy::default()
    ///     .wait_for_foreign_checkpoints(&["/org/freedesktop/NetworkManager/Checkpoint/7".into()], 3);
    /// assert_eq!(w.delay, Duration::from_secs(4));
    /// assert!(w.message.contains("Checkpoint/7"));
    /// ```
    pub fn wait_for_foreign_checkpoints(
        &self,
        checkpoints: &[String],
        waits: u32,
    ) -> ForeignCheckpointWait {
        ForeignCheckpointWait {
            message: format!(
                "waiting for NetworkManager checkpoints another tool created ({}): knmstate \
                 leaves them to their owner or their rollback timeout, and applies once they \
                 are gone (no attempt is used)",
                checkpoints.join(", ")
            ),
            delay: self.backoff(waits.max(1)),
        }
    }
}

/// Mark `conditions` as waiting for another tool's checkpoints: `Pending` with `message` and
/// reason `ForeignCheckpointHeld`, `Progressing` false, nothing failed.
pub fn mark_waiting_for_foreign_checkpoints(
    conditions: &mut ConditionList,
    message: &str,
    now: &Time,
) {
    use knmstate_api::names::enactment as e;
    crate::conditions::EnactmentTransition::Pending.apply(conditions, now);
    let r = e::REASON_FOREIGN_CHECKPOINT;
    conditions.set(e::PENDING, ConditionStatus::True, r, message, now.clone());
    conditions.set(
        e::PROGRESSING,
        ConditionStatus::False,
        r,
        message,
        now.clone(),
    );
}

/// Whether to apply a policy generation on this node (on a reconcile, e.g. after a restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyDecision {
    /// Go ahead (through the slot decision in [`crate::concurrency`]).
    Apply,
    /// This generation already succeeded and the node still satisfies it.
    SkipAlreadyApplied,
    /// Retries of this generation are exhausted: do not re-break the network (upstream #1440).
    SkipRetriesExhausted,
    /// This generation was aborted on this node; a new generation starts over.
    SkipAborted,
}

/// Decide whether to apply generation `generation`. `node_satisfies` says whether the node's
/// current state still satisfies the rendered desired state (see
/// [`crate::plan::satisfies`]); `None` when unknown, which counts as satisfied.
///
/// ```
/// use knmstate_state_engine::rollback::{apply_decision, ApplyDecision, RetryPolicy};
/// assert_eq!(apply_decision(None, 1, &RetryPolicy::default(), None), ApplyDecision::Apply);
/// ```
pub fn apply_decision(
    status: Option<&NodeNetworkConfigurationEnactmentStatus>,
    generation: i64,
    retry: &RetryPolicy,
    node_satisfies: Option<bool>,
) -> ApplyDecision {
    if retry.exhausted(retry_count(status, generation)) {
        return ApplyDecision::SkipRetriesExhausted;
    }
    match SlotState::of(status, generation) {
        SlotState::Available if node_satisfies != Some(false) => ApplyDecision::SkipAlreadyApplied,
        SlotState::FailedFinal => ApplyDecision::SkipRetriesExhausted,
        SlotState::Aborted => ApplyDecision::SkipAborted,
        _ => ApplyDecision::Apply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::EnactmentTransition as T;
    use crate::plan::plan;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use rstest::rstest;
    use serde_json::json;

    fn current() -> Value {
        json!({
            "interfaces": [{"name": "eth0", "type": "ethernet", "state": "up"}],
            "routes": {
                "config": [{"destination": "0.0.0.0/0", "next-hop-interface": "eth0", "next-hop-address": "198.18.0.1"}],
                "running": [{"destination": "0.0.0.0/0", "next-hop-interface": "eth0", "next-hop-address": "198.18.0.1", "table-id": 254}]},
            "dns-resolver": {"running": {"server": ["198.18.0.1"]}}
        })
    }

    fn kinds(p: &ProbePlan) -> Vec<ProbeKind> {
        p.probes.iter().map(|p| p.kind).collect()
    }

    use ProbeKind::*;

    #[test]
    fn all_four_by_default_with_upstream_timeouts() {
        let cur = current();
        let p = select_probes(
            &plan(&cur, &json!({})),
            &cur,
            None,
            &HandlerDefaults::default(),
        );
        assert_eq!(kinds(&p), [DefaultGateway, Dns, ApiServer, NodeReadiness]);
        assert!(p.probes.iter().all(|p| p.timeout == DEFAULT_PROBE_TIMEOUT));
        assert_eq!(p.probes[1].host.as_deref(), Some("root-servers.net"));
        assert!(p.probes[0].precheck && !p.probes[2].precheck);
        assert_eq!(p.checkpoint_timeout, DEFAULT_CHECKPOINT_TIMEOUT);
    }

    #[test]
    fn removing_the_default_route_on_purpose_skips_the_gateway_probe() {
        let cur = current();
        let desired =
            json!({"routes": {"config": [{"destination": "0.0.0.0/0", "state": "absent"}]}});
        let p = select_probes(
            &plan(&cur, &desired),
            &cur,
            None,
            &HandlerDefaults::default(),
        );
        assert_eq!(
            p.skipped,
            [(DefaultGateway, SkipReason::DefaultRouteRemovedByPolicy)]
        );
    }

    #[test]
    fn policy_overrides() {
        let cur = current();
        let o: PolicyProbes = serde_json::from_value(json!({
            "defaultGateway": {"enabled": false},
            "dns": {"host": "example.test", "timeoutSeconds": 10},
            "apiServer": {"timeoutSeconds": 300},
            "checkpointTimeoutSeconds": 60
        }))
        .unwrap();
        let p = select_probes(
            &plan(&cur, &json!({})),
            &cur,
            Some(&o),
            &HandlerDefaults::default(),
        );
        assert_eq!(kinds(&p), [Dns, ApiServer, NodeReadiness]);
        assert_eq!(p.skipped, [(DefaultGateway, SkipReason::DisabledByPolicy)]);
        assert_eq!(p.probes[0].host.as_deref(), Some("example.test"));
        assert_eq!(p.probes[0].timeout, Duration::from_secs(10));
        // 60 s would expire under the probes: raised to their sum.
        assert_eq!(p.checkpoint_timeout, Duration::from_secs(10 + 300 + 120));
    }

    #[test]
    fn no_name_server_no_dns_probe() {
        let cur = json!({"interfaces": []});
        let p = select_probes(
            &plan(&cur, &json!({})),
            &cur,
            None,
            &HandlerDefaults::default(),
        );
        assert_eq!(kinds(&p), [ApiServer, NodeReadiness]);
        assert_eq!(
            p.skipped,
            [
                (DefaultGateway, SkipReason::NoDefaultRoute),
                (Dns, SkipReason::NoNameServer)
            ]
        );
    }

    #[test]
    fn rollback_lists_failures() {
        let cur = current();
        let p = select_probes(
            &plan(&cur, &json!({})),
            &cur,
            None,
            &HandlerDefaults::default(),
        );
        let outcomes: Vec<_> = kinds(&p)
            .into_iter()
            .map(|kind| ProbeOutcome {
                kind,
                succeeded: kind != Dns,
            })
            .collect();
        assert_eq!(
            commit_or_rollback(&p, &outcomes),
            CommitVerdict::Rollback { failed: vec![Dns] }
        );
    }

    #[rstest]
    #[case(1, 1)]
    #[case(2, 2)]
    #[case(3, 4)]
    #[case(5, 16)]
    #[case(6, 30)]
    #[case(40, 30)]
    fn backoff_schedule(#[case] failures: u32, #[case] secs: u64) {
        assert_eq!(
            RetryPolicy::default().backoff(failures),
            Duration::from_secs(secs)
        );
    }

    #[test]
    fn five_attempts_per_generation() {
        let r = RetryPolicy::default();
        let mut failures = 0;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match r.after_failure(failures) {
                RetryDecision::Retry { failures: f, .. } => failures = f,
                RetryDecision::GiveUp { failures: f } => {
                    assert_eq!(f, 5);
                    break;
                }
            }
        }
        assert_eq!(attempts, 5);
    }

    fn status(
        tr: Option<T>,
        generation: i64,
        retries: u32,
    ) -> NodeNetworkConfigurationEnactmentStatus {
        let now = Time(Timestamp::from_second(0).unwrap());
        let mut conditions = crate::conditions::initial_enactment_conditions(&now);
        if let Some(tr) = tr {
            tr.apply(&mut conditions, &now);
        }
        let mut s = NodeNetworkConfigurationEnactmentStatus {
            policy_generation: Some(generation),
            conditions,
            ..Default::default()
        };
        record_retry_count(&mut s.retry_count, generation, retries);
        s
    }

    #[rstest]
    #[case(Some(T::Success), 2, 0, None, ApplyDecision::SkipAlreadyApplied)]
    #[case(Some(T::Success), 2, 0, Some(true), ApplyDecision::SkipAlreadyApplied)]
    #[case(Some(T::Success), 2, 0, Some(false), ApplyDecision::Apply)]
    #[case(Some(T::Success), 1, 0, None, ApplyDecision::Apply)]
    #[case(Some(T::FailedToConfigure { message: "x".into() }), 2, 5, Some(false), ApplyDecision::SkipRetriesExhausted)]
    #[case(Some(T::GenerateFailure { error: "x".into() }), 2, 0, None, ApplyDecision::SkipRetriesExhausted)]
    #[case(Some(T::Retrying { message: "x".into() }), 2, 2, None, ApplyDecision::Apply)]
    #[case(Some(T::Progressing), 2, 0, None, ApplyDecision::Apply)]
    #[case(Some(T::Aborted { message: "x".into() }), 2, 0, None, ApplyDecision::SkipAborted)]
    #[case(Some(T::Pending), 2, 0, None, ApplyDecision::Apply)]
    #[case(None, 2, 0, None, ApplyDecision::Apply)]
    fn apply_decisions(
        #[case] tr: Option<T>,
        #[case] status_gen: i64,
        #[case] retries: u32,
        #[case] satisfies: Option<bool>,
        #[case] want: ApplyDecision,
    ) {
        let s = status(tr, status_gen, retries);
        assert_eq!(
            apply_decision(Some(&s), 2, &RetryPolicy::default(), satisfies),
            want
        );
    }

    #[test]
    fn retry_counts_are_per_generation() {
        let mut m = BTreeMap::from([("1".to_string(), 5), ("2".to_string(), 1)]);
        record_retry_count(&mut m, 2, 3);
        assert_eq!(m, BTreeMap::from([("2".to_string(), 3)]));
        let s = NodeNetworkConfigurationEnactmentStatus {
            retry_count: m,
            ..Default::default()
        };
        assert_eq!(retry_count(Some(&s), 2), 3);
        assert_eq!(retry_count(Some(&s), 3), 0);
    }

    #[test]
    fn a_foreign_checkpoint_wait_uses_no_attempt_and_shows_pending() {
        let r = RetryPolicy::default();
        let cps = vec!["/org/freedesktop/NetworkManager/Checkpoint/3".to_owned()];
        let w = r.wait_for_foreign_checkpoints(&cps, 1);
        assert_eq!(w.delay, r.initial_backoff);
        assert_eq!(
            r.wait_for_foreign_checkpoints(&cps, 20).delay,
            r.max_backoff
        );
        let mut status = NodeNetworkConfigurationEnactmentStatus {
            policy_generation: Some(1),
            ..Default::default()
        };
        let now = Time(Timestamp::now());
        T::Progressing.apply(&mut status.conditions, &now);
        mark_waiting_for_foreign_checkpoints(&mut status.conditions, &w.message, &now);
        assert_eq!(SlotState::of(Some(&status), 1), SlotState::Pending);
        let pending = status.conditions.find("Pending").expect("Pending");
        assert_eq!(pending.reason, "ForeignCheckpointHeld");
        assert!(
            pending.message.contains("Checkpoint/3"),
            "{}",
            pending.message
        );
        assert!(!status.conditions.is_true("Progressing"));
        assert!(!status.conditions.is_true("Failing"));
        assert_eq!(retry_count(Some(&status), 1), 0);
        assert_eq!(
            apply_decision(Some(&status), 1, &r, None),
            ApplyDecision::Apply
        );
    }
}
