//! The renderer against upstream's operator cases that need no kubelet: replicas and
//! disruption budget by topology, selector and toleration routing, log level, DNS probe env,
//! network policies; plus the CA bundle, the prefix and least privilege.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1 as adm;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Container, Node, NodeSpec, PodSpec, Taint, Toleration};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use knmstate_api::shared::{LogLevel, NMStateDnsProbe, NMStateProbeConfiguration};
use knmstate_api::v1::NMStateSpec;
use knmstate_deploy::operator::operator_rules;
use knmstate_deploy::topology::infra_node_count;
use knmstate_deploy::{InstallSettings, Installation, Knobs, render};
use pretty_assertions::assert_eq;
use rstest::rstest;

fn installation(spec: &NMStateSpec, edit: impl FnOnce(&mut InstallSettings)) -> Installation {
    let mut s = InstallSettings::default();
    edit(&mut s);
    render(spec, &s).unwrap()
}

fn pod<'a>(i: &'a Installation, kind: &str, name: &str) -> &'a PodSpec {
    match kind {
        "DaemonSet" => i
            .get::<DaemonSet>(name)
            .unwrap()
            .spec
            .template
            .spec
            .as_ref(),
        _ => i
            .get::<Deployment>(name)
            .unwrap()
            .spec
            .template
            .spec
            .as_ref(),
    }
    .unwrap()
}

fn env(c: &Container, name: &str) -> Option<String> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[rstest]
#[case::single_node(1, 1, 0)]
#[case::no_infra_node(0, 1, 0)]
#[case::two_nodes(2, 2, 1)]
#[case::many_nodes(5, 2, 1)]
fn webhook_replicas_and_budget_follow_topology(
    #[case] infra_nodes: usize,
    #[case] replicas: i32,
    #[case] min_available: i32,
) {
    let i = installation(&NMStateSpec::default(), |s| s.infra_nodes = infra_nodes);
    let webhook = i.get::<Deployment>("nmstate-webhook").unwrap();
    assert_eq!(webhook.spec.replicas, Some(replicas));
    let pdb = i.get::<PodDisruptionBudget>("nmstate-webhook").unwrap();
    assert_eq!(
        pdb.spec.as_ref().unwrap().min_available,
        Some(IntOrString::Int(min_available))
    );
    // The controller is leader-elected: always two.
    let controller = i.get::<Deployment>("nmstate-controller").unwrap();
    assert_eq!(controller.spec.replicas, Some(2));
}

fn node(name: &str, labels_: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
    let mut n = Node::default();
    n.metadata.name = Some(name.into());
    n.metadata.labels = Some(labels(labels_));
    n.spec = Some(NodeSpec {
        taints: Some(
            taints
                .iter()
                .map(|(k, e)| Taint {
                    key: (*k).into(),
                    effect: (*e).into(),
                    ..Taint::default()
                })
                .collect(),
        ),
        ..NodeSpec::default()
    });
    n
}

#[test]
fn infra_nodes_are_those_the_webhook_can_be_scheduled_on() {
    let linux = [("kubernetes.io/os", "linux")];
    let nodes = [
        node(
            "cp",
            &linux,
            &[("node-role.kubernetes.io/control-plane", "NoSchedule")],
        ),
        node("worker", &linux, &[]),
        node("gpu", &linux, &[("gpu", "NoSchedule")]),
        node("windows", &[("kubernetes.io/os", "windows")], &[]),
        node("prefer", &linux, &[("soft", "PreferNoSchedule")]),
    ];
    let knobs = Knobs::of(&NMStateSpec::default());
    assert_eq!(infra_node_count(&knobs, &nodes), 3);
    let spec = NMStateSpec {
        infra_node_selector: Some(labels(&[("node-role.kubernetes.io/control-plane", "")])),
        ..NMStateSpec::default()
    };
    let mut cp = nodes[0].clone();
    cp.metadata.labels = Some(labels(&[("node-role.kubernetes.io/control-plane", "")]));
    assert_eq!(infra_node_count(&Knobs::of(&spec), &[cp]), 1);
}

