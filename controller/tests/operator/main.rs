//! The NMState operator against the API stand-in: the CR `nmstate` gets its installation
//! applied (owned, in order, unserved kinds skipped) and reaches Available once the workloads
//! report ready; a second CR is ignored with a condition; a nodeSelector change updates the
//! DaemonSet's template; deleting the CR removes the workloads; the role aggregated into the
//! cluster's `cluster-reader` follows that role's presence.
//!
//! The stand-in serves the built-in kinds of an installation but runs no kubelet and no
//! workload controllers: the test writes the workloads' status itself, as they would.

mod cluster_reader;
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

struct Cluster {
    _server: ApiServer,
    client: Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Cluster {
    /// The stand-in with the nmstate.io CRDs, two Linux nodes, and
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
        let all: Vec<CustomResourceDefinition> = knmstate_api::crd::all()?
            .into_iter()
            .map(|(_, c)| c)
            .collect();
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
