//! The controller and webhook Deployments, the webhook's PodDisruptionBudget and the two
//! Services.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, PodSpec, PodTemplateSpec, SecretVolumeSource, Service, ServicePort,
    ServiceSpec, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::meta::{self, CONTROLLER_COMPONENT, PROMETHEUS_LABEL, WEBHOOK_COMPONENT, name};
use crate::pod::{container, env, env_field, http_probe, resources};
use crate::{InstallSettings, Knobs};

/// Port the webhook serves HTTPS on (the `knmstate-webhook` default `--listen 0.0.0.0:9443`).
pub const WEBHOOK_PORT: i32 = 9443;
/// Where the webhook reads its certificate (`--tls-cert-file`/`--tls-key-file` defaults).
pub const WEBHOOK_CERT_DIR: &str = "/etc/webhook/certs";

fn port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

/// A Deployment of one container on the infra nodes.
pub(crate) fn deployment(
    name: &str,
    component: &str,
    replicas: i32,
    pod: PodSpec,
    extra_labels: &[(&str, &str)],
    s: &InstallSettings,
) -> Deployment {
    let mut labels = meta::labels(Some(component));
    labels.extend(
        extra_labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Deployment {
        metadata: meta::meta(name, Some(&s.namespace), Some(component)),
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: meta::select(component),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

/// A pod of `container` under `account`, scheduled on the infra nodes.
fn infra_pod(container: Container, account: String, knobs: &Knobs) -> PodSpec {
    PodSpec {
        service_account_name: Some(account),
        priority_class_name: Some("system-cluster-critical".into()),
        node_selector: Some(knobs.infra_node_selector.clone()),
        tolerations: Some(knobs.infra_tolerations.clone()),
        affinity: Some(knobs.infra_affinity.clone()),
        containers: vec![container],
        ..PodSpec::default()
    }
}

/// The leader-elected controller: two replicas, one leads. Env and flags are the ones
/// `knmstate-controller` reads (controller/src/cli.rs).
pub fn controller(knobs: &Knobs, s: &InstallSettings) -> Deployment {
    let name = s.prefixed(name::CONTROLLER);
    let mut c = container("nmstate-controller", "knmstate-controller", s);
    c.env = Some(vec![
        env("METRICS_BIND_ADDRESS", knobs.metrics_bind_address.clone()),
        env("METRICS_SECURE", s.metrics_secure.to_string()),
        env("LEASE_NAMESPACE", s.namespace.clone()),
        env("LEASE_NAME", name.clone()),
        env_field("POD_NAME", "metadata.name"),
    ]);
    c.ports = Some(vec![port("metrics", knobs.metrics_port())]);
    c.readiness_probe = Some(http_probe("/readyz", "metrics", s.metrics_secure, 10));
    c.liveness_probe = Some(http_probe("/healthz", "metrics", s.metrics_secure, 20));
    c.resources = Some(resources("30m", "50Mi", "500m", "1Gi"));
    deployment(
        &name,
        CONTROLLER_COMPONENT,
        2,
        infra_pod(c, name.clone(), knobs),
        &[(PROMETHEUS_LABEL, "true")],
        s,
    )
}

/// Webhook replicas by topology (upstream): two when more than one node can run it.
pub fn webhook_replicas(s: &InstallSettings) -> i32 {
    if s.infra_nodes > 1 { 2 } else { 1 }
}

/// The webhook: replicas by topology, spread over hosts, its certificate from the Secret of
/// the same name. It calls no API, so its pods carry no token.
pub fn webhook(knobs: &Knobs, s: &InstallSettings) -> Deployment {
    let name = s.prefixed(name::WEBHOOK);
    let mut c = container("nmstate-webhook", "knmstate-webhook", s);
    c.ports = Some(vec![port("webhook", WEBHOOK_PORT)]);
    c.readiness_probe = Some(http_probe("/readyz", "webhook", true, 10));
    c.liveness_probe = Some(http_probe("/healthz", "webhook", true, 20));
    c.resources = Some(resources("30m", "20Mi", "500m", "1Gi"));
    c.volume_mounts = Some(vec![VolumeMount {
        name: "certs".into(),
        mount_path: WEBHOOK_CERT_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }]);
    let mut pod = infra_pod(c, name.clone(), knobs);
    pod.automount_service_account_token = Some(false);
    pod.volumes = Some(vec![Volume {
        name: "certs".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(name::WEBHOOK.into()),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }]);
    pod.topology_spread_constraints = Some(vec![TopologySpreadConstraint {
        max_skew: 1,
        topology_key: "kubernetes.io/hostname".into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(meta::select(WEBHOOK_COMPONENT)),
        ..TopologySpreadConstraint::default()
    }]);
    deployment(&name, WEBHOOK_COMPONENT, webhook_replicas(s), pod, &[], s)
}

/// The webhook's PodDisruptionBudget: one must stay (multi-node) or none (single node, where
/// a drain must be able to evict the only replica).
pub fn webhook_pdb(s: &InstallSettings) -> PodDisruptionBudget {
    let name = s.prefixed(name::WEBHOOK);
    PodDisruptionBudget {
        metadata: meta::meta(&name, Some(&s.namespace), Some(WEBHOOK_COMPONENT)),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(i32::from(s.infra_nodes > 1))),
            selector: Some(meta::select(WEBHOOK_COMPONENT)),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

fn service(
    name: &str,
    selector: BTreeMap<String, String>,
    port: ServicePort,
    s: &InstallSettings,
) -> Service {
    Service {
        metadata: meta::meta(name, Some(&s.namespace), None),
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ports: Some(vec![port]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// `nmstate-webhook`: 443 → 9443, endpoints published before they are ready (upstream), so
/// the API server can reach a replica that is still warming up.
pub fn webhook_service(s: &InstallSettings) -> Service {
    let mut svc = service(
        name::WEBHOOK,
        meta::labels(Some(WEBHOOK_COMPONENT)),
        ServicePort {
            name: Some("webhook".into()),
            port: 443,
            target_port: Some(IntOrString::String("webhook".into())),
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        },
        s,
    );
    if let Some(spec) = svc.spec.as_mut() {
        spec.publish_not_ready_addresses = Some(true);
    }
    svc
}

/// `nmstate-monitor`: the controller's metrics, selected by upstream's
/// `prometheus.nmstate.io: "true"` label.
pub fn monitor_service(knobs: &Knobs, s: &InstallSettings) -> Service {
    let mut svc = service(
        name::MONITOR,
        BTreeMap::from([(PROMETHEUS_LABEL.to_owned(), "true".to_owned())]),
        ServicePort {
            name: Some("metrics".into()),
            port: knobs.metrics_port(),
            target_port: Some(IntOrString::String("metrics".into())),
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        },
        s,
    );
    svc.metadata.labels = Some(BTreeMap::from([(
        PROMETHEUS_LABEL.to_owned(),
        "true".to_owned(),
    )]));
    svc
}
