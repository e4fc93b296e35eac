//! The cluster census behind the controller's metrics: policies, enactments and
//! NodeNetworkStates turned into plain counts per label set. The metrics module only copies
//! these counts onto gauges, so a series disappears as soon as the object it describes is
//! gone, and every count is checked here without a registry.
//!
//! Apply reports (`status.lastApply` of each enactment) are read once each: a
//! [`ReportLedger`] remembers, per enactment, the key of the last report it handed out.
//!
//! ```
//! use knmstate_state_engine::census::Census;
//! use k8s_openapi::jiff::Timestamp;
//!
//! let c = Census::take(&[], &[], &[], Timestamp::from_second(0).unwrap());
//! // All four policy statuses are always present, even without policies.
//! assert_eq!(c.policies.len(), 4);
//! assert!(c.features.is_empty());
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use k8s_openapi::jiff::Timestamp;
use knmstate_api::State;
use knmstate_api::names::{enactment as e, policy as p};
use knmstate_api::shared::{ApplyReport, ProbeReport};
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::{NodeNetworkConfigurationEnactment, NodeNetworkState};
use serde_json::Value;

use crate::conditions::active_condition;

/// Upper bounds of the condition-age buckets, in seconds (`+Inf` is added).
pub const CONDITION_AGE_BUCKETS: [f64; 7] = [60.0, 300.0, 900.0, 1800.0, 3600.0, 21600.0, 86400.0];

/// Every cluster count at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Census {
    /// nmstate features used by at least one enactment.
    pub features: BTreeSet<String>,
    /// Interfaces per (node, interface type).
    pub interfaces: BTreeMap<(String, String), i64>,
    /// Running routes per (node, `ipv4`/`ipv6`, `static`/`dynamic`).
    pub routes: BTreeMap<(String, &'static str, &'static str), i64>,
    /// Policies per active condition; all four statuses are present.
    pub policies: BTreeMap<&'static str, i64>,
    /// Enactments per (node, active condition); all five statuses for every node with one.
    pub enactments: BTreeMap<(String, &'static str), i64>,
    /// Policies per (active condition, bucket bound), cumulative (see
    /// [`policies_by_condition_age`]).
    pub condition_age: BTreeMap<(String, String), i64>,
}

impl Census {
    /// Count everything the cluster gauges report from these objects at `now`.
    pub fn take(
        policies: &[&NodeNetworkConfigurationPolicy],
        enactments: &[&NodeNetworkConfigurationEnactment],
        states: &[&NodeNetworkState],
        now: Timestamp,
    ) -> Self {
        let mut census = Self {
            features: features_applied(enactments.iter().copied()),
            policies: policies_by_status(policies.iter().copied()),
            enactments: enactments_by_node_status(enactments.iter().copied()),
            condition_age: policies_by_condition_age(policies.iter().copied(), now),
            ..Self::default()
        };
        for nns in states {
            let Some(node) = nns.metadata.name.as_deref() else {
                continue;
            };
            let Some(state) = nns.status.as_ref().and_then(|s| s.current_state.as_ref()) else {
                continue;
            };
            for (t, n) in interfaces_by_type(state) {
                census.interfaces.insert((node.to_owned(), t), n);
            }
            for ((stack, kind), n) in routes_by_kind(state) {
                census.routes.insert((node.to_owned(), stack, kind), n);
            }
        }
        census
    }
}

/// nmstate features used by at least one enactment (`kubernetes_nmstate_features_applied`).
pub fn features_applied<'a>(
    enactments: impl IntoIterator<Item = &'a NodeNetworkConfigurationEnactment>,
) -> BTreeSet<String> {
    enactments
        .into_iter()
        .filter_map(|e| e.status.as_ref())
        .flat_map(|s| s.features.iter().cloned())
        .collect()
}

/// Interfaces of a current state counted by `type` (`unknown` when absent).
pub fn interfaces_by_type(state: &State) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    if let Some(Value::Array(ifaces)) = state.0.get("interfaces") {
        for i in ifaces {
            let t = i.get("type").and_then(Value::as_str).unwrap_or("unknown");
            *out.entry(t.to_owned()).or_insert(0) += 1;
        }
    }
    out
}

/// Running routes of a current state counted by (`ipv4`/`ipv6`, `static`/`dynamic`): IPv6
/// when the destination holds a `:`, static when the destination is also among the
/// configured routes' destinations.
pub fn routes_by_kind(state: &State) -> BTreeMap<(&'static str, &'static str), i64> {
    let routes = state.0.get("routes");
    let list = |k: &str| {
        routes
            .and_then(|r| r.get(k))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let dest = |r: &Value| {
        r.get("destination")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let configured: HashSet<String> = list("config").iter().map(dest).collect();
    let mut out = BTreeMap::new();
    for r in list("running") {
        let d = dest(&r);
        let stack = if d.contains(':') { "ipv6" } else { "ipv4" };
        let kind = if configured.contains(&d) {
            "static"
        } else {
            "dynamic"
        };
        *out.entry((stack, kind)).or_insert(0) += 1;
    }
    out
}

/// Policies counted by their first `True` condition; all four statuses are present.
pub fn policies_by_status<'a>(
    policies: impl IntoIterator<Item = &'a NodeNetworkConfigurationPolicy>,
) -> BTreeMap<&'static str, i64> {
    let mut out: BTreeMap<&'static str, i64> = p::TYPES.iter().map(|t| (*t, 0)).collect();
    for policy in policies {
        let active = policy
            .status
            .as_ref()
            .and_then(|s| active_condition(&s.conditions));
        if let Some(t) = p::TYPES.iter().find(|t| Some(**t) == active) {
            *out.entry(*t).or_insert(0) += 1;
        }
    }
    out
}

