//! The NMState operator against the API stand-in: the CR `nmstate` gets its installation
//! applied (owned, in order, unserved kinds skipped) and reaches Available once the workloads
//! report ready; a second CR is ignored with a condition; a nodeSelector change updates the
//! DaemonSet's template; deleting the CR removes the workloads.
//!
//! The stand-in has no kubelet and serves no apps, RBAC, networking, policy or admission-policy
//! kinds: the test defines those as custom resources (same group, version and plural) and
//! writes the workloads' status itself, as their controllers would.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nmstate_installs_reports_rolls_and_uninstalls() -> Result<()> {
    let c = Cluster::start().await?;
    c.create("nmstate", NMStateSpec::default()).await?;

    // Applied and owned; still Deploying, as no workload reports ready; monitoring skipped.
    let message = c.wait_state("nmstate", "Progressing", "Deploying").await?;
    assert!(
        message.contains("DaemonSet \"nmstate-handler\""),
        "{message}"
    );
    assert!(
        message.contains("ServiceMonitor/nmstate/controller-manager-metrics-monitor"),
        "{message}"
    );
    let ds: Api<DaemonSet> = Api::namespaced(c.client.clone(), NS);
    let handler = ds.get("nmstate-handler").await?;
    let owner = &handler.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("NMState", "nmstate", Some(true))
    );
    let ns: Api<Namespace> = Api::all(c.client.clone());
    assert!(
        ns.get(NS).await?.owner_references().is_empty(),
        "the Namespace is never owned"
    );
    let deps: Api<Deployment> = Api::namespaced(c.client.clone(), NS);
    assert_eq!(
        deps.get("nmstate-webhook").await?.spec.replicas,
        Some(2),
        "two Linux nodes"
    );
    assert_eq!(deps.get("nmstate-controller").await?.spec.replicas, Some(2));

    // The webhook's certificate: issued into its Secret, its CA injected into the config.
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), NS);
    let tls = secrets.get("nmstate-webhook").await?;
    let data = tls.data.context("no data")?;
    assert!(data.contains_key("tls.crt") && data.contains_key("tls.key"));
    let ca = String::from_utf8(data["ca.crt"].0.clone())?;
    let hooks: Api<MutatingWebhookConfiguration> = Api::all(c.client.clone());
    let m = hooks.get("nmstate").await?;
    for w in m.webhooks.iter().flatten() {
        assert_eq!(
            w.client_config.ca_bundle.as_ref().map(|b| b.0.clone()),
            Some(ca.clone().into_bytes())
        );
    }

    c.roll_out().await?;
    let message = c
        .wait_state("nmstate", "Available", "SuccessfullyDeployed")
        .await?;
    assert!(
        message.starts_with("All components are available and ready"),
        "{message}"
    );

    // Status is written with server-side apply under the operator's own field manager.
    let api: Api<NMState> = Api::all(c.client.clone());
    let managers: Vec<(String, String, String)> = api
        .get("nmstate")
        .await?
        .managed_fields()
        .iter()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
                m.subresource.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("knmstate-operator".into(), "Apply".into(), "status".into())),
        "{managers:?}"
    );

    // A nodeSelector change renders a new pod template: the DaemonSet rolls.
    let selector = BTreeMap::from([("role".to_owned(), "net".to_owned())]);
    api.patch(
        "nmstate",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"nodeSelector": selector}})),
    )
    .await?;
    eventually("the DaemonSet's new nodeSelector", WAIT, || async {
        let d = ds.get("nmstate-handler").await?;
        let got = d.spec.template.spec.and_then(|s| s.node_selector);
        Ok(got
            .as_ref()
            .is_some_and(|s| s.get("role").map(String::as_str) == Some("net"))
            .then_some(()))
    })
    .await?;
    c.wait_state("nmstate", "Progressing", "Deploying").await?;

    // Deleting the CR removes what it owns; CRDs and the Namespace stay.
    api.delete("nmstate", &DeleteParams::default()).await?;
    eventually("the workloads gone", WAIT, || async {
        let left = ds.list(&ListParams::default()).await?.items.len()
            + deps.list(&ListParams::default()).await?.items.len()
            + hooks.list(&ListParams::default()).await?.items.len();
        Ok((left == 0).then_some(()))
    })
    .await?;
    assert!(ns.get_opt(NS).await?.is_some());
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    assert!(crds.get_opt("nmstates.nmstate.io").await?.is_some());
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nmstate_with_another_name_is_ignored_with_a_condition() -> Result<()> {
    let c = Cluster::start().await?;
    c.create("nmstate", NMStateSpec::default()).await?;
    c.wait_state("nmstate", "Progressing", "Deploying").await?;
    c.create("other", NMStateSpec::default()).await?;
    let message = c.wait_state("other", "Degraded", "Ignored").await?;
    assert!(
        message.contains("only the NMState named \"nmstate\" is reconciled"),
        "{message}"
    );
    // Still exactly one installation, owned by the honoured resource only.
    let ds: Api<DaemonSet> = Api::namespaced(c.client.clone(), NS);
    let all = ds.list(&ListParams::default()).await?.items;
    assert_eq!(all.len(), 1);
    assert!(
        all[0]
            .owner_references()
            .iter()
            .all(|o| o.name == "nmstate")
    );
    let api: Api<NMState> = Api::all(c.client.clone());
    assert!(api.get_opt("other").await?.is_some(), "not deleted");
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_certificates_rotate_and_the_old_ca_stays_trusted() -> Result<()> {
    let c = Cluster::start().await?;
    let spec: NMStateSpec = serde_json::from_value(json!({"selfSignConfiguration": {
        "caRotateInterval": "3s", "caOverlapInterval": "1h",
        "certRotateInterval": "1s", "certOverlapInterval": "1h"}}))?;
    c.create("nmstate", spec).await?;
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), NS);
    let serving = |s: Secret| -> Option<Vec<u8>> { Some(s.data?.get("tls.crt")?.0.clone()) };
    let first = eventually("a serving certificate", WAIT, || async {
        Ok(secrets.get_opt("nmstate-webhook").await?.and_then(serving))
    })
    .await?;
    eventually("a new serving certificate", WAIT, || async {
        let now = secrets.get_opt("nmstate-webhook").await?.and_then(serving);
        Ok(now.filter(|n| *n != first).map(|_| ()))
    })
    .await?;
    // After the CA's rotation the webhooks trust both CAs until the old one expires.
    let hooks: Api<MutatingWebhookConfiguration> = Api::all(c.client.clone());
    eventually("a bundle of two CAs", WAIT, || async {
        let m = hooks.get_opt("nmstate").await?;
        let bundle = m
            .and_then(|m| m.webhooks)
            .and_then(|w| w.first().and_then(|w| w.client_config.ca_bundle.clone()))
            .map(|b| {
                String::from_utf8_lossy(&b.0)
                    .matches("BEGIN CERTIFICATE")
                    .count()
            });
        Ok((bundle == Some(2)).then_some(()))
    })
    .await?;
    c.shutdown().await;
    Ok(())
}
