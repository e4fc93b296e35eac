//! What every reconcile of this handler shares: the API client of its requests and its event
//! recorder, the node's network backend, the configuration, the probe factory and the caches of
//! this node's objects.
//!
//! The handler's requests (status, Lease and event writes, the reads beside them) go through
//! [`Requests`], a client of their own apart from the watches': each request is bounded
//! ([`REQUEST_TIMEOUT`]), and its connection pool is replaced after every apply
//! ([`Requests::renew`]). An apply changes the node's addresses: a connection the pool opened
//! from an address the apply added and its rollback removed (the slot heartbeat renews its
//! Lease during the apply) is dead, and reusing it waited for the request's write timeout
//! (295 s) while the enactment stayed unwritten. Watches keep the long-lived client; kube's
//! watcher restarts a watch that went silent.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::{NodeNetworkConfigurationEnactment, NodeNetworkState};
use knmstate_nm_backend::Backend;
use kube::Api;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::config::HandlerConfig;
use crate::error::{Error, Result};
use crate::probes::{ProbeEnv, ProbeFactory};

/// Bound of each API request of the handler (connecting, sending, and waiting for the answer).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The client of the handler's API requests and its event recorder, whose connection pool is
/// replaced after each apply.
pub struct Requests {
    /// How to reach the API server, with every request bounded by [`REQUEST_TIMEOUT`].
    config: kube::Config,
    /// The events' reporting instance.
    instance: String,
    /// The client and the recorder over it (one connection pool).
    current: Mutex<(kube::Client, Recorder)>,
}

impl Requests {
    /// A client of bounded requests to the API server of `config`, whose events come from
    /// `instance` of `knmstate-handler`.
    pub fn new(config: &kube::Config, instance: String) -> Result<Self> {
        let mut config = config.clone();
        config.connect_timeout = Some(REQUEST_TIMEOUT);
        config.write_timeout = Some(REQUEST_TIMEOUT);
        config.read_timeout = Some(REQUEST_TIMEOUT);
        // The timeout counts from the request, not from when its connection went idle.
        config.reset_reader_on_write = true;
        let current = Mutex::new(Self::build(&config, &instance)?);
        Ok(Self {
            config,
            instance,
            current,
        })
    }

    fn build(config: &kube::Config, instance: &str) -> Result<(kube::Client, Recorder)> {
        let client = kube::Client::try_from(config.clone()).map_err(Error::CreateClient)?;
        let recorder = knmstate_runtime::events::recorder(
            client.clone(),
            knmstate_api::names::field_manager::HANDLER,
            Some(instance.to_owned()),
        );
        Ok((client, recorder))
    }

    /// The client (its connections are pooled until the next [`renew`](Self::renew)).
    pub fn client(&self) -> kube::Client {
        self.lock().0.clone()
    }

    /// The event recorder, over the same connections.
    pub fn recorder(&self) -> Recorder {
        self.lock().1.clone()
    }

