//! Prometheus metrics: upstream's five cluster gauges, with upstream's names, labels and
//! semantics, plus our own histograms fed by the handlers' apply reports.
//!
//! The cluster gauges are recomputed from the controller's caches on every scrape by pure
//! functions ([`features_applied`], [`interfaces_by_type`], [`routes_by_kind`],
//! [`policies_by_status`], [`enactments_by_node_status`], [`policies_by_condition_age`]), so
//! a series disappears as soon as the object it describes is gone. The apply reports
//! (`status.lastApply` of each enactment) are counted once each, keyed by enactment name and
//! report start time, whether the controller sees them while reconciling or while scraping.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::Hash;
use std::sync::Mutex;

use k8s_openapi::jiff::Timestamp;
use knmstate_api::State;
use knmstate_api::names::{enactment as e, policy as p};
use knmstate_api::shared::ApplyReport;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::{NodeNetworkConfigurationEnactment, NodeNetworkState};
use knmstate_state_engine::conditions::active_condition;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::Value;

/// One metric family as documented: name (as exposed), type, labels and help text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricInfo {
    /// Name as scraped (counters carry `_total`).
    pub name: &'static str,
    /// `gauge`, `counter` or `histogram`.
    pub kind: &'static str,
    /// Label names.
    pub labels: &'static [&'static str],
    /// Help text.
    pub help: &'static str,
}

/// Every metric the controller exposes, in exposition order (for `--print-metrics`).
pub const METRICS: &[MetricInfo] = &[
    MetricInfo {
        name: "kubernetes_nmstate_features_applied",
        kind: "gauge",
        labels: &["name"],
        help: "Whether an nmstate feature is used by any enactment: 1 while at least one enactment's status.features lists it; the series is removed when none does",
    },
    MetricInfo {
        name: "kubernetes_nmstate_network_interfaces",
        kind: "gauge",
        labels: &["type", "node"],
        help: "Number of network interfaces of each type in the node's NodeNetworkState currentState",
    },
    MetricInfo {
        name: "kubernetes_nmstate_routes",
        kind: "gauge",
        labels: &["node", "ip_stack", "type"],
        help: "Number of running routes of the node by IP stack (ipv4, ipv6) and type (static when the destination is also configured, else dynamic)",
    },
    MetricInfo {
        name: "kubernetes_nmstate_policies_status",
        kind: "gauge",
        labels: &["status"],
        help: "Number of NodeNetworkConfigurationPolicies whose first True condition is the status (Available, Degraded, Progressing, Ignored)",
    },
    MetricInfo {
        name: "kubernetes_nmstate_enactments_status",
        kind: "gauge",
        labels: &["node", "status"],
        help: "Per node, number of NodeNetworkConfigurationEnactments whose first True condition is the status (Available, Failing, Progressing, Pending, Aborted); all five are emitted for every node that has enactments",
    },
    MetricInfo {
        name: "knmstate_apply_duration_seconds",
        kind: "histogram",
        labels: &["result"],
        help: "Duration of handler apply attempts, from checkpoint to commit or rollback, as reported in enactment status.lastApply; result is committed or rolled-back",
    },
    MetricInfo {
        name: "knmstate_rollbacks_total",
        kind: "counter",
        labels: &["reason"],
        help: "Handler apply attempts rolled back, by the stable category of the failure (status.lastApply.rollbackReason)",
    },
    MetricInfo {
        name: "knmstate_probe_duration_seconds",
        kind: "histogram",
        labels: &["probe", "result"],
        help: "Duration of connectivity probes run while a checkpoint was held, by probe and result (success, failure)",
    },
    MetricInfo {
        name: "knmstate_policies_by_condition_age",
        kind: "gauge",
        labels: &["status", "max_age_seconds"],
        help: "Number of policies whose first True condition is the status and became True at most max_age_seconds ago (cumulative; +Inf counts them all)",
    },
    MetricInfo {
        name: "knmstate_controller_errors_total",
        kind: "counter",
        labels: &["category"],
        help: "Controller actions that failed (status writes, orphan cleanup, lease renewal), by stable error category",
    },
];

/// Upper bounds of the condition-age buckets, in seconds (`+Inf` is added).
pub const CONDITION_AGE_BUCKETS: [f64; 7] = [60.0, 300.0, 900.0, 1800.0, 3600.0, 21600.0, 86400.0];
const APPLY_BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 240.0, 480.0,
];
const PROBE_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0, 60.0, 120.0];

