//! `nmstate.io/v1`: the storage version of NodeNetworkConfigurationPolicy and NMState.

// Several `printcolumn(...)` entries repeat the same keys by design.
#![allow(clippy::duplicated_attributes)]

crate::kinds::nncp_kind!(#[kube(version = "v1")]);
crate::kinds::nmstate_kind!(#[kube(version = "v1")]);

impl From<crate::v1beta1::NodeNetworkConfigurationPolicySpec>
    for NodeNetworkConfigurationPolicySpec
{
    fn from(s: crate::v1beta1::NodeNetworkConfigurationPolicySpec) -> Self {
        // Destructured without `..`: adding a field to one version and not the other fails to compile.
        let crate::v1beta1::NodeNetworkConfigurationPolicySpec {
            node_selector,
            node_selector_expressions,
            capture,
            desired_state,
            max_unavailable,
            probes,
        } = s;
        Self {
            node_selector,
            node_selector_expressions,
            capture,
            desired_state,
            max_unavailable,
            probes,
        }
    }
}

impl From<crate::v1beta1::NMStateSpec> for NMStateSpec {
    fn from(s: crate::v1beta1::NMStateSpec) -> Self {
        let crate::v1beta1::NMStateSpec {
            node_selector,
            tolerations,
            affinity,
            infra_node_selector,
            infra_tolerations,
            infra_affinity,
            self_sign_configuration,
            probe_configuration,
            metrics_configuration,
            log_level,
        } = s;
        Self {
            node_selector,
            tolerations,
            affinity,
            infra_node_selector,
            infra_tolerations,
            infra_affinity,
            self_sign_configuration,
            probe_configuration,
            metrics_configuration,
            log_level,
        }
    }
}
