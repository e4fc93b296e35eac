//! The four kinds, generated once per served version from one definition, so that versions
//! cannot drift apart (upstream serves identical schemas and has no conversion webhook).

/// Defines `NodeNetworkConfigurationPolicySpec` (and, through kube-derive, the
/// `NodeNetworkConfigurationPolicy` root type) for one API version.
macro_rules! nncp_kind {
    ($(#[$extra:meta])*) => {
        /// Desired network configuration for the nodes a policy selects.
        #[derive(
            kube::CustomResource,
            serde::Serialize,
            serde::Deserialize,
            Clone,
            Debug,
            PartialEq,
            Default,
            schemars::JsonSchema,
        )]
        #[kube(
            group = "nmstate.io",
            kind = "NodeNetworkConfigurationPolicy",
            shortname = "nncp",
            status = "crate::shared::NodeNetworkConfigurationPolicyStatus",
            printcolumn(name = "Status", type_ = "string", description = "The condition that is True", json_path = ".status.conditions[?(@.status==\"True\")].type"),
            printcolumn(name = "Reason", type_ = "string", description = "Reason of the condition that is True", json_path = ".status.conditions[?(@.status==\"True\")].reason"),
            doc = "A NodeNetworkConfigurationPolicy describes the network configuration a set of nodes should have, as an nmstate desired state."
        )]
        $(#[$extra])*
        #[serde(rename_all = "camelCase")]
        pub struct NodeNetworkConfigurationPolicySpec {
            /// Labels a node must carry (every pair, exact match) for the policy to apply to
            /// it. Empty or absent selects every node that runs a handler.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(extend(
                "maxProperties" = 256,
                "x-kubernetes-validations" = [{
                    "rule": "self.all(k, size(k) <= 317 && k.matches('^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))",
                    "message": "nodeSelector keys must be valid qualified names"
                }]
            ))]
            pub node_selector: Option<std::collections::BTreeMap<String, String>>,
            /// Set-based node selection (`In`, `NotIn`, `Exists`, `DoesNotExist`), ANDed with
            /// `nodeSelector`. Optional; policies written for upstream never need it.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub node_selector_expressions: Option<
                Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement>,
            >,
            /// Named nmpolicy capture expressions, referenced from `desiredState` as
            /// `{{ capture.<name>... }}`. Immutable once the policy exists.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub capture: Option<std::collections::BTreeMap<String, String>>,
            /// The nmstate desired state: `interfaces`, `routes`, `dns-resolver`, … Validated
            /// by nmstate (through the webhook), not by the API server's schema.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub desired_state: Option<crate::state::State>,
            /// How many matching nodes may apply the policy at once: a count (`3`) or a
            /// percentage of the matching nodes (`"30%"`), rounded up, at least 1.
            /// Default `"50%"`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub max_unavailable:
                Option<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
            /// Per-policy control of the probes that guard the apply (enable, disable,
            /// timeouts). Absent means the handler's defaults.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub probes: Option<crate::shared::PolicyProbes>,
        }
    };
}

/// Defines `NMStateSpec` (and the `NMState` root type) for one API version.
macro_rules! nmstate_kind {
    ($(#[$extra:meta])*) => {
        /// Settings of the one knmstate installation in a cluster.
        #[derive(
            kube::CustomResource,
            serde::Serialize,
            serde::Deserialize,
            Clone,
            Debug,
            PartialEq,
            Default,
            schemars::JsonSchema,
        )]
        #[kube(
            group = "nmstate.io",
            kind = "NMState",
            plural = "nmstates",
            status = "crate::shared::NMStateStatus",
            printcolumn(name = "Status", type_ = "string", description = "The condition that is True", json_path = ".status.conditions[?(@.status==\"True\")].type"),
            printcolumn(name = "Reason", type_ = "string", description = "Reason of the condition that is True", json_path = ".status.conditions[?(@.status==\"True\")].reason"),
            doc = "NMState configures the knmstate installation; only the oldest one, by convention named `nmstate`, is honoured."
        )]
        $(#[$extra])*
        #[serde(rename_all = "camelCase")]
        pub struct NMStateSpec {
            /// Node selector of the handler DaemonSet. Default `kubernetes.io/os: linux`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub node_selector: Option<std::collections::BTreeMap<String, String>>,
            /// Tolerations of the handler DaemonSet. Default: tolerate every taint.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub tolerations: Option<Vec<k8s_openapi::api::core::v1::Toleration>>,
            /// Affinity of the handler DaemonSet.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub affinity: Option<k8s_openapi::api::core::v1::Affinity>,
            /// Node selector of the webhook and metrics deployments. Default
            /// `kubernetes.io/os: linux`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub infra_node_selector: Option<std::collections::BTreeMap<String, String>>,
            /// Tolerations of the webhook and metrics deployments. Default: the control-plane
            /// and master NoSchedule taints.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub infra_tolerations: Option<Vec<k8s_openapi::api::core::v1::Toleration>>,
            /// Affinity of the webhook and metrics deployments. Default: prefer control-plane
            /// nodes.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub infra_affinity: Option<k8s_openapi::api::core::v1::Affinity>,
            /// Rotation of the self-signed webhook certificates.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub self_sign_configuration: Option<crate::shared::SelfSignConfiguration>,
            /// Connectivity probe settings for every handler.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub probe_configuration: Option<crate::shared::NMStateProbeConfiguration>,
            /// Metrics endpoint settings.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub metrics_configuration: Option<crate::shared::NMStateMetricsConfiguration>,
            /// Handler log level: `info` (default) or `debug`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub log_level: Option<crate::shared::LogLevel>,
        }
    };
}

pub(crate) use {nmstate_kind, nncp_kind};
