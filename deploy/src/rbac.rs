//! ServiceAccounts, roles and bindings at least privilege. Every rule names the call sites it
//! exists for; nothing is `*`. The operator's own roles are the union of what it grants (the
//! API server refuses a role granting more than its creator holds) and what it calls itself.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use crate::InstallSettings;
use crate::meta::{self, name};
use crate::object::Object;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// A rule over `resources` of `group` with `verbs`.
pub(crate) fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

const NMSTATE: &str = "nmstate.io";
const NNCP: &str = "nodenetworkconfigurationpolicies";
const NNCE: &str = "nodenetworkconfigurationenactments";
const NNS: &str = "nodenetworkstates";

/// Events: kube-runtime's `Recorder` creates `events.k8s.io/v1` Events and patches a repeated
/// one (`runtime/src/events.rs` in every binary).
fn events() -> PolicyRule {
    rule("events.k8s.io", &["events"], &["create", "patch"])
}

/// The handler, cluster-wide.
pub fn handler_cluster_rules() -> Vec<PolicyRule> {
    vec![
        // handler/src/run.rs watches Nodes (every Node's metadata for maxUnavailable, its own
        // whole); probes.rs gets its Node.
        rule("", &["nodes"], &["get", "list", "watch"]),
        // probes.rs: the API-server probe reads namespace "default".
        rule("", &["namespaces"], &["get"]),
        // run.rs watches policies; sweep.rs and policy/enactment.rs read one uncached.
        rule(NMSTATE, &[NNCP], &["get", "list", "watch"]),
        // run.rs watches both (every enactment for the slot path); policy/enactment.rs
        // creates, reads and deletes enactments, policy/slot.rs reads one; nns.rs creates and
        // reads the node's state.
        rule(
            NMSTATE,
            &[NNCE],
            &["get", "list", "watch", "create", "delete"],
        ),
        rule(NMSTATE, &[NNS], &["get", "list", "watch", "create"]),
        // policy/status.rs and nns.rs write status with server-side apply (a patch).
        rule(
            NMSTATE,
            &[&format!("{NNCE}/status"), &format!("{NNS}/status")],
            &["patch"],
        ),
        // policy/fence.rs reads an enactment's status before reporting a lost slot.
        rule(NMSTATE, &[&format!("{NNCE}/status")], &["get"]),
        events(),
    ]
}

/// The handler, in its namespace: run.rs watches the per-policy slot ledger Leases; slots.rs
/// reads, creates and replaces them.
pub fn handler_namespace_rules() -> Vec<PolicyRule> {
    vec![rule(
        "coordination.k8s.io",
        &["leases"],
        &["get", "list", "watch", "create", "update"],
    )]
}

/// The cluster role whose presence makes the installation aggregate a read-only role into
/// it (`OpenShift` has it).
pub const CLUSTER_READER: &str = "cluster-reader";

/// The label that aggregates a cluster role's rules into [`CLUSTER_READER`].
pub const AGGREGATE_TO_CLUSTER_READER: &str =
    "rbac.authorization.k8s.io/aggregate-to-cluster-reader";

/// The cluster readers (whoever holds [`CLUSTER_READER`]): every nmstate.io kind the
/// handler reports through, read-only, as upstream's `nmstate-cluster-reader` grants.
pub fn cluster_reader_rules() -> Vec<PolicyRule> {
    vec![rule(NMSTATE, &[NNCP, NNCE, NNS], &["get", "list", "watch"])]
}

/// `<prefix>nmstate-cluster-reader`: [`cluster_reader_rules`] labelled to be aggregated into
/// [`CLUSTER_READER`]. No binding: the aggregation is the grant.
fn cluster_reader_role(s: &InstallSettings) -> ClusterRole {
    let mut metadata = meta::meta(&s.prefixed(name::CLUSTER_READER), None, None);
    metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(AGGREGATE_TO_CLUSTER_READER.to_owned(), "true".to_owned());
    ClusterRole {
        metadata,
        rules: Some(cluster_reader_rules()),
        ..ClusterRole::default()
    }
}

/// The controller, cluster-wide.
pub fn controller_cluster_rules() -> Vec<PolicyRule> {
    vec![
        // run.rs watches Nodes; cleanup.rs reads one fresh to confirm an orphan.
        rule("", &["nodes"], &["get", "list", "watch"]),
        // run.rs watches policies; cleanup.rs reads one fresh.
        rule(NMSTATE, &[NNCP], &["get", "list", "watch"]),
        // reconcile.rs writes policy status with server-side apply.
        rule(NMSTATE, &[&format!("{NNCP}/status")], &["patch"]),
        // run.rs watches both; cleanup.rs deletes orphans.
        rule(NMSTATE, &[NNCE, NNS], &["list", "watch", "delete"]),
        events(),
        // endpoint.rs (runtime/src/access.rs): a scrape's token is reviewed and its user's
        // access to /metrics asked.
        rule("authentication.k8s.io", &["tokenreviews"], &["create"]),
        rule(
            "authorization.k8s.io",
            &["subjectaccessreviews"],
            &["create"],
        ),
    ]
}

/// The controller's leader Lease `lease`, in its namespace: leader.rs reads and replaces that
/// Lease only (`resourceNames`), and creates it when it is missing — a create names no object
/// when it is authorized, so that verb cannot be limited to a name (what the Lease may then be
/// changed to is the name-limited `update`).
pub fn controller_lease_rules(lease: &str) -> Vec<PolicyRule> {
    vec![
        PolicyRule {
            resource_names: Some(vec![lease.to_owned()]),
            ..rule("coordination.k8s.io", &["leases"], &["get", "update"])
        },
        rule("coordination.k8s.io", &["leases"], &["create"]),
    ]
}

