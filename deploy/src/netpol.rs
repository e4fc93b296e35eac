//! NetworkPolicies as upstream: deny everything in the namespace, then allow API-server and
//! DNS egress, webhook ingress, and metrics ingress from the monitoring namespace only. The
//! handler runs on the host network, where NetworkPolicies do not apply.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::meta::{
    self, COMPONENT_LABEL, CONTROLLER_COMPONENT, OPERATOR_COMPONENT, PROMETHEUS_LABEL,
    WEBHOOK_COMPONENT,
};
use crate::workloads::WEBHOOK_PORT;
use crate::{InstallSettings, Knobs};

/// Port of the API server's endpoints (behind the `kubernetes` Service's 443).
pub const API_SERVER_PORT: i32 = 6443;

fn port(protocol: &str, port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(protocol.to_owned()),
        port: Some(IntOrString::Int(port)),
        end_port: None,
    }
}

fn policy(name: &str, pods: LabelSelector, types: &[&str], s: &InstallSettings) -> NetworkPolicy {
    NetworkPolicy {
        metadata: meta::meta(name, Some(&s.namespace), None),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pods),
            policy_types: Some(types.iter().map(|t| (*t).to_owned()).collect()),
            ..NetworkPolicySpec::default()
        }),
    }
}

fn components(names: &[&str]) -> LabelSelector {
    LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: COMPONENT_LABEL.to_owned(),
            operator: "In".to_owned(),
            values: Some(names.iter().map(|n| (*n).to_owned()).collect()),
        }]),
    }
}

/// The NetworkPolicies of the namespace.
pub fn objects(knobs: &Knobs, s: &InstallSettings) -> Vec<NetworkPolicy> {
    let mut deny = policy(
        "deny-all",
        LabelSelector::default(),
        &["Ingress", "Egress"],
        s,
    );
    if let Some(spec) = deny.spec.as_mut() {
        spec.ingress = None;
        spec.egress = None;
    }
    let mut api = policy(
        "allow-egress-to-api-server",
        components(&[CONTROLLER_COMPONENT, OPERATOR_COMPONENT]),
        &["Egress"],
        s,
    );
    if let Some(spec) = api.spec.as_mut() {
        spec.egress = Some(vec![NetworkPolicyEgressRule {
            ports: Some(vec![port("TCP", API_SERVER_PORT), port("TCP", 443)]),
            to: None,
        }]);
    }
    let mut dns = policy(
        "allow-egress-to-dns",
        LabelSelector::default(),
        &["Egress"],
        s,
    );
    if let Some(spec) = dns.spec.as_mut() {
        spec.egress = Some(vec![NetworkPolicyEgressRule {
            ports: Some(vec![port("UDP", 53), port("TCP", 53)]),
            to: None,
        }]);
    }
    let mut webhook = policy(
        "allow-ingress-to-webhook",
        meta::select(WEBHOOK_COMPONENT),
        &["Ingress"],
        s,
    );
    if let Some(spec) = webhook.spec.as_mut() {
        spec.ingress = Some(vec![NetworkPolicyIngressRule {
            ports: Some(vec![port("TCP", WEBHOOK_PORT)]),
            from: None,
        }]);
    }
    let mut metrics = policy(
        "allow-ingress-to-metrics-endpoint",
        LabelSelector {
            match_labels: Some(BTreeMap::from([(
                PROMETHEUS_LABEL.to_owned(),
                "true".to_owned(),
            )])),
            match_expressions: None,
        },
        &["Ingress"],
        s,
    );
    if let Some(spec) = metrics.spec.as_mut() {
        spec.ingress = Some(vec![NetworkPolicyIngressRule {
            ports: Some(vec![port("TCP", knobs.metrics_port())]),
            from: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        "kubernetes.io/metadata.name".to_owned(),
                        s.monitoring_namespace.clone(),
                    )])),
                    match_expressions: None,
                }),
                ..NetworkPolicyPeer::default()
            }]),
        }]);
    }
    vec![deny, api, dns, webhook, metrics]
}
