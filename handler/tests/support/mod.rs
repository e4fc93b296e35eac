//! Shared helpers of the handler's integration tests: the API stand-in with the nmstate CRDs,
//! nodes, handlers over a `MemoryBackend`, and waiting.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::Node;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::NodeNetworkConfigurationEnactment;
use knmstate_handler::HandlerConfig;
use knmstate_handler::probes::{ModelProbes, ProbeFactory};
use knmstate_nm_backend::MemoryBackend;
use knmstate_testkit::apiserver::nmstate::start_with_crds;
use knmstate_testkit::apiserver::{ApiServer, Config};
use knmstate_testkit::builders;
pub use knmstate_testkit::poll::eventually;
pub use knmstate_testkit::scale::handlers::{self, Running};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// A stand-in with the nmstate CRDs installed.
pub struct Cluster {
    pub server: ApiServer,
    pub client: kube::Client,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start() -> Result<Self> {
        Self::start_on(Config::default()).await
    }

    pub async fn start_on(config: Config) -> Result<Self> {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
        let (server, client) = start_with_crds(config).await?;
        Ok(Self {
            server,
            client,
            dir: tempfile::tempdir()?,
        })
    }

    pub fn kube_config(&self) -> kube::Config {
        kube::Config::new(self.server.url().parse().expect("url"))
    }

    /// Create a Ready node with these labels (plus `kubernetes.io/hostname`).
    pub async fn add_node(&self, name: &str, labels: &[(&str, &str)]) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        nodes
            .create(&PostParams::default(), &builders::node(name, labels))
            .await?;
        nodes
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(builders::node_status_patch(true)),
            )
            .await?;
        Ok(())
    }

    pub async fn label_node(&self, name: &str, key: &str, value: Option<&str>) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        nodes
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {key: value}}})),
            )
            .await?;
        Ok(())
    }

    /// Handler settings for tests: fast retries and probes, files in the temp dir.
    pub fn config(&self, node: &str) -> HandlerConfig {
        handlers::test_config(self.dir.path(), node)
    }

    pub fn start_handler(&self, node: &str, backend: MemoryBackend, hold: Duration) -> Running {
        self.start_handler_with(self.config(node), backend, Arc::new(ModelProbes { hold }))
    }

    pub fn start_handler_with(
        &self,
        config: HandlerConfig,
        backend: MemoryBackend,
        probes: Arc<dyn ProbeFactory>,
    ) -> Running {
        handlers::start(
            self.client.clone(),
            self.kube_config(),
            config,
            backend,
            probes,
        )
    }

    pub fn enactments(&self) -> Api<NodeNetworkConfigurationEnactment> {
        Api::all(self.client.clone())
    }

    pub fn policies(&self) -> Api<NodeNetworkConfigurationPolicy> {
        Api::all(self.client.clone())
    }

    pub async fn create_policy(&self, policy: Value) -> Result<NodeNetworkConfigurationPolicy> {
        let p: NodeNetworkConfigurationPolicy = serde_json::from_value(policy)?;
        Ok(self.policies().create(&PostParams::default(), &p).await?)
    }

    /// Count of requests for a verb and resource (`plural.group[/sub]`) at the stand-in.
    pub fn requests(&self, verb: &str, resource: &str) -> u64 {
        self.server.metrics().count(verb, resource)
    }
}

/// The `True` condition type of an enactment, if any.
pub fn active(e: &NodeNetworkConfigurationEnactment) -> Option<String> {
    e.status
        .as_ref()
        .and_then(|s| s.conditions.first_true())
        .map(|c| c.type_.clone())
}

/// Wait until the enactment's True condition is `want`; returns the enactment.
pub async fn wait_condition(
    c: &Cluster,
    name: &str,
    want: &str,
    timeout: Duration,
) -> Result<NodeNetworkConfigurationEnactment> {
    let api = c.enactments();
    Ok(eventually(&format!("{name} to be {want}"), timeout, || {
        let api = api.clone();
        async move {
            let e = api.get_opt(name).await.ok().flatten()?;
            (active(&e).as_deref() == Some(want)).then_some(e)
        }
    })
    .await?)
}

/// A policy from an example file of the repository.
pub fn example(name: &str) -> Result<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    let text = std::fs::read_to_string(&path)?;
    Ok(serde_saphyr::from_str(&text)?)
}

/// The interface called `name` in a state.
pub fn iface<'a>(state: &'a Value, name: &str) -> Option<&'a Value> {
    state
        .get("interfaces")?
        .as_array()?
        .iter()
        .find(|i| i.get("name").and_then(Value::as_str) == Some(name))
}
