//! `kubectl-nmstate plan` and `status` against the API stand-in, run as the binary with a
//! kubeconfig, as kubectl runs it.

mod support;

use std::path::Path;
use std::process::Output;

use anyhow::Result;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use knmstate_api::names::{enactment as e, policy as p};
use knmstate_api::shared::{
    ApplyReport, NodeNetworkConfigurationEnactmentStatus, NodeNetworkConfigurationPolicyStatus,
    ProbeReport,
};
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::{NodeNetworkConfigurationEnactment, NodeNetworkState};
use knmstate_api::{ConditionList, ConditionStatus};
use knmstate_testkit::builders;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::Cluster;

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-nmstate");

fn node_state(controller_of_eth1: Option<&str>) -> Value {
    let mut eth1 = json!({"name": "eth1", "type": "ethernet", "state": "up", "mtu": 1500});
    if let Some(c) = controller_of_eth1 {
        eth1["controller"] = json!(c);
    }
    json!({
        "interfaces": [
            {"name": "eth0", "type": "ethernet", "state": "up", "ipv4": {"enabled": true, "dhcp": true}},
            eth1
        ],
        "routes": {"config": [], "running": [{"destination": "0.0.0.0/0", "next-hop-address": "198.18.0.1",
            "next-hop-interface": "eth0", "table-id": 254}]},
        "dns-resolver": {"config": {}, "running": {"server": ["198.18.0.1"]}}
    })
}

fn bridge() -> Value {
    json!({"interfaces": [{"name": "br1", "type": "linux-bridge", "state": "up",
        "bridge": {"port": [{"name": "eth1"}]}}]})
}

async fn kubectl_nmstate(kubeconfig: &Path, args: &[&str]) -> Result<Output> {
    Ok(tokio::process::Command::new(BIN)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .await?)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Three nodes labelled `net=a` (n3 without a handler) and n4 unlabelled; n1, n2, n4 report states.
async fn fleet(c: &Cluster) -> Result<std::path::PathBuf> {
    for (n, labels) in [
        ("n1", &[("net", "a")][..]),
        ("n2", &[("net", "a")]),
        ("n3", &[("net", "a")]),
        ("n4", &[]),
    ] {
        c.add_node(n, labels).await?;
    }
    let states: Api<NodeNetworkState> = Api::all(c.client.clone());
    for n in ["n1", "n2", "n4"] {
        let nns = builders::node_network_state(n, node_state(None));
        states.create(&PostParams::default(), &nns).await?;
        states
            .patch_status(
                n,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": nns.status})),
            )
            .await?;
    }
    let kubeconfig = c.dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, c.server.kubeconfig_yaml())?;
    Ok(kubeconfig)
}

/// The handler DaemonSet as the operator renders it, with short probe timings.
async fn handler_daemon_set(c: &Cluster) -> Result<()> {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(c.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "nmstate"}}))?,
        )
        .await?;
    let sets: Api<k8s_openapi::api::apps::v1::DaemonSet> =
        Api::namespaced(c.client.clone(), "nmstate");
    let labels = json!({"app": "kubernetes-nmstate", "component": "kubernetes-nmstate-handler"});
    let ds = json!({
        "metadata": {"name": "nmstate-handler", "namespace": "nmstate"},
        "spec": {"selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "nmstate-handler", "image": "knmstate", "env": [
                {"name": "PROBE_TIMEOUT_SECONDS", "value": "15"},
                {"name": "CHECKPOINT_TIMEOUT_SECONDS", "value": "90"},
                {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
            ]}]}
        }}
    });
    sets.create(&PostParams::default(), &serde_json::from_value(ds)?)
        .await?;
    Ok(())
}

#[tokio::test]
async fn plan_shows_selected_nodes_pace_and_per_node_changes() -> Result<()> {
    let c = Cluster::start().await?;
    let kubeconfig = fleet(&c).await?;
    let mut policy = builders::policy("linux-bridge", &[("net", "a")], bridge());
    policy.spec.max_unavailable = Some(IntOrString::Int(1));
    let policies: Api<NodeNetworkConfigurationPolicy> = Api::all(c.client.clone());
    policies.create(&PostParams::default(), &policy).await?;

    handler_daemon_set(&c).await?;

    let out = kubectl_nmstate(&kubeconfig, &["plan", "linux-bridge", "-o", "json"]).await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plans: Value = serde_json::from_str(&stdout(&out))?;
    let plan = &plans[0];
    assert_eq!(plan["selectedNodes"], json!(["n1", "n2"]));
    assert_eq!(plan["withoutHandler"], json!(["n3"]));
    assert_eq!(
        (plan["atOnce"].as_u64(), plan["rounds"].as_u64()),
        (Some(1), Some(2))
    );
    let n2 = &plan["nodes"][1];
    assert_eq!(n2["node"], "n2");
    assert_eq!(n2["plan"]["ports"], json!([{"port": "eth1", "to": "br1"}]));
    assert_eq!(n2["plan"]["interfaces"][0]["name"], "br1");
    assert_eq!(plan["handlerSettings"], "nmstate/nmstate-handler");
    assert_eq!(
        n2["checkpointTimeoutSeconds"], 90,
        "the handlers' own checkpoint timeout"
    );
    assert_eq!(
        n2["probes"],
        json!(["default-gateway", "dns", "api-server", "node-readiness"])
    );

    let out = kubectl_nmstate(&kubeconfig, &["plan", "linux-bridge", "--node", "n2"]).await?;
    let text = stdout(&out);
    assert!(text.contains("Node n2 (Ready)"), "{text}");
    assert!(!text.contains("Node n1"), "{text}");
    assert!(
        text.lines().any(|l| l.contains("attach")
            && l.contains("port eth1")
            && l.contains("becomes a port of br1")),
        "{text}"
    );
    assert!(text.contains("at most 1 node(s) at once"), "{text}");

    let out = kubectl_nmstate(&kubeconfig, &["plan", "linux-bridge", "-l", "net=b"]).await?;
    assert!(!stdout(&out).contains("Node n"), "{}", stdout(&out));
    c.server.shutdown().await;
    Ok(())
}

