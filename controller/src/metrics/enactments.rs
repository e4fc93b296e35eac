//! `kubernetes_nmstate_enactments_status`: enactments per node by active condition
//! (upstream's gauge).

use std::collections::BTreeMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::registry::Registry;

use super::family::{GaugeSet, MetricInfo};

/// The family as documented.
pub const INFO: MetricInfo = MetricInfo::new(
    "kubernetes_nmstate_enactments_status",
    "gauge",
    &["node", "status"],
    "Per node, number of NodeNetworkConfigurationEnactments whose first True condition is the status (Available, Failing, Progressing, Pending, Aborted); all five are emitted for every node that has enactments",
);

/// `{node,status}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct NodeStatusLabels {
    /// Node name.
    pub node: String,
    /// Condition type.
    pub status: String,
}

/// Register the family.
pub fn register(registry: &mut Registry) -> GaugeSet<NodeStatusLabels> {
    GaugeSet::register(&INFO, registry)
}

/// The series from counts per (node, active condition).
pub fn series<'a>(
    counts: &'a BTreeMap<(String, &'static str), i64>,
) -> impl Iterator<Item = (NodeStatusLabels, i64)> + 'a {
    counts.iter().map(|((node, status), n)| {
        let labels = NodeStatusLabels {
            node: node.clone(),
            status: (*status).to_owned(),
        };
        (labels, *n)
    })
}
