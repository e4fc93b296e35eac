//! The NMState operator against the API stand-in: the CR `nmstate` gets its installation
//! applied (owned, in order, unserved kinds skipped) and reaches Available once the workloads
//! report ready; a second CR is ignored with a condition; a nodeSelector change updates the
//! DaemonSet's template; deleting the CR removes the workloads.
//!
//! The stand-in has no kubelet and serves no apps, RBAC, networking, policy or admission-policy
//! kinds: the test defines those as custom resources (same group, version and plural) and
//! writes the workloads' status itself, as their controllers would.

mod scenarios;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Namespace, Node, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use knmstate_api::v1::{NMState, NMStateSpec};
use knmstate_controller::operator::{self, OperatorContext};
use knmstate_deploy::InstallSettings;
use knmstate_testkit::apiserver::{ApiServer, Config as ServerConfig};
use knmstate_testkit::builders;
use knmstate_testkit::poll::eventually;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

const NS: &str = "nmstate";
const WAIT: Duration = Duration::from_secs(30);

/// A built-in kind the stand-in lacks, defined as a custom resource with its real group,
/// version and plural (schema-less, with a status subresource).
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
) -> Result<CustomResourceDefinition> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "names": {"plural": plural, "kind": kind, "singular": kind.to_lowercase()},
            "scope": if namespaced { "Namespaced" } else { "Cluster" },
            "versions": [{
                "name": version, "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}}
            }]
        }
    }))?)
}

struct Cluster {
    _server: ApiServer,
    client: Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Cluster {
    /// The stand-in with the nmstate.io CRDs, the missing built-in kinds, two Linux nodes, and
    /// the operator running with test timings.
    async fn start() -> Result<Self> {
        let _ = knmstate_runtime::init_logging(knmstate_runtime::LogFormat::Text, "warn");
        let server = ApiServer::start(ServerConfig {
            bookmark_interval: Duration::from_millis(500),
            ..ServerConfig::default()
        })
        .await?;
        let client = server.client()?;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let mut all: Vec<CustomResourceDefinition> = knmstate_api::crd::all()?
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        for (g, v, p, k, namespaced) in [
            ("apps", "v1", "daemonsets", "DaemonSet", true),
            ("apps", "v1", "deployments", "Deployment", true),
            (
                "rbac.authorization.k8s.io",
                "v1",
                "clusterroles",
                "ClusterRole",
                false,
            ),
            (
                "rbac.authorization.k8s.io",
                "v1",
                "clusterrolebindings",
                "ClusterRoleBinding",
                false,
            ),
            ("rbac.authorization.k8s.io", "v1", "roles", "Role", true),
            (
                "rbac.authorization.k8s.io",
                "v1",
                "rolebindings",
                "RoleBinding",
                true,
            ),
            (
                "networking.k8s.io",
                "v1",
                "networkpolicies",
                "NetworkPolicy",
                true,
            ),
            (
                "policy",
                "v1",
                "poddisruptionbudgets",
                "PodDisruptionBudget",
                true,
            ),
            (
                "admissionregistration.k8s.io",
                "v1",
                "validatingadmissionpolicies",
                "ValidatingAdmissionPolicy",
                false,
            ),
            (
                "admissionregistration.k8s.io",
                "v1",
                "validatingadmissionpolicybindings",
                "ValidatingAdmissionPolicyBinding",
                false,
            ),
        ] {
            all.push(builtin(g, v, p, k, namespaced)?);
        }
        for crd in all {
            crds.create(&PostParams::default(), &crd).await?;
        }
        let nodes: Api<Node> = Api::all(client.clone());
        for name in ["node01", "node02"] {
            let node = builders::node(name, &[("kubernetes.io/os", "linux")]);
            nodes.create(&PostParams::default(), &node).await?;
        }
        let mut ctx = OperatorContext::new(
            server.client()?,
            InstallSettings {
                image: "knmstate:test".into(),
                ..InstallSettings::default()
            },
        );
        ctx.progress_interval = Duration::from_millis(300);
        ctx.resync = Duration::from_secs(2);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(operator::run(server.client()?, ctx, None, async move {
            let _ = rx.await;
        }));
        Ok(Self {
            _server: server,
            client,
            stop: Some(tx),
            task,
        })
    }

    async fn create(&self, name: &str, spec: NMStateSpec) -> Result<()> {
        let api: Api<NMState> = Api::all(self.client.clone());
        api.create(&PostParams::default(), &NMState::new(name, spec))
            .await?;
        Ok(())
    }

    /// The CR's True condition as (type, reason, message).
    async fn state(&self, name: &str) -> Result<Option<(String, String, String)>> {
        let api: Api<NMState> = Api::all(self.client.clone());
        Ok(api
            .get(name)
            .await?
            .status
            .and_then(|s| s.conditions.first_true().cloned())
            .map(|c| (c.type_, c.reason, c.message)))
    }

    /// Wait until the CR's True condition has this type and reason; returns its message.
    async fn wait_state(&self, name: &str, type_: &str, reason: &str) -> Result<String> {
        Ok(eventually(
            &format!("NMState {name} {type_}/{reason}"),
            WAIT,
            || async {
                Ok(match self.state(name).await? {
                    Some((t, r, m)) if t == type_ && r == reason => Some(m),
                    _ => None,
                })
            },
        )
        .await?)
    }

    /// Report every workload rolled out, as the DaemonSet and Deployment controllers would.
    async fn roll_out(&self) -> Result<()> {
        let ds: Api<DaemonSet> = Api::namespaced(self.client.clone(), NS);
        for d in ds.list(&ListParams::default()).await?.items {
            let status = json!({"status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2,
                "numberMisscheduled": 0, "numberReady": 2, "updatedNumberScheduled": 2,
                "numberAvailable": 2, "observedGeneration": d.metadata.generation}});
            ds.patch_status(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(status),
            )
            .await?;
        }
        let deps: Api<Deployment> = Api::namespaced(self.client.clone(), NS);
        for d in deps.list(&ListParams::default()).await?.items {
            let n = d.spec.replicas.unwrap_or(1);
            let status = json!({"status": {"replicas": n, "updatedReplicas": n, "readyReplicas": n,
                "availableReplicas": n, "observedGeneration": d.metadata.generation}});
            deps.patch_status(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(status),
            )
            .await?;
        }
        Ok(())
    }

    async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}
