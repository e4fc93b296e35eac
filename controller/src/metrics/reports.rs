//! `knmstate_apply_duration_seconds`, `knmstate_rollbacks_total` and
//! `knmstate_probe_duration_seconds`: the handlers' apply reports (`status.lastApply` of each
//! enactment), each counted once (state-engine's `ReportLedger` decides which are new).

use knmstate_api::shared::ApplyReport;
use knmstate_state_engine::census::{apply_result, probe_result, rollback_reason};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::family::{HistogramFamily, MetricInfo};

/// The apply-duration family as documented.
pub const APPLY_DURATION: MetricInfo = MetricInfo::new(
    "knmstate_apply_duration_seconds",
    "histogram",
    &["result"],
    "Duration of handler apply attempts, from checkpoint to commit or rollback, as reported in enactment status.lastApply; result is committed or rolled-back",
);

/// The rollbacks family as documented.
pub const ROLLBACKS: MetricInfo = MetricInfo::new(
    "knmstate_rollbacks_total",
    "counter",
    &["reason"],
    "Handler apply attempts rolled back, by the stable category of the failure (status.lastApply.rollbackReason)",
);

/// The probe-duration family as documented.
pub const PROBE_DURATION: MetricInfo = MetricInfo::new(
    "knmstate_probe_duration_seconds",
    "histogram",
    &["probe", "result"],
    "Duration of connectivity probes run while a checkpoint was held, by probe and result (success, failure)",
);

const APPLY_BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 240.0, 480.0,
];
const PROBE_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0, 60.0, 120.0];

/// `{result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `committed` or `rolled-back`.
    pub result: String,
}

/// `{reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Rollback category.
    pub reason: String,
}

/// `{probe,result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// Probe name.
    pub probe: String,
    /// `success` or `failure`.
    pub result: String,
}

fn apply_histogram() -> Histogram {
    Histogram::new(APPLY_BUCKETS)
}

fn probe_histogram() -> Histogram {
    Histogram::new(PROBE_BUCKETS)
}

/// Register the apply-duration family.
pub fn register_apply_duration(registry: &mut Registry) -> HistogramFamily<ResultLabels> {
    APPLY_DURATION.register(registry, Family::new_with_constructor(apply_histogram))
}

/// Register the rollbacks family.
pub fn register_rollbacks(registry: &mut Registry) -> Family<ReasonLabels, Counter> {
    ROLLBACKS.register(registry, Family::default())
}

/// Register the probe-duration family.
pub fn register_probe_duration(registry: &mut Registry) -> HistogramFamily<ProbeLabels> {
    PROBE_DURATION.register(registry, Family::new_with_constructor(probe_histogram))
}

/// The three report families together.
#[derive(Debug)]
pub struct Reports {
    /// `knmstate_apply_duration_seconds`.
    pub apply_duration: HistogramFamily<ResultLabels>,
    /// `knmstate_rollbacks_total`.
    pub rollbacks: Family<ReasonLabels, Counter>,
    /// `knmstate_probe_duration_seconds`.
    pub probe_duration: HistogramFamily<ProbeLabels>,
}

impl Reports {
    /// Count one apply report: its duration, its rollback if any, each probe's duration.
    pub fn observe(&self, report: &ApplyReport) {
        let result = apply_result(report).to_owned();
        self.apply_duration
            .get_or_create(&ResultLabels { result })
            .observe(report.duration_seconds);
        if let Some(reason) = rollback_reason(report) {
            let reason = reason.to_owned();
            self.rollbacks.get_or_create(&ReasonLabels { reason }).inc();
        }
        for probe in &report.probes {
            let labels = ProbeLabels {
                probe: probe.name.clone(),
                result: probe_result(probe).to_owned(),
            };
            self.probe_duration
                .get_or_create(&labels)
                .observe(probe.duration_seconds);
        }
    }
}
