//! Whether a webhook is called for a request: its rules, namespace and object selectors and
//! `matchConditions`; the rule and selector matching `ValidatingAdmissionPolicies` share.

use serde_json::Value;

use super::cel::Scope;
use super::{Attributes, failed};
use crate::apiserver::error::ApiResult;
use crate::apiserver::selectors::{LabelSelector, labels_of};
use crate::apiserver::storage::Store;

pub(super) fn matches_list(list: &Value, want: &str) -> bool {
    list.as_array()
        .is_some_and(|a| a.iter().any(|v| v == "*" || v.as_str() == Some(want)))
}

pub(super) fn resource_matches(list: &Value, plural: &str, sub: &str) -> bool {
    let full = if sub.is_empty() {
        plural.to_owned()
    } else {
        format!("{plural}/{sub}")
    };
    list.as_array().is_some_and(|a| {
        a.iter().filter_map(Value::as_str).any(|r| {
            if r == "*/*" || r == full {
                return true;
            }
            match r.split_once('/') {
                Some(("*", s)) => s == sub,
                Some((p, "*")) => p == plural && !sub.is_empty(),
                Some(_) => false,
                None => (r == "*" || r == plural) && sub.is_empty(),
            }
        })
    })
}

/// Whether a rule list (webhook `rules`, a policy's `resourceRules`) matches the request:
/// operations, API groups and versions, resources (with subresources), scope and, when
/// listed, resource names.
pub(super) fn rules_match(rules: &Value, a: &Attributes<'_>) -> bool {
    rules.as_array().into_iter().flatten().any(|rule| {
        let scope = rule["scope"].as_str().unwrap_or("*");
        let scope_ok = match scope {
            "Cluster" => !a.rt.namespaced,
            "Namespaced" => a.rt.namespaced,
            _ => true,
        };
        let names = &rule["resourceNames"];
        let name_ok = names.as_array().is_none_or(Vec::is_empty) || matches_list(names, a.name);
        scope_ok
            && name_ok
            && matches_list(&rule["operations"], a.operation)
            && matches_list(&rule["apiGroups"], &a.rt.group)
            && matches_list(&rule["apiVersions"], a.version)
            && resource_matches(&rule["resources"], &a.rt.plural, a.subresource)
    })
}

pub(super) fn selector_matches(
    store: &Store,
    hook: &Value,
    a: &Attributes<'_>,
    obj: Option<&Value>,
) -> ApiResult<bool> {
    if hook["objectSelector"].is_object() {
        let sel = LabelSelector::from_object(&hook["objectSelector"])?;
        let any = [obj, a.old]
            .into_iter()
            .flatten()
            .any(|o| sel.matches_object(o));
        if !any {
            return Ok(false);
        }
    }
    if hook["namespaceSelector"].is_object() {
        let sel = LabelSelector::from_object(&hook["namespaceSelector"])?;
        let labels = if a.rt.group.is_empty() && a.rt.plural == "namespaces" {
            obj.or(a.old).map(labels_of).unwrap_or_default()
        } else if a.rt.namespaced {
            store
                .get("", "namespaces", "", a.namespace)
                .map(|n| labels_of(&n))
                .unwrap_or_default()
        } else {
            return Ok(true);
        };
        return Ok(sel.matches(&labels));
    }
    Ok(true)
}

/// Evaluates `matchConditions` in a bound scope: `Ok(false)` when one is false (even if
/// another fails), `Ok(true)` when all hold, `Err` when none is false and one cannot be
/// evaluated.
pub(super) fn match_conditions(scope: &Scope, conds: &Value) -> Result<bool, String> {
    let mut error = None;
    for c in conds.as_array().into_iter().flatten() {
        match scope.test(c["expression"].as_str().unwrap_or("false")) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(e) => {
                let name = c["name"].as_str().unwrap_or_default();
                error.get_or_insert(format!("matchCondition '{name}' resulted in error: {e}"));
            }
        }
    }
    error.map_or(Ok(true), Err)
}

/// Whether to call the webhook; errors follow its failure policy.
pub(super) fn should_call(
    store: &Store,
    hook: &Value,
    a: &Attributes<'_>,
    obj: Option<&Value>,
) -> ApiResult<bool> {
    if !rules_match(&hook["rules"], a) || !selector_matches(store, hook, a, obj)? {
        return Ok(false);
    }
    let conds = &hook["matchConditions"];
    if conds.as_array().is_none_or(Vec::is_empty) {
        return Ok(true);
    }
    match match_conditions(&Scope::new(store, a, obj), conds) {
        Ok(m) => Ok(m),
        Err(_) if hook["failurePolicy"].as_str() == Some("Ignore") => Ok(false),
        Err(e) => Err(failed(hook["name"].as_str().unwrap_or_default(), &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resource_rules() {
        let l = json!(["widgets", "gadgets/status"]);
        assert!(resource_matches(&l, "widgets", ""));
        assert!(!resource_matches(&l, "widgets", "status"));
        assert!(resource_matches(&l, "gadgets", "status"));
        assert!(resource_matches(&json!(["*/status"]), "widgets", "status"));
        assert!(!resource_matches(&json!(["*"]), "widgets", "status"));
        assert!(resource_matches(&json!(["*/*"]), "widgets", "status"));
    }
}