/// Prometheus reads the endpoints behind the metrics Service (upstream's `prometheus-k8s`).
fn prometheus_rules() -> Vec<PolicyRule> {
    vec![rule(
        "",
        &["services", "endpoints", "pods"],
        &["get", "list", "watch"],
    )]
}

fn account(name: &str, s: &InstallSettings) -> ServiceAccount {
    ServiceAccount {
        metadata: meta::meta(name, Some(&s.namespace), None),
        ..ServiceAccount::default()
    }
}

fn subject(account: &str, namespace: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        name: account.to_owned(),
        namespace: Some(namespace.to_owned()),
        api_group: None,
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: Some(RBAC_GROUP.into()),
        kind: kind.into(),
        name: name.into(),
    }
}

/// A `ClusterRole` and its binding to `subject`, both named `name`.
pub(crate) fn cluster_role(name: &str, rules: Vec<PolicyRule>, subject: Subject) -> [Object; 2] {
    [
        ClusterRole {
            metadata: meta::meta(name, None, None),
            rules: Some(rules),
            ..ClusterRole::default()
        }
        .into(),
        ClusterRoleBinding {
            metadata: meta::meta(name, None, None),
            role_ref: role_ref("ClusterRole", name),
            subjects: Some(vec![subject]),
        }
        .into(),
    ]
}

/// A `Role` in `namespace` and its binding to `subject`, both named `name`.
pub(crate) fn role(
    name: &str,
    namespace: &str,
    rules: Vec<PolicyRule>,
    subject: Subject,
) -> [Object; 2] {
    [
        Role {
            metadata: meta::meta(name, Some(namespace), None),
            rules: Some(rules),
        }
        .into(),
        RoleBinding {
            metadata: meta::meta(name, Some(namespace), None),
            role_ref: role_ref("Role", name),
            subjects: Some(vec![subject]),
        }
        .into(),
    ]
}

/// ServiceAccounts, roles and bindings of the handler, the controller, the webhook (an
/// account without any role: it calls no API) and Prometheus; and, when the cluster has a
/// [`CLUSTER_READER`] role ([`InstallSettings::cluster_reader`]), the role aggregated into it.
pub fn objects(s: &InstallSettings) -> Vec<Object> {
    let ns = s.namespace.as_str();
    let handler = s.prefixed(name::HANDLER);
    let controller = s.prefixed(name::CONTROLLER);
    let webhook = s.prefixed(name::WEBHOOK);
    let mut out: Vec<Object> = vec![
        account(&handler, s).into(),
        account(&controller, s).into(),
        account(&webhook, s).into(),
    ];
    out.extend(cluster_role(
        &handler,
        handler_cluster_rules(),
        subject(&handler, ns),
    ));
    out.extend(role(
        &handler,
        ns,
        handler_namespace_rules(),
        subject(&handler, ns),
    ));
    out.extend(cluster_role(
        &controller,
        controller_cluster_rules(),
        subject(&controller, ns),
    ));
    // The Lease the controller Deployment names (`LEASE_NAME`, deploy/src/workloads.rs).
    out.extend(role(
        &format!("{controller}-leader"),
        ns,
        controller_lease_rules(&controller),
        subject(&controller, ns),
    ));
    out.extend(role(
        name::PROMETHEUS,
        ns,
        prometheus_rules(),
        subject(&s.prometheus_service_account, &s.monitoring_namespace),
    ));
    // The controller's endpoint answers a scrape only for users allowed `get` on /metrics.
    out.extend(cluster_role(
        &s.prefixed(name::METRICS_READER),
        crate::monitoring::metrics_reader_rules(),
        subject(&s.prometheus_service_account, &s.monitoring_namespace),
    ));
    if s.cluster_reader {
        out.push(cluster_reader_role(s).into());
    }
    out
}

/// Merge rules with the same group, resources and resource names, verbs united and sorted, so
/// that the operator's roles read as one rule per resource (a rule limited to names stays
/// limited).
pub(crate) fn union(rules: impl IntoIterator<Item = PolicyRule>) -> Vec<PolicyRule> {
    type Key = (Vec<String>, Vec<String>, Option<Vec<String>>);
    let mut by: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    let mut paths: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rules {
        // Non-resource URLs (e.g. `/metrics`) by path.
        for url in r.non_resource_urls.clone().unwrap_or_default() {
            let verbs = paths.entry(url).or_default();
            verbs.extend(r.verbs.iter().cloned());
            verbs.sort();
            verbs.dedup();
        }
        for resource in r.resources.clone().unwrap_or_default() {
            let key = (
                r.api_groups.clone().unwrap_or_default(),
                vec![resource],
                r.resource_names.clone(),
            );
            let verbs = by.entry(key).or_default();
            verbs.extend(r.verbs.iter().cloned());
            verbs.sort();
            verbs.dedup();
        }
    }
    by.into_iter()
        .map(|((groups, resources, resource_names), verbs)| PolicyRule {
            api_groups: Some(groups),
            resources: Some(resources),
            resource_names,
            verbs,
            ..PolicyRule::default()
        })
        .chain(paths.into_iter().map(|(url, verbs)| PolicyRule {
            non_resource_urls: Some(vec![url]),
            verbs,
            ..PolicyRule::default()
        }))
        .collect()
}

/// The operator's account.
pub(crate) fn operator_subject(s: &InstallSettings) -> Subject {
    subject(&s.prefixed(name::OPERATOR), &s.namespace)
}

/// The operator's account object.
pub(crate) fn operator_account(s: &InstallSettings) -> ServiceAccount {
    account(&s.prefixed(name::OPERATOR), s)
}