/// Enactments counted per node by their first `True` condition; all five statuses are
/// present for every node that has at least one enactment.
pub fn enactments_by_node_status<'a>(
    enactments: impl IntoIterator<Item = &'a NodeNetworkConfigurationEnactment>,
) -> BTreeMap<(String, &'static str), i64> {
    let mut out = BTreeMap::new();
    for nnce in enactments {
        let Some(node) = nnce.node_name() else {
            continue;
        };
        for t in e::TYPES {
            out.entry((node.to_owned(), t)).or_insert(0);
        }
        let active = nnce
            .status
            .as_ref()
            .and_then(|s| active_condition(&s.conditions));
        if let Some(t) = e::TYPES.iter().find(|t| Some(**t) == active) {
            *out.entry((node.to_owned(), *t)).or_insert(0) += 1;
        }
    }
    out
}

/// Policies counted by active condition and by how long ago it became `True`, cumulatively
/// over [`CONDITION_AGE_BUCKETS`] plus `+Inf`. Statuses without a policy are absent.
pub fn policies_by_condition_age<'a>(
    policies: impl IntoIterator<Item = &'a NodeNetworkConfigurationPolicy>,
    now: Timestamp,
) -> BTreeMap<(String, String), i64> {
    let mut out = BTreeMap::new();
    for policy in policies {
        let Some(active) = policy
            .status
            .as_ref()
            .and_then(|s| s.conditions.first_true())
        else {
            continue;
        };
        let age = active
            .last_transition_time
            .as_ref()
            .map_or(0.0, |t| now.duration_since(t.0).as_secs_f64().max(0.0));
        for le in CONDITION_AGE_BUCKETS {
            let n = out
                .entry((active.type_.clone(), format!("{le}")))
                .or_insert(0);
            if age <= le {
                *n += 1;
            }
        }
        *out.entry((active.type_.clone(), "+Inf".to_owned()))
            .or_insert(0) += 1;
    }
    out
}

/// `rolled-back` or `committed`: the `result` label of an apply report.
pub fn apply_result(report: &ApplyReport) -> &'static str {
    if report.rolled_back {
        "rolled-back"
    } else {
        "committed"
    }
}

/// The `reason` label of a rolled-back report (`unknown` when the handler gave none); `None`
/// when the report was committed.
pub fn rollback_reason(report: &ApplyReport) -> Option<&str> {
    let reason = if report.rollback_reason.is_empty() {
        "unknown"
    } else {
        report.rollback_reason.as_str()
    };
    report.rolled_back.then_some(reason)
}

/// `success` or `failure`: the `result` label of a probe.
pub fn probe_result(probe: &ProbeReport) -> &'static str {
    if probe.succeeded {
        "success"
    } else {
        "failure"
    }
}

/// Identity of one apply report: its start time, else its duration and outcome.
fn report_key(r: &ApplyReport) -> String {
    match &r.start_time {
        Some(t) => t.0.to_string(),
        None => format!("{}/{}", r.duration_seconds, r.rolled_back),
    }
}

/// Which apply reports were already counted: enactment name → key of the last report.
#[derive(Debug, Default, Clone)]
pub struct ReportLedger {
    seen: HashMap<String, String>,
}

impl ReportLedger {
    /// The reports of these enactments not handed out before; each is recorded as seen.
    pub fn take_new<'a>(
        &mut self,
        enactments: impl IntoIterator<Item = &'a NodeNetworkConfigurationEnactment>,
    ) -> Vec<&'a ApplyReport> {
        let mut new = Vec::new();
        for nnce in enactments {
            let (Some(name), Some(report)) = (
                nnce.metadata.name.as_deref(),
                nnce.status.as_ref().and_then(|s| s.last_apply.as_ref()),
            ) else {
                continue;
            };
            let key = report_key(report);
            if self.seen.get(name) == Some(&key) {
                continue;
            }
            self.seen.insert(name.to_owned(), key);
            new.push(report);
        }
        new
    }

    /// Forget the enactments not among `names` (deleted ones).
    pub fn retain<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        let names: HashSet<&str> = names.into_iter().collect();
        self.seen.retain(|k, _| names.contains(k.as_str()));
    }
}

#[cfg(test)]
mod tests;
