//! `knmstate_enactments_drifted`: enactments whose node no longer satisfies the desired state
//! it applied (their `status.drift` is set by the node's handler).

use knmstate_api::v1beta1::NodeNetworkConfigurationEnactment;
use knmstate_state_engine::drift;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::registry::Registry;

use super::family::{GaugeSet, MetricInfo};

/// The family as documented.
pub const INFO: MetricInfo = MetricInfo::new(
    "knmstate_enactments_drifted",
    "gauge",
    &["node", "policy"],
    "1 for each NodeNetworkConfigurationEnactment whose node no longer satisfies the desired state it applied (status.drift set); the series goes when the drift does",
);

/// `{node,policy}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct DriftLabels {
    /// Node name.
    pub node: String,
    /// Policy name.
    pub policy: String,
}

/// Register the family.
pub fn register(registry: &mut Registry) -> GaugeSet<DriftLabels> {
    GaugeSet::register(&INFO, registry)
}

/// The series of these enactments.
pub fn series<'a>(
    enactments: &'a [&'a NodeNetworkConfigurationEnactment],
) -> impl Iterator<Item = (DriftLabels, i64)> + 'a {
    drift::drifted(enactments.iter().copied()).map(|(node, policy)| {
        let labels = DriftLabels {
            node: node.to_owned(),
            policy: policy.to_owned(),
        };
        (labels, 1)
    })
}

#[cfg(test)]
mod tests {
    use super::super::Metrics;
    use k8s_openapi::jiff::Timestamp;
    use knmstate_api::shared::{DriftReport, NodeNetworkConfigurationEnactmentStatus};
    use knmstate_testkit::builders;

    #[test]
    fn a_drifted_enactment_is_one_series_until_its_report_goes() {
        let m = Metrics::new();
        let mut drifted = builders::enactment("n1", "br");
        drifted.status = Some(NodeNetworkConfigurationEnactmentStatus {
            drift: Some(DriftReport {
                paths: vec!["interfaces[br1].bridge.port".into()],
                ..Default::default()
            }),
            ..Default::default()
        });
        let fine = builders::enactment("n2", "br");
        m.refresh(&[], &[&drifted, &fine], &[], Timestamp::UNIX_EPOCH);
        let text = m.encode();
        assert!(
            text.contains("knmstate_enactments_drifted{node=\"n1\",policy=\"br\"} 1"),
            "{text}"
        );
        assert!(!text.contains("knmstate_enactments_drifted{node=\"n2\""));
        drifted.status = None;
        m.refresh(&[], &[&drifted, &fine], &[], Timestamp::UNIX_EPOCH);
        assert!(!m.encode().contains("knmstate_enactments_drifted{"));
    }
}
