//! Role-based access control as Kubernetes defines it: the stored `Role`, `ClusterRole`,
//! `RoleBinding` and `ClusterRoleBinding` objects decide, rule by rule (apiGroups, resources with
//! `resource/subresource` and `*/subresource`, resourceNames, verbs, nonResourceURLs with a
//! trailing `*`). Members of `system:masters` may do everything; every authenticated user may
//! read discovery and ask about itself (Kubernetes' `system:discovery`, `system:basic-user` and
//! `system:public-info-viewer` bootstrap roles, built in here rather than stored).

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};
use serde::de::DeserializeOwned;

use super::{AUTHENTICATED_GROUP, MASTERS_GROUP, UserInfo};
use crate::apiserver::storage::Store;

const RBAC: &str = "rbac.authorization.k8s.io";

/// What a request asks to do, as authorization sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attributes {
    /// A request on an API resource.
    Resource(ResourceAttributes),
    /// A request on any other path (discovery, `/healthz`, `/metrics`, ...).
    NonResource {
        /// `get`, `post`, `put`, `patch`, `delete`, ... (the lower-case HTTP method, `get` for HEAD).
        verb: String,
        /// The request path.
        path: String,
    },
}

/// The resource part of [`Attributes`] (as `SubjectAccessReview.spec.resourceAttributes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceAttributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`, ...
    pub verb: String,
    /// API group, empty for core.
    pub group: String,
    /// API version (only reported, never matched).
    pub version: String,
    /// Plural resource name.
    pub resource: String,
    /// Subresource, empty for none.
    pub subresource: String,
    /// Namespace, empty for cluster scope (and for all namespaces).
    pub namespace: String,
    /// Object name, empty for collections.
    pub name: String,
}

/// An authorization decision, with Kubernetes' reason text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// Why: `RBAC: allowed by ...` when allowed; the RBAC errors met (roles not found), if any,
    /// when not.
    pub reason: String,
}

/// The built-in rules every authenticated user has (discovery, health, self reviews), with the
/// bootstrap `ClusterRole` that grants each in Kubernetes.
fn bootstrap_rules() -> Vec<(&'static str, PolicyRule)> {
    let urls = [
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/healthz",
        "/livez",
        "/readyz",
        "/openapi",
        "/openapi/*",
        "/version",
        "/version/",
    ];
    vec![
        (
            "system:discovery",
            PolicyRule {
                verbs: vec!["get".into()],
                non_resource_urls: Some(urls.iter().map(|s| (*s).to_owned()).collect()),
                ..PolicyRule::default()
            },
        ),
        (
            "system:basic-user",
            PolicyRule {
                verbs: vec!["create".into()],
                api_groups: Some(vec!["authorization.k8s.io".into()]),
                resources: Some(vec![
                    "selfsubjectaccessreviews".into(),
                    "selfsubjectrulesreviews".into(),
                ]),
                ..PolicyRule::default()
            },
        ),
        (
            "system:basic-user",
            PolicyRule {
                verbs: vec!["create".into()],
                api_groups: Some(vec!["authentication.k8s.io".into()]),
                resources: Some(vec!["selfsubjectreviews".into()]),
                ..PolicyRule::default()
            },
        ),
    ]
}

/// Decides whether `user` may do `attrs`, from the RBAC objects in `store`.
pub fn authorize(store: &Store, user: &UserInfo, attrs: &Attributes) -> Decision {
    if user.groups.iter().any(|g| g == MASTERS_GROUP) {
        return Decision {
            allowed: true,
            reason: String::new(),
        };
    }
    let mut errors = Vec::new();
    let granted = bootstrap_rules()
        .into_iter()
        .find(|(_, r)| rule_allows(attrs, r))
        .filter(|_| user.groups.iter().any(|g| g == AUTHENTICATED_GROUP));
    if let Some((role, _)) = granted {
        return allowed_by(&format!(
            "ClusterRoleBinding \"{role}\" of ClusterRole \"{role}\" to Group \"{AUTHENTICATED_GROUP}\""
        ));
    }
    for b in objects::<ClusterRoleBinding>(store, "clusterrolebindings", None) {
        let Some(subject) = matching_subject(b.subjects.as_deref(), user, "") else {
            continue;
        };
        let rules = rules_of(store, &b.role_ref.kind, &b.role_ref.name, "", &mut errors);
        if rules.iter().any(|r| rule_allows(attrs, r)) {
            return allowed_by(&format!(
                "ClusterRoleBinding \"{}\" of {} \"{}\" to {}",
                b.metadata.name.unwrap_or_default(),
                b.role_ref.kind,
                b.role_ref.name,
                describe(subject, "")
            ));
        }
    }
    let namespace = match attrs {
        Attributes::Resource(r) => r.namespace.as_str(),
        Attributes::NonResource { .. } => "",
    };
    if !namespace.is_empty() {
        for b in objects::<RoleBinding>(store, "rolebindings", Some(namespace)) {
            let Some(subject) = matching_subject(b.subjects.as_deref(), user, namespace) else {
                continue;
            };
            let rules = rules_of(
                store,
                &b.role_ref.kind,
                &b.role_ref.name,
                namespace,
                &mut errors,
            );
            if rules.iter().any(|r| rule_allows(attrs, r)) {
                return allowed_by(&format!(
                    "RoleBinding \"{}/{namespace}\" of {} \"{}\" to {}",
                    b.metadata.name.unwrap_or_default(),
                    b.role_ref.kind,
                    b.role_ref.name,
                    describe(subject, namespace)
                ));
            }
        }
    }
    let reason = match errors.as_slice() {
        [] => String::new(),
        [one] => format!("RBAC: {one}"),
        many => format!("RBAC: [{}]", many.join(", ")),
    };
    Decision {
        allowed: false,
        reason,
    }
}

