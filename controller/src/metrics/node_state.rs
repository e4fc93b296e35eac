//! `kubernetes_nmstate_network_interfaces` and `kubernetes_nmstate_routes`: what each node's
//! NodeNetworkState reports (upstream's gauges).

use std::collections::BTreeMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::registry::Registry;

use super::family::{GaugeSet, MetricInfo};

/// The interfaces family as documented.
pub const INTERFACES: MetricInfo = MetricInfo::new(
    "kubernetes_nmstate_network_interfaces",
    "gauge",
    &["type", "node"],
    "Number of network interfaces of each type in the node's NodeNetworkState currentState",
);

/// The routes family as documented.
pub const ROUTES: MetricInfo = MetricInfo::new(
    "kubernetes_nmstate_routes",
    "gauge",
    &["node", "ip_stack", "type"],
    "Number of running routes of the node by IP stack (ipv4, ipv6) and type (static when the destination is also configured, else dynamic)",
);

/// `{type,node}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct InterfaceLabels {
    /// Interface type.
    pub r#type: String,
    /// Node name.
    pub node: String,
}

/// `{node,ip_stack,type}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct RouteLabels {
    /// Node name.
    pub node: String,
    /// `ipv4` or `ipv6`.
    pub ip_stack: String,
    /// `static` or `dynamic`.
    pub r#type: String,
}

/// Register the interfaces family.
pub fn register_interfaces(registry: &mut Registry) -> GaugeSet<InterfaceLabels> {
    GaugeSet::register(&INTERFACES, registry)
}

/// Register the routes family.
pub fn register_routes(registry: &mut Registry) -> GaugeSet<RouteLabels> {
    GaugeSet::register(&ROUTES, registry)
}

/// The interface series from counts per (node, interface type).
pub fn interface_series(
    counts: &BTreeMap<(String, String), i64>,
) -> impl Iterator<Item = (InterfaceLabels, i64)> + '_ {
    counts.iter().map(|((node, t), n)| {
        let labels = InterfaceLabels {
            r#type: t.clone(),
            node: node.clone(),
        };
        (labels, *n)
    })
}

/// The route series from counts per (node, IP stack, route type).
pub fn route_series<'a>(
    counts: &'a BTreeMap<(String, &'static str, &'static str), i64>,
) -> impl Iterator<Item = (RouteLabels, i64)> + 'a {
    counts.iter().map(|((node, stack, kind), n)| {
        let labels = RouteLabels {
            node: node.clone(),
            ip_stack: (*stack).to_owned(),
            r#type: (*kind).to_owned(),
        };
        (labels, *n)
    })
}
