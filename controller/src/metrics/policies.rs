//! `kubernetes_nmstate_policies_status` (upstream's gauge) and
//! `knmstate_policies_by_condition_age`: policies by active condition, and by how long it
//! has been active.

use std::collections::BTreeMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::registry::Registry;

use super::family::{GaugeSet, MetricInfo};

/// The status family as documented.
pub const STATUS: MetricInfo = MetricInfo::new(
    "kubernetes_nmstate_policies_status",
    "gauge",
    &["status"],
    "Number of NodeNetworkConfigurationPolicies whose first True condition is the status (Available, Degraded, Progressing, Ignored)",
);

/// The condition-age family as documented.
pub const CONDITION_AGE: MetricInfo = MetricInfo::new(
    "knmstate_policies_by_condition_age",
    "gauge",
    &["status", "max_age_seconds"],
    "Number of policies whose first True condition is the status and became True at most max_age_seconds ago (cumulative; +Inf counts them all)",
);

/// `{status}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct StatusLabels {
    /// Condition type.
    pub status: String,
}

/// `{status,max_age_seconds}` (not `le`: that label is reserved for histogram buckets).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct AgeLabels {
    /// Condition type.
    pub status: String,
    /// Bucket upper bound in seconds, or `+Inf`.
    pub max_age_seconds: String,
}

/// Register the status family.
pub fn register_status(registry: &mut Registry) -> GaugeSet<StatusLabels> {
    GaugeSet::register(&STATUS, registry)
}

/// Register the condition-age family.
pub fn register_condition_age(registry: &mut Registry) -> GaugeSet<AgeLabels> {
    GaugeSet::register(&CONDITION_AGE, registry)
}

/// The status series from counts per active condition.
pub fn status_series<'a>(
    counts: &'a BTreeMap<&'static str, i64>,
) -> impl Iterator<Item = (StatusLabels, i64)> + 'a {
    counts.iter().map(|(status, n)| {
        let labels = StatusLabels {
            status: (*status).to_owned(),
        };
        (labels, *n)
    })
}

/// The condition-age series from counts per (active condition, bucket bound).
pub fn condition_age_series(
    counts: &BTreeMap<(String, String), i64>,
) -> impl Iterator<Item = (AgeLabels, i64)> + '_ {
    counts.iter().map(|((status, max_age_seconds), n)| {
        let labels = AgeLabels {
            status: status.clone(),
            max_age_seconds: max_age_seconds.clone(),
        };
        (labels, *n)
    })
}
