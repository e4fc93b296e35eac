//! What a render needs besides the NMState spec ([`InstallSettings`]), and the spec's knobs with
//! upstream's defaults filled in ([`Knobs`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelectorRequirement, NodeSelectorTerm, PreferredSchedulingTerm,
    Toleration,
};
use knmstate_api::shared::LogLevel;
use knmstate_api::v1::NMStateSpec;
use knmstate_state_engine::rollback;

/// The node label every default node selector uses.
pub const OS_LABEL: &str = "kubernetes.io/os";
/// Label (and taint key) of control-plane nodes.
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";
/// Label (and taint key) of control-plane nodes on older clusters.
pub const MASTER_LABEL: &str = "node-role.kubernetes.io/master";

/// Where and how the installation goes, beyond what the NMState resource says. The operator
/// fills it from its environment (upstream's names: `HANDLER_NAMESPACE`, `HANDLER_PREFIX`,
/// `RELATED_IMAGE_HANDLER_IMAGE`, ...); the generator uses [`InstallSettings::default`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallSettings {
    /// Namespace of every namespaced object (upstream: `nmstate`).
    pub namespace: String,
    /// The image holding the three binaries.
    pub image: String,
    /// `imagePullPolicy` of every container.
    pub image_pull_policy: String,
    /// Prefix of the workload names (`<prefix>-nmstate-handler`); empty for none.
    pub prefix: String,
    /// Namespace of the Prometheus that scrapes the metrics (upstream: `monitoring`).
    pub monitoring_namespace: String,
    /// Service account of that Prometheus.
    pub prometheus_service_account: String,
    /// Whether the controller serves `/metrics` over HTTPS to authorized scrapers only
    /// (`METRICS_SECURE`; default true). False is for local and development clusters: plain
    /// HTTP to anyone.
    pub metrics_secure: bool,
    /// Nodes the webhook can run on (see [`crate::topology::infra_node_count`]): more than one
    /// gives two webhook replicas and a PodDisruptionBudget of one.
    pub infra_nodes: usize,
    /// PEM CA bundle injected into both webhook configurations; `None` leaves `caBundle` out
    /// (whoever issues the webhook's certificate sets it).
    pub webhook_ca_bundle: Option<String>,
    /// `NNCP_MAX_RETRIES` passed to every handler.
    pub max_retries: u32,
    /// `NNCP_INITIAL_BACKOFF_SECONDS` passed to every handler.
    pub initial_backoff_seconds: u64,
    /// `NNCP_MAX_BACKOFF_SECONDS` passed to every handler.
    pub max_backoff_seconds: u64,
    /// `PROBE_TIMEOUT_SECONDS` passed to every handler; `None` leaves the handler's default
    /// (upstream's 120 s). Not an NMState knob: test clusters shorten it.
    pub probe_timeout_seconds: Option<u64>,
    /// `CHECKPOINT_TIMEOUT_SECONDS` passed to every handler; `None` leaves the handler's
    /// default (upstream's 480 s).
    pub checkpoint_timeout_seconds: Option<u64>,
    /// Whether the cluster has a `cluster-reader` cluster role (`OpenShift`): then a read-only
    /// `nmstate-cluster-reader` role is aggregated into it. The operator looks it up each
    /// reconcile; the generated trees leave it out.
    pub cluster_reader: bool,
}

impl Default for InstallSettings {
    fn default() -> Self {
        Self {
            namespace: "nmstate".into(),
            image: "quay.io/knmstate/knmstate:latest".into(),
            image_pull_policy: "IfNotPresent".into(),
            prefix: String::new(),
            monitoring_namespace: "monitoring".into(),
            prometheus_service_account: "prometheus-k8s".into(),
            metrics_secure: true,
            infra_nodes: 1,
            webhook_ca_bundle: None,
            max_retries: rollback::DEFAULT_MAX_RETRIES,
            initial_backoff_seconds: rollback::DEFAULT_INITIAL_BACKOFF.as_secs(),
            max_backoff_seconds: rollback::DEFAULT_MAX_BACKOFF.as_secs(),
            probe_timeout_seconds: None,
            checkpoint_timeout_seconds: None,
            cluster_reader: false,
        }
    }
}

impl InstallSettings {
    /// `name` with the prefix, as upstream names its workloads (`<prefix>-nmstate-handler`).
    ///
    /// ```
    /// let mut s = knmstate_deploy::InstallSettings::default();
    /// assert_eq!(s.prefixed("nmstate-handler"), "nmstate-handler");
    /// s.prefix = "alt".into();
    /// assert_eq!(s.prefixed("nmstate-handler"), "alt-nmstate-handler");
    /// ```
    pub fn prefixed(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}-{name}", self.prefix)
        }
    }
}