fn allowed_by(source: &str) -> Decision {
    Decision {
        allowed: true,
        reason: format!("RBAC: allowed by {source}"),
    }
}

fn objects<T: DeserializeOwned>(store: &Store, plural: &str, ns: Option<&str>) -> Vec<T> {
    let (items, _) = store.list(RBAC, plural, ns);
    items
        .into_iter()
        .filter_map(|o| serde_json::from_value(o).ok())
        .collect()
}

/// The rules a binding's roleRef names; a missing role is an error reported in the reason.
fn rules_of(
    store: &Store,
    kind: &str,
    name: &str,
    namespace: &str,
    errors: &mut Vec<String>,
) -> Vec<PolicyRule> {
    let found = match kind {
        "ClusterRole" => store
            .get(RBAC, "clusterroles", "", name)
            .and_then(|o| serde_json::from_value::<ClusterRole>(o).ok())
            .map(|r| r.rules),
        "Role" if !namespace.is_empty() => store
            .get(RBAC, "roles", namespace, name)
            .and_then(|o| serde_json::from_value::<Role>(o).ok())
            .map(|r| r.rules),
        _ => None,
    };
    if let Some(rules) = found {
        return rules.unwrap_or_default();
    }
    errors.push(if kind == "Role" {
        format!("role.{RBAC} \"{name}\" not found")
    } else {
        format!("clusterrole.{RBAC} \"{name}\" not found")
    });
    Vec::new()
}

/// The first subject of a binding that is `user` (a ServiceAccount subject without a
/// namespace takes the binding's).
fn matching_subject<'a>(
    subjects: Option<&'a [Subject]>,
    user: &UserInfo,
    binding_ns: &str,
) -> Option<&'a Subject> {
    subjects?.iter().find(|s| match s.kind.as_str() {
        "User" => s.name == user.username,
        "Group" => user.groups.contains(&s.name),
        "ServiceAccount" => {
            let ns = s
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            !ns.is_empty() && user.username == format!("system:serviceaccount:{ns}:{}", s.name)
        }
        _ => false,
    })
}

fn describe(s: &Subject, binding_ns: &str) -> String {
    if s.kind == "ServiceAccount" {
        let ns = s
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(binding_ns);
        format!("{} \"{}/{ns}\"", s.kind, s.name)
    } else {
        format!("{} \"{}\"", s.kind, s.name)
    }
}

/// Whether one rule allows the request.
pub fn rule_allows(attrs: &Attributes, rule: &PolicyRule) -> bool {
    let has = |list: &Option<Vec<String>>, want: &str| {
        list.as_deref()
            .unwrap_or_default()
            .iter()
            .any(|x| x == "*" || x == want)
    };
    match attrs {
        Attributes::Resource(r) => {
            let names = rule.resource_names.as_deref().unwrap_or_default();
            has(&Some(rule.verbs.clone()), &r.verb)
                && has(&rule.api_groups, &r.group)
                && resource_matches(rule.resources.as_deref().unwrap_or_default(), r)
                && (names.is_empty() || names.contains(&r.name))
        }
        Attributes::NonResource { verb, path } => {
            has(&Some(rule.verbs.clone()), verb)
                && rule
                    .non_resource_urls
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|u| {
                        u == "*"
                            || u == path
                            || u.strip_suffix('*').is_some_and(|p| path.starts_with(p))
                    })
        }
    }
}

fn resource_matches(resources: &[String], r: &ResourceAttributes) -> bool {
    let combined = if r.subresource.is_empty() {
        r.resource.clone()
    } else {
        format!("{}/{}", r.resource, r.subresource)
    };
    resources.iter().any(|x| {
        x == "*"
            || *x == combined
            || (!r.subresource.is_empty() && x.strip_prefix("*/") == Some(r.subresource.as_str()))
    })
}

