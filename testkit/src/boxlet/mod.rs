//! The box's kubelet (binary `knmstate-boxlet`): runs the pods the DaemonSets and Deployments
//! in the API call for as processes of the cluster in a box, from their pod templates.
//!
//! Every second it lists Nodes, DaemonSets and Deployments, schedules their pods
//! ([`workloads`], [`schedule`]), and makes the running set match: a pod no longer called for
//! (node deselected, workload deleted, template changed) is stopped, a missing one started
//! ([`pod`] turns the template into processes, [`launch`] runs them: host-network pods inside
//! their node, others in a network namespace of their own). It then writes the workloads'
//! status as their controllers would, and the Endpoints of the Services it exposes
//! ([`services`]). With `pod_identity`, each pod runs as its `serviceAccountName` with a token
//! bound to its Pod object ([`identity`]). What it did goes to its log (tracing), each pod's output to
//! `<logs>/pod-<name>.log`. On SIGTERM it stops every pod.
//!
//! What it stands in for and how, for the end-to-end docs: `e2e/README.md`.

pub mod identity;
pub mod launch;
pub mod pod;
pub mod pods;
pub mod schedule;
pub mod services;
pub mod workloads;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use launch::{Netns, Runtime};
use pod::{PodIdentity, Source};
use pods::RunningPod;
use services::{Backends, Expose};
use workloads::{Counts, DesiredPod};

/// Field manager of the status and Endpoints the box writes.
pub const FIELD_MANAGER: &str = "knmstate-boxlet";

/// What the box kubelet runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// How processes are started.
    pub runtime: Runtime,
    /// Image → directory of the box's binaries of that image.
    pub images: BTreeMap<String, PathBuf>,
    /// Kubeconfig of host-network pods (the API as a node reaches it), whose credentials each
    /// pod's own token replaces ([`identity`]).
    pub node_kubeconfig: PathBuf,
    /// Kubeconfig of pods with their own network (the API at 127.0.0.1:6443 there), with each
    /// pod's own token likewise.
    pub pod_kubeconfig: PathBuf,
    /// Service ports served on the loopback.
    pub expose: Vec<Expose>,
    /// `<namespace>/<name>` of a Lease whose holder's pod is preferred behind a Service.
    pub leader_lease: Option<String>,
    /// Directory of the pods' logs.
    pub logs: PathBuf,
    /// Whether each pod runs as its ServiceAccount with a token bound to its Pod object
    /// ([`identity`]); otherwise with the base kubeconfigs' credentials and no Pod object.
    pub pod_identity: bool,
}

struct Lists {
    nodes: Vec<Node>,
    daemon_sets: Vec<DaemonSet>,
    deployments: Vec<Deployment>,
}

async fn lists(client: &Client) -> kube::Result<Lists> {
    let lp = ListParams::default();
    Ok(Lists {
        nodes: Api::<Node>::all(client.clone()).list(&lp).await?.items,
        daemon_sets: Api::<DaemonSet>::all(client.clone()).list(&lp).await?.items,
        deployments: Api::<Deployment>::all(client.clone())
            .list(&lp)
            .await?
            .items,
    })
}

fn node_ip(nodes: &[Node], name: &str) -> String {
    nodes
        .iter()
        .find(|n| n.name_any() == name)
        .and_then(|n| n.status.as_ref()?.addresses.clone())
        .and_then(|a| a.into_iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address)
        .unwrap_or_default()
}

fn data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    s.data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

/// The box kubelet's state.
pub struct Boxlet {
    client: Client,
    config: Config,
    pods: BTreeMap<String, RunningPod>,
    failed: BTreeMap<String, String>,
    backends: Backends,
    netns_seq: u32,
    reported: BTreeMap<String, Value>,
}

