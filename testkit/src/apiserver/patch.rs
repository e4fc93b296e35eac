//! PATCH bodies: JSON merge patch, JSON patch, strategic merge patch (approximated), apply.
//!
//! Strategic merge is JSON merge patch for custom resources (the real server refuses it). For built-in kinds it also
//! merges lists of objects by their `name` (or `type`, for conditions) key when every item
//! has one, and honours `$patch: delete` on such items and `$patch: replace` on maps;
//! other directives (`$retainKeys`, `$setElementOrder`, `$deleteFromPrimitiveList`) are dropped.

use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};

/// The kind of PATCH, from its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchKind {
    /// Reads the Content-Type.
    pub fn from_content_type(ct: &str) -> ApiResult<Self> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/json-patch+json" => Ok(Self::Json),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(Self::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }

    /// Name used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Merge => "merge",
            Self::Json => "json",
            Self::Strategic => "strategic",
            Self::Apply => "apply",
        }
    }
}

/// Parses a JSON body.
pub fn parse_json(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("unable to decode request body as JSON: {e}")))
}

/// Parses a YAML (or JSON) body.
pub fn parse_yaml(body: &[u8]) -> ApiResult<Value> {
    if let Ok(v) = serde_json::from_slice(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request(format!("body is not UTF-8: {e}")))?;
    serde_saphyr::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("unable to decode request body as YAML: {e}")))
}

/// Applies a non-apply patch to `current`.
pub fn patch(kind: PatchKind, current: &Value, body: &[u8], custom: bool) -> ApiResult<Value> {
    let mut out = current.clone();
    match kind {
        PatchKind::Merge => json_patch::merge(&mut out, &parse_json(body)?),
        PatchKind::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(&mut out, &p).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?;
        }
        PatchKind::Strategic if custom => json_patch::merge(&mut out, &parse_json(body)?),
        PatchKind::Strategic => strategic(&mut out, &parse_json(body)?),
        PatchKind::Apply => {
            return Err(ApiError::internal("apply is not a plain patch"));
        }
    }
    Ok(out)
}

const MERGE_KEYS: &[&str] = &["name", "type"];

fn merge_key(items: &[Value]) -> Option<&'static str> {
    MERGE_KEYS.iter().copied().find(|k| {
        !items.is_empty()
            && items
                .iter()
                .all(|i| i.get(*k).is_some_and(Value::is_string))
    })
}

fn strip_directives(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|k, _| !k.starts_with('$'));
        for c in m.values_mut() {
            strip_directives(c);
        }
    } else if let Value::Array(a) = v {
        for c in a {
            strip_directives(c);
        }
    }
}

/// Strategic merge approximation (see the module doc).
pub fn strategic(base: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *base = patch.clone();
        strip_directives(base);
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        *base = patch.clone();
        strip_directives(base);
        return;
    }
    if !base.is_object() {
        *base = Value::Object(Map::new());
    }
    let Value::Object(b) = base else { return };
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                b.remove(k);
            }
            Value::Object(_) => strategic(b.entry(k.clone()).or_insert(Value::Null), v),
            Value::Array(items) => {
                let current = b
                    .get(k)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let key = merge_key(items).filter(|key| {
                    current
                        .iter()
                        .all(|i| i.get(*key).is_some_and(Value::is_string))
                });
                let merged = if let Some(key) = key {
                    merge_list(current, items, key)
                } else {
                    let mut v = v.clone();
                    strip_directives(&mut v);
                    v
                };
                b.insert(k.clone(), merged);
            }
            _ => {
                b.insert(k.clone(), v.clone());
            }
        }
    }
}

fn merge_list(mut current: Vec<Value>, items: &[Value], key: &str) -> Value {
    for item in items {
        let id = item[key].clone();
        let pos = current.iter().position(|c| c[key] == id);
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                current.remove(i);
            }
            (Some(i), false) => strategic(&mut current[i], item),
            (None, true) => {}
            (None, false) => {
                let mut v = item.clone();
                strip_directives(&mut v);
                current.push(v);
            }
        }
    }
    Value::Array(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_named_lists() {
        let mut base = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}], "n": 1}});
        strategic(
            &mut base,
            &json!({"spec": {"containers": [{"name": "b", "image": "z"}, {"name": "a", "$patch": "delete"}], "n": null}}),
        );
        assert_eq!(
            base,
            json!({"spec": {"containers": [{"name": "b", "image": "z"}]}})
        );
    }

    #[test]
    fn yaml_and_json_bodies() {
        assert_eq!(
            parse_yaml(b"a: 1\nb: [x]\n").unwrap(),
            json!({"a": 1, "b": ["x"]})
        );
        assert_eq!(parse_yaml(br#"{"a":1}"#).unwrap(), json!({"a": 1}));
    }
}
