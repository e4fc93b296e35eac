//! `ValidatingAdmissionPolicy` and `ValidatingAdmissionPolicyBinding`
//! (`admissionregistration.k8s.io/v1`), evaluated with CEL on every write admission sees,
//! before the validating webhooks (kube-apiserver's plugin order).
//!
//! A policy applies to a request within its `matchConstraints` (resourceRules with
//! resourceNames, excludeResourceRules, namespace and object selectors), for each binding
//! naming it whose `matchResources` (when set) also holds, when all its `matchConditions`
//! hold. Its `variables` are evaluated in order (each sees those before it); a variable's
//! error counts only for an evaluation that reaches it (as with lazy evaluation). A validation that is false, or
//! cannot be compiled or evaluated under `failurePolicy: Fail`, fails; the binding's
//! `validationActions` decide: `Deny` refuses with kube-apiserver's message and the
//! validation's `reason` (`Invalid`, 422, by default), `Warn` adds a `Warning` header,
//! `Audit` does nothing (there is no audit log). `paramKind` with a binding's `paramRef`
//! (`name` or `selector`, `namespace`, `parameterNotFoundAction`) binds `params`; with a
//! selector the validations run once per parameter object. Not implemented: `authorizer`
//! (an expression using it fails to evaluate), `matchPolicy: Equivalent`, `auditAnnotations`,
//! `status.typeChecking`.

use kube_cel::cel::Value as Cel;
use serde_json::{Value, json};

use super::cel::{Scope, map, to_cel};
use super::rules::{match_conditions, rules_match, selector_matches};
use super::warnings::warn;
use super::{Attributes, GROUP};
use crate::apiserver::error::{ApiError, ApiResult, qualified};
use crate::apiserver::object;
use crate::apiserver::selectors::LabelSelector;
use crate::apiserver::storage::Store;

/// A validation that failed (false, or not evaluable under failurePolicy Fail).
#[derive(Debug)]
struct Failure {
    message: String,
    reason: String,
}

impl Failure {
    fn error(message: String) -> Self {
        Self {
            message,
            reason: "Invalid".into(),
        }
    }
}

fn sorted(store: &Store, plural: &str) -> Vec<Value> {
    let (mut items, _) = store.list(GROUP, plural, None);
    items.sort_by(|a, b| object::name(a).cmp(object::name(b)));
    items
}

/// Evaluates every policy and binding that apply to the request; the first denial is
/// returned, warnings are added to the response.
pub(super) fn admit(store: &Store, a: &Attributes<'_>, obj: Option<&Value>) -> ApiResult<()> {
    let bindings = sorted(store, "validatingadmissionpolicybindings");
    for policy in sorted(store, "validatingadmissionpolicies") {
        if !in_scope(store, &policy["spec"]["matchConstraints"], a, obj, true)? {
            continue;
        }
        let name = object::name(&policy);
        for binding in bindings
            .iter()
            .filter(|b| b["spec"]["policyName"].as_str() == Some(name))
        {
            let narrowing = &binding["spec"]["matchResources"];
            if narrowing.is_object() && !in_scope(store, narrowing, a, obj, false)? {
                continue;
            }
            let failures = evaluate(store, &policy, binding, a, obj);
            enforce(&policy, binding, a, obj, &failures)?;
        }
    }
    Ok(())
}

/// Whether the request is within a policy's `matchConstraints` or a binding's
/// `matchResources` (whose empty `resourceRules` keep all the policy matches).
fn in_scope(
    store: &Store,
    m: &Value,
    a: &Attributes<'_>,
    obj: Option<&Value>,
    rules_required: bool,
) -> ApiResult<bool> {
    let rules = &m["resourceRules"];
    let listed = rules.as_array().is_some_and(|r| !r.is_empty());
    if (listed || rules_required) && !rules_match(rules, a) {
        return Ok(false);
    }
    if rules_match(&m["excludeResourceRules"], a) {
        return Ok(false);
    }
    selector_matches(store, m, a, obj)
}

fn evaluate(
    store: &Store,
    policy: &Value,
    binding: &Value,
    a: &Attributes<'_>,
    obj: Option<&Value>,
) -> Vec<Failure> {
    let spec = &policy["spec"];
    let fail = spec["failurePolicy"].as_str() != Some("Ignore");
    let params = match params(store, spec, &binding["spec"], a) {
        Ok(p) => p,
        Err(e) if fail => return vec![Failure::error(format!("failed to configure binding: {e}"))],
        Err(_) => return Vec::new(),
    };
    let mut scope = Scope::new(store, a, obj);
    let mut out = Vec::new();
    for p in &params {
        scope.bind("params", to_cel(p));
        out.extend(validations(&mut scope, spec, fail));
    }
    out
}