/// `{name}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct NameLabels {
    /// nmstate feature name.
    pub name: String,
}

/// `{type,node}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct InterfaceLabels {
    /// Interface type.
    pub r#type: String,
    /// Node name.
    pub node: String,
}

/// `{node,ip_stack,type}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct RouteLabels {
    /// Node name.
    pub node: String,
    /// `ipv4` or `ipv6`.
    pub ip_stack: String,
    /// `static` or `dynamic`.
    pub r#type: String,
}

/// `{status}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct StatusLabels {
    /// Condition type.
    pub status: String,
}

/// `{node,status}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct NodeStatusLabels {
    /// Node name.
    pub node: String,
    /// Condition type.
    pub status: String,
}

/// `{status,max_age_seconds}` (not `le`: that label is reserved for histogram buckets).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct AgeLabels {
    /// Condition type.
    pub status: String,
    /// Bucket upper bound in seconds, or `+Inf`.
    pub max_age_seconds: String,
}

/// `{result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `committed` or `rolled-back`.
    pub result: String,
}

/// `{reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Rollback category.
    pub reason: String,
}

/// `{probe,result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// Probe name.
    pub probe: String,
    /// `success` or `failure`.
    pub result: String,
}

/// `{category}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabels {
    /// Error category.
    pub category: String,
}

/// A gauge family whose series are set from a complete desired map: series not in the map
/// are removed.
#[derive(Debug)]
struct GaugeSet<L: Clone + Hash + Eq> {
    family: Family<L, Gauge>,
    known: Mutex<HashSet<L>>,
}

impl<L> GaugeSet<L>
where
    L: Clone + Hash + Eq + std::fmt::Debug + EncodeLabelSet + Send + Sync + 'static,
{
    fn new() -> Self {
        Self {
            family: Family::default(),
            known: Mutex::new(HashSet::new()),
        }
    }

    fn sync(&self, desired: impl IntoIterator<Item = (L, i64)>) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = HashSet::new();
        for (l, v) in desired {
            self.family.get_or_create(&l).set(v);
            next.insert(l);
        }
        for old in known.difference(&next) {
            self.family.remove(old);
        }
        *known = next;
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn apply_histogram() -> Histogram {
    Histogram::new(APPLY_BUCKETS)
}

fn probe_histogram() -> Histogram {
    Histogram::new(PROBE_BUCKETS)
}

/// The controller's metrics registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    features_applied: GaugeSet<NameLabels>,
    network_interfaces: GaugeSet<InterfaceLabels>,
    routes: GaugeSet<RouteLabels>,
    policies_status: GaugeSet<StatusLabels>,
    enactments_status: GaugeSet<NodeStatusLabels>,
    policies_by_condition_age: GaugeSet<AgeLabels>,
    apply_duration: HistogramFamily<ResultLabels>,
    rollbacks: Family<ReasonLabels, Counter>,
    probe_duration: HistogramFamily<ProbeLabels>,
    errors: Family<CategoryLabels, Counter>,
    /// Enactment name → key of the last apply report counted for it.
    reports: Mutex<HashMap<String, String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registered name: prometheus-client appends `_total` to counters itself.
fn registered_name(info: &MetricInfo) -> &'static str {
    info.name.strip_suffix("_total").unwrap_or(info.name)
}

