//! Whether a webhook is called for a request: its rules, namespace and object selectors and
//! `matchConditions`.

use serde_json::Value;

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

pub(super) fn rule_matches(hook: &Value, a: &Attributes<'_>) -> bool {
    hook["rules"].as_array().into_iter().flatten().any(|rule| {
        let scope = rule["scope"].as_str().unwrap_or("*");
        let scope_ok = match scope {
            "Cluster" => !a.rt.namespaced,
            "Namespaced" => a.rt.namespaced,
            _ => true,
        };
        scope_ok
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

/// Evaluates a webhook's `matchConditions` (CEL over `object`, `oldObject`, `request`):
/// `Ok(true)` when all hold, `Ok(false)` when one is false, `Err` when one cannot be evaluated.
pub(super) fn conditions_match(
    hook: &Value,
    a: &Attributes<'_>,
    obj: Option<&Value>,
) -> Result<bool, String> {
    const FALSE: &str = "\u{0}false";
    let Some(conds) = hook["matchConditions"].as_array().filter(|c| !c.is_empty()) else {
        return Ok(true);
    };
    let exprs: Vec<kube_cel::VapExpression> = conds
        .iter()
        .map(|c| kube_cel::VapExpression {
            expression: c["expression"].as_str().unwrap_or("false").to_owned(),
            message: Some(FALSE.to_owned()),
            message_expression: None,
        })
        .collect();
    let request = kube_cel::AdmissionRequest {
        operation: a.operation.to_owned(),
        username: "system:admin".to_owned(),
        groups: vec![
            "system:masters".to_owned(),
            "system:authenticated".to_owned(),
        ],
        name: a.name.to_owned(),
        namespace: a.namespace.to_owned(),
        kind: kube_cel::GroupVersionKind {
            group: a.rt.group.clone(),
            version: a.version.to_owned(),
            kind: a.rt.kind.clone(),
        },
        resource: kube_cel::GroupVersionResource {
            group: a.rt.group.clone(),
            version: a.version.to_owned(),
            resource: a.rt.plural.clone(),
        },
        ..Default::default()
    };
    let evaluator = kube_cel::VapEvaluator::builder()
        .object(obj.cloned().unwrap_or(Value::Null))
        .old_object(a.old.cloned().unwrap_or(Value::Null))
        .request(request)
        .build();
    let mut all = true;
    for (r, c) in evaluator.evaluate(&exprs).iter().zip(conds) {
        match r.message.as_deref() {
            None => {}
            Some(FALSE) => all = false,
            Some(e) => {
                let name = c["name"].as_str().unwrap_or_default();
                return Err(format!("matchCondition {name}: {e}"));
            }
        }
    }
    Ok(all)
}

/// Whether to call the webhook; errors follow its failure policy.
pub(super) fn should_call(
    store: &Store,
    hook: &Value,
    a: &Attributes<'_>,
    obj: Option<&Value>,
) -> ApiResult<bool> {
    if !rule_matches(hook, a) || !selector_matches(store, hook, a, obj)? {
        return Ok(false);
    }
    match conditions_match(hook, a, obj) {
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