/// The parameter objects a binding selects: `[null]` for a policy without `paramKind`.
fn params(
    store: &Store,
    spec: &Value,
    binding: &Value,
    a: &Attributes<'_>,
) -> Result<Vec<Value>, String> {
    let kind = &spec["paramKind"];
    if !kind.is_object() {
        return Ok(vec![Value::Null]);
    }
    let api_version = kind["apiVersion"].as_str().unwrap_or_default();
    let kind_name = kind["kind"].as_str().unwrap_or_default();
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let reg = store.registry();
    let rt = reg.by_kind(group, kind_name).ok_or_else(|| {
        format!(
            "failed to find resource referenced by paramKind: '{api_version}, Kind={kind_name}'"
        )
    })?;
    let r = &binding["paramRef"];
    if !r.is_object() {
        return Err("the policy has a paramKind and the binding no paramRef".into());
    }
    let ns = match r["namespace"].as_str().filter(|n| !n.is_empty()) {
        _ if !rt.namespaced => "",
        Some(n) => n,
        None if a.namespace.is_empty() => {
            return Err(
                "cannot use a namespaced paramRef without a namespace for a cluster-scoped request"
                    .into(),
            );
        }
        None => a.namespace,
    };
    let found: Vec<Value> = if let Some(name) = r["name"].as_str().filter(|n| !n.is_empty()) {
        store
            .get(&rt.group, &rt.plural, ns, name)
            .into_iter()
            .collect()
    } else {
        let sel = LabelSelector::from_object(&r["selector"]).map_err(|e| e.message)?;
        let (items, _) = store.list(&rt.group, &rt.plural, rt.namespaced.then_some(ns));
        items
            .into_iter()
            .filter(|o| sel.matches_object(o))
            .collect()
    };
    if found.is_empty() && r["parameterNotFoundAction"].as_str() == Some("Deny") {
        return Err(
            "no params found for policy binding with `Deny` parameterNotFoundAction".into(),
        );
    }
    Ok(found)
}

