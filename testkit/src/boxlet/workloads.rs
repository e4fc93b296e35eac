//! The pods the DaemonSets and Deployments call for (the DaemonSet controller, the Deployment
//! and `ReplicaSet` controllers and the scheduler in one pure function), and the workload status
//! their controllers would write from the pods the box runs.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, PodSpec, PodTemplateSpec};
use serde_json::{Value, json};

use super::schedule;

/// The workload a pod belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner {
    /// `DaemonSet` or `Deployment`.
    pub kind: &'static str,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// A pod the workloads call for.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredPod {
    /// `<daemonset>-<node>` or `<deployment>-<template hash>-<i>`.
    pub name: String,
    /// Its workload.
    pub owner: Owner,
    /// The node it is scheduled on.
    pub node: String,
    /// The pod template's spec.
    pub spec: PodSpec,
    /// The pod template's labels (what Services select).
    pub labels: BTreeMap<String, String>,
    /// Hash of the template: a pod of another hash is replaced.
    pub hash: String,
}

impl DesiredPod {
    /// `terminationGracePeriodSeconds` (30 s by default).
    pub fn grace(&self) -> Duration {
        Duration::from_secs(
            self.spec
                .termination_grace_period_seconds
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(30),
        )
    }

    /// Whether it runs in its node's network namespace.
    pub fn host_network(&self) -> bool {
        self.spec.host_network.unwrap_or(false)
    }
}

/// A short, stable hash of a pod template (the `pod-template-hash` of a `ReplicaSet`).
pub fn template_hash(t: &PodTemplateSpec) -> String {
    let mut h = DefaultHasher::new();
    serde_json::to_string(t).unwrap_or_default().hash(&mut h);
    format!("{:010x}", h.finish() & 0xff_ffff_ffff)
}

fn pod(owner: Owner, name: String, node: String, t: &PodTemplateSpec) -> Option<DesiredPod> {
    Some(DesiredPod {
        name,
        owner,
        node,
        spec: t.spec.clone()?,
        labels: t
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default(),
        hash: template_hash(t),
    })
}

/// Every pod the workloads (not being deleted) call for, scheduled on `nodes`.
pub fn desired(
    daemon_sets: &[DaemonSet],
    deployments: &[Deployment],
    nodes: &[Node],
) -> Vec<DesiredPod> {
    let mut out = Vec::new();
    let live = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.deletion_timestamp.is_none()
    };
    for ds in daemon_sets.iter().filter(|d| live(&d.metadata)) {
        let spec = &ds.spec;
        let Some(pod_spec) = spec.template.spec.as_ref() else {
            continue;
        };
        let owner = owner("DaemonSet", &ds.metadata);
        for node in schedule::daemon_nodes(pod_spec, nodes) {
            out.extend(pod(
                owner.clone(),
                format!("{}-{node}", owner.name),
                node,
                &spec.template,
            ));
        }
    }
    for d in deployments.iter().filter(|d| live(&d.metadata)) {
        let spec = &d.spec;
        let Some(pod_spec) = spec.template.spec.as_ref() else {
            continue;
        };
        let owner = owner("Deployment", &d.metadata);
        let replicas = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
        let hash = template_hash(&spec.template);
        for (i, node) in schedule::replica_nodes(pod_spec, nodes, replicas)
            .into_iter()
            .enumerate()
        {
            out.extend(pod(
                owner.clone(),
                format!("{}-{hash}-{i}", owner.name),
                node,
                &spec.template,
            ));
        }
    }
    out
}

/// The owner identity of a workload's metadata.
pub fn owner(
    kind: &'static str,
    m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Owner {
    Owner {
        kind,
        namespace: m.namespace.clone().unwrap_or_default(),
        name: m.name.clone().unwrap_or_default(),
    }
}

/// How the box's pods of one workload stand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Pods called for.
    pub desired: i32,
    /// Pods running (any template).
    pub running: i32,
    /// Running pods of the current template.
    pub updated: i32,
    /// Ready pods.
    pub ready: i32,
}

/// The status the DaemonSet controller would write.
pub fn daemon_set_status(c: Counts, generation: Option<i64>) -> Value {
    json!({
        "desiredNumberScheduled": c.desired,
        "currentNumberScheduled": c.running,
        "numberMisscheduled": 0,
        "numberReady": c.ready,
        "numberAvailable": c.ready,
        "numberUnavailable": (c.desired - c.ready).max(0),
        "updatedNumberScheduled": c.updated,
        "observedGeneration": generation,
    })
}

/// The status the Deployment controller would write.
pub fn deployment_status(c: Counts, generation: Option<i64>) -> Value {
    json!({
        "replicas": c.running,
        "updatedReplicas": c.updated,
        "readyReplicas": c.ready,
        "availableReplicas": c.ready,
        "unavailableReplicas": (c.desired - c.ready).max(0),
        "observedGeneration": generation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<Node> {
        ["node1", "node2"]
            .into_iter()
            .map(|n| crate::builders::node(n, &[("kubernetes.io/os", "linux")]))
            .collect()
    }

    fn template(selector: &[(&str, &str)]) -> Value {
        let sel: BTreeMap<_, _> = selector
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        json!({"metadata": {"labels": {"app": "x"}}, "spec": {"nodeSelector": sel, "containers": []}})
    }

    #[test]
    fn a_daemon_set_gets_a_pod_per_selected_node_and_a_deployment_its_replicas() {
        let ds: DaemonSet =
            serde_json::from_value(json!({"metadata": {"name": "h", "namespace": "ns"},
            "spec": {"selector": {}, "template": template(&[("kubernetes.io/os", "linux")])}}))
            .unwrap();
        let dep: Deployment =
            serde_json::from_value(json!({"metadata": {"name": "c", "namespace": "ns"},
            "spec": {"replicas": 2, "selector": {}, "template": template(&[])}}))
            .unwrap();
        let pods = desired(std::slice::from_ref(&ds), &[dep], &nodes());
        let names: Vec<_> = pods
            .iter()
            .map(|p| (p.name.as_str(), p.node.as_str()))
            .collect();
        let hash = &pods[2].hash;
        assert_eq!(
            names,
            [
                ("h-node1", "node1"),
                ("h-node2", "node2"),
                (format!("c-{hash}-0").as_str(), "node1"),
                (format!("c-{hash}-1").as_str(), "node2")
            ]
        );
        assert_eq!(pods[0].labels["app"], "x");
        let mut narrowed = ds.clone();
        narrowed.spec.template =
            serde_json::from_value(template(&[("kubernetes.io/hostname", "node2")])).unwrap();
        let pods = desired(&[narrowed], &[], &nodes());
        assert_eq!(
            pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["h-node2"]
        );
        let mut deleting = ds;
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        assert!(desired(&[deleting], &[], &nodes()).is_empty());
    }

    #[test]
    fn status_counts_unavailable_pods() {
        let c = Counts {
            desired: 3,
            running: 3,
            updated: 2,
            ready: 1,
        };
        let s = daemon_set_status(c, Some(4));
        assert_eq!(s["numberUnavailable"], 2);
        assert_eq!(s["updatedNumberScheduled"], 2);
        assert_eq!(s["observedGeneration"], 4);
        assert_eq!(deployment_status(c, Some(1))["availableReplicas"], 1);
    }
}
