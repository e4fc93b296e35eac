//! Facts about a Kubernetes Node that several decisions share.

use k8s_openapi::api::core::v1::Node;

/// Whether a Node's `Ready` condition is `True` (a Node without status or conditions is not
/// ready).
///
/// ```
/// use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus};
/// use knmstate_state_engine::node::is_ready;
///
/// let mut node = Node::default();
/// assert!(!is_ready(&node));
/// node.status = Some(NodeStatus {
///     conditions: Some(vec![NodeCondition {
///         type_: "Ready".into(),
///         status: "True".into(),
///         ..Default::default()
///     }]),
///     ..Default::default()
/// });
/// assert!(is_ready(&node));
/// ```
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