#[test]
fn handler_scheduling_comes_from_node_selector_tolerations_and_affinity() {
    let spec = NMStateSpec {
        node_selector: Some(labels(&[("role", "worker")])),
        tolerations: Some(vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("net".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        }]),
        ..NMStateSpec::default()
    };
    let i = installation(&spec, |_| {});
    let handler = pod(&i, "DaemonSet", "nmstate-handler");
    assert_eq!(handler.node_selector, spec.node_selector);
    assert_eq!(handler.tolerations, spec.tolerations);
    // The handler's knobs never reach the infra workloads.
    for name in ["nmstate-webhook", "nmstate-controller"] {
        let p = pod(&i, "Deployment", name);
        assert_eq!(
            p.node_selector,
            Some(labels(&[("kubernetes.io/os", "linux")]))
        );
        assert_eq!(p.tolerations.as_ref().unwrap().len(), 2, "{name}");
    }
}

#[test]
fn infra_scheduling_comes_from_the_infra_knobs() {
    let spec = NMStateSpec {
        infra_node_selector: Some(labels(&[("infra", "true")])),
        infra_tolerations: Some(vec![]),
        ..NMStateSpec::default()
    };
    let i = installation(&spec, |_| {});
    for name in ["nmstate-webhook", "nmstate-controller"] {
        let p = pod(&i, "Deployment", name);
        assert_eq!(p.node_selector, spec.infra_node_selector, "{name}");
        assert_eq!(p.tolerations, Some(vec![]), "{name}");
        assert!(p.affinity.is_some(), "default infra affinity on {name}");
    }
    let handler = pod(&i, "DaemonSet", "nmstate-handler");
    assert_eq!(
        handler.node_selector,
        Some(labels(&[("kubernetes.io/os", "linux")]))
    );
    let tolerate_all = handler.tolerations.as_ref().unwrap();
    assert_eq!(tolerate_all.len(), 1);
    assert_eq!(tolerate_all[0].operator.as_deref(), Some("Exists"));
    assert_eq!(tolerate_all[0].key, None);
}

#[rstest]
#[case(None, "info")]
#[case(Some(LogLevel::Info), "info")]
#[case(
    Some(LogLevel::Debug),
    "info,knmstate_handler=debug,knmstate_nm_backend=debug,nmstate=debug"
)]
fn log_level_sets_the_handler_filter(#[case] level: Option<LogLevel>, #[case] want: &str) {
    let spec = NMStateSpec {
        log_level: level,
        ..NMStateSpec::default()
    };
    let i = installation(&spec, |_| {});
    let c = &pod(&i, "DaemonSet", "nmstate-handler").containers[0];
    assert_eq!(env(c, "RUST_LOG").as_deref(), Some(want));
}

#[rstest]
#[case(None, "root-servers.net")]
#[case(Some("example.org"), "example.org")]
fn dns_probe_host_reaches_the_handler_env(#[case] host: Option<&str>, #[case] want: &str) {
    let spec = NMStateSpec {
        probe_configuration: host.map(|h| NMStateProbeConfiguration {
            dns: Some(NMStateDnsProbe { host: h.into() }),
        }),
        ..NMStateSpec::default()
    };
    let i = installation(&spec, |_| {});
    let c = &pod(&i, "DaemonSet", "nmstate-handler").containers[0];
    assert_eq!(env(c, "PROBE_DNS_HOST").as_deref(), Some(want));
}

#[test]
fn handler_pod_runs_on_the_host_with_the_bus_the_lock_and_its_node_name() {
    let i = installation(&NMStateSpec::default(), |_| {});
    let p = pod(&i, "DaemonSet", "nmstate-handler");
    assert_eq!(p.host_network, Some(true));
    let c = &p.containers[0];
    let node = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "NODE_NAME")
        .unwrap();
    let field = node
        .value_from
        .as_ref()
        .unwrap()
        .field_ref
        .as_ref()
        .unwrap();
    assert_eq!(field.field_path, "spec.nodeName");
    assert_eq!(
        env(c, "NMSTATE_INSTANCE_NODE_LOCK_FILE").as_deref(),
        Some("/var/k8s_nmstate/handler_lock")
    );
    let mounts: Vec<&str> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert!(mounts.contains(&"/run/dbus") && mounts.contains(&"/var/k8s_nmstate"));
    let ready = c.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap();
    assert_eq!(ready.command.as_ref().unwrap()[1], "/tmp/healthy");
    // Liveness: the same file the handler writes (it serves no port), after a start-up delay.
    let live = c.liveness_probe.as_ref().unwrap();
    assert_eq!(live.exec.as_ref().unwrap().command, ready.command);
    assert_eq!(live.initial_delay_seconds, Some(60));
}

