//! `knmstate_controller_errors_total`: failed controller actions by error category.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::family::MetricInfo;

/// The family as documented.
pub const INFO: MetricInfo = MetricInfo::new(
    "knmstate_controller_errors_total",
    "counter",
    &["category"],
    "Controller actions that failed (status writes, orphan cleanup, lease renewal), by stable error category",
);

/// `{category}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabels {
    /// Error category.
    pub category: String,
}

/// Register the family.
pub fn register(registry: &mut Registry) -> Family<CategoryLabels, Counter> {
    INFO.register(registry, Family::default())
}
