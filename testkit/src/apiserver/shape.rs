//! How objects are answered (objects, tables, metadata only): shared by reads and watches.

use serde_json::{Value, json};

/// How objects are answered, from the Accept header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The objects themselves.
    Object,
    /// A `meta.k8s.io/v1` Table (`as=Table`).
    Table,
    /// `PartialObjectMetadata` (`as=PartialObjectMetadata[List]`).
    Metadata,
}

/// The `PartialObjectMetadata` form of an object.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}
