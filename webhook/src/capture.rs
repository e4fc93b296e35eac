//! `spec.capture`: each expression parsed by nmstate's policy (nmpolicy) parser at admission, so
//! a typo is refused when the policy is written instead of failing on every node.

use serde_json::{Map, Value};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::rules::Problem;

/// Problems of a policy's `capture` map, each about `spec.capture.<name>`; none for an absent
/// or empty map.
///
/// ```
/// use knmstate_webhook::capture::capture_problems;
/// let capture = serde_json::json!({"gw": "routes.running.destination==\"0.0.0.0/0\"",
///                                  "bad": "interfaces.name =="});
/// let problems = capture_problems(&capture);
/// assert_eq!(problems.len(), 1);
/// assert_eq!(problems[0].field, "spec.capture.bad");
/// assert!(problems[0].message.starts_with("spec.capture.bad: "), "{}", problems[0]);
/// ```
pub fn capture_problems(capture: &Value) -> Vec<Problem> {
    let Some(entries) = capture.as_object() else {
        return if capture.is_null() {
            Vec::new()
        } else {
            vec![Problem::prefixed(
                "spec.capture",
                format!("must be a map of names to capture expressions, not {capture}"),
            )]
        };
    };
    entries
        .iter()
        .filter_map(|(name, expr)| {
            parse_expression(name, expr)
                .err()
                .map(|e| Problem::prefixed(&format!("spec.capture.{name}"), e))
        })
        .collect()
}

/// Parses one capture expression with nmstate's parser; never panics.
pub fn parse_expression(name: &str, expression: &Value) -> Result<(), String> {
    let Some(text) = expression.as_str() else {
        return Err(format!(
            "a capture expression is a string, not {expression}"
        ));
    };
    let one = Value::Object(Map::from_iter([(name.to_owned(), text.into())]));
    match catch_unwind(AssertUnwindSafe(|| {
        serde_json::from_value::<nmstate::NetworkCaptureRules>(one)
    })) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string().replace('\n', " ")),
        Err(_) => Err("nmstate panicked parsing the expression".to_owned()),
    }
}
