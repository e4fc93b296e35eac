//! The controller's memory at a large cluster's size: N Ready Nodes, P policies that each
//! select every node, and their N×P enactments, each Available with the status a handler
//! writes (conditions, the rendered desired state, `lastApply` with probes and steps), written
//! to the API stand-in, with a NodeNetworkState per node; then the controller binary runs against it as a process of its own
//! (production settings, plain-HTTP metrics), and its resident memory is read from
//! `/proc/<pid>/status` once it has written every policy's status, and again after a settle
//! window.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use knmstate_api::ConditionStatus;
use knmstate_api::names::policy as policy_conditions;
use knmstate_api::shared::{
    ApplyReport, ApplySteps, NodeNetworkConfigurationEnactmentStatus, ProbeReport,
};
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::{NodeNetworkConfigurationEnactment, NodeNetworkState};
use knmstate_state_engine::conditions::EnactmentTransition;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};

use crate::apiserver::Config;
use crate::apiserver::nmstate::start_with_crds;
use crate::builders;

/// Concurrent requests while writing the objects.
const CONCURRENCY: usize = 64;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Census {
    /// Nodes.
    pub nodes: usize,
    /// Policies, each selecting every node.
    pub policies: usize,
    /// How long to watch the controller once it wrote every policy's status.
    pub settle: Duration,
    /// The controller binary.
    pub controller: PathBuf,
}

/// The controller's memory, in MiB.
#[derive(Debug, Clone)]
pub struct Memory {
    /// Enactments written.
    pub enactments: usize,
    /// How long writing the objects took.
    pub populate: Duration,
    /// From the controller's start until every policy's status was written.
    pub aggregated_after: Duration,
    /// Resident memory then.
    pub rss_ready: f64,
    /// Resident memory after the settle window.
    pub rss_settled: f64,
    /// Peak resident memory over the whole run.
    pub peak: f64,
}

/// Write the objects, run the controller, read its memory.
pub async fn run(census: &Census) -> Result<Memory> {
    let config = Config {
        event_window: 20_000,
        ..Config::default()
    };
    let (server, client) = start_with_crds(config).await?;
    let dir =
        std::env::temp_dir().join(format!("knmstate-controller-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = dir.join("kubeconfig");
    server.write_kubeconfig(&kubeconfig)?;
    let result = measure(census, &client, &kubeconfig).await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(
    census: &Census,
    client: &kube::Client,
    kubeconfig: &std::path::Path,
) -> Result<Memory> {
    let started = Instant::now();
    let nodes = add_nodes(client, census.nodes).await?;
    let policies = add_policies(client, census.policies).await?;
    let enactments = add_enactments(client, &nodes, &policies).await?;
    let populate = started.elapsed();
    eprintln!(
        "wrote {} nodes, {} policies, {enactments} enactments in {populate:.1?}",
        nodes.len(),
        policies.len()
    );

    let mut child = super::processes::spawn_controller(&census.controller, kubeconfig, "warn")?;
    let pid = child.id().context("the controller exited at once")?;
    let launched = Instant::now();
    let api: Api<NodeNetworkConfigurationPolicy> = Api::all(client.clone());
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the controller exited: {status}");
        }
        let list = api.list(&ListParams::default()).await?;
        let done = list
            .items
            .iter()
            .filter(|p| {
                p.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .is(policy_conditions::AVAILABLE, ConditionStatus::True)
                })
            })
            .count();
        if done == policies.len() {
            break;
        }
        if launched.elapsed() > Duration::from_mins(10) {
            bail!(
                "only {done} of {} policies Available after 10 minutes",
                policies.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let aggregated_after = launched.elapsed();
    let rss_ready = status_mib(pid, "VmRSS:")?;
    tokio::time::sleep(census.settle).await;
    let rss_settled = status_mib(pid, "VmRSS:")?;
    let peak = status_mib(pid, "VmHWM:")?;
    child.kill().await?;
    Ok(Memory {
        enactments,
        populate,
        aggregated_after,
        rss_ready,
        rss_settled,
        peak,
    })
}

/// A field of `/proc/<pid>/status` in kB, as MiB.
fn status_mib(pid: u32, field: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(kb / 1024.0)
}

/// A node's reported state: loopback, two ethernets (one with an address), DNS and routes.
fn current_state(i: usize) -> serde_json::Value {
    let ip = format!("198.18.{}.{}", i / 250, i % 250 + 1);
    serde_json::json!({
        "dns-resolver": {"running": {"server": ["198.18.255.53"]}, "config": {}},
        "routes": {"running": [{"destination": "0.0.0.0/0", "next-hop-address": "198.18.255.1",
                                "next-hop-interface": "eth0", "table-id": 254}], "config": []},
        "interfaces": [
            {"name": "lo", "type": "loopback", "state": "up", "mtu": 65536,
             "ipv4": {"enabled": true, "address": [{"ip": "127.0.0.1", "prefix-length": 8}]}},
            {"name": "eth0", "type": "ethernet", "state": "up", "mtu": 1500,
             "mac-address": "02:00:00:00:00:01",
             "ipv4": {"enabled": true, "dhcp": false, "address": [{"ip": ip, "prefix-length": 16}]},
             "ipv6": {"enabled": false}},
            {"name": "eth1", "type": "ethernet", "state": "up", "mtu": 1500,
             "mac-address": "02:00:00:00:00:02", "ipv4": {"enabled": false}, "ipv6": {"enabled": false}}
        ]
    })
}

/// `n` Ready nodes, each with its NodeNetworkState.
async fn add_nodes(client: &kube::Client, n: usize) -> Result<Vec<Node>> {
    let api: Api<Node> = Api::all(client.clone());
    let states: Api<NodeNetworkState> = Api::all(client.clone());
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let states = states.clone();
            async move {
                let name = format!("node-{i:04}");
                api.create(&PostParams::default(), &builders::node(&name, &[]))
                    .await?;
                let node = api
                    .patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(builders::node_status_patch(true)),
                    )
                    .await?;
                // The node's handler reports its state (the controller counts only nodes
                // with a NodeNetworkState as having a handler).
                let mut nns = builders::node_network_state(&name, current_state(i));
                nns.metadata.owner_references = node.controller_owner_ref(&()).map(|o| vec![o]);
                let status = nns.status.take();
                states.create(&PostParams::default(), &nns).await?;
                states
                    .patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(serde_json::json!({ "status": status })),
                    )
                    .await?;
                anyhow::Ok(node)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await
}

/// `n` policies selecting every node.
async fn add_policies(client: &kube::Client, n: usize) -> Result<Vec<String>> {
    let api: Api<NodeNetworkConfigurationPolicy> = Api::all(client.clone());
    let mut names = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("policy-{i:03}");
        let desired = serde_json::json!({"interfaces": [{
            "name": format!("br{i}"), "type": "linux-bridge", "state": "up",
            "bridge": {"options": {"stp": {"enabled": false}}, "port": [{"name": "eth1"}]},
            "ipv4": {"enabled": true, "dhcp": false,
                     "address": [{"ip": "198.18.0.1", "prefix-length": 24}]}}]});
        api.create(
            &PostParams::default(),
            &builders::policy(&name, &[], desired),
        )
        .await?;
        names.push(name);
    }
    Ok(names)
}

