//! A simulated cluster for the controller's integration tests: the API stand-in with the
//! `nmstate.io` CRDs, Nodes, and "handlers" that write NodeNetworkStates and enactments
//! directly through `kube::Api`, exactly as the real handler does.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::{Namespace, Node};
use knmstate_api::names::field_manager;
use knmstate_api::shared::NodeNetworkConfigurationEnactmentStatus;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::{NodeNetworkConfigurationEnactment, NodeNetworkState};
use knmstate_controller::leader::{LeaseConfig, identity};
use knmstate_controller::{Config, run};
use knmstate_state_engine::conditions::{EnactmentTransition, initial_enactment_conditions};
use knmstate_testkit::apiserver::nmstate::start_with_crds;
use knmstate_testkit::apiserver::{ApiServer, Config as ServerConfig};
use knmstate_testkit::builders::{self, now};
pub use knmstate_testkit::poll::eventually;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use tokio::task::JoinHandle;

/// Namespace of the test Lease.
pub const LEASE_NAMESPACE: &str = "nmstate";
/// Name of the test Lease.
pub const LEASE_NAME: &str = "knmstate-controller";

/// The stand-in plus simulated handlers.
pub struct Cluster {
    /// The API stand-in.
    pub server: ApiServer,
    /// A client for the simulated handlers and the test's own reads.
    pub client: Client,
    /// Requests the simulated handlers and the test setup made (to subtract from totals).
    pub own_requests: AtomicU64,
}

/// A controller running in this process.
pub struct Running {
    /// Its identity in the Lease.
    pub identity: String,
    /// Its `/metrics` address.
    pub addr: SocketAddr,
    /// Ends it abruptly (a crash: no Lease release).
    pub task: JoinHandle<()>,
    /// Ends it gracefully.
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Running {
    /// Stop gracefully and wait.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

impl Cluster {
    /// Start the stand-in, install the CRDs and the Lease namespace.
    pub async fn start() -> Result<Self> {
        let (server, client) = start_with_crds(ServerConfig {
            bookmark_interval: Duration::from_millis(500),
            ..ServerConfig::default()
        })
        .await?;
        let ns: Api<Namespace> = Api::all(client.clone());
        let mut n = Namespace::default();
        n.metadata.name = Some(LEASE_NAMESPACE.into());
        ns.create(&PostParams::default(), &n).await?;
        Ok(Self {
            server,
            client,
            own_requests: AtomicU64::new(0),
        })
    }

    fn count(&self, n: u64) {
        self.own_requests.fetch_add(n, Ordering::Relaxed);
    }

    /// Every request the stand-in served so far.
    pub fn total_requests(&self) -> u64 {
        [
            "get",
            "list",
            "watch",
            "create",
            "update",
            "patch",
            "delete",
            "deletecollection",
        ]
        .iter()
        .map(|v| self.server.metrics().count_verb(v))
        .sum()
    }

    /// Requests per `{verb,resource}` label set so far.
    pub fn requests_by_kind(&self) -> BTreeMap<String, u64> {
        self.server
            .metrics()
            .encode()
            .lines()
            .filter_map(|l| l.strip_prefix("apiserver_request_total"))
            .filter_map(|l| {
                let (labels, n) = l.rsplit_once(' ')?;
                Some((labels.to_owned(), n.parse().ok()?))
            })
            .collect()
    }

    /// Requests this test made itself so far.
    pub fn own(&self) -> u64 {
        self.own_requests.load(Ordering::Relaxed)
    }

    /// Start a controller with test timings (fast election, immediate sweeps).
    pub async fn start_controller(&self, name: &str) -> Result<Running> {
        self.start_controller_with(name, |_| {}).await
    }

    /// Start a controller with test timings changed by `edit`.
    pub async fn start_controller_with(
        &self,
        name: &str,
        edit: impl FnOnce(&mut Config),
    ) -> Result<Running> {
        let mut lease = LeaseConfig::new(LEASE_NAMESPACE, LEASE_NAME, &identity(name));
        lease.lease_duration = Duration::from_secs(2);
        lease.renew_deadline = Duration::from_millis(1500);
        lease.retry_period = Duration::from_millis(200);
        let mut config = Config::new(lease);
        config.sweep_interval = Duration::from_secs(1);
        config.orphan_grace = Duration::ZERO;
        config.resync = Duration::from_mins(1);
        edit(&mut config);
        let identity = config.lease.identity.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let client = self.server.client()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(client, config, Some(listener), async move {
            let _ = rx.await;
        }));
        Ok(Running {
            identity,
            addr,
            task,
            stop: Some(tx),
        })
    }

    /// The identity holding the Lease.
    pub async fn lease_holder(&self) -> Result<Option<String>> {
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        self.count(1);
        Ok(leases
            .get_opt(LEASE_NAME)
            .await?
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity))
    }

