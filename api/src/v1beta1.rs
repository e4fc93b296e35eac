//! `nmstate.io/v1beta1`: NodeNetworkConfigurationEnactment and NodeNetworkState (their only
//! version), plus the deprecated, still served v1beta1 of NodeNetworkConfigurationPolicy and
//! NMState.

// Several `printcolumn(...)` entries repeat the same keys by design.
#![allow(clippy::duplicated_attributes)]

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

crate::kinds::nncp_kind!(#[kube(version = "v1beta1", deprecated)]);
crate::kinds::nmstate_kind!(
    #[kube(version = "v1beta1", deprecated = "nmstate/v1beta1 deprecated, use nmstate/v1 instead")]
);

/// NodeNetworkConfigurationEnactment has no spec: everything it says is in `status`.
#[derive(
    kube::CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema,
)]
#[kube(
    group = "nmstate.io",
    version = "v1beta1",
    kind = "NodeNetworkConfigurationEnactment",
    shortname = "nnce",
    no_spec,
    status = "crate::shared::NodeNetworkConfigurationEnactmentStatus",
    printcolumn(
        name = "Status",
        type_ = "string",
        description = "The condition that is True",
        json_path = ".status.conditions[?(@.status==\"True\")].type"
    ),
    printcolumn(
        name = "Status Age",
        type_ = "date",
        description = "When the True condition became True",
        json_path = ".status.conditions[?(@.status==\"True\")].lastTransitionTime"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        description = "Reason of the condition that is True",
        json_path = ".status.conditions[?(@.status==\"True\")].reason"
    ),
    doc = "A NodeNetworkConfigurationEnactment reports how one policy went on one node; its name is `<node>.<policy>`."
)]
pub struct NodeNetworkConfigurationEnactmentFields {}

/// NodeNetworkState has no spec: everything it says is in `status`.
#[derive(
    kube::CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema,
)]
#[kube(
    group = "nmstate.io",
    version = "v1beta1",
    kind = "NodeNetworkState",
    shortname = "nns",
    no_spec,
    status = "crate::shared::NodeNetworkStateStatus",
    doc = "A NodeNetworkState reports the current network state of one node; its name is the node's."
)]
pub struct NodeNetworkStateFields {}
