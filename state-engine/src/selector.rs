//! Node selection and the label rules the webhook enforces.
//!
//! A policy matches a node when every `nodeSelector` pair is among the node's labels (exact
//! equality, as upstream) **and** every `nodeSelectorExpressions` requirement holds
//! (`In`, `NotIn`, `Exists`, `DoesNotExist`, with Kubernetes label-selector semantics:
//! `NotIn` and `DoesNotExist` hold when the key is absent).
//!
//! ```
//! use knmstate_state_engine::selector::policy_matches_node;
//! use knmstate_api::v1::NodeNetworkConfigurationPolicySpec;
//! use std::collections::BTreeMap;
//!
//! let spec: NodeNetworkConfigurationPolicySpec = serde_json::from_value(serde_json::json!({
//!     "nodeSelector": {"kubernetes.io/hostname": "node01"},
//!     "nodeSelectorExpressions": [{"key": "node-role.kubernetes.io/worker", "operator": "Exists"}]
//! })).unwrap();
//! let mut labels = BTreeMap::from([("kubernetes.io/hostname".to_string(), "node01".to_string())]);
//! assert!(!policy_matches_node(&spec, &labels).unwrap());
//! labels.insert("node-role.kubernetes.io/worker".into(), "".into());
//! assert!(policy_matches_node(&spec, &labels).unwrap());
//! ```

use crate::Error;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
use knmstate_api::names::syntax;
use knmstate_api::v1::NodeNetworkConfigurationPolicySpec;
use std::collections::BTreeMap;

/// Message of the CRD rule on `nodeSelector` keys.
pub const MSG_SELECTOR_KEYS: &str = "nodeSelector keys must be valid qualified names";
/// Message of the admission rule on `nodeSelector` values.
pub const MSG_SELECTOR_VALUES: &str = "nodeSelector values must be valid label values";

