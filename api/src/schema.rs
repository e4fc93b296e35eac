//! Validation of objects against a CRD's `openAPIV3Schema` with the `jsonschema` crate, the way
//! an API server with strict field validation (kubectl's default) would judge them.
//!
//! Kubernetes' structural schemas are OpenAPI v3, not plain JSON Schema: this module rewrites
//! `nullable`, `x-kubernetes-int-or-string` and `x-kubernetes-preserve-unknown-fields` into
//! their JSON Schema meaning, and makes unknown fields an error where the API server would
//! reject (or prune) them. CEL rules (`x-kubernetes-validations`) are not evaluated here.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// One reason an object does not fit its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaViolation {
    /// JSON pointer of the offending value, e.g. `/spec/maxUnavailable`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.message)
    }
}

/// Errors preparing or applying a CRD's schemas.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The object's `apiVersion` is not served by the CRD.
    #[error("failed to find version {0:?} in the CRD")]
    UnknownVersion(String),
    /// A version's schema is not a valid JSON Schema once rewritten.
    #[error("failed to compile the schema of version {version}: {message}")]
    Compile {
        /// The version.
        version: String,
        /// What the compiler reported.
        message: String,
    },
    /// The object does not fit the schema.
    #[error("failed to validate against the schema: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<SchemaViolation>),
}

impl SchemaError {
    /// Stable category for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::UnknownVersion(_) => "unknown-version",
            Self::Compile { .. } => "schema-compile",
            Self::Invalid(_) => "schema-invalid",
        }
    }
}

/// Rewrites one structural OpenAPI v3 schema into plain JSON Schema (draft 2020-12).
pub fn to_json_schema(openapi: &Value) -> Value {
    let Value::Object(src) = openapi else {
        return openapi.clone();
    };
    let mut out = Map::new();
    for (k, v) in src {
        match k.as_str() {
            "properties" | "patternProperties" => {
                let props = v
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(n, s)| (n.clone(), to_json_schema(s)))
                            .collect()
                    })
                    .unwrap_or_default();
                out.insert(k.clone(), Value::Object(props));
            }
            "items" | "additionalProperties" | "not" if v.is_object() => {
                out.insert(k.clone(), to_json_schema(v));
            }
            "allOf" | "anyOf" | "oneOf" => {
                let list = v.as_array().map(|a| a.iter().map(to_json_schema).collect());
                out.insert(k.clone(), Value::Array(list.unwrap_or_default()));
            }
            "nullable" | "x-kubernetes-int-or-string" | "x-kubernetes-preserve-unknown-fields" => {}
            k if k.starts_with("x-kubernetes-") => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    let flag = |name: &str| src.get(name).and_then(Value::as_bool).unwrap_or(false);
    if flag("x-kubernetes-int-or-string") {
        out.remove("anyOf");
        out.remove("type");
        out.insert(
            "anyOf".into(),
            json!([{"type": "integer"}, {"type": "string"}]),
        );
    }
    let is_object = src.get("type").and_then(Value::as_str) == Some("object");
    if is_object
        && !flag("x-kubernetes-preserve-unknown-fields")
        && !src.contains_key("additionalProperties")
    {
        // An object with declared properties accepts nothing else (strict field validation);
        // one without any (e.g. `metadata`) is free-form.
        if src.contains_key("properties") {
            out.insert("additionalProperties".into(), Value::Bool(false));
        }
    }
    if flag("nullable") {
        return json!({"anyOf": [{"type": "null"}, Value::Object(out)]});
    }
    Value::Object(out)
}

/// The API server accepts `apiVersion`, `kind` and `metadata` on every object whether or not
/// the CRD's schema declares them.
fn with_implicit_root_fields(mut openapi: Value) -> Value {
    if let Some(props) = openapi.as_object_mut().map(|o| {
        o.entry("properties")
            .or_insert_with(|| Value::Object(Map::new()))
    }) && let Some(props) = props.as_object_mut()
    {
        props
            .entry("apiVersion")
            .or_insert_with(|| json!({"type": "string"}));
        props
            .entry("kind")
            .or_insert_with(|| json!({"type": "string"}));
        props
            .entry("metadata")
            .or_insert_with(|| json!({"type": "object"}));
    }
    openapi
}

/// Compiled validators for every version a CRD serves.
pub struct CrdValidator {
    validators: BTreeMap<String, jsonschema::Validator>,
    group: String,
}

impl CrdValidator {
    /// Compiles the schema of every version of `crd`.
    pub fn new(crd: &CustomResourceDefinition) -> Result<Self, SchemaError> {
        let mut validators = BTreeMap::new();
        for v in &crd.spec.versions {
            let openapi = v
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .map(serde_json::to_value)
                .transpose()
                .map_err(|e| SchemaError::Compile {
                    version: v.name.clone(),
                    message: e.to_string(),
                })?
                .unwrap_or_else(|| json!({"type": "object"}));
            let openapi = with_implicit_root_fields(openapi);
            let validator = jsonschema::validator_for(&to_json_schema(&openapi)).map_err(|e| {
                SchemaError::Compile {
                    version: v.name.clone(),
                    message: e.to_string(),
                }
            })?;
            validators.insert(v.name.clone(), validator);
        }
        Ok(Self {
            validators,
            group: crd.spec.group.clone(),
        })
    }

    /// Validates a whole object (with `apiVersion`) against the schema of its version.
    pub fn validate(&self, object: &Value) -> Result<(), SchemaError> {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let version = api_version
            .strip_prefix(&format!("{}/", self.group))
            .filter(|v| self.validators.contains_key(*v))
            .ok_or_else(|| SchemaError::UnknownVersion(api_version.to_owned()))?;
        let validator = &self.validators[version];
        let violations: Vec<_> = validator
            .iter_errors(object)
            .map(|e| SchemaViolation {
                path: e.instance_path().to_string(),
                message: e.to_string(),
            })
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(SchemaError::Invalid(violations))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_or_string_accepts_both() {
        let s = to_json_schema(&json!({"x-kubernetes-int-or-string": true, "nullable": true}));
        let v = jsonschema::validator_for(&s).unwrap();
        assert!(v.is_valid(&json!(3)));
        assert!(v.is_valid(&json!("50%")));
        assert!(v.is_valid(&Value::Null));
        assert!(!v.is_valid(&json!(true)));
    }

    #[test]
    fn unknown_fields_rejected_unless_preserved() {
        let s = to_json_schema(&json!({
            "type": "object",
            "properties": {
                "a": {"type": "string"},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }
        }));
        let v = jsonschema::validator_for(&s).unwrap();
        assert!(v.is_valid(&json!({"a": "x", "free": {"anything": [1, {"b": 2}]}})));
        assert!(!v.is_valid(&json!({"a": "x", "b": 1})));
    }
}