fn conditions(active: &str, reason: &str, message: &str, all: &[&str]) -> ConditionList {
    let mut l = ConditionList::default();
    for t in all {
        let (status, r, m) = if *t == active {
            (ConditionStatus::True, reason, message)
        } else {
            (ConditionStatus::False, "", "")
        };
        l.set(t, status, r, m, builders::now());
    }
    l
}

async fn enact(
    c: &Cluster,
    node: &str,
    status: NodeNetworkConfigurationEnactmentStatus,
) -> Result<()> {
    let api: Api<NodeNetworkConfigurationEnactment> = Api::all(c.client.clone());
    let en = builders::enactment(node, "linux-bridge");
    let name = en.metadata.name.clone().unwrap_or_default();
    api.create(&PostParams::default(), &en).await?;
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn status_lays_out_each_node_and_watch_ends_with_the_verdict() -> Result<()> {
    let c = Cluster::start().await?;
    let kubeconfig = fleet(&c).await?;
    let policies: Api<NodeNetworkConfigurationPolicy> = Api::all(c.client.clone());
    let created = policies
        .create(
            &PostParams::default(),
            &builders::policy("linux-bridge", &[("net", "a")], bridge()),
        )
        .await?;
    let generation = created.metadata.generation;
    let probe = |name: &str, succeeded| ProbeReport {
        name: name.into(),
        succeeded,
        duration_seconds: 0.2,
        message: if succeeded {
            String::new()
        } else {
            format!("probe {name} failed: unreachable")
        },
    };
    enact(
        &c,
        "n1",
        NodeNetworkConfigurationEnactmentStatus {
            policy_generation: generation,
            conditions: conditions(e::AVAILABLE, e::REASON_SUCCESS, "", &e::TYPES),
            last_apply: Some(ApplyReport {
                duration_seconds: 1.5,
                probes: vec![probe("default-gateway", true), probe("api-server", true)],
                ..ApplyReport::default()
            }),
            ..Default::default()
        },
    )
    .await?;
    enact(
        &c,
        "n2",
        NodeNetworkConfigurationEnactmentStatus {
            policy_generation: generation,
            conditions: conditions(
                e::FAILING,
                e::REASON_FAILED,
                "rolled back: probe default-gateway failed",
                &e::TYPES,
            ),
            last_apply: Some(ApplyReport {
                duration_seconds: 9.0,
                rolled_back: true,
                rollback_reason: "probe default-gateway failed".into(),
                probes: vec![probe("default-gateway", false)],
                ..ApplyReport::default()
            }),
            ..Default::default()
        },
    )
    .await?;
    let status = NodeNetworkConfigurationPolicyStatus {
        conditions: conditions(
            p::DEGRADED,
            p::REASON_FAILED,
            "1/2 nodes failed to configure",
            &p::TYPES,
        ),
        ..Default::default()
    };
    policies
        .patch_status(
            "linux-bridge",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await?;

    let out = kubectl_nmstate(&kubeconfig, &["status", "linux-bridge"]).await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert!(
        text.contains("Policy linux-bridge (generation 1): Degraded / FailedToConfigure"),
        "{text}"
    );
    assert!(text.contains("2/2 nodes done, settled"), "{text}");
    let n2 = text
        .lines()
        .find(|l| l.starts_with("n2 "))
        .unwrap_or_default();
    assert!(
        n2.contains("Failing")
            && n2.contains("default-gateway FAILED")
            && n2.contains("probe default-gateway failed"),
        "{text}"
    );
    assert!(
        text.contains("n2 probe default-gateway: probe default-gateway failed: unreachable\n"),
        "{text}"
    );
    let n1 = text
        .lines()
        .find(|l| l.starts_with("n1 "))
        .unwrap_or_default();
    assert!(
        n1.contains("Available") && n1.contains("1s") && n1.contains("all 2 ok"),
        "{text}"
    );

    let out = kubectl_nmstate(&kubeconfig, &["status", "linux-bridge", "-o", "yaml"]).await?;
    let view: Value = serde_saphyr::from_str(&stdout(&out))?;
    assert_eq!(
        view["nodes"][1]["rollbackReason"],
        "probe default-gateway failed"
    );
    assert_eq!(view["settled"], true);

    let out = kubectl_nmstate(
        &kubeconfig,
        &["status", "linux-bridge", "--watch", "--timeout", "10"],
    )
    .await?;
    assert_eq!(
        out.status.code(),
        Some(1),
        "a watch that settles Degraded fails: {}",
        stdout(&out)
    );
    c.server.shutdown().await;
    Ok(())
}