#[test]
fn test_timings_reach_the_handler_env_only_when_set() {
    let default = installation(&NMStateSpec::default(), |_| {});
    let ds = default.of::<DaemonSet>()[0];
    let c = &ds.spec.template.spec.as_ref().unwrap().containers[0];
    assert_eq!(env(c, "PROBE_TIMEOUT_SECONDS"), None);
    let short = installation(&NMStateSpec::default(), |s| {
        s.probe_timeout_seconds = Some(15);
        s.checkpoint_timeout_seconds = Some(90);
    });
    let ds = short.of::<DaemonSet>()[0];
    let c = &ds.spec.template.spec.as_ref().unwrap().containers[0];
    assert_eq!(env(c, "PROBE_TIMEOUT_SECONDS").as_deref(), Some("15"));
    assert_eq!(env(c, "CHECKPOINT_TIMEOUT_SECONDS").as_deref(), Some("90"));
}

#[test]
fn network_policies_deny_by_default_and_open_only_what_is_used() {
    let i = installation(&NMStateSpec::default(), |s| {
        s.monitoring_namespace = "mon".into();
    });
    let names: Vec<String> = i
        .of::<NetworkPolicy>()
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "deny-all",
            "allow-egress-to-api-server",
            "allow-egress-to-dns",
            "allow-ingress-to-webhook",
            "allow-ingress-to-metrics-endpoint"
        ]
    );
    let deny = i
        .get::<NetworkPolicy>("deny-all")
        .unwrap()
        .spec
        .clone()
        .unwrap();
    assert_eq!(
        deny.pod_selector,
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector::default())
    );
    assert_eq!(
        deny.policy_types,
        Some(vec!["Ingress".into(), "Egress".into()])
    );
    assert!(deny.ingress.is_none() && deny.egress.is_none());
    let metrics = i
        .get::<NetworkPolicy>("allow-ingress-to-metrics-endpoint")
        .unwrap()
        .spec
        .clone()
        .unwrap();
    let rule = &metrics.ingress.unwrap()[0];
    let from = rule.from.as_ref().unwrap()[0]
        .namespace_selector
        .clone()
        .unwrap();
    assert_eq!(
        from.match_labels,
        Some(labels(&[("kubernetes.io/metadata.name", "mon")]))
    );
    assert_eq!(
        rule.ports.as_ref().unwrap()[0].port,
        Some(IntOrString::Int(8089))
    );
    let webhook = i.get::<NetworkPolicy>("allow-ingress-to-webhook").unwrap();
    let ports = webhook.spec.clone().unwrap().ingress.unwrap()[0]
        .ports
        .clone()
        .unwrap();
    assert_eq!(ports[0].port, Some(IntOrString::Int(9443)));
}

#[test]
fn the_ca_bundle_is_injected_into_both_webhook_configurations() {
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let i = installation(&NMStateSpec::default(), |s| {
        s.webhook_ca_bundle = Some(pem.into());
        s.namespace = "ns1".into();
    });
    let m = i
        .get::<adm::MutatingWebhookConfiguration>("nmstate")
        .unwrap();
    let v = i
        .get::<adm::ValidatingWebhookConfiguration>("nmstate-validate")
        .unwrap();
    let configs = m
        .webhooks
        .iter()
        .flatten()
        .map(|w| &w.client_config)
        .chain(v.webhooks.iter().flatten().map(|w| &w.client_config));
    let mut n = 0;
    for c in configs {
        assert_eq!(c.ca_bundle.as_ref().unwrap().0, pem.as_bytes());
        assert_eq!(c.service.as_ref().unwrap().namespace, "ns1");
        n += 1;
    }
    assert_eq!(
        n, 5,
        "three mutating hooks, the policy and the slot-ledger validation"
    );
}