    /// Forget every pooled connection (after an apply, which may have removed the addresses
    /// they were opened from): the next requests connect afresh. Requests in flight finish on
    /// their connections.
    pub fn renew(&self) {
        match Self::build(&self.config, &self.instance) {
            Ok(fresh) => *self.lock() = fresh,
            // Built once already from the same settings; the old pool stays, bounded.
            Err(e) => tracing::warn!(error = %e.report(), "failed to renew the API connections"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (kube::Client, Recorder)> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Shared state of the handler's reconcilers, generic over the node's network backend.
pub struct Context<B: Backend> {
    /// The handler's API requests and events (cached reads come from the stores below).
    pub requests: Requests,
    /// How to reach the API server; probes make fresh clients from it.
    pub kube_config: kube::Config,
    /// The node's network.
    pub backend: B,
    /// Settings.
    pub config: HandlerConfig,
    /// Builds the probes of an apply.
    pub probes: Arc<dyn ProbeFactory>,
    /// This node's Node object.
    pub nodes: Store<Node>,
    /// Every policy.
    pub policies: Store<NodeNetworkConfigurationPolicy>,
    /// This node's enactments.
    pub enactments: Store<NodeNetworkConfigurationEnactment>,
    /// This node's NodeNetworkState.
    pub states: Store<NodeNetworkState>,
    /// Every Node's metadata, every enactment and the slot ledgers, for the slot path.
    pub caches: crate::caches::SlotCaches,
    /// The policies waiting for a slot.
    pub(crate) slot_waits: Arc<crate::slot_wait::SlotWaits>,
    /// Serialises applies on this node.
    pub(crate) apply_lock: tokio::sync::Mutex<()>,
    /// Asks for a NodeNetworkState refresh.
    pub(crate) nns_refresh: mpsc::Sender<()>,
    /// The last currentState written, with the NNS uid it was written to.
    pub(crate) nns_last: Mutex<Option<(String, Value)>>,
    /// The node's network state as last read, while no change came since.
    pub(crate) node_state: crate::nns::StateCache,
    /// Per policy: no apply attempt before this instant (retry backoff).
    pub(crate) not_before: Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Whether the kernel supports bridge VLAN filtering (probed once).
    pub(crate) bridge_vlan_filtering: tokio::sync::OnceCell<bool>,
    /// This handler process's slot incarnation and ordering waits.
    pub(crate) rollout: crate::slots::RolloutMemory,
    /// Becomes true when the handler is asked to stop.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Asks the policy controller to reconcile a policy again (drift detection).
    pub(crate) policy_recheck: mpsc::UnboundedSender<ObjectRef<NodeNetworkConfigurationPolicy>>,
    /// Policies whose drift was judged since the handler started (the first look re-applies).
    pub(crate) drift_looked: Mutex<std::collections::HashSet<String>>,
    /// Per enactment of this node: the `resourceVersion` this process last wrote or read from
    /// the API server. While the enactment cache shows that version, the cached object is what
    /// the API server holds, and a reconcile starts from it without a read.
    pub(crate) enactment_versions: Mutex<std::collections::HashMap<String, String>>,
}

impl<B: Backend> Context<B> {
    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.config.node_name
    }

    /// This node's Node object from the cache.
    pub fn node(&self) -> Result<Arc<Node>> {
        self.nodes
            .get(&ObjectRef::new(self.node_name()))
            .ok_or_else(|| Error::FindNode(self.node_name().to_owned()))
    }

    /// This node's enactment `name` from the cache, when the cache shows the version this
    /// process last wrote or read (so nobody wrote it since, and the cache is not behind).
    pub fn known_enactment(&self, name: &str) -> Option<NodeNetworkConfigurationEnactment> {
        let cached = self.enactments.get(&ObjectRef::new(name))?;
        let versions = self
            .enactment_versions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let known = versions.get(name)?;
        (cached.metadata.resource_version.as_ref() == Some(known)).then(|| (*cached).clone())
    }

    /// Remember the version of this node's enactment as written or read (see
    /// [`Context::known_enactment`]).
    pub fn remember_enactment(&self, e: &NodeNetworkConfigurationEnactment) {
        if let (Some(name), Some(version)) = (&e.metadata.name, &e.metadata.resource_version) {
            self.enactment_versions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(name.clone(), version.clone());
        }
    }

    /// Enactments API.
    pub fn enactment_api(&self) -> Api<NodeNetworkConfigurationEnactment> {
        Api::all(self.requests.client())
    }

    /// Policies API.
    pub fn policy_api(&self) -> Api<NodeNetworkConfigurationPolicy> {
        Api::all(self.requests.client())
    }

    /// NodeNetworkState API.
    pub fn state_api(&self) -> Api<NodeNetworkState> {
        Api::all(self.requests.client())
    }

    /// What the probes need.
    pub fn probe_env(&self) -> ProbeEnv {
        ProbeEnv {
            kube_config: self.kube_config.clone(),
            node_name: self.node_name().to_owned(),
        }
    }

    /// Whether the handler is stopping.
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Ask for a NodeNetworkState refresh (coalesced).
    pub fn request_nns_refresh(&self) {
        // A full channel already holds a pending refresh.
        let _ = self.nns_refresh.try_send(());
    }

    /// Ask for another reconcile of `policy` (drift detection; coalesced by the controller).
    pub fn recheck_policy(&self, policy: ObjectRef<NodeNetworkConfigurationPolicy>) {
        // Closed only while the handler stops.
        let _ = self.policy_recheck.send(policy);
    }

    /// Whether this is the first drift judgement of `policy` since the handler started
    /// (remembered from now on).
    pub fn first_drift_look(&self, policy: &str) -> bool {
        self.drift_looked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(policy.to_owned())
    }

    /// Whether to inject the default linux-bridge VLAN trunk on this node.
    pub async fn inject_bridge_vlan(&self) -> bool {
        match self.config.bridge_vlan {
            crate::config::BridgeVlanMode::Always => true,
            crate::config::BridgeVlanMode::Never => false,
            crate::config::BridgeVlanMode::Auto => self.kernel_bridge_vlan_filtering().await,
        }
    }

    /// Whether this node's kernel supports bridge VLAN filtering (probed once, unless the
    /// configuration states it).
    pub async fn kernel_bridge_vlan_filtering(&self) -> bool {
        *self
            .bridge_vlan_filtering
            .get_or_init(|| self.backend.supports_bridge_vlan_filtering())
            .await
    }
}