/// Whether `expression` reads `variables.<name>`.
fn uses(expression: &str, name: &str) -> bool {
    let needle = format!("variables.{name}");
    expression.match_indices(&needle).any(|(i, _)| {
        !expression[i + needle.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// matchConditions, variables and validations for one parameter object.
fn validations(scope: &mut Scope, spec: &Value, fail: bool) -> Vec<Failure> {
    match match_conditions(scope, &spec["matchConditions"]) {
        Ok(true) => {}
        Err(e) if fail => return vec![Failure::error(e)],
        // A false condition, or an error ignored: the policy does not apply.
        Ok(false) | Err(_) => return Vec::new(),
    }
    let mut good: Vec<(String, Cel)> = Vec::new();
    let mut broken: Vec<(String, String)> = Vec::new();
    for v in spec["variables"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or_default().to_owned();
        scope.bind("variables", map(good.iter().cloned()));
        match scope.eval(v["expression"].as_str().unwrap_or_default()) {
            Ok(value) => good.push((name, value)),
            Err(e) => broken.push((name, e)),
        }
    }
    scope.bind("variables", map(good));
    let mut out = Vec::new();
    for v in spec["validations"].as_array().into_iter().flatten() {
        let expression = v["expression"].as_str().unwrap_or_default();
        // A broken variable is absent from `variables`: only an evaluation that reaches it
        // fails, and its error is the variable's.
        let result = scope.test(expression).map_err(|e| {
            match broken.iter().find(|(n, _)| uses(expression, n)) {
                Some((n, ve)) => format!("variable '{n}' resulted in error: {ve}"),
                None => e,
            }
        });
        match result {
            Ok(false) => out.push(Failure {
                message: message(scope, v, expression),
                reason: v["reason"].as_str().unwrap_or("Invalid").to_owned(),
            }),
            Err(e) if fail => out.push(Failure::error(format!(
                "expression '{}' resulted in error: {e}",
                expression.trim()
            ))),
            // Holds, or an error ignored.
            Ok(true) | Err(_) => {}
        }
    }
    out
}

/// A failed validation's message: its `messageExpression` when that gives a non-empty
/// single-line string, else its `message`, else `failed expression: <expression>`.
fn message(scope: &Scope, v: &Value, expression: &str) -> String {
    if let Some(me) = v["messageExpression"].as_str()
        && let Ok(Cel::String(s)) = scope.eval(me)
        && !s.trim().is_empty()
        && !s.contains('\n')
    {
        return s.trim().to_owned();
    }
    match v["message"].as_str().filter(|m| !m.is_empty()) {
        Some(m) => m.to_owned(),
        None => format!("failed expression: {}", expression.trim()),
    }
}

/// Applies the binding's `validationActions` to the failures.
fn enforce(
    policy: &Value,
    binding: &Value,
    a: &Attributes<'_>,
    obj: Option<&Value>,
    failures: &[Failure],
) -> ApiResult<()> {
    let actions = &binding["spec"]["validationActions"];
    let has = |action: &str| {
        actions
            .as_array()
            .is_some_and(|l| l.iter().any(|x| x == action))
    };
    let (p, b) = (object::name(policy), object::name(binding));
    if has("Warn") {
        for f in failures {
            warn(format!(
                "Validation failed for ValidatingAdmissionPolicy '{p}' with binding '{b}': {}",
                f.message
            ));
        }
    }
    match failures.first() {
        Some(f) if has("Deny") => Err(denial(a, obj, p, b, f)),
        _ => Ok(()),
    }
}

/// kube-apiserver's refusal: `<resource> "<name>" is forbidden: ValidatingAdmissionPolicy
/// '<policy>' with binding '<binding>' denied request: <message>`, its code from the reason.
fn denial(
    a: &Attributes<'_>,
    obj: Option<&Value>,
    policy: &str,
    binding: &str,
    f: &Failure,
) -> ApiError {
    let text = format!(
        "ValidatingAdmissionPolicy '{policy}' with binding '{binding}' denied request: {}",
        f.message
    );
    let resource = qualified(&a.rt.group, &a.rt.plural);
    let name = if a.name.is_empty() {
        obj.map(object::name).unwrap_or_default()
    } else {
        a.name
    };
    let message = if name.is_empty() {
        format!("{resource} is forbidden: {text}")
    } else {
        format!("{resource} \"{name}\" is forbidden: {text}")
    };
    let code = match f.reason.as_str() {
        "Forbidden" => 403,
        "Unauthorized" => 401,
        "RequestEntityTooLarge" => 413,
        _ => 422,
    };
    ApiError::new(code, &f.reason, message).with_details(json!({
        "name": name, "group": a.rt.group, "kind": a.rt.plural,
        "causes": [{"message": text}],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::auth::{NODE_NAME_EXTRA, UserInfo};

    #[test]
    fn variable_use_is_a_whole_name() {
        assert!(uses("variables.node == 'a'", "node"));
        assert!(uses("size(variables.node)", "node"));
        assert!(!uses("variables.nodeName == 'a'", "node"));
        assert!(!uses("object.x", "node"));
    }

    fn node_user(node: &str) -> UserInfo {
        let mut u = UserInfo {
            username: "system:serviceaccount:nmstate:nmstate-handler".into(),
            groups: vec![
                "system:serviceaccounts".into(),
                "system:authenticated".into(),
            ],
            ..UserInfo::default()
        };
        u.extra.insert(NODE_NAME_EXTRA.into(), vec![node.into()]);
        u
    }

    #[test]
    fn user_info_of_constructed_users() {
        let store = Store::new(10, None);
        let reg = store.registry();
        let kind = |p: &str| reg.all().find(|t| t.plural == p).unwrap().clone();
        let key = NODE_NAME_EXTRA;
        store
            .create(
                &kind("validatingadmissionpolicies"),
                json!({"metadata": {"name": "own-node"}, "spec": {
                    "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                        "operations": ["*"], "resources": ["configmaps"]}]},
                    "matchConditions": [{"name": "node", "expression": format!("'{key}' in request.userInfo.extra")}],
                    "variables": [{"name": "node", "expression": format!("request.userInfo.extra['{key}'][0]")}],
                    "validations": [{"expression": "object.metadata.name == variables.node",
                        "messageExpression": "request.userInfo.username + ' of node ' + variables.node + ' may not write ' + object.metadata.name",
                        "reason": "Forbidden"}],
                }}),
            )
            .unwrap();
        store
            .create(
                &kind("validatingadmissionpolicybindings"),
                json!({"metadata": {"name": "own-node-b"},
                    "spec": {"policyName": "own-node", "validationActions": ["Deny"]}}),
            )
            .unwrap();
        let rt = kind("configmaps");
        let obj = json!({"metadata": {"name": "node3", "namespace": "default"}});
        let check = |user: &UserInfo| {
            let a = Attributes {
                rt: &rt,
                version: "v1",
                subresource: "",
                operation: "CREATE",
                name: "node3",
                namespace: "default",
                old: None,
                user,
            };
            admit(&store, &a, Some(&obj))
        };
        let e = check(&node_user("node2")).unwrap_err();
        assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
        assert_eq!(
            e.message,
            "configmaps \"node3\" is forbidden: ValidatingAdmissionPolicy 'own-node' with binding \
             'own-node-b' denied request: system:serviceaccount:nmstate:nmstate-handler of node \
             node2 may not write node3"
        );
        check(&node_user("node3")).expect("its own");
        check(&UserInfo::admin()).expect("no node-name extra: the condition is false");
    }
}
