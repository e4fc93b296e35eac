//! Least privilege in the rendered roles: the controller's leader Lease has a Role of its own
//! limited by `resourceNames` to the Lease the controller is told to hold, and no rule of the
//! installation or of the operator's bundle uses `*` anywhere.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role, RoleBinding};
use knmstate_api::v1::NMStateSpec;
use knmstate_deploy::operator::bundle;
use knmstate_deploy::{InstallSettings, Installation, render};
use pretty_assertions::assert_eq;

fn installation(prefix: &str) -> (Installation, InstallSettings) {
    let s = InstallSettings {
        prefix: prefix.into(),
        ..InstallSettings::default()
    };
    (render(&NMStateSpec::default(), &s).unwrap(), s)
}

fn rules(i: &Installation) -> Vec<PolicyRule> {
    i.of::<ClusterRole>()
        .into_iter()
        .flat_map(|r| r.rules.clone().unwrap_or_default())
        .chain(
            i.of::<Role>()
                .into_iter()
                .flat_map(|r| r.rules.clone().unwrap_or_default()),
        )
        .collect()
}

/// The `LEASE_NAME` the controller Deployment gives the controller.
fn lease_name(i: &Installation, controller: &str) -> String {
    let d = i.get::<Deployment>(controller).unwrap();
    let pod = d.spec.template.spec.as_ref().unwrap();
    pod.containers[0]
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "LEASE_NAME")
        .and_then(|e| e.value.clone())
        .unwrap()
}

fn lease_rules(rules: &[PolicyRule]) -> Vec<&PolicyRule> {
    rules
        .iter()
        .filter(|r| r.resources.iter().flatten().any(|x| x == "leases"))
        .collect()
}

#[test]
fn the_leader_lease_role_is_limited_to_the_controllers_lease() {
    for prefix in ["", "alt"] {
        let (i, s) = installation(prefix);
        let controller = s.prefixed("nmstate-controller");
        let role = i.get::<Role>(&format!("{controller}-leader")).unwrap();
        assert_eq!(
            role.metadata.namespace.as_deref(),
            Some(s.namespace.as_str())
        );
        let rules = role.rules.clone().unwrap();
        let lease = lease_name(&i, &controller);
        let named: Vec<&PolicyRule> = rules
            .iter()
            .filter(|r| r.resource_names.is_some())
            .collect();
        assert_eq!(named.len(), 1, "{rules:?}");
        assert_eq!(named[0].resource_names, Some(vec![lease.clone()]));
        assert_eq!(named[0].resources, Some(vec!["leases".to_owned()]));
        assert_eq!(named[0].verbs, ["get", "update"]);
        // A create names no object when it is authorized: the one unnamed rule creates only.
        for r in rules.iter().filter(|r| r.resource_names.is_none()) {
            assert_eq!(r.verbs, ["create"], "{r:?}");
        }
        let binding = i
            .get::<RoleBinding>(&format!("{controller}-leader"))
            .unwrap();
        assert_eq!(binding.role_ref.name, format!("{controller}-leader"));
        let subjects = binding.subjects.clone().unwrap();
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0].name, controller);
        // No other role of the controller reaches Leases.
        let others: Vec<&Role> = i
            .of::<Role>()
            .into_iter()
            .filter(|r| r.metadata.name.as_deref() == Some(controller.as_str()))
            .collect();
        assert!(others.is_empty(), "{others:?}");
        // The operator, which must hold what it grants, holds the named rule as named.
        let ops = rules_of_bundle(&i, &s);
        let named_ops: Vec<&PolicyRule> = lease_rules(&ops)
            .into_iter()
            .filter(|r| r.resource_names.is_some())
            .collect();
        assert_eq!(named_ops.len(), 1, "{ops:?}");
        assert_eq!(named_ops[0].resource_names, Some(vec![lease]));
    }
}

fn rules_of_bundle(i: &Installation, s: &InstallSettings) -> Vec<PolicyRule> {
    rules(&bundle(i, s))
}

#[test]
fn no_rule_uses_a_wildcard() {
    let (i, s) = installation("");
    let all: Vec<PolicyRule> = rules(&i)
        .into_iter()
        .chain(rules_of_bundle(&i, &s))
        .collect();
    assert!(all.len() > 10, "{all:?}");
    for r in &all {
        let fields = [
            ("apiGroups", r.api_groups.clone().unwrap_or_default()),
            ("resources", r.resources.clone().unwrap_or_default()),
            (
                "resourceNames",
                r.resource_names.clone().unwrap_or_default(),
            ),
            (
                "nonResourceURLs",
                r.non_resource_urls.clone().unwrap_or_default(),
            ),
            ("verbs", r.verbs.clone()),
        ];
        for (field, values) in fields {
            assert!(
                !values.iter().any(|v| v.contains('*')),
                "{field} of {r:?} has a wildcard"
            );
        }
    }
}
