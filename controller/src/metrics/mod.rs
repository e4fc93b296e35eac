//! Prometheus metrics: upstream's five cluster gauges, with upstream's names, labels and
//! semantics, plus our own histograms fed by the handlers' apply reports.
//!
//! Each family lives in its own module with its documented [`MetricInfo`] and its
//! `register(&mut Registry)`; [`METRICS`] lists them in exposition order for
//! `--print-metrics`. The cluster gauges are recomputed from the controller's caches on every
//! scrape from state-engine's [`Census`], so a series disappears as soon as the object it
//! describes is gone. The apply reports (`status.lastApply` of each enactment) are counted
//! once each, keyed by enactment name and report start time, whether the controller sees
//! them while reconciling or while scraping. `knmstate_enactments_drifted` counts the
//! enactments whose handler reports drift (`status.drift`).

mod drift;
mod enactments;
mod errors;
mod family;
mod features;
mod node_state;
mod policies;
mod reports;
#[cfg(test)]
mod tests;

use std::sync::{Mutex, PoisonError};

use k8s_openapi::jiff::Timestamp;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::{NodeNetworkConfigurationEnactment, NodeNetworkState};
use knmstate_state_engine::census::{Census, ReportLedger};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

pub use drift::DriftLabels;
pub use enactments::NodeStatusLabels;
pub use errors::CategoryLabels;
pub use family::{GaugeSet, MetricInfo};
pub use features::NameLabels;
pub use node_state::{InterfaceLabels, RouteLabels};
pub use policies::{AgeLabels, StatusLabels};
pub use reports::{ProbeLabels, ReasonLabels, ResultLabels};

/// Every metric the controller exposes, in exposition order (for `--print-metrics`).
pub const METRICS: &[MetricInfo] = &[
    features::INFO,
    node_state::INTERFACES,
    node_state::ROUTES,
    policies::STATUS,
    enactments::INFO,
    drift::INFO,
    reports::APPLY_DURATION,
    reports::ROLLBACKS,
    reports::PROBE_DURATION,
    policies::CONDITION_AGE,
    errors::INFO,
];

/// The controller's metrics registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    features_applied: GaugeSet<NameLabels>,
    network_interfaces: GaugeSet<InterfaceLabels>,
    routes: GaugeSet<RouteLabels>,
    policies_status: GaugeSet<StatusLabels>,
    enactments_status: GaugeSet<NodeStatusLabels>,
    enactments_drifted: GaugeSet<DriftLabels>,
    policies_by_condition_age: GaugeSet<AgeLabels>,
    reports: reports::Reports,
    errors: Family<CategoryLabels, Counter>,
    /// Which apply reports were counted already.
    ledger: Mutex<ReportLedger>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric of [`METRICS`] registered, in that order.
    pub fn new() -> Self {
        let mut r = Registry::default();
        let features_applied = features::register(&mut r);
        let network_interfaces = node_state::register_interfaces(&mut r);
        let routes = node_state::register_routes(&mut r);
        let policies_status = policies::register_status(&mut r);
        let enactments_status = enactments::register(&mut r);
        let enactments_drifted = drift::register(&mut r);
        let reports = reports::Reports {
            apply_duration: reports::register_apply_duration(&mut r),
            rollbacks: reports::register_rollbacks(&mut r),
            probe_duration: reports::register_probe_duration(&mut r),
        };
        let policies_by_condition_age = policies::register_condition_age(&mut r);
        let errors = errors::register(&mut r);
        Self {
            registry: r,
            features_applied,
            network_interfaces,
            routes,
            policies_status,
            enactments_status,
            enactments_drifted,
            policies_by_condition_age,
            reports,
            errors,
            ledger: Mutex::new(ReportLedger::default()),
        }
    }

    /// Recompute the cluster gauges from the caches' contents at `now`.
    pub fn refresh(
        &self,
        policies: &[&NodeNetworkConfigurationPolicy],
        enactments: &[&NodeNetworkConfigurationEnactment],
        states: &[&NodeNetworkState],
        now: Timestamp,
    ) {
        let census = Census::take(policies, enactments, states, now);
        self.features_applied
            .sync(features::series(&census.features));
        self.network_interfaces
            .sync(node_state::interface_series(&census.interfaces));
        self.routes.sync(node_state::route_series(&census.routes));
        self.policies_status
            .sync(policies::status_series(&census.policies));
        self.enactments_status
            .sync(enactments::series(&census.enactments));
        self.enactments_drifted.sync(drift::series(enactments));
        self.policies_by_condition_age
            .sync(policies::condition_age_series(&census.condition_age));
        self.observe_reports(enactments.iter().copied());
        self.ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(enactments.iter().filter_map(|e| e.metadata.name.as_deref()));
    }

    /// Drop every cluster gauge series (this process stopped leading: the new leader reports).
    pub fn clear_cluster(&self) {
        self.features_applied.clear();
        self.network_interfaces.clear();
        self.routes.clear();
        self.policies_status.clear();
        self.enactments_status.clear();
        self.enactments_drifted.clear();
        self.policies_by_condition_age.clear();
    }

    /// Count the apply reports of these enactments that were not counted yet. Returns how
    /// many were new.
    pub fn observe_reports<'a>(
        &self,
        enactments: impl IntoIterator<Item = &'a NodeNetworkConfigurationEnactment>,
    ) -> usize {
        let mut ledger = self.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        let new = ledger.take_new(enactments);
        for report in &new {
            self.reports.observe(report);
        }
        new.len()
    }

    /// Log a failed action with its whole cause chain and count it by category.
    pub fn failed(&self, error: &crate::Error) {
        tracing::warn!(category = error.category(), "{}", error.report());
        self.count_error(error.category());
    }

    /// Count one failed action.
    pub fn count_error(&self, category: &str) {
        let category = category.to_owned();
        self.errors
            .get_or_create(&CategoryLabels { category })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        knmstate_runtime::admin::encode(&self.registry)
    }
}

/// `--print-metrics`: a Markdown table of every metric with its type, labels and help.
pub fn describe() -> String {
    let mut out = String::from("| metric | type | labels | help |\n|---|---|---|---|\n");
    for m in METRICS {
        out.push_str(&m.row());
    }
    out
}