/// The certificate rotation intervals (Go durations), defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// CA lifetime (`8760h0m0s`).
    pub ca_rotate: String,
    /// How long the old CA stays trusted (`24h0m0s`).
    pub ca_overlap: String,
    /// Serving certificate lifetime (`4380h0m0s`).
    pub cert_rotate: String,
    /// How long the old certificate stays valid (`24h0m0s`).
    pub cert_overlap: String,
}

/// The NMState spec with upstream's defaults filled in: what the objects are rendered from.
#[derive(Debug, Clone, PartialEq)]
pub struct Knobs {
    /// Handler node selector.
    pub node_selector: BTreeMap<String, String>,
    /// Handler tolerations.
    pub tolerations: Vec<Toleration>,
    /// Handler affinity.
    pub affinity: Option<Affinity>,
    /// Webhook and controller node selector.
    pub infra_node_selector: BTreeMap<String, String>,
    /// Webhook and controller tolerations.
    pub infra_tolerations: Vec<Toleration>,
    /// Webhook and controller affinity.
    pub infra_affinity: Affinity,
    /// Certificate rotation.
    pub rotation: Rotation,
    /// `PROBE_DNS_HOST` of the handlers.
    pub dns_probe_host: String,
    /// `METRICS_BIND_ADDRESS` of the controller.
    pub metrics_bind_address: String,
    /// Handler log level.
    pub log_level: LogLevel,
}

fn linux() -> BTreeMap<String, String> {
    BTreeMap::from([(OS_LABEL.to_owned(), "linux".to_owned())])
}

fn no_schedule(key: &str) -> Toleration {
    Toleration {
        key: Some(key.to_owned()),
        operator: Some("Exists".into()),
        effect: Some("NoSchedule".into()),
        ..Toleration::default()
    }
}

fn prefer(key: &str, weight: i32) -> PreferredSchedulingTerm {
    PreferredSchedulingTerm {
        weight,
        preference: NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: key.to_owned(),
                operator: "Exists".into(),
                values: None,
            }]),
            match_fields: None,
        },
    }
}

/// Upstream's default infra affinity: prefer control-plane nodes (10), then masters (1).
fn control_plane_affinity() -> Affinity {
    Affinity {
        node_affinity: Some(NodeAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                prefer(CONTROL_PLANE_LABEL, 10),
                prefer(MASTER_LABEL, 1),
            ]),
            required_during_scheduling_ignored_during_execution: None,
        }),
        ..Affinity::default()
    }
}

impl Knobs {
    /// The knobs of `spec`, each missing one at upstream's default (spec §1.5).
    pub fn of(spec: &NMStateSpec) -> Self {
        let sign = spec.self_sign_configuration.clone().unwrap_or_default();
        let or = |v: Option<String>, d: &str| v.filter(|v| !v.is_empty()).unwrap_or(d.into());
        Self {
            node_selector: spec.node_selector.clone().unwrap_or_else(linux),
            tolerations: spec.tolerations.clone().unwrap_or_else(|| {
                vec![Toleration {
                    operator: Some("Exists".into()),
                    ..Toleration::default()
                }]
            }),
            affinity: spec.affinity.clone(),
            infra_node_selector: spec.infra_node_selector.clone().unwrap_or_else(linux),
            infra_tolerations: spec.infra_tolerations.clone().unwrap_or_else(|| {
                vec![no_schedule(MASTER_LABEL), no_schedule(CONTROL_PLANE_LABEL)]
            }),
            infra_affinity: spec
                .infra_affinity
                .clone()
                .unwrap_or_else(control_plane_affinity),
            rotation: Rotation {
                ca_rotate: or(sign.ca_rotate_interval, "8760h0m0s"),
                ca_overlap: or(sign.ca_overlap_interval, "24h0m0s"),
                cert_rotate: or(sign.cert_rotate_interval, "4380h0m0s"),
                cert_overlap: or(sign.cert_overlap_interval, "24h0m0s"),
            },
            dns_probe_host: spec
                .probe_configuration
                .as_ref()
                .and_then(|p| p.dns.as_ref())
                .map(|d| d.host.clone())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "root-servers.net".into()),
            metrics_bind_address: spec
                .metrics_configuration
                .as_ref()
                .map(|m| m.bind_address.clone())
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| ":8089".into()),
            log_level: spec.log_level.unwrap_or_default(),
        }
    }

    /// The controller's metrics port, from the bind address (`:8089` → 8089).
    pub fn metrics_port(&self) -> i32 {
        self.metrics_bind_address
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(8089)
    }
}
