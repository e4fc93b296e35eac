//! How this handler builds the objects it writes: the objects of its node (owned by the Node,
//! so they go away with it) and server-side-apply status patches. Types, kinds and API versions
//! come from the Rust types, never from strings.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use kube::Resource;
use kube::api::ObjectMeta;
use serde::Serialize;
use serde_json::{Value, json};

/// Metadata of an object of `node`, named `name`, with `labels`, owned by the Node.
pub fn node_owned(name: &str, labels: BTreeMap<String, String>, node: &Node) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some(labels),
        owner_references: node.owner_ref(&()).map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

/// A server-side-apply body that sets the status of the `K` named `name` to `status` (and
/// claims nothing else).
pub fn status_patch<K: Resource<DynamicType = ()>>(name: &str, status: impl Serialize) -> Value {
    json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": name},
        "status": status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use knmstate_api::v1beta1::NodeNetworkState;

    #[test]
    fn node_owned_objects_name_the_node_as_owner() {
        let node = Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                uid: Some("u1".into()),
                ..ObjectMeta::default()
            },
            ..Node::default()
        };
        let meta = node_owned("n1", BTreeMap::from([("a".into(), "b".into())]), &node);
        let owner = &meta.owner_references.expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Node", "n1", "u1")
        );
        assert_eq!(owner.api_version, "v1");
        let patch = status_patch::<NodeNetworkState>("n1", json!({"x": 1}));
        assert_eq!(patch["apiVersion"], "nmstate.io/v1beta1");
        assert_eq!(patch["kind"], "NodeNetworkState");
    }
}
