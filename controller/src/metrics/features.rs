//! `kubernetes_nmstate_features_applied`: the nmstate features in use (upstream's gauge).

use std::collections::BTreeSet;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::registry::Registry;

use super::family::{GaugeSet, MetricInfo};

/// The family as documented.
pub const INFO: MetricInfo = MetricInfo::new(
    "kubernetes_nmstate_features_applied",
    "gauge",
    &["name"],
    "Whether an nmstate feature is used by any enactment: 1 while at least one enactment's status.features lists it; the series is removed when none does",
);

/// `{name}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct NameLabels {
    /// nmstate feature name.
    pub name: String,
}

/// Register the family.
pub fn register(registry: &mut Registry) -> GaugeSet<NameLabels> {
    GaugeSet::register(&INFO, registry)
}

/// One series at 1 per feature in use.
pub fn series(features: &BTreeSet<String>) -> impl Iterator<Item = (NameLabels, i64)> + '_ {
    features
        .iter()
        .map(|name| (NameLabels { name: name.clone() }, 1))
}