/// The enactment of every policy on every node, Available with a handler's status.
async fn add_enactments(
    client: &kube::Client,
    nodes: &[Node],
    policies: &[String],
) -> Result<usize> {
    let api: Api<NodeNetworkConfigurationEnactment> = Api::all(client.clone());
    let policy_api: Api<NodeNetworkConfigurationPolicy> = Api::all(client.clone());
    let mut written = 0;
    for policy in policies {
        let p = policy_api.get(policy).await?;
        let status = available_status(&p);
        futures::stream::iter(nodes)
            .map(|node| {
                let api = api.clone();
                let status = status.clone();
                async move {
                    let mut e = builders::enactment(&node.name_any(), policy);
                    e.metadata.owner_references = node.controller_owner_ref(&()).map(|o| vec![o]);
                    let name = e.name_any();
                    api.create(&PostParams::default(), &e).await?;
                    let body = serde_json::json!({"status": status});
                    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
                        .await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        written += nodes.len();
    }
    Ok(written)
}

/// What a handler writes for a committed apply of `policy`.
fn available_status(
    policy: &NodeNetworkConfigurationPolicy,
) -> NodeNetworkConfigurationEnactmentStatus {
    let now = builders::now();
    let mut status = NodeNetworkConfigurationEnactmentStatus {
        desired_state: policy.spec.desired_state.clone(),
        policy_generation: policy.metadata.generation,
        last_apply: Some(ApplyReport {
            start_time: Some(now.clone()),
            duration_seconds: 0.4,
            probes: ["default-gateway", "dns", "api-server", "node-readiness"]
                .into_iter()
                .map(|name| ProbeReport {
                    name: name.to_owned(),
                    duration_seconds: 0.02,
                    succeeded: true,
                    ..ProbeReport::default()
                })
                .collect(),
            steps: Some(ApplySteps::default()),
            slot_claim: Some("0123456789abcdef".to_owned()),
            ..ApplyReport::default()
        }),
        ..NodeNetworkConfigurationEnactmentStatus::default()
    };
    EnactmentTransition::Progressing.apply(&mut status.conditions, &now);
    EnactmentTransition::Success.apply(&mut status.conditions, &now);
    status
}
