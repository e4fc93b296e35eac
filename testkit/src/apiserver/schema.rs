//! CRD structural schemas: pruning, defaulting and validation with the `jsonschema` crate.
//!
//! The structural schema of a CRD version is turned into plain JSON Schema: the
//! `x-kubernetes-*` extensions are removed, `x-kubernetes-int-or-string` becomes
//! `anyOf: [integer, string]` and `nullable: true` adds `null` to the type. Before
//! validation, unknown fields are pruned (unless `x-kubernetes-preserve-unknown-fields`)
//! and `default`s are filled in, as the real API server does. `x-kubernetes-validations`
//! (CEL) rules, transition rules included, are evaluated with the `kube-cel` crate.

use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult};

fn preserves(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == json!(true)
}

/// Removes the fields the schema does not know and fills in defaults, in place; returns the
/// dotted paths of the removed fields, sorted.
pub fn prune_and_default(value: &mut Value, schema: &Value) -> Vec<String> {
    let mut removed = Vec::new();
    walk(value, schema, true, "", &mut removed);
    // sorted: the walk follows the object's key order, which depends on serde_json features
    removed.sort();
    removed
}

fn join(prefix: &str, k: &str) -> String {
    if prefix.is_empty() {
        k.to_owned()
    } else {
        format!("{prefix}.{k}")
    }
}

fn walk(value: &mut Value, schema: &Value, top: bool, at: &str, removed: &mut Vec<String>) {
    if schema["x-kubernetes-int-or-string"] == json!(true) {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let additional = &schema["additionalProperties"];
            if let Some(props) = props {
                for (k, s) in props {
                    if !map.contains_key(k)
                        && let Some(d) = s.get("default")
                    {
                        map.insert(k.clone(), d.clone());
                    }
                }
            }
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if top && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let embedded_meta = schema["x-kubernetes-embedded-resource"] == json!(true)
                    && matches!(k.as_str(), "apiVersion" | "kind" | "metadata");
                if embedded_meta {
                    continue;
                }
                let here = join(at, &k);
                if let Some(s) = props.and_then(|p| p.get(&k)) {
                    if let Some(v) = map.get_mut(&k) {
                        walk(v, s, false, &here, removed);
                    }
                } else if additional.is_object() {
                    if let Some(v) = map.get_mut(&k) {
                        walk(v, additional, false, &here, removed);
                    }
                } else if !(preserves(schema) || *additional == json!(true)) {
                    map.remove(&k);
                    removed.push(here);
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (i, v) in items.iter_mut().enumerate() {
                walk(v, &schema["items"], false, &format!("{at}[{i}]"), removed);
            }
        }
        _ => {}
    }
}

/// Converts a structural schema into plain JSON Schema.
pub fn to_json_schema(schema: &Value, top: bool) -> Value {
    let Some(obj) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (k, v) in obj {
        if k.starts_with("x-kubernetes-") || k == "nullable" || k == "default" || k == "format" {
            continue;
        }
        let v = match k.as_str() {
            "properties" | "patternProperties" | "definitions" => {
                let mut props = Map::new();
                for (pk, pv) in v.as_object().into_iter().flatten() {
                    if top && pk == "metadata" {
                        continue;
                    }
                    props.insert(pk.clone(), to_json_schema(pv, false));
                }
                Value::Object(props)
            }
            "items" | "additionalProperties" | "not" => to_json_schema(v, false),
            "allOf" | "anyOf" | "oneOf" => Value::Array(
                v.as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| to_json_schema(s, false))
                    .collect(),
            ),
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    if obj.get("x-kubernetes-int-or-string") == Some(&json!(true)) {
        out.remove("type");
        if !out.contains_key("anyOf") {
            out.insert(
                "anyOf".into(),
                json!([{"type": "integer"}, {"type": "string"}]),
            );
        }
    }
    if obj.get("nullable") == Some(&json!(true))
        && let Some(t) = out.get("type").cloned()
    {
        out.insert("type".into(), json!([t, "null"]));
    }
    Value::Object(out)
}

/// Validates an object against a CRD version's openAPIV3Schema; errors are `(field, message)`.
pub fn validate(value: &Value, schema: &Value) -> ApiResult<Vec<(String, String)>> {
    let js = to_json_schema(schema, true);
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .should_validate_formats(false)
        .build(&js)
        .map_err(|e| ApiError::internal(format!("invalid CRD schema: {e}")))?;
    Ok(validator
        .iter_errors(value)
        .map(|e| {
            let path = e
                .instance_path()
                .as_str()
                .trim_start_matches('/')
                .replace('/', ".");
            let field = if path.is_empty() {
                "<root>".to_owned()
            } else {
                path
            };
            (field, e.to_string())
        })
        .collect())
}

/// Evaluates the schema's `x-kubernetes-validations` CEL rules (with `oldSelf` on updates);
/// errors are `(field, message)`.
pub fn validate_cel(value: &Value, schema: &Value, old: Option<&Value>) -> Vec<(String, String)> {
    match kube_cel::validate(schema, value, old) {
        Ok(()) => Vec::new(),
        Err(errs) => errs
            .into_vec()
            .into_iter()
            .map(|e| {
                let field = if e.field_path.is_empty() {
                    "<root>".to_owned()
                } else {
                    e.field_path
                };
                (field, format!("Invalid value: {}", e.message))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "size": {"type": "integer", "default": 1},
                        "port": {"x-kubernetes-int-or-string": true},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "note": {"type": "string", "nullable": true}
                    },
                    "required": ["port"]
                }
            }
        })
    }

    #[test]
    fn cel_rules_and_transition_rules() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.min <= self.max", "message": "min must not exceed max"},
                {"rule": "self.name == oldSelf.name", "message": "name is immutable"}],
            "properties": {"min": {"type": "integer"}, "max": {"type": "integer"},
                "name": {"type": "string"}}}}});
        let ok = json!({"spec": {"min": 1, "max": 2, "name": "a"}});
        assert!(validate_cel(&ok, &schema, None).is_empty());
        let bad = json!({"spec": {"min": 3, "max": 2, "name": "a"}});
        let errs = validate_cel(&bad, &schema, None);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].1.contains("min must not exceed max"));
        let renamed = json!({"spec": {"min": 1, "max": 2, "name": "b"}});
        let errs = validate_cel(&renamed, &schema, Some(&ok));
        assert!(
            errs.iter().any(|(_, m)| m.contains("immutable")),
            "{errs:?}"
        );
    }

    #[test]
    fn prunes_defaults_and_validates() {
        let mut v = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"},
            "spec": {"port": "http", "free": {"a": {"b": 1}}, "junk": 1, "note": null}, "other": 2});
        let removed = prune_and_default(&mut v, &schema());
        assert_eq!(removed, vec!["other".to_owned(), "spec.junk".to_owned()]);
        assert_eq!(v["spec"]["size"], json!(1));
        assert!(v["spec"].get("junk").is_none());
        assert!(v.get("other").is_none());
        assert_eq!(v["spec"]["free"]["a"]["b"], json!(1));
        assert!(validate(&v, &schema()).unwrap().is_empty());
        v["spec"]["port"] = json!(8080);
        assert!(validate(&v, &schema()).unwrap().is_empty());
        v["spec"]["port"] = json!(true);
        v["spec"]["size"] = json!("x");
        let errs = validate(&v, &schema()).unwrap();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs.iter().any(|(f, _)| f == "spec.size"));
    }
}