    /// A Node with labels and a Ready condition; with a handler, also its NodeNetworkState
    /// holding `interfaces` (types) and running routes.
    pub async fn add_node(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        ready: bool,
        handler: bool,
    ) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        nodes
            .create(&PostParams::default(), &builders::node(name, labels))
            .await?;
        self.count(1);
        self.set_ready(name, ready).await?;
        if handler {
            self.report_state(name).await?;
        }
        Ok(())
    }

    /// Set a Node's Ready condition.
    pub async fn set_ready(&self, name: &str, ready: bool) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        nodes
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(builders::node_status_patch(ready)),
            )
            .await?;
        self.count(1);
        Ok(())
    }

    /// Replace a Node's labels.
    pub async fn set_labels(&self, name: &str, labels: &[(&str, &str)]) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let mut n = nodes.get(name).await?;
        n.metadata.labels = Some(builders::labels(labels));
        nodes.replace(name, &PostParams::default(), &n).await?;
        self.count(2);
        Ok(())
    }

    /// Delete a Node (like removing it from the cluster; its handler is gone with it).
    pub async fn delete_node(&self, name: &str) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        nodes.delete(name, &DeleteParams::default()).await?;
        self.count(1);
        Ok(())
    }

    /// The node's handler reports its state: two ethernets, a bridge, routes.
    pub async fn report_state(&self, node: &str) -> Result<()> {
        let api: Api<NodeNetworkState> = Api::all(self.client.clone());
        api.create(
            &PostParams::default(),
            &NodeNetworkState::new(node, Default::default()),
        )
        .await?;
        let status = builders::node_network_state(
            node,
            serde_json::json!({
                "interfaces": [
                    {"name": "eth0", "type": "ethernet", "state": "up"},
                    {"name": "eth1", "type": "ethernet", "state": "up"},
                    {"name": "br1", "type": "linux-bridge", "state": "up"}
                ],
                "routes": {
                    "config": [{"destination": "198.18.7.0/24", "next-hop-interface": "br1"}],
                    "running": [
                        {"destination": "0.0.0.0/0", "next-hop-interface": "eth0"},
                        {"destination": "198.18.7.0/24", "next-hop-interface": "br1"},
                        {"destination": "2001:db8::/64", "next-hop-interface": "eth0"}
                    ]
                }
            }),
        );
        api.patch_status(
            node,
            &PatchParams::apply(field_manager::HANDLER).force(),
            &Patch::Apply(&status),
        )
        .await?;
        self.count(2);
        Ok(())
    }

    /// Create a policy selecting `selector` (empty: every node); returns its generation.
    pub async fn create_policy(&self, name: &str, selector: &[(&str, &str)]) -> Result<i64> {
        let api: Api<NodeNetworkConfigurationPolicy> = Api::all(self.client.clone());
        let p = builders::policy(name, selector, builders::bridge_state("br1"));
        let created = api.create(&PostParams::default(), &p).await?;
        self.count(1);
        created.metadata.generation.context("no generation")
    }

    /// Delete a policy.
    pub async fn delete_policy(&self, name: &str) -> Result<()> {
        let api: Api<NodeNetworkConfigurationPolicy> = Api::all(self.client.clone());
        api.delete(name, &DeleteParams::default()).await?;
        self.count(1);
        Ok(())
    }

    /// The node's handler creates its enactment of a policy (all conditions Unknown).
    pub async fn create_enactment(&self, node: &str, policy: &str) -> Result<()> {
        let api: Api<NodeNetworkConfigurationEnactment> = Api::all(self.client.clone());
        let e = builders::enactment(node, policy);
        api.create(&PostParams::default(), &e).await?;
        let name = e.name_any();
        self.count(1);
        let status = NodeNetworkConfigurationEnactmentStatus {
            conditions: initial_enactment_conditions(&now()),
            ..Default::default()
        };
        self.write_enactment(&name, status).await
    }

    /// The node's handler moves its enactment through a transition for `generation`; `edit`
    /// adds what else the handler reports (features, lastApply).
    pub async fn enact(
        &self,
        node: &str,
        policy: &str,
        generation: i64,
        transition: EnactmentTransition,
        edit: impl FnOnce(&mut NodeNetworkConfigurationEnactmentStatus),
    ) -> Result<()> {
        let api: Api<NodeNetworkConfigurationEnactment> = Api::all(self.client.clone());
        let name = knmstate_api::names::enactment_name(node, policy);
        let current = api.get(&name).await?;
        self.count(1);
        let mut status = current.status.unwrap_or_default();
        status.policy_generation = Some(generation);
        transition.apply(&mut status.conditions, &now());
        edit(&mut status);
        self.write_enactment(&name, status).await
    }

    async fn write_enactment(
        &self,
        name: &str,
        status: NodeNetworkConfigurationEnactmentStatus,
    ) -> Result<()> {
        let api: Api<NodeNetworkConfigurationEnactment> = Api::all(self.client.clone());
        let mut patch = NodeNetworkConfigurationEnactment::new(name, Default::default());
        patch.status = Some(status);
        api.patch_status(
            name,
            &PatchParams::apply(field_manager::HANDLER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        self.count(1);
        Ok(())
    }

    /// Names of the existing enactments.
    pub async fn enactment_names(&self) -> Result<Vec<String>> {
        let api: Api<NodeNetworkConfigurationEnactment> = Api::all(self.client.clone());
        self.count(1);
        Ok(api
            .list(&Default::default())
            .await?
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect())
    }

    /// The policy's first True condition as (type, reason, message).
    pub async fn policy_state(&self, name: &str) -> Result<Option<(String, String, String)>> {
        let api: Api<NodeNetworkConfigurationPolicy> = Api::all(self.client.clone());
        let p = api.get(name).await?;
        self.count(1);
        Ok(p.status
            .and_then(|s| s.conditions.first_true().cloned())
            .map(|c| (c.type_, c.reason, c.message)))
    }

    /// Wait until the policy's first True condition has this type and message.
    pub async fn wait_policy(&self, name: &str, type_: &str, message: &str) -> Result<()> {
        Ok(eventually(
            &format!("policy {name} {type_} {message:?}"),
            Duration::from_secs(30),
            || async {
                let got = self.policy_state(name).await?;
                match got {
                    Some((t, _, m)) if t == type_ && m == message => Ok(Some(())),
                    other => Err(anyhow::anyhow!("policy {name} is {other:?}")),
                }
            },
        )
        .await?)
    }
}

/// GET a path of the controller's HTTP endpoint; (status code, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    let (head, body) = buf.split_once("\r\n\r\n").context("no HTTP header end")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .context("no status code")?
        .parse()?;
    Ok((code, body.to_owned()))
}
