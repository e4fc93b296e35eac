//! CustomResourceDefinitions generated from the Rust types: the single source of `config/crd/`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::core::crd::merge_crds;

use crate::{v1, v1beta1};

/// Errors generating the CRDs.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// Two versions of one kind could not be merged into one CRD.
    #[error("failed to merge the versions of {kind}: {source}")]
    Merge {
        /// The kind whose versions disagree.
        kind: &'static str,
        /// What kube reported.
        source: kube::core::crd::MergeError,
    },
    /// A CRD could not be rendered as YAML.
    #[error("failed to render {name} as YAML: {message}")]
    Render {
        /// The CRD name.
        name: String,
        /// What the serializer reported.
        message: String,
    },
}

impl CrdError {
    /// Stable category for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Merge { .. } => "crd-merge",
            Self::Render { .. } => "crd-render",
        }
    }
}

/// NodeNetworkConfigurationPolicy: v1 (storage) and v1beta1 (served, deprecated).
pub fn node_network_configuration_policy() -> Result<CustomResourceDefinition, CrdError> {
    merge_crds(
        vec![
            v1::NodeNetworkConfigurationPolicy::crd(),
            v1beta1::NodeNetworkConfigurationPolicy::crd(),
        ],
        "v1",
    )
    .map_err(|source| CrdError::Merge {
        kind: "NodeNetworkConfigurationPolicy",
        source,
    })
}

/// NMState: v1 (storage) and v1beta1 (served, deprecated with upstream's warning).
pub fn nmstate() -> Result<CustomResourceDefinition, CrdError> {
    merge_crds(vec![v1::NMState::crd(), v1beta1::NMState::crd()], "v1").map_err(|source| {
        CrdError::Merge {
            kind: "NMState",
            source,
        }
    })
}

/// NodeNetworkConfigurationEnactment: v1beta1 only; like upstream, the root object preserves
/// unknown fields.
pub fn node_network_configuration_enactment() -> CustomResourceDefinition {
    let mut crd = v1beta1::NodeNetworkConfigurationEnactment::crd();
    for v in &mut crd.spec.versions {
        if let Some(schema) = v
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            schema.x_kubernetes_preserve_unknown_fields = Some(true);
        }
    }
    crd
}

/// NodeNetworkState: v1beta1 only.
pub fn node_network_state() -> CustomResourceDefinition {
    v1beta1::NodeNetworkState::crd()
}

/// Every CRD with the file name it is stored under in `config/crd/` (upstream's names).
pub fn all() -> Result<Vec<(&'static str, CustomResourceDefinition)>, CrdError> {
    Ok(vec![
        ("nmstate.io_nmstates.yaml", nmstate()?),
        (
            "nmstate.io_nodenetworkconfigurationenactments.yaml",
            node_network_configuration_enactment(),
        ),
        (
            "nmstate.io_nodenetworkconfigurationpolicies.yaml",
            node_network_configuration_policy()?,
        ),
        ("nmstate.io_nodenetworkstates.yaml", node_network_state()),
    ])
}

/// The YAML document stored for a CRD, with a header saying it is generated.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, CrdError> {
    let body = serde_saphyr::to_string(crd).map_err(|e| CrdError::Render {
        name: crd.metadata.name.clone().unwrap_or_default(),
        message: e.to_string(),
    })?;
    Ok(format!(
        "# Generated from the knmstate-api Rust types by `cargo run -p knmstate-api --bin crdgen`.\n# Do not edit.\n---\n{body}"
    ))
}