#[test]
fn the_prefix_names_the_workloads_and_the_policy() {
    let i = installation(&NMStateSpec::default(), |s| s.prefix = "alt".into());
    assert!(i.contains("DaemonSet", "alt-nmstate-handler"));
    assert!(i.contains("Deployment", "alt-nmstate-webhook"));
    assert!(i.contains("ValidatingAdmissionPolicy", "alt-nncp-validation-policy"));
    let b = i
        .get::<adm::ValidatingAdmissionPolicyBinding>("alt-nncp-validation-policy-binding")
        .unwrap();
    assert_eq!(b.spec.policy_name, "alt-nncp-validation-policy");
}

#[test]
fn no_role_grants_a_wildcard_and_the_operator_holds_what_it_grants() {
    let i = installation(&NMStateSpec::default(), |_| {});
    let rules = i
        .of::<ClusterRole>()
        .into_iter()
        .flat_map(|r| r.rules.clone().unwrap_or_default())
        .chain(
            i.of::<Role>()
                .into_iter()
                .flat_map(|r| r.rules.clone().unwrap_or_default()),
        );
    let (cluster, namespaced) = operator_rules(&i);
    for r in rules {
        assert!(!r.verbs.iter().any(|v| v == "*"), "{r:?}");
        assert!(!r.resources.iter().flatten().any(|v| v == "*"), "{r:?}");
        for res in r.resources.iter().flatten() {
            for verb in &r.verbs {
                let held = cluster.iter().chain(&namespaced).any(|o| {
                    o.api_groups == r.api_groups
                        && o.resources.iter().flatten().any(|x| x == res)
                        && o.verbs.contains(verb)
                });
                assert!(held, "operator lacks {verb} on {res}");
            }
        }
    }
}

#[test]
fn the_cluster_reader_role_is_rendered_only_when_the_cluster_has_cluster_reader() {
    let without = installation(&NMStateSpec::default(), |s| s.prefix = "alt".into());
    assert!(!without.contains("ClusterRole", "alt-nmstate-cluster-reader"));
    let with = installation(&NMStateSpec::default(), |s| {
        s.prefix = "alt".into();
        s.cluster_reader = true;
    });
    let role = with
        .get::<ClusterRole>("alt-nmstate-cluster-reader")
        .unwrap();
    assert_eq!(
        role.metadata.labels.as_ref().unwrap()["rbac.authorization.k8s.io/aggregate-to-cluster-reader"],
        "true"
    );
    let rules = role.rules.clone().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].api_groups, Some(vec!["nmstate.io".to_owned()]));
    assert_eq!(rules[0].verbs, ["get", "list", "watch"]);
    assert_eq!(
        rules[0].resources.clone().unwrap(),
        [
            "nodenetworkconfigurationpolicies",
            "nodenetworkconfigurationenactments",
            "nodenetworkstates"
        ]
    );
    // Aggregation is the grant: nothing binds it.
    assert!(!with.contains("ClusterRoleBinding", "alt-nmstate-cluster-reader"));
    // The operator's roles come from an installation rendered without it (the generated
    // bundle), yet let it look `cluster-reader` up and grant the aggregated role.
    let (cluster, _) = operator_rules(&without);
    let holds = |group: &str, res: &str, verb: &str| {
        cluster.iter().any(|o| {
            o.api_groups == Some(vec![group.to_owned()])
                && o.resources.iter().flatten().any(|x| x == res)
                && o.verbs.iter().any(|v| v == verb)
        })
    };
    assert!(holds("rbac.authorization.k8s.io", "clusterroles", "get"));
    for res in rules[0].resources.iter().flatten() {
        for verb in &rules[0].verbs {
            assert!(
                holds("nmstate.io", res, verb),
                "operator lacks {verb} on {res}"
            );
        }
    }
}
