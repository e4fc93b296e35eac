//! The operator's own bundle (`config/operator/`): its Namespace, account, roles and
//! Deployment. Its roles are derived from the installation it renders: it may get, create and
//! server-side apply every kind it renders, list and delete the kinds it owns (pruning), and
//! it holds every permission the roles it creates grant (the API server refuses to let it
//! grant more than it has).

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStrategy};
use k8s_openapi::api::core::v1::{ContainerPort, PodSpec};
use k8s_openapi::api::rbac::v1::PolicyRule as RbacRule;

use crate::InstallSettings;
use crate::meta::{self, OPERATOR_COMPONENT, name};
use crate::object::{Installation, Object};
use crate::pod::{container, env, http_probe, resources};
use crate::rbac::{self, rule, union};
use crate::workloads::deployment;

/// Port of the operator's `/healthz` and `/readyz` (upstream's `:8081`).
pub const OPERATOR_HEALTH_PORT: i32 = 8081;

/// What the operator calls itself, cluster-wide.
fn own_cluster_rules() -> Vec<RbacRule> {
    vec![
        // controller/src/operator/mod.rs watches NMState resources (it never deletes or
        // changes one: other names get a condition, uninstall is the garbage collector's).
        rule("nmstate.io", &["nmstates"], &["get", "list", "watch"]),
        // operator/status.rs writes the status with server-side apply.
        rule("nmstate.io", &["nmstates/status"], &["patch"]),
        // operator/reconcile.rs lists Nodes for the webhook's topology.
        rule("", &["nodes"], &["list"]),
        // operator/reconcile.rs gets the `cluster-reader` ClusterRole to know whether to
        // aggregate a read-only role into it.
        rule("rbac.authorization.k8s.io", &["clusterroles"], &["get"]),
    ]
    .into_iter()
    // What that aggregated role grants, which the bundle's installation (rendered without a
    // `cluster-reader`) does not show.
    .chain(rbac::cluster_reader_rules())
    .collect()
}

/// What the operator calls itself, in its namespace.
fn own_namespace_rules() -> Vec<RbacRule> {
    vec![
        // operator/certs.rs reads, creates and updates the webhook's CA and serving Secrets.
        rule("", &["secrets"], &["get", "create", "patch"]),
        // operator/status.rs reads the workloads' status; triggers.rs watches them.
        rule(
            "apps",
            &["daemonsets", "deployments"],
            &["get", "list", "watch"],
        ),
    ]
}

/// The operator's (cluster, namespace) rules for `installation`.
pub fn operator_rules(installation: &Installation) -> (Vec<RbacRule>, Vec<RbacRule>) {
    let mut cluster: Vec<RbacRule> = own_cluster_rules();
    let mut namespaced: Vec<RbacRule> = own_namespace_rules();
    for o in &installation.objects {
        let ar = o.api_resource();
        // apply.rs: server-side apply, which creates a missing object (get for the diff).
        let apply = rule(&ar.group, &[&ar.plural], &["get", "create", "patch"]);
        let target = if o.namespace().is_some() {
            &mut namespaced
        } else {
            &mut cluster
        };
        target.push(apply);
        if o.owned_by_cr() {
            // operator/prune.rs lists the kinds it renders and deletes the owned objects it
            // no longer renders.
            target.push(rule(&ar.group, &[&ar.plural], &["list", "delete"]));
        }
        match o {
            Object::ClusterRole(r) => cluster.extend(r.rules.clone().unwrap_or_default()),
            Object::Role(r) => namespaced.extend(r.rules.clone().unwrap_or_default()),
            _ => {}
        }
    }
    (union(cluster), union(namespaced))
}

/// The operator's Deployment: one replica of `knmstate-controller operator`.
fn operator_deployment(s: &InstallSettings) -> Deployment {
    let name = s.prefixed(name::OPERATOR);
    let mut c = container("nmstate-operator", "knmstate-controller", s);
    c.args = Some(vec!["operator".into()]);
    c.env = Some(vec![
        env("HANDLER_NAMESPACE", s.namespace.clone()),
        env("HANDLER_PREFIX", s.prefix.clone()),
        env("RELATED_IMAGE_HANDLER_IMAGE", s.image.clone()),
        env("HANDLER_IMAGE_PULL_POLICY", s.image_pull_policy.clone()),
        env("MONITORING_NAMESPACE", s.monitoring_namespace.clone()),
        env("HEALTH_BIND_ADDRESS", format!(":{OPERATOR_HEALTH_PORT}")),
    ]);
    c.ports = Some(vec![ContainerPort {
        name: Some("health".into()),
        container_port: OPERATOR_HEALTH_PORT,
        protocol: Some("TCP".into()),
        ..Default::default()
    }]);
    c.readiness_probe = Some(http_probe("/readyz", "health", false, 10));
    c.liveness_probe = Some(http_probe("/healthz", "health", false, 20));
    c.resources = Some(resources("30m", "50Mi", "500m", "512Mi"));
    let pod = PodSpec {
        service_account_name: Some(name.clone()),
        priority_class_name: Some("system-cluster-critical".into()),
        node_selector: Some([(crate::settings::OS_LABEL.to_owned(), "linux".to_owned())].into()),
        containers: vec![c],
        ..PodSpec::default()
    };
    let mut d = deployment(&name, OPERATOR_COMPONENT, 1, pod, &[], s);
    d.spec.strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    d
}

/// The operator's bundle: CRDs, Namespace, account, roles derived from `installation`, and
/// its Deployment.
pub fn bundle(installation: &Installation, s: &InstallSettings) -> Installation {
    let name = s.prefixed(name::OPERATOR);
    let (cluster, namespaced) = operator_rules(installation);
    let mut objects: Vec<Object> = installation
        .objects
        .iter()
        .filter(|o| matches!(o, Object::CustomResourceDefinition(_)))
        .cloned()
        .collect();
    objects.push(meta::namespace(&s.namespace).into());
    objects.push(rbac::operator_account(s).into());
    objects.extend(rbac::cluster_role(
        &name,
        cluster,
        rbac::operator_subject(s),
    ));
    objects.extend(rbac::role(
        &name,
        &s.namespace,
        namespaced,
        rbac::operator_subject(s),
    ));
    objects.push(operator_deployment(s).into());
    Installation { objects }
}
