//! Monitoring: the prometheus-operator kinds this installation uses (only the fields it sets,
//! unknown ones refused), the ServiceMonitor over the controller's metrics and the
//! PrometheusRule with upstream's recording rules and alerts on the controller's metrics.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::PolicyRule;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

use crate::InstallSettings;
use crate::meta::{self, PROMETHEUS_LABEL, name};

/// `monitoring.coreos.com/v1` ServiceMonitor: which Services Prometheus scrapes, and how.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "monitoring.coreos.com",
    version = "v1",
    kind = "ServiceMonitor",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceMonitorSpec {
    /// The Services to scrape.
    pub selector: LabelSelector,
    /// Namespaces of those Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<NamespaceSelector>,
    /// How each port is scraped.
    pub endpoints: Vec<Endpoint>,
}

/// Namespaces a ServiceMonitor looks in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceSelector {
    /// Namespace names.
    pub match_names: Vec<String>,
}

/// One scraped port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    /// Service port name.
    pub port: String,
    /// `http` or `https`.
    pub scheme: String,
    /// Scrape path.
    pub path: String,
    /// Scrape interval.
    pub interval: String,
    /// File holding the bearer token sent with each scrape (Prometheus' own ServiceAccount
    /// token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<String>,
    /// TLS settings of an `https` scrape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<TlsConfig>,
    /// Relabelings applied to the samples.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_relabelings: Vec<Relabeling>,
}

/// How Prometheus checks the endpoint's certificate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    /// Accept any certificate: the controller's is self-signed, generated at its start; the
    /// scrape is protected by the token, which the endpoint reviews.
    pub insecure_skip_verify: bool,
}

/// Where a pod's ServiceAccount token is mounted.
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// The non-resource URL a scraper must be allowed to `get`.
pub const METRICS_PATH: &str = "/metrics";

/// What Prometheus needs to scrape the controller: `get` on the non-resource URL `/metrics`,
/// which the controller's endpoint checks with a `SubjectAccessReview` (bound cluster-wide to
/// the Prometheus ServiceAccount by `rbac::objects`).
pub fn metrics_reader_rules() -> Vec<PolicyRule> {
    vec![PolicyRule {
        non_resource_urls: Some(vec![METRICS_PATH.to_owned()]),
        verbs: vec!["get".to_owned()],
        ..PolicyRule::default()
    }]
}

/// A relabeling step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Relabeling {
    /// `labeldrop`, `replace`, ...
    pub action: String,
    /// Regular expression over label names or values.
    pub regex: String,
}

/// `monitoring.coreos.com/v1` PrometheusRule: recording and alerting rules.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "monitoring.coreos.com",
    version = "v1",
    kind = "PrometheusRule",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusRuleSpec {
    /// Rule groups.
    pub groups: Vec<RuleGroup>,
}

/// A group of rules evaluated together.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleGroup {
    /// Group name.
    pub name: String,
    /// Its rules.
    pub rules: Vec<Rule>,
}

/// A recording rule (`record`) or an alert (`alert`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Name of the recorded series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// Name of the alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// PromQL expression.
    pub expr: String,
    /// How long the expression must hold before the alert fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#for: Option<String>,
    /// Labels added to the alert.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations of the alert (summary, description).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The ServiceMonitor over `nmstate-monitor` (upstream's name and label drops): `https` with
/// Prometheus' ServiceAccount token when the controller serves its metrics securely
/// ([`InstallSettings::metrics_secure`]), plain `http` otherwise.
pub fn service_monitor(s: &InstallSettings) -> ServiceMonitor {
    let mut m = ServiceMonitor::new(
        name::SERVICE_MONITOR,
        ServiceMonitorSpec {
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    PROMETHEUS_LABEL.to_owned(),
                    "true".to_owned(),
                )])),
                match_expressions: None,
            },
            namespace_selector: Some(NamespaceSelector {
                match_names: vec![s.namespace.clone()],
            }),
            endpoints: vec![Endpoint {
                port: "metrics".into(),
                scheme: if s.metrics_secure { "https" } else { "http" }.into(),
                path: METRICS_PATH.into(),
                interval: "30s".into(),
                bearer_token_file: s.metrics_secure.then(|| SERVICE_ACCOUNT_TOKEN.to_owned()),
                tls_config: s.metrics_secure.then_some(TlsConfig {
                    insecure_skip_verify: true,
                }),
                metric_relabelings: vec![Relabeling {
                    action: "labeldrop".into(),
                    regex: "instance|job|pod|container|endpoint".into(),
                }],
            }],
        },
    );
    m.metadata = meta::meta(name::SERVICE_MONITOR, Some(&s.namespace), None);
    m
}

fn record(name: &str, expr: &str) -> Rule {
    Rule {
        record: Some(name.to_owned()),
        expr: expr.to_owned(),
        ..Rule::default()
    }
}

fn alert(name: &str, expr: &str, for_: &str, summary: &str, description: &str) -> Rule {
    Rule {
        alert: Some(name.to_owned()),
        expr: expr.to_owned(),
        r#for: Some(for_.to_owned()),
        labels: BTreeMap::from([("severity".to_owned(), "warning".to_owned())]),
        annotations: BTreeMap::from([
            ("summary".to_owned(), summary.to_owned()),
            ("description".to_owned(), description.to_owned()),
        ]),
        ..Rule::default()
    }
}

/// Upstream's recording rules, and alerts on degraded policies, failing enactments and
/// rollbacks, over the metrics `knmstate-controller --print-metrics` lists.
pub fn prometheus_rule(s: &InstallSettings) -> PrometheusRule {
    let groups = vec![
        RuleGroup {
            name: "recordingRules.rules".into(),
            rules: vec![
                record(
                    "cluster:kubernetes_nmstate_features_applied:sum",
                    "sum by (name) (kubernetes_nmstate_features_applied)",
                ),
                record(
                    "cluster:kubernetes_nmstate_network_interfaces:sum",
                    "sum by (type) (kubernetes_nmstate_network_interfaces)",
                ),
                record(
                    "cluster:kubernetes_nmstate_routes:sum",
                    "sum by (ip_stack, type) (kubernetes_nmstate_routes)",
                ),
            ],
        },
        RuleGroup {
            name: "kubernetes-nmstate.alerts".into(),
            rules: vec![
                alert(
                    "NmstatePolicyDegraded",
                    r#"sum(kubernetes_nmstate_policies_status{status="Degraded"}) > 0"#,
                    "5m",
                    "A NodeNetworkConfigurationPolicy is Degraded",
                    "{{ $value }} policies failed to configure on at least one node; see `kubectl get nncp` and the enactments of each.",
                ),
                alert(
                    "NmstateEnactmentFailing",
                    r#"sum by (node) (kubernetes_nmstate_enactments_status{status="Failing"}) > 0"#,
                    "5m",
                    "Network configuration is failing on node {{ $labels.node }}",
                    "{{ $value }} enactments on node {{ $labels.node }} are Failing; see `kubectl get nnce -l nmstate.io/node={{ $labels.node }}`.",
                ),
                alert(
                    "NmstateRollbacks",
                    "sum by (reason) (increase(knmstate_rollbacks_total[30m])) > 0",
                    "1m",
                    "Network configuration was rolled back ({{ $labels.reason }})",
                    "{{ $value }} applies were rolled back in the last 30 minutes because of {{ $labels.reason }}.",
                ),
            ],
        },
    ];
    let mut r = PrometheusRule::new(name::PROMETHEUS_RULE, PrometheusRuleSpec { groups });
    r.metadata = meta::meta(name::PROMETHEUS_RULE, Some(&s.namespace), None);
    r
}
