//! The validation rules for NodeNetworkConfigurationPolicy writes.
//!
//! Upstream's rules (its ValidatingAdmissionPolicy and CRD CEL) keep their exact messages, so
//! scripts that match them keep working; on top, the desired state goes through nmstate's full
//! offline validation ([`crate::offline`]) and each `capture` expression through nmstate's
//! parser ([`crate::capture`]). Every problem names its field ([`Problem::field`]); our own
//! messages start with it too.

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

use crate::capture::capture_problems;
pub use crate::offline::parse_desired_state;
use crate::offline::validate_desired_state;

/// One reason a write is refused, and the field it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Problem {
    /// The field path, e.g. `spec.desiredState.routes.config[0].destination` or `metadata.name`.
    pub field: String,
    /// The message returned to the client.
    pub message: String,
}

impl Problem {
    /// A problem of `field` with `message` as it is (upstream's wording, or one that already
    /// starts with the field path).
    pub fn at(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A problem whose message is `<field>: <reason>`.
    pub fn prefixed(field: &str, reason: impl std::fmt::Display) -> Self {
        Self::at(field, format!("{field}: {reason}"))
    }
}

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The object is malformed; every problem found is listed.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
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

    /// Each problem with its field, as Kubernetes' `status.details.causes` carry them; a
    /// forbidden spec change is about `spec`.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            Self::Invalid(p) => p.clone(),
            Self::Forbidden(m) => vec![Problem::at("spec", m.clone())],
        }
    }
}

/// Rules for a new policy.
pub fn validate_create(name: &str, object: &Value) -> Result<(), Rejection> {
    let mut problems = Vec::new();
    if let Err(e) = validate_policy_name(name) {
        problems.push(Problem::at("metadata.name", e.to_string()));
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
        problems.push(Problem::at(
            "spec.capture",
            "invalid policy operation: capture field cannot be modified",
        ));
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

fn spec_problems(spec: &Value) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(selector) = spec.get("nodeSelector").and_then(Value::as_object) {
        if !selector.keys().all(|k| is_qualified_name(k)) {
            problems.push(Problem::at("spec.nodeSelector", MSG_SELECTOR_KEYS));
        }
        if !selector
            .values()
            .all(|v| v.as_str().is_some_and(is_label_value))
        {
            problems.push(Problem::at("spec.nodeSelector", MSG_SELECTOR_VALUES));
        }
    }
    if let Some(exprs) = spec
        .get("nodeSelectorExpressions")
        .and_then(Value::as_array)
    {
        for (i, e) in exprs.iter().enumerate() {
            if let Some(p) = expression_problem(e) {
                problems.push(Problem::prefixed(
                    &format!("spec.nodeSelectorExpressions[{i}]"),
                    p,
                ));
            }
        }
    }
    if let Some(mu) = spec.get("maxUnavailable")
        && !max_unavailable_ok(mu)
    {
        problems.push(Problem::prefixed(
            "spec.maxUnavailable",
            format!("{mu} is neither a non-negative count nor a percentage like \"50%\""),
        ));
    }
    let capture = spec.get("capture").unwrap_or(&Value::Null);
    problems.extend(capture_problems(capture));
    if let Some(state) = spec.get("desiredState").filter(|s| !s.is_null()) {
        // A templated state is rendered on each node from what its captures find there;
        // before that, only the node can tell whether it is valid.
        let templated =
            capture.as_object().is_some_and(|m| !m.is_empty()) && state.to_string().contains("{{");
        if !templated && let Err(r) = validate_desired_state(state) {
            problems.push(Problem::at(r.field.clone(), r.to_string()));
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
