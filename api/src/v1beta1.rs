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

impl NodeNetworkConfigurationEnactment {
    /// The node this enactment belongs to: its `nmstate.io/node` label, else the part of its
    /// name before the first dot (`<node>.<policy>`).
    ///
    /// ```
    /// use knmstate_api::v1beta1::NodeNetworkConfigurationEnactment;
    /// let e = NodeNetworkConfigurationEnactment::new("node01.br1", Default::default());
    /// assert_eq!(e.node_name(), Some("node01"));
    /// ```
    pub fn node_name(&self) -> Option<&str> {
        self.label_or_name_part(crate::names::NODE_LABEL, |(node, _)| node)
    }

    /// The policy this enactment belongs to: its `nmstate.io/policy` label, else the part of its
    /// name after the first dot (`<node>.<policy>`).
    ///
    /// ```
    /// use knmstate_api::v1beta1::NodeNetworkConfigurationEnactment;
    /// let e = NodeNetworkConfigurationEnactment::new("node01.br1.v2", Default::default());
    /// assert_eq!(e.policy_name(), Some("br1.v2"));
    /// ```
    pub fn policy_name(&self) -> Option<&str> {
        self.label_or_name_part(crate::names::POLICY_LABEL, |(_, policy)| policy)
    }

    fn label_or_name_part<'a>(
        &'a self,
        label: &str,
        part: impl FnOnce((&'a str, &'a str)) -> &'a str,
    ) -> Option<&'a str> {
        if let Some(v) = self.metadata.labels.as_ref().and_then(|l| l.get(label)) {
            return Some(v);
        }
        self.metadata
            .name
            .as_deref()
            .and_then(crate::names::split_enactment_name)
            .map(part)
    }
}

#[cfg(test)]
mod tests {
    use super::NodeNetworkConfigurationEnactment;
    use crate::names::{NODE_LABEL, POLICY_LABEL};
    use std::collections::BTreeMap;

    #[test]
    fn labels_win_over_the_name() {
        let mut e = NodeNetworkConfigurationEnactment::new("node1.br1.v2", Default::default());
        assert_eq!(e.policy_name(), Some("br1.v2"));
        assert_eq!(e.node_name(), Some("node1"));
        e.metadata.labels = Some(BTreeMap::from([
            (POLICY_LABEL.to_owned(), "x".to_owned()),
            (NODE_LABEL.to_owned(), "node1.example.org".to_owned()),
        ]));
        assert_eq!(e.policy_name(), Some("x"));
        assert_eq!(e.node_name(), Some("node1.example.org"));
        e.metadata.labels = None;
        e.metadata.name = Some("nodot".to_owned());
        assert_eq!((e.node_name(), e.policy_name()), (None, None));
    }
}
