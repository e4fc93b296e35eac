//! Small helpers over objects held as JSON values.

use serde_json::Value;

/// Now, as an RFC 3339 timestamp with second precision.
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// `metadata.name`.
pub fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

/// `metadata.namespace`.
pub fn namespace(obj: &Value) -> &str {
    obj["metadata"]["namespace"].as_str().unwrap_or_default()
}

/// `metadata.uid`.
pub fn uid(obj: &Value) -> &str {
    obj["metadata"]["uid"].as_str().unwrap_or_default()
}

/// `metadata.resourceVersion`.
pub fn resource_version(obj: &Value) -> &str {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
}

/// `metadata.finalizers` (or, for a Namespace, `spec.finalizers`) is non-empty.
pub fn has_finalizers(obj: &Value) -> bool {
    let non_empty = |v: &Value| v.as_array().is_some_and(|f| !f.is_empty());
    non_empty(&obj["metadata"]["finalizers"])
        || (obj["kind"] == "Namespace" && non_empty(&obj["spec"]["finalizers"]))
}

/// `metadata.deletionTimestamp` is set.
pub fn is_terminating(obj: &Value) -> bool {
    obj["metadata"]["deletionTimestamp"].is_string()
}

/// The mutable `metadata` map, created when absent.
pub fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = Value::Object(serde_json::Map::new());
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

/// The object without `metadata` and (when `without_status`) `status`: what `generation` tracks.
pub fn spec_part(obj: &Value, without_status: bool) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if without_status {
            m.remove("status");
        }
    }
    v
}