impl Boxlet {
    /// A box kubelet with nothing running.
    pub fn new(client: Client, config: Config) -> Self {
        Self {
            client,
            config,
            pods: BTreeMap::new(),
            failed: BTreeMap::new(),
            backends: Backends::default(),
            netns_seq: 0,
            reported: BTreeMap::new(),
        }
    }

    /// Run until `shutdown`, then stop every pod.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        for e in self.config.expose.clone() {
            let b = self.backends.clone();
            tokio::spawn(async move {
                let port = e.host_port;
                if let Err(err) = services::forward(e, b).await {
                    tracing::error!(port, "failed to serve the exposed Service port: {err}");
                }
            });
        }
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!("sync failed: {e:#}");
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        tracing::info!("stopping every pod");
        let rt = self.config.runtime.clone();
        let all = std::mem::take(&mut self.pods);
        futures::future::join_all(all.into_values().map(|p| p.stop(&rt))).await;
        Ok(())
    }

    async fn tick(&mut self) -> Result<()> {
        let l = lists(&self.client).await?;
        let desired = workloads::desired(&l.daemon_sets, &l.deployments, &l.nodes);
        let wanted: BTreeMap<&str, &DesiredPod> =
            desired.iter().map(|p| (p.name.as_str(), p)).collect();
        let rt = self.config.runtime.clone();
        let gone: Vec<(String, &str)> = self
            .pods
            .iter()
            .filter_map(|(name, p)| {
                let why = match wanted.get(name.as_str()) {
                    None => "no longer scheduled (workload gone or node not selected)",
                    Some(w) if w.hash != p.pod.hash || w.node != p.pod.node => {
                        "template changed (rolling)"
                    }
                    Some(_) => return None,
                };
                Some((name.clone(), why))
            })
            .collect();
        for (name, why) in gone {
            if let Some(p) = self.pods.remove(&name) {
                tracing::info!(pod = %name, node = %p.pod.node, owner = ?p.pod.owner, "stopping pod: {why}");
                let d = p.pod.clone();
                p.stop(&rt).await;
                if self.config.pod_identity
                    && let Err(e) = identity::release(&self.client, &d).await
                {
                    tracing::warn!(pod = %name, "failed to delete the Pod object: {e}");
                }
            }
        }
        for d in &desired {
            if !self.pods.contains_key(&d.name) {
                self.start(d, &l.nodes).await;
            }
        }
        self.refresh_secrets().await?;
        for p in self.pods.values_mut() {
            p.sync(&rt).await;
        }
        self.report(&l, &desired).await?;
        self.route().await
    }

    async fn secret_lookup(&self, namespace: &str) -> Result<(Vec<Secret>, Vec<ConfigMap>)> {
        let lp = ListParams::default();
        Ok((
            Api::<Secret>::namespaced(self.client.clone(), namespace)
                .list(&lp)
                .await?
                .items,
            Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
                .list(&lp)
                .await?
                .items,
        ))
    }

    async fn start(&mut self, d: &DesiredPod, nodes: &[Node]) {
        let (secrets, config_maps) = match self.secret_lookup(&d.owner.namespace).await {
            Ok(v) => v,
            Err(e) => return tracing::warn!(pod = %d.name, "failed to read Secrets: {e:#}"),
        };
        let lookup = |kind: &str, name: &str, key: &str| -> Option<String> {
            match kind {
                "secret" => secrets
                    .iter()
                    .find(|s| s.name_any() == name)
                    .and_then(|s| String::from_utf8(data(s).remove(key)?).ok()),
                _ => config_maps
                    .iter()
                    .find(|c| c.name_any() == name)?
                    .data
                    .as_ref()?
                    .get(key)
                    .cloned(),
            }
        };
        let host = d.host_network();
        let ip = node_ip(nodes, &d.node);
        let id = PodIdentity {
            namespace: d.owner.namespace.clone(),
            name: d.name.clone(),
            node: d.node.clone(),
            pod_ip: if host { ip.clone() } else { "127.0.0.1".into() },
            node_ip: ip,
        };
        let base = if host {
            &self.config.node_kubeconfig
        } else {
            &self.config.pod_kubeconfig
        };
        let dir = self.config.runtime.state.join("pods").join(&d.name);
        let kubeconfig = if self.config.pod_identity {
            let own = dir.join("kubeconfig");
            if let Err(e) = identity::provision(&self.client, d, base, &own).await {
                let category = e.category();
                let e = anyhow::Error::from(e);
                return tracing::warn!(pod = %d.name, "cannot give the pod its identity ({category}): {e:#}");
            }
            own
        } else {
            base.clone()
        };
        let injected = vec![
            (
                "PATH".to_owned(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            ),
            (
                "HOSTNAME".to_owned(),
                if host { d.node.clone() } else { d.name.clone() },
            ),
            ("KUBECONFIG".to_owned(), kubeconfig.display().to_string()),
        ];
        let plans = match pod::plan(&d.spec, &id, &self.config.images, &injected, &lookup) {
            Ok(p) => p,
            Err(e) => {
                let msg = format!("{} ({})", e, e.category());
                if self.failed.insert(d.name.clone(), msg.clone()).as_ref() != Some(&msg) {
                    tracing::warn!(pod = %d.name, "cannot start the pod: {msg}");
                }
                return;
            }
        };
        self.failed.remove(&d.name);
        let netns = if host {
            Netns::Node(d.node.clone())
        } else {
            self.netns_seq += 1;
            Netns::Own(format!(
                "{}-p{}",
                self.config.runtime.prefix, self.netns_seq
            ))
        };
        let ports: Vec<i32> = plans
            .iter()
            .flat_map(|c| c.ports.iter().map(|(_, n)| *n))
            .collect();
        let log = self.config.logs.join(format!("pod-{}.log", d.name));
        match self
            .config
            .runtime
            .sandbox(&dir, netns.clone(), &ports, &log)
            .await
        {
            Ok(sandbox) => {
                tracing::info!(pod = %d.name, node = %d.node, owner = ?d.owner, ?netns, "pod scheduled");
                self.pods.insert(
                    d.name.clone(),
                    RunningPod::new(d.clone(), sandbox, plans, log),
                );
            }
            Err(e) => tracing::warn!(pod = %d.name, "failed to make the pod sandbox: {e}"),
        }
    }

    /// Write every Secret volume's keys as files (again when the Secret changes, as the
    /// kubelet updates them: the webhook re-reads its rotated certificate).
    async fn refresh_secrets(&self) -> Result<()> {
        let namespaces: BTreeSet<String> = self
            .pods
            .values()
            .map(|p| p.pod.owner.namespace.clone())
            .collect();
        for ns in namespaces {
            let secrets = Api::<Secret>::namespaced(self.client.clone(), &ns)
                .list(&ListParams::default())
                .await?
                .items;
            for p in self.pods.values().filter(|p| p.pod.owner.namespace == ns) {
                for c in &p.containers {
                    for m in &c.plan.mounts {
                        let Source::Secret { name, items } = &m.source else {
                            continue;
                        };
                        let Some(s) = secrets.iter().find(|s| &s.name_any() == name) else {
                            continue;
                        };
                        let dir = self.config.runtime.volume_dir(&p.sandbox, m, &p.pod.node);
                        let mut files = data(s);
                        if !items.is_empty() {
                            files = items
                                .iter()
                                .filter_map(|(k, path)| Some((path.clone(), files.remove(k)?)))
                                .collect();
                        }
                        for (file, bytes) in files {
                            let path = dir.join(&file);
                            if std::fs::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
                                std::fs::create_dir_all(&dir)?;
                                let tmp = dir.join(format!(".{file}.tmp"));
                                std::fs::write(&tmp, &bytes)?;
                                std::fs::rename(&tmp, &path)?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Write `status` unless it is what this box last wrote for this very object: keyed by
    /// uid, so a workload deleted and created again under its name gets its status even when
    /// it equals the old one's.
    async fn patch_status<K>(
        &mut self,
        api: Api<K>,
        meta: &kube::api::ObjectMeta,
        status: Value,
    ) -> Result<()>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let name = meta.name.as_deref().unwrap_or_default();
        let uid = meta.uid.as_deref().unwrap_or_default();
        let key = format!("{}/{}/{name}/{uid}", K::kind(&()), api.resource_url());
        if self.reported.get(&key) == Some(&status) {
            return Ok(());
        }
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await?;
        self.reported.insert(key, status);
        Ok(())
    }

    fn counts(&self, desired: &[DesiredPod], owner: &workloads::Owner, hash: &str) -> Counts {
        let n = |c: usize| i32::try_from(c).unwrap_or(i32::MAX);
        let running: Vec<&RunningPod> = self
            .pods
            .values()
            .filter(|p| &p.pod.owner == owner)
            .collect();
        Counts {
            desired: n(desired.iter().filter(|d| &d.owner == owner).count()),
            running: n(running.len()),
            updated: n(running.iter().filter(|p| p.pod.hash == hash).count()),
            ready: n(running.iter().filter(|p| p.ready()).count()),
        }
    }

    async fn report(&mut self, l: &Lists, desired: &[DesiredPod]) -> Result<()> {
        let owner = workloads::owner;
        for ds in &l.daemon_sets {
            let o = owner("DaemonSet", &ds.metadata);
            let c = self.counts(desired, &o, &workloads::template_hash(&ds.spec.template));
            let status = workloads::daemon_set_status(c, ds.metadata.generation);
            self.patch_status(
                Api::<DaemonSet>::namespaced(self.client.clone(), &o.namespace),
                &ds.metadata,
                status,
            )
            .await?;
        }
        for d in &l.deployments {
            let o = owner("Deployment", &d.metadata);
            let c = self.counts(desired, &o, &workloads::template_hash(&d.spec.template));
            let status = workloads::deployment_status(c, d.metadata.generation);
            self.patch_status(
                Api::<Deployment>::namespaced(self.client.clone(), &o.namespace),
                &d.metadata,
                status,
            )
            .await?;
        }
        Ok(())
    }

    /// Point each exposed Service port at its ready pods and write its Endpoints.
    async fn route(&mut self) -> Result<()> {
        let leader = match self
            .config
            .leader_lease
            .as_deref()
            .and_then(|l| l.split_once('/'))
        {
            Some((ns, name)) => Api::<Lease>::namespaced(self.client.clone(), ns)
                .get_opt(name)
                .await?
                .and_then(|l| l.spec?.holder_identity),
            None => None,
        };
        let pods: Vec<&RunningPod> = self.pods.values().collect();
        let mut table = BTreeMap::new();
        for e in &self.config.expose {
            let svc_api = Api::<Service>::namespaced(self.client.clone(), &e.namespace);
            let ep_api = Api::<k8s_openapi::api::core::v1::Endpoints>::namespaced(
                self.client.clone(),
                &e.namespace,
            );
            let Some(svc) = svc_api.get_opt(&e.service).await? else {
                if ep_api.get_opt(&e.service).await?.is_some() {
                    ep_api.delete(&e.service, &DeleteParams::default()).await?;
                }
                self.reported.remove(&format!("Endpoints/{}", e.service));
                continue;
            };
            let b = services::backends(&svc, e, &pods, leader.as_deref());
            let ep = services::endpoints(&svc, e, !b.is_empty());
            let key = format!("Endpoints/{}", e.service);
            if self.reported.get(&key) != Some(&ep) {
                ep_api
                    .patch(
                        &e.service,
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(&ep),
                    )
                    .await?;
                self.reported.insert(key, ep);
            }
            table.insert(e.host_port, b);
        }
        if let Ok(mut t) = self.backends.lock() {
            *t = table;
        }
        Ok(())
    }
}