/// Whether `selector` (absent or empty selects everything) is a subset of `labels`.
pub fn matches_labels(
    selector: Option<&BTreeMap<String, String>>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.is_none_or(|s| s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// Whether one set-based requirement holds for `labels`.
pub fn matches_expression(
    req: &LabelSelectorRequirement,
    labels: &BTreeMap<String, String>,
) -> Result<bool, Error> {
    validate_expression(req)?;
    let values = req.values.as_deref().unwrap_or_default();
    let got = labels.get(&req.key);
    Ok(match req.operator.as_str() {
        "In" => got.is_some_and(|v| values.contains(v)),
        "NotIn" => got.is_none_or(|v| !values.contains(v)),
        "Exists" => got.is_some(),
        _ => got.is_none(), // DoesNotExist, checked by validate_expression
    })
}

/// Check one requirement: a valid key, a known operator, values for `In`/`NotIn` only, and
/// valid label values.
pub fn validate_expression(req: &LabelSelectorRequirement) -> Result<(), Error> {
    let bad = |reason: &str| Error::ParseSelectorExpression {
        key: req.key.clone(),
        reason: reason.to_owned(),
    };
    validate_label_key(&req.key)?;
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => {
            Err(bad("values must be non-empty for In and NotIn"))
        }
        "In" | "NotIn" => values.iter().try_for_each(|v| validate_label_value(v)),
        "Exists" | "DoesNotExist" if !values.is_empty() => {
            Err(bad("values must be empty for Exists and DoesNotExist"))
        }
        "Exists" | "DoesNotExist" => Ok(()),
        other => Err(bad(&format!(
            "unknown operator {other:?}, expected In, NotIn, Exists or DoesNotExist"
        ))),
    }
}

/// Whether a policy applies to a node with these labels: `nodeSelector` equality AND every
/// `nodeSelectorExpressions` requirement. An invalid expression is an error, never a match.
pub fn policy_matches_node(
    spec: &NodeNetworkConfigurationPolicySpec,
    labels: &BTreeMap<String, String>,
) -> Result<bool, Error> {
    if !matches_labels(spec.node_selector.as_ref(), labels) {
        return Ok(false);
    }
    for req in spec.node_selector_expressions.iter().flatten() {
        if !matches_expression(req, labels)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether `v` has the label value format: empty, or at most 63 characters matching
/// `^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`.
///
/// ```
/// use knmstate_state_engine::selector::is_valid_label_value;
/// assert!(is_valid_label_value("") && is_valid_label_value("br1.v-2_x"));
/// assert!(!is_valid_label_value("-x") && !is_valid_label_value(&"a".repeat(64)));
/// ```
pub fn is_valid_label_value(v: &str) -> bool {
    syntax::is_label_value(v)
}

/// Why `key` is not a qualified name (`[prefix/]name`), or `None` when it is one.
fn qualified_name_problem(key: &str) -> Option<&'static str> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && !syntax::is_dns1123_subdomain(p)
    {
        return Some("prefix must be a DNS-1123 subdomain of at most 253 characters");
    }
    if name.is_empty() || !is_valid_label_value(name) {
        return Some(
            "name part must be 1-63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric",
        );
    }
    None
}

/// Check a label key is a qualified name (`[prefix/]name`).
///
/// ```
/// use knmstate_state_engine::selector::validate_label_key;
/// assert!(validate_label_key("node-role.kubernetes.io/worker").is_ok());
/// assert_eq!(validate_label_key("Bad_Prefix/x").unwrap_err().category(), "invalid-label-key");
/// ```
pub fn validate_label_key(key: &str) -> Result<(), Error> {
    match qualified_name_problem(key) {
        None => Ok(()),
        Some(reason) => Err(Error::ValidateLabelKey {
            key: key.to_owned(),
            reason: reason.to_owned(),
        }),
    }
}

/// Check a label value has the label value format.
pub fn validate_label_value(value: &str) -> Result<(), Error> {
    if is_valid_label_value(value) {
        Ok(())
    } else {
        Err(Error::ValidateLabelValue {
            value: value.to_owned(),
            reason:
                "must be at most 63 characters matching ^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
                    .to_owned(),
        })
    }
}

/// Check a policy name can be the `nmstate.io/policy` label value (at most 63 characters,
/// label value format). The error's message is upstream's admission message.
///
/// ```
/// use knmstate_state_engine::selector::validate_policy_name;
/// assert!(validate_policy_name("br1-eth1").is_ok());
/// let e = validate_policy_name(&"x".repeat(64)).unwrap_err();
/// assert!(e.to_string().ends_with("must be no more than 63 characters or match label value format"));
/// ```
pub fn validate_policy_name(name: &str) -> Result<(), Error> {
    if syntax::is_policy_name(name) {
        Ok(())
    } else {
        Err(Error::ValidatePolicyName {
            name: name.to_owned(),
        })
    }
}

/// Check a policy's whole selection: `nodeSelector` keys and values and every expression.
/// Returns each problem found (empty when valid).
pub fn validate_selection(spec: &NodeNetworkConfigurationPolicySpec) -> Vec<Error> {
    let mut errs = Vec::new();
    for (k, v) in spec.node_selector.iter().flatten() {
        if let Err(e) = validate_label_key(k) {
            errs.push(e);
        }
        if let Err(e) = validate_label_value(v) {
            errs.push(e);
        }
    }
    for req in spec.node_selector_expressions.iter().flatten() {
        if let Err(e) = validate_expression(req) {
            errs.push(e);
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| {
                values
                    .iter()
                    .map(std::string::ToString::to_string)
                    .collect()
            }),
        }
    }

    #[rstest]
    #[case(None, &[], true)]
    #[case(Some(&[][..]), &[("a", "1")], true)]
    #[case(Some(&[("a", "1")][..]), &[("a", "1"), ("b", "2")], true)]
    #[case(Some(&[("a", "1")][..]), &[("a", "2")], false)]
    #[case(Some(&[("a", "1"), ("b", "2")][..]), &[("a", "1")], false)]
    #[case(Some(&[("a", "")][..]), &[("a", "")], true)]
    fn equality(
        #[case] sel: Option<&[(&str, &str)]>,
        #[case] node: &[(&str, &str)],
        #[case] want: bool,
    ) {
        let sel = sel.map(labels);
        assert_eq!(matches_labels(sel.as_ref(), &labels(node)), want);
    }

    #[rstest]
    #[case(req("zone", "In", &["a", "b"]), &[("zone", "a")], true)]
    #[case(req("zone", "In", &["a", "b"]), &[("zone", "c")], false)]
    #[case(req("zone", "In", &["a"]), &[], false)]
    #[case(req("zone", "NotIn", &["a"]), &[("zone", "b")], true)]
    #[case(req("zone", "NotIn", &["a"]), &[("zone", "a")], false)]
    #[case(req("zone", "NotIn", &["a"]), &[], true)]
    #[case(req("zone", "Exists", &[]), &[("zone", "")], true)]
    #[case(req("zone", "Exists", &[]), &[], false)]
    #[case(req("zone", "DoesNotExist", &[]), &[], true)]
    #[case(req("zone", "DoesNotExist", &[]), &[("zone", "x")], false)]
    fn expressions(
        #[case] r: LabelSelectorRequirement,
        #[case] node: &[(&str, &str)],
        #[case] want: bool,
    ) {
        assert_eq!(matches_expression(&r, &labels(node)).unwrap(), want);
    }

    #[rstest]
    #[case(req("zone", "Gt", &["1"]))]
    #[case(req("zone", "In", &[]))]
    #[case(req("zone", "Exists", &["a"]))]
    #[case(req("-bad", "Exists", &[]))]
    #[case(req("zone", "In", &["not valid"]))]
    fn invalid_expressions_are_errors(#[case] r: LabelSelectorRequirement) {
        assert!(matches_expression(&r, &labels(&[("zone", "a")])).is_err());
    }

    #[rstest]
    #[case("a", true)]
    #[case("kubernetes.io/hostname", true)]
    #[case("node-role.kubernetes.io/worker", true)]
    #[case("a.b/C_d.e-f", true)]
    #[case("", false)]
    #[case("/a", false)]
    #[case("a/", false)]
    #[case("A.io/x", false)]
    #[case("a/b/c", false)]
    #[case("x_", false)]
    fn keys(#[case] key: &str, #[case] ok: bool) {
        assert_eq!(validate_label_key(key).is_ok(), ok, "{key}");
    }

    #[test]
    fn key_lengths() {
        assert!(validate_label_key(&"a".repeat(63)).is_ok());
        assert!(validate_label_key(&"a".repeat(64)).is_err());
        let prefix = format!("{}.{}", "a".repeat(63), "b".repeat(63));
        assert!(validate_label_key(&format!("{prefix}/x")).is_ok());
        assert!(validate_label_key(&format!("{}/x", "a".repeat(64))).is_err());
    }

    #[rstest]
    #[case("br1", true)]
    #[case("Policy.1_a-b", true)]
    #[case("", false)]
    #[case("-a", false)]
    #[case("a b", false)]
    #[case("ünicode", false)]
    fn policy_names(#[case] name: &str, #[case] ok: bool) {
        assert_eq!(validate_policy_name(name).is_ok(), ok, "{name}");
    }

    #[test]
    fn selection_collects_every_problem() {
        let spec: NodeNetworkConfigurationPolicySpec = serde_json::from_value(serde_json::json!({
            "nodeSelector": {"Bad/x": "ok", "good": "-bad"},
            "nodeSelectorExpressions": [{"key": "k", "operator": "Nope"}]
        }))
        .unwrap();
        let cats: Vec<_> = validate_selection(&spec)
            .iter()
            .map(super::super::error::Error::category)
            .collect();
        assert_eq!(
            cats,
            [
                "invalid-label-key",
                "invalid-label-value",
                "invalid-node-selector"
            ]
        );
    }
}
