//! The validation rules for NodeNetworkConfigurationPolicy writes.
//!
//! Upstream's rules (its ValidatingAdmissionPolicy and CRD CEL) keep their exact messages, so
//! scripts that match them keep working; on top, the desired state is parsed by the nmstate
//! crate and rejected with nmstate's message and the field path.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use knmstate_api::names::policy::PROGRESSING;
use knmstate_api::names::syntax::{is_label_value, is_qualified_name};
use knmstate_state_engine::concurrency::parse_max_unavailable;
use knmstate_state_engine::selector::{
    MSG_SELECTOR_KEYS, MSG_SELECTOR_VALUES, validate_expression, validate_policy_name,
};
use serde::Deserialize;
use serde_json::Value;

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The object is malformed; every problem found is listed.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The write is not allowed now (the policy is progressing).
    #[error("{0}")]
    Forbidden(String),
}

impl Rejection {
    /// The message returned to the client.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// The Kubernetes status reason: `Invalid` or `Forbidden`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "Invalid",
            Self::Forbidden(_) => "Forbidden",
        }
    }

    /// The HTTP code the API server returns: 422 for invalid, 403 for forbidden.
    pub fn code(&self) -> u16 {
        match self {
            Self::Invalid(_) => 422,
            Self::Forbidden(_) => 403,
        }
    }

    /// Stable category for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::Forbidden(_) => "forbidden",
        }
    }
}

/// Rules for a new policy.
pub fn validate_create(name: &str, object: &Value) -> Result<(), Rejection> {
    let mut problems = Vec::new();
    if let Err(e) = validate_policy_name(name) {
        problems.push(e.to_string());
    }
    problems.extend(spec_problems(object.get("spec").unwrap_or(&Value::Null)));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Rejection::Invalid(problems))
    }
}

/// Rules for a change to an existing policy. Writes that leave the spec alone (labels,
/// annotations, finalizers) are always allowed, so a policy can always be cleaned up.
pub fn validate_update(name: &str, old: &Value, new: &Value) -> Result<(), Rejection> {
    let null = Value::Null;
    let old_spec = old.get("spec").unwrap_or(&null);
    let new_spec = new.get("spec").unwrap_or(&null);
    if old_spec == new_spec {
        return Ok(());
    }
    if is_progressing(old) {
        return Err(Rejection::Forbidden(format!(
            "policy {name} is still in progress"
        )));
    }
    let mut problems = Vec::new();
    if old_spec.get("capture") != new_spec.get("capture") {
        problems.push("invalid policy operation: capture field cannot be modified".to_owned());
    }
    problems.extend(spec_problems(new_spec));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Rejection::Invalid(problems))
    }
}

/// A policy is in progress while its `Progressing` condition is True: a spec change then would
/// race the nodes still applying the previous generation.
fn is_progressing(policy: &Value) -> bool {
    policy
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some(PROGRESSING)
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

fn spec_problems(spec: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(selector) = spec.get("nodeSelector").and_then(Value::as_object) {
        if !selector.keys().all(|k| is_qualified_name(k)) {
            problems.push(MSG_SELECTOR_KEYS.to_owned());
        }
        if !selector
            .values()
            .all(|v| v.as_str().is_some_and(is_label_value))
        {
            problems.push(MSG_SELECTOR_VALUES.to_owned());
        }
    }
    if let Some(exprs) = spec
        .get("nodeSelectorExpressions")
        .and_then(Value::as_array)
    {
        for (i, e) in exprs.iter().enumerate() {
            if let Some(p) = expression_problem(e) {
                problems.push(format!("spec.nodeSelectorExpressions[{i}]: {p}"));
            }
        }
    }
    if let Some(mu) = spec.get("maxUnavailable")
        && !max_unavailable_ok(mu)
    {
        problems.push(format!(
            "spec.maxUnavailable: {mu} is neither a non-negative count nor a percentage like \"50%\""
        ));
    }
    if let Some(state) = spec.get("desiredState").filter(|s| !s.is_null()) {
        let templated = spec
            .get("capture")
            .is_some_and(|c| c.as_object().is_some_and(|m| !m.is_empty()))
            && state.to_string().contains("{{");
        if let Err(e) = parse_desired_state(state)
            && !templated
        {
            problems.push(e);
        }
    }
    problems
}

fn expression_problem(e: &Value) -> Option<String> {
    match serde_json::from_value::<LabelSelectorRequirement>(e.clone()) {
        Ok(req) => validate_expression(&req).err().map(|e| e.to_string()),
        Err(e) => Some(e.to_string()),
    }
}

/// The engine's grammar ([`parse_max_unavailable`]) on the value as written; JSON that is not
/// an int-or-string at all (`true`, `1.5`, a count beyond 32 bits) is refused too.
fn max_unavailable_ok(v: &Value) -> bool {
    IntOrString::deserialize(v).is_ok_and(|v| parse_max_unavailable(&v).is_ok())
}

/// Parses a desired state with the nmstate crate; the error names the field path.
///
/// ```
/// use knmstate_webhook::rules::parse_desired_state;
/// let bad = serde_json::json!({"interfaces": [{"name": "eth1", "type": "ethernet", "mtu": "big"}]});
/// let err = parse_desired_state(&bad).unwrap_err();
/// assert!(err.starts_with("spec.desiredState.interfaces"), "{err}");
/// ```
pub fn parse_desired_state(state: &Value) -> Result<(), String> {
    let Err(e) = serde_path_to_error::deserialize::<_, nmstate::NetworkState>(state) else {
        return Ok(());
    };
    let mut path = e.path().to_string();
    let mut message = e.inner().to_string();
    // nmstate picks an interface's type from its `type` key, so errors inside one interface
    // stop at `interfaces[i]`; parse its keys one at a time to name the field at fault.
    if let Some(i) = path
        .strip_prefix("interfaces[")
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|i| i.parse::<usize>().ok())
        && let Some(iface) = state
            .pointer(&format!("/interfaces/{i}"))
            .and_then(Value::as_object)
    {
        let keep = ["name", "type"];
        for (key, value) in iface.iter().filter(|(k, _)| !keep.contains(&k.as_str())) {
            let mut probe: serde_json::Map<String, Value> = iface
                .iter()
                .filter(|(k, _)| keep.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            probe.insert(key.clone(), value.clone());
            let one = serde_json::json!({ "interfaces": [probe] });
            if let Err(inner) = serde_path_to_error::deserialize::<_, nmstate::NetworkState>(&one) {
                path = format!("{path}.{key}");
                message = inner.inner().to_string();
                break;
            }
        }
    }
    let at = if path == "." {
        String::new()
    } else {
        format!(".{path}")
    };
    Err(format!("spec.desiredState{at}: {message}"))
}
