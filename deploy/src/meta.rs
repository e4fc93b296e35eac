//! Names, labels and metadata shared by the rendered objects.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

/// Label every rendered object carries (upstream's value).
pub const APP_LABEL: &str = "app";
/// Its value.
pub const APP: &str = "kubernetes-nmstate";
/// Label naming the component of a workload's pods.
pub const COMPONENT_LABEL: &str = "component";
/// The handler's component; the controller counts nodes running a pod with this label.
pub const HANDLER_COMPONENT: &str = "kubernetes-nmstate-handler";
/// The webhook's component.
pub const WEBHOOK_COMPONENT: &str = "kubernetes-nmstate-webhook";
/// The controller's component.
pub const CONTROLLER_COMPONENT: &str = "kubernetes-nmstate-controller";
/// The operator's component.
pub const OPERATOR_COMPONENT: &str = "kubernetes-nmstate-operator";
/// Label selecting the pods the metrics Service fronts (upstream's).
pub const PROMETHEUS_LABEL: &str = "prometheus.nmstate.io";

/// Object names (before the prefix, see [`crate::InstallSettings::prefixed`]).
pub mod name {
    /// Handler DaemonSet, ServiceAccount and roles.
    pub const HANDLER: &str = "nmstate-handler";
    /// Controller Deployment, ServiceAccount and roles.
    pub const CONTROLLER: &str = "nmstate-controller";
    /// Webhook Deployment, ServiceAccount, PodDisruptionBudget, Service and its Secret.
    pub const WEBHOOK: &str = "nmstate-webhook";
    /// Secret holding the webhook CA (read by the operator only).
    pub const WEBHOOK_CA: &str = "nmstate-webhook-ca";
    /// Metrics Service.
    pub const MONITOR: &str = "nmstate-monitor";
    /// The operator's Deployment, ServiceAccount and roles.
    pub const OPERATOR: &str = "nmstate-operator";
    /// Upstream's MutatingWebhookConfiguration.
    pub const MUTATING: &str = "nmstate";
    /// The validating webhook configuration.
    pub const VALIDATING: &str = "nmstate-validate";
    /// The ServiceMonitor (upstream's name).
    pub const SERVICE_MONITOR: &str = "controller-manager-metrics-monitor";
    /// The PrometheusRule (upstream's name).
    pub const PROMETHEUS_RULE: &str = "kubernetes-nmstate-prometheus-rules";
    /// Role and binding letting Prometheus read the endpoints.
    pub const PROMETHEUS: &str = "prometheus-k8s";
    /// Cluster role and binding letting Prometheus `get` the controller's `/metrics`.
    pub const METRICS_READER: &str = "nmstate-metrics-reader";
    /// The read-only cluster role aggregated into the cluster's `cluster-reader`, when it
    /// has one (upstream's name).
    pub const CLUSTER_READER: &str = "nmstate-cluster-reader";
}

/// `app: kubernetes-nmstate` plus `component` when given.
pub fn labels(component: Option<&str>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([(APP_LABEL.to_owned(), APP.to_owned())]);
    if let Some(c) = component {
        l.insert(COMPONENT_LABEL.to_owned(), c.to_owned());
    }
    l
}

/// Metadata of a rendered object.
pub fn meta(name: &str, namespace: Option<&str>, component: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels(component)),
        ..ObjectMeta::default()
    }
}

/// The installation's Namespace.
pub fn namespace(name: &str) -> k8s_openapi::api::core::v1::Namespace {
    k8s_openapi::api::core::v1::Namespace {
        metadata: meta(name, None, None),
        ..Default::default()
    }
}

/// A selector on `component`.
pub fn select(component: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels(Some(component))),
        match_expressions: None,
    }
}