/// Kubernetes' Forbidden message body: `User "u" cannot <verb> resource "<res>" in API group
/// "<g>" in the namespace "<ns>"` (or `at the cluster scope`), or `User "u" cannot <verb> path
/// "<p>"`.
pub fn forbidden_text(user: &str, attrs: &Attributes) -> String {
    match attrs {
        Attributes::NonResource { verb, path } => {
            format!("User \"{user}\" cannot {verb} path \"{path}\"")
        }
        Attributes::Resource(r) => {
            let mut resource = r.resource.clone();
            if !r.subresource.is_empty() {
                resource = format!("{resource}/{}", r.subresource);
            }
            let scope = if r.namespace.is_empty() {
                "at the cluster scope".to_owned()
            } else {
                format!("in the namespace \"{}\"", r.namespace)
            };
            format!(
                "User \"{user}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
                r.verb, r.group
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let v = |l: &[&str]| Some(l.iter().map(|s| (*s).to_owned()).collect());
        PolicyRule {
            verbs: l(verbs),
            api_groups: v(groups),
            resources: v(resources),
            resource_names: if names.is_empty() { None } else { v(names) },
            non_resource_urls: None,
        }
    }

    fn l(x: &[&str]) -> Vec<String> {
        x.iter().map(|s| (*s).to_owned()).collect()
    }

    fn res(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes::Resource(ResourceAttributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            ..ResourceAttributes::default()
        })
    }

    #[test]
    fn rules_match_as_kubernetes_defines() {
        let pods = rule(&["get"], &[""], &["pods"], &[]);
        assert!(rule_allows(&res("get", "", "pods", "", "a"), &pods));
        assert!(!rule_allows(&res("get", "", "pods", "log", "a"), &pods));
        assert!(!rule_allows(&res("list", "", "pods", "", ""), &pods));
        assert!(!rule_allows(&res("get", "apps", "pods", "", "a"), &pods));
        let log = rule(&["get"], &[""], &["pods/log"], &[]);
        assert!(rule_allows(&res("get", "", "pods", "log", "a"), &log));
        assert!(!rule_allows(&res("get", "", "pods", "", "a"), &log));
        let any_status = rule(&["*"], &["*"], &["*/status"], &[]);
        assert!(rule_allows(
            &res("patch", "x.io", "things", "status", "a"),
            &any_status
        ));
        assert!(!rule_allows(
            &res("patch", "x.io", "things", "", "a"),
            &any_status
        ));
        let named = rule(
            &["update"],
            &["coordination.k8s.io"],
            &["leases"],
            &["leader"],
        );
        assert!(rule_allows(
            &res("update", "coordination.k8s.io", "leases", "", "leader"),
            &named
        ));
        assert!(!rule_allows(
            &res("update", "coordination.k8s.io", "leases", "", "other"),
            &named
        ));
        assert!(!rule_allows(
            &res("create", "coordination.k8s.io", "leases", "", ""),
            &named
        ));
        let all = rule(&["*"], &["*"], &["*"], &[]);
        assert!(rule_allows(
            &res("deletecollection", "a.b", "c", "d", ""),
            &all
        ));
        let metrics = PolicyRule {
            verbs: l(&["get"]),
            non_resource_urls: Some(l(&["/metrics", "/debug/*"])),
            ..PolicyRule::default()
        };
        let path = |p: &str| Attributes::NonResource {
            verb: "get".into(),
            path: p.into(),
        };
        assert!(rule_allows(&path("/metrics"), &metrics));
        assert!(rule_allows(&path("/debug/pprof"), &metrics));
        assert!(!rule_allows(&path("/metricsx"), &metrics));
        assert!(!rule_allows(&res("get", "", "metrics", "", ""), &metrics));
    }

    #[test]
    fn forbidden_texts_follow_kubernetes() {
        let mut r = ResourceAttributes {
            verb: "update".into(),
            group: "nmstate.io".into(),
            resource: "nodenetworkstates".into(),
            name: "node3".into(),
            ..ResourceAttributes::default()
        };
        assert_eq!(
            forbidden_text("u", &Attributes::Resource(r.clone())),
            "User \"u\" cannot update resource \"nodenetworkstates\" in API group \"nmstate.io\" at the cluster scope"
        );
        r.namespace = "nmstate".into();
        r.subresource = "status".into();
        assert_eq!(
            forbidden_text("u", &Attributes::Resource(r)),
            "User \"u\" cannot update resource \"nodenetworkstates/status\" in API group \"nmstate.io\" in the namespace \"nmstate\""
        );
    }
}