impl Metrics {
    /// A registry with every metric of [`METRICS`] registered.
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::default(),
            features_applied: GaugeSet::new(),
            network_interfaces: GaugeSet::new(),
            routes: GaugeSet::new(),
            policies_status: GaugeSet::new(),
            enactments_status: GaugeSet::new(),
            policies_by_condition_age: GaugeSet::new(),
            apply_duration: Family::new_with_constructor(apply_histogram),
            rollbacks: Family::default(),
            probe_duration: Family::new_with_constructor(probe_histogram),
            errors: Family::default(),
            reports: Mutex::new(HashMap::new()),
        };
        let r = &mut m.registry;
        let [fa, ni, ro, ps, es, ad, rb, pd, age, err] = METRICS else {
            unreachable!("METRICS lists ten families")
        };
        r.register(
            registered_name(fa),
            fa.help,
            m.features_applied.family.clone(),
        );
        r.register(
            registered_name(ni),
            ni.help,
            m.network_interfaces.family.clone(),
        );
        r.register(registered_name(ro), ro.help, m.routes.family.clone());
        r.register(
            registered_name(ps),
            ps.help,
            m.policies_status.family.clone(),
        );
        r.register(
            registered_name(es),
            es.help,
            m.enactments_status.family.clone(),
        );
        r.register(registered_name(ad), ad.help, m.apply_duration.clone());
        r.register(registered_name(rb), rb.help, m.rollbacks.clone());
        r.register(registered_name(pd), pd.help, m.probe_duration.clone());
        r.register(
            registered_name(age),
            age.help,
            m.policies_by_condition_age.family.clone(),
        );
        r.register(registered_name(err), err.help, m.errors.clone());
        m
    }

    /// Recompute the cluster gauges from the caches' contents at `now`.
    pub fn refresh(
        &self,
        policies: &[&NodeNetworkConfigurationPolicy],
        enactments: &[&NodeNetworkConfigurationEnactment],
        states: &[&NodeNetworkState],
        now: Timestamp,
    ) {
        self.features_applied.sync(
            features_applied(enactments.iter().copied())
                .into_iter()
                .map(|name| (NameLabels { name }, 1)),
        );
        let mut ifaces = Vec::new();
        let mut routes = Vec::new();
        for nns in states {
            let Some(node) = nns.metadata.name.clone() else {
                continue;
            };
            let Some(state) = nns.status.as_ref().and_then(|s| s.current_state.as_ref()) else {
                continue;
            };
            for (t, n) in interfaces_by_type(state) {
                ifaces.push((
                    InterfaceLabels {
                        r#type: t,
                        node: node.clone(),
                    },
                    n,
                ));
            }
            for ((stack, kind), n) in routes_by_kind(state) {
                routes.push((
                    RouteLabels {
                        node: node.clone(),
                        ip_stack: stack.to_owned(),
                        r#type: kind.to_owned(),
                    },
                    n,
                ));
            }
        }
        self.network_interfaces.sync(ifaces);
        self.routes.sync(routes);
        self.policies_status.sync(
            policies_by_status(policies.iter().copied())
                .into_iter()
                .map(|(s, n)| {
                    (
                        StatusLabels {
                            status: s.to_owned(),
                        },
                        n,
                    )
                }),
        );
        self.enactments_status.sync(
            enactments_by_node_status(enactments.iter().copied())
                .into_iter()
                .map(|((node, s), n)| {
                    (
                        NodeStatusLabels {
                            node,
                            status: s.to_owned(),
                        },
                        n,
                    )
                }),
        );
        self.policies_by_condition_age.sync(
            policies_by_condition_age(policies.iter().copied(), now)
                .into_iter()
                .map(|((status, max_age_seconds), n)| {
                    (
                        AgeLabels {
                            status,
                            max_age_seconds,
                        },
                        n,
                    )
                }),
        );
        self.observe_reports(enactments.iter().copied());
        let names: HashSet<&str> = enactments
            .iter()
            .filter_map(|e| e.metadata.name.as_deref())
            .collect();
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| names.contains(k.as_str()));
    }

    /// Drop every cluster gauge series (this process stopped leading: the new leader reports).
    pub fn clear_cluster(&self) {
        self.features_applied.sync([]);
        self.network_interfaces.sync([]);
        self.routes.sync([]);
        self.policies_status.sync([]);
        self.enactments_status.sync([]);
        self.policies_by_condition_age.sync([]);
    }

    /// Count the apply reports of these enactments that were not counted yet. Returns how
    /// many were new.
    pub fn observe_reports<'a>(
        &self,
        enactments: impl IntoIterator<Item = &'a NodeNetworkConfigurationEnactment>,
    ) -> usize {
        let mut seen = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        let mut new = 0;
        for nnce in enactments {
            let (Some(name), Some(report)) = (
                nnce.metadata.name.as_deref(),
                nnce.status.as_ref().and_then(|s| s.last_apply.as_ref()),
            ) else {
                continue;
            };
            let key = report_key(report);
            if seen.get(name) == Some(&key) {
                continue;
            }
            seen.insert(name.to_owned(), key);
            new += 1;
            let result = if report.rolled_back {
                "rolled-back"
            } else {
                "committed"
            }
            .to_owned();
            self.apply_duration
                .get_or_create(&ResultLabels { result })
                .observe(report.duration_seconds);
            if report.rolled_back {
                let reason = if report.rollback_reason.is_empty() {
                    "unknown".to_owned()
                } else {
                    report.rollback_reason.clone()
                };
                self.rollbacks.get_or_create(&ReasonLabels { reason }).inc();
            }
            for probe in &report.probes {
                self.probe_duration
                    .get_or_create(&ProbeLabels {
                        probe: probe.name.clone(),
                        result: if probe.succeeded {
                            "success"
                        } else {
                            "failure"
                        }
                        .to_owned(),
                    })
                    .observe(probe.duration_seconds);
            }
        }
        new
    }

    /// Count one failed action.
    pub fn count_error(&self, category: &str) {
        self.errors
            .get_or_create(&CategoryLabels {
                category: category.to_owned(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Identity of one apply report: its start time, else its duration and outcome.
fn report_key(r: &ApplyReport) -> String {
    match &r.start_time {
        Some(t) => t.0.to_string(),
        None => format!("{}/{}", r.duration_seconds, r.rolled_back),
    }
}

/// `--print-metrics`: a Markdown table of every metric with its type, labels and help.
pub fn describe() -> String {
    let mut out = String::from("| metric | type | labels | help |\n|---|---|---|---|\n");
    for m in METRICS {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            m.name,
            m.kind,
            m.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", "),
            m.help
        ));
    }
    out
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
        let Some(active) = policy
            .status
            .as_ref()
            .and_then(|s| active_condition(&s.conditions))
        else {
            continue;
        };
        if let Some(n) = p::TYPES
            .iter()
            .find(|t| **t == active)
            .and_then(|t| out.get_mut(t))
        {
            *n += 1;
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
            .map(|t| now.duration_since(t.0).as_secs_f64().max(0.0))
            .unwrap_or(0.0);
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use knmstate_api::ConditionList;
    use knmstate_api::names::NODE_LABEL;
    use knmstate_api::shared::{
        NodeNetworkConfigurationEnactmentStatus, NodeNetworkConfigurationPolicyStatus,
        NodeNetworkStateStatus, ProbeReport,
    };
    use knmstate_state_engine::conditions::{
        EnactmentTransition, PolicyConditionKind, PolicyVerdict,
    };
    use pretty_assertions::assert_eq;
    use rstest::rstest;

    fn t(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    fn state(v: serde_json::Value) -> State {
        State::try_from(v).unwrap()
    }

    fn nnce(
        node: &str,
        policy: &str,
        tr: Option<EnactmentTransition>,
        features: &[&str],
    ) -> NodeNetworkConfigurationEnactment {
        let mut conditions = ConditionList::default();
        if let Some(tr) = tr {
            tr.apply(&mut conditions, t(0));
        }
        let mut e =
            NodeNetworkConfigurationEnactment::new(&format!("{node}.{policy}"), Default::default());
        e.metadata.labels = Some([(NODE_LABEL.to_string(), node.to_string())].into());
        e.status = Some(NodeNetworkConfigurationEnactmentStatus {
            conditions,
            features: features.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        });
        e
    }

    fn policy(
        name: &str,
        kind: Option<PolicyConditionKind>,
        since: i64,
    ) -> NodeNetworkConfigurationPolicy {
        let mut p = NodeNetworkConfigurationPolicy::new(name, Default::default());
        let mut conditions = ConditionList::default();
        if let Some(kind) = kind {
            PolicyVerdict {
                kind,
                message: "m".into(),
            }
            .apply(&mut conditions, t(since));
        }
        p.status = Some(NodeNetworkConfigurationPolicyStatus {
            conditions,
            ..Default::default()
        });
        p
    }

    #[test]
    fn features_are_a_set_not_a_count() {
        let es = [
            nnce("a", "p1", None, &["static_route", "ovs_bond"]),
            nnce("b", "p2", None, &["static_route"]),
        ];
        assert_eq!(
            features_applied(&es),
            BTreeSet::from(["ovs_bond".to_string(), "static_route".to_string()])
        );
    }

    #[test]
    fn interfaces_are_counted_by_type() {
        let s = state(serde_json::json!({"interfaces": [
            {"name": "eth0", "type": "ethernet"}, {"name": "eth1", "type": "ethernet"},
            {"name": "br1", "type": "linux-bridge"}, {"name": "x"}
        ]}));
        let got = interfaces_by_type(&s);
        assert_eq!(got["ethernet"], 2);
        assert_eq!(got["linux-bridge"], 1);
        assert_eq!(got["unknown"], 1);
    }

    #[rstest]
    #[case::none(serde_json::json!({}), &[])]
    #[case::mixed(
        serde_json::json!({"routes": {
            "config": [{"destination": "198.18.5.0/24"}, {"destination": "2001:db8:1::/64"}],
            "running": [
                {"destination": "198.18.5.0/24"}, {"destination": "0.0.0.0/0"},
                {"destination": "198.18.0.0/24"}, {"destination": "2001:db8:1::/64"},
                {"destination": "fe80::/64"}
            ]}}),
        &[(("ipv4", "dynamic"), 2), (("ipv4", "static"), 1), (("ipv6", "dynamic"), 1), (("ipv6", "static"), 1)]
    )]
    fn routes_by_stack_and_type(
        #[case] s: serde_json::Value,
        #[case] want: &[((&'static str, &'static str), i64)],
    ) {
        let got: Vec<_> = routes_by_kind(&state(s)).into_iter().collect();
        assert_eq!(got, want.to_vec());
    }

    #[test]
    fn policies_status_always_has_four_series() {
        let ps = [
            policy("a", Some(PolicyConditionKind::Success), 0),
            policy("b", Some(PolicyConditionKind::Success), 0),
            policy("c", Some(PolicyConditionKind::FailedToConfigure), 0),
            policy("d", Some(PolicyConditionKind::Unknown), 0),
        ];
        let got = policies_by_status(&ps);
        assert_eq!(
            got,
            BTreeMap::from([
                ("Available", 2),
                ("Degraded", 1),
                ("Ignored", 0),
                ("Progressing", 0)
            ])
        );
    }

    #[test]
    fn enactments_status_emits_all_five_per_node() {
        let es = [
            nnce("a", "p1", Some(EnactmentTransition::Success), &[]),
            nnce("a", "p2", Some(EnactmentTransition::Pending), &[]),
            nnce(
                "b",
                "p1",
                Some(EnactmentTransition::Retrying {
                    message: "x".into(),
                }),
                &[],
            ),
            nnce("c", "p1", None, &[]),
        ];
        let got = enactments_by_node_status(&es);
        assert_eq!(got.len(), 15);
        assert_eq!(got[&("a".to_string(), "Available")], 1);
        assert_eq!(got[&("a".to_string(), "Pending")], 1);
        assert_eq!(got[&("a".to_string(), "Failing")], 0);
        // Retrying: Failing is the first True condition in upstream's order.
        assert_eq!(got[&("b".to_string(), "Failing")], 1);
        assert_eq!(got[&("b".to_string(), "Progressing")], 0);
        assert!(
            got.iter()
                .filter(|((n, _), _)| n == "c")
                .all(|(_, v)| *v == 0)
        );
    }

    #[test]
    fn condition_age_is_cumulative() {
        let ps = [
            policy("a", Some(PolicyConditionKind::Success), 1_000),
            policy("b", Some(PolicyConditionKind::Success), 1_000 - 3_000),
            policy("c", Some(PolicyConditionKind::Progressing), 1_000 - 100),
        ];
        let got = policies_by_condition_age(&ps, Timestamp::from_second(1_000).unwrap());
        let get = |s: &str, le: &str| got[&(s.to_string(), le.to_string())];
        assert_eq!(get("Available", "60"), 1);
        assert_eq!(get("Available", "1800"), 1);
        assert_eq!(get("Available", "3600"), 2);
        assert_eq!(get("Available", "+Inf"), 2);
        assert_eq!(get("Progressing", "60"), 0);
        assert_eq!(get("Progressing", "300"), 1);
        assert!(!got.contains_key(&("Degraded".to_string(), "+Inf".to_string())));
    }

    #[test]
    fn each_report_is_counted_once() {
        let m = Metrics::new();
        let mut e = nnce("a", "p", Some(EnactmentTransition::Success), &[]);
        let report = |start, rolled_back| ApplyReport {
            start_time: Some(t(start)),
            duration_seconds: 1.5,
            rolled_back,
            rollback_reason: if rolled_back {
                "probe-failed".into()
            } else {
                String::new()
            },
            probes: vec![ProbeReport {
                name: "dns".into(),
                succeeded: !rolled_back,
                duration_seconds: 0.2,
                message: String::new(),
            }],
        };
        e.status.as_mut().unwrap().last_apply = Some(report(10, true));
        assert_eq!(m.observe_reports([&e]), 1);
        assert_eq!(m.observe_reports([&e]), 0);
        e.status.as_mut().unwrap().last_apply = Some(report(20, false));
        assert_eq!(m.observe_reports([&e]), 1);
        let text = m.encode();
        assert!(
            text.contains("knmstate_rollbacks_total{reason=\"probe-failed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("knmstate_apply_duration_seconds_count{result=\"rolled-back\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("knmstate_apply_duration_seconds_count{result=\"committed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "knmstate_probe_duration_seconds_count{probe=\"dns\",result=\"failure\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn refresh_removes_series_of_gone_objects() {
        let m = Metrics::new();
        let mut nns = NodeNetworkState::new("n1", Default::default());
        nns.status = Some(NodeNetworkStateStatus {
            current_state: Some(state(
                serde_json::json!({"interfaces": [{"name": "eth0", "type": "ethernet"}]}),
            )),
            ..Default::default()
        });
        let e = nnce(
            "n1",
            "p",
            Some(EnactmentTransition::Success),
            &["static_route"],
        );
        let p = policy("p", Some(PolicyConditionKind::Success), 0);
        let now = Timestamp::from_second(10).unwrap();
        m.refresh(&[&p], &[&e], &[&nns], now);
        let text = m.encode();
        assert!(
            text.contains("kubernetes_nmstate_network_interfaces{type=\"ethernet\",node=\"n1\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kubernetes_nmstate_features_applied{name=\"static_route\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kubernetes_nmstate_enactments_status{node=\"n1\",status=\"Aborted\"} 0"),
            "{text}"
        );
        m.refresh(&[&p], &[], &[], now);
        let text = m.encode();
        assert!(
            !text.contains("kubernetes_nmstate_network_interfaces{"),
            "{text}"
        );
        assert!(
            !text.contains("kubernetes_nmstate_features_applied{"),
            "{text}"
        );
        assert!(
            !text.contains("kubernetes_nmstate_enactments_status{"),
            "{text}"
        );
        assert!(
            text.contains("kubernetes_nmstate_policies_status{status=\"Available\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn readme_table_is_current() {
        let readme = include_str!("../README.md");
        let table = readme
            .split_once("<!-- metrics:begin -->\n")
            .and_then(|(_, rest)| rest.split_once("<!-- metrics:end -->"))
            .map(|(t, _)| t)
            .expect("README.md has the metrics markers");
        assert_eq!(
            table,
            describe(),
            "README.md is stale: paste `knmstate-controller --print-metrics` between the markers"
        );
    }

    #[test]
    fn describe_lists_every_metric_with_help_and_matches_the_exposition() {
        let m = Metrics::new();
        let mut nns = NodeNetworkState::new("n1", Default::default());
        nns.status = Some(NodeNetworkStateStatus {
            current_state: Some(state(serde_json::json!({
                "interfaces": [{"name": "eth0", "type": "ethernet"}],
                "routes": {"running": [{"destination": "0.0.0.0/0"}]}
            }))),
            ..Default::default()
        });
        let mut e = nnce(
            "n1",
            "p",
            Some(EnactmentTransition::Success),
            &["static_route"],
        );
        e.status.as_mut().unwrap().last_apply = Some(ApplyReport {
            start_time: Some(t(1)),
            duration_seconds: 1.0,
            rolled_back: true,
            rollback_reason: "probe-failed".into(),
            probes: vec![ProbeReport {
                name: "dns".into(),
                ..Default::default()
            }],
        });
        let p = policy("p", Some(PolicyConditionKind::Success), 0);
        m.refresh(&[&p], &[&e], &[&nns], Timestamp::from_second(10).unwrap());
        m.count_error("write-policy-status-failed");
        let text = m.encode();
        let d = describe();
        for info in METRICS {
            assert!(
                d.contains(info.name) && d.contains(info.help),
                "{}",
                info.name
            );
            let family = registered_name(info);
            assert!(
                text.contains(&format!("# HELP {family} {}", info.help)),
                "{family}: {text}"
            );
            assert!(
                text.contains(&format!("# TYPE {family} {}", info.kind)),
                "{family}: {text}"
            );
        }
    }
}
