//! End-to-end: dry-run policies and drift reports. A dry run leaves every node's network as it
//! was (checked on the node) and shows each node's plan in its enactment; removing the
//! annotation applies it. Removing a bridge port by hand on a node raises the drift report
//! (status, Warning event, metric) within 2 s; with the re-apply opt-in the node is repaired
//! and Available again. Needs a cluster (`KUBECONFIG`), `KNMSTATE_E2E_NODE_EXEC` and
//! `KNMSTATE_E2E_METRICS_URL`; skips without them.

use std::time::{Duration, Instant};

use knmstate_testkit::cluster::{
    E2e, NodeExec, absent, condition, connect, http_get, is_true, metric_value, on_node, policy,
    skip,
};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

/// The suites of this file change the same nodes: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const DRY_RUN: &str = "nmstate.io/dry-run";
const REAPPLY: &str = "nmstate.io/reapply-on-drift";

/// Everything a case needs, or `None` (skipped).
async fn setup(what: &str) -> Option<(E2e, NodeExec, String)> {
    let e2e = connect(what).await?;
    let exec = NodeExec::from_env(what)?;
    let Ok(url) = std::env::var("KNMSTATE_E2E_METRICS_URL") else {
        skip(what, "KNMSTATE_E2E_METRICS_URL is not set");
        return None;
    };
    Some((e2e, exec, url))
}

async fn annotate(e2e: &E2e, name: &str, key: &str, value: Option<&str>) -> anyhow::Result<()> {
    e2e.nncp
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
        )
        .await?;
    Ok(())
}

/// The reason of `Available` when it is `True`.
fn available_reason(obj: &DynamicObject) -> Option<String> {
    condition(obj, "Available")
        .filter(|c| c["status"] == "True")
        .and_then(|c| c["reason"].as_str().map(str::to_owned))
}

/// The controller of `iface` on `node`, as the kernel says (`ip -o link show`).
fn master_of(exec: &NodeExec, node: &str, iface: &str) -> anyhow::Result<Option<String>> {
    let out = exec.run(node, &["ip", "-o", "link", "show", iface])?;
    Ok(out
        .split_whitespace()
        .skip_while(|w| *w != "master")
        .nth(1)
        .map(str::to_owned))
}

/// Whether `iface` exists on `node`.
fn exists(exec: &NodeExec, node: &str, iface: &str) -> bool {
    exec.run(node, &["ip", "link", "show", iface]).is_ok()
}

/// A bridge over the spare interface eth2, on every node, as a dry run.
#[tokio::test]
async fn a_dry_run_changes_no_node_shows_each_plan_and_applies_once_the_annotation_goes()
-> anyhow::Result<()> {
    let Some((e2e, exec, _)) = setup("dry run").await else {
        return Ok(());
    };
    let _serial = SERIAL.lock().await;
    let name = "e2e-dry-run";
    let nodes = e2e.handler_nodes().await?;
    e2e.delete_policy(name).await?;
    for node in &nodes {
        anyhow::ensure!(
            !exists(&exec, node, "br-dry"),
            "{node}: br-dry exists already"
        );
    }
    let spec = json!({
        "maxUnavailable": "100%",
        "desiredState": {"interfaces": [{
            "name": "br-dry", "type": "linux-bridge", "state": "up",
            "ipv4": {"enabled": false}, "ipv6": {"enabled": false},
            "bridge": {"options": {"stp": {"enabled": false}}, "port": [{"name": "eth2"}]}}]}
    });
    let mut p = policy(name, spec);
    p.metadata.annotations = Some([(DRY_RUN.to_owned(), "true".to_owned())].into());
    e2e.apply_policy(&p).await?;
    let planned = e2e
        .wait_until(
            "every node to plan the dry run",
            Duration::from_secs(60),
            || async {
                let p = e2e.nncp.get(name).await?;
                let es = e2e.enactments(name).await?;
                let all = es.len() == nodes.len()
                    && es
                        .values()
                        .all(|e| available_reason(e).as_deref() == Some("ConfigurationPlanned"));
                Ok(
                    (all && available_reason(&p).as_deref() == Some("ConfigurationPlanned"))
                        .then_some(es),
                )
            },
        )
        .await?;
    for (node, e) in &planned {
        let plan = &e.data["status"]["plan"];
        eprintln!("{node}: status.plan = {plan}");
        let summary: Vec<&str> = plan["summary"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        anyhow::ensure!(
            summary.contains(&"create interface br-dry (linux-bridge)"),
            "{node}: {summary:?}"
        );
        anyhow::ensure!(
            e.data["status"].get("lastApply").is_none(),
            "{node}: applied"
        );
        // Checked on the node: nothing changed.
        anyhow::ensure!(!exists(&exec, node, "br-dry"), "{node}: br-dry was created");
        anyhow::ensure!(
            master_of(&exec, node, "eth2")?.is_none(),
            "{node}: eth2 got a controller"
        );
    }

    // Removing the annotation applies it.
    annotate(&e2e, name, DRY_RUN, None).await?;
    let applied = e2e
        .wait_until(
            "the policy to be applied",
            Duration::from_secs(120),
            || async {
                let p = e2e.nncp.get(name).await?;
                Ok(
                    (available_reason(&p).as_deref() == Some("SuccessfullyConfigured"))
                        .then_some(()),
                )
            },
        )
        .await;
    let on_nodes: Vec<_> = nodes
        .iter()
        .map(|n| master_of(&exec, n, "eth2").map(|m| (n.clone(), m)))
        .collect();
    e2e.delete_policy(name).await?;
    e2e.restore(
        "e2e-dry-run-undo",
        None,
        json!({"interfaces": [absent("br-dry")]}),
    )
    .await?;
    applied?;
    for r in on_nodes {
        let (node, master) = r?;
        anyhow::ensure!(
            master.as_deref() == Some("br-dry"),
            "{node}: eth2 under {master:?}"
        );
    }
    Ok(())
}

/// The enactment of `policy` on `node` once `check` holds, polled every 100 ms.
async fn enactment_when(
    e2e: &E2e,
    policy: &str,
    node: &str,
    timeout: Duration,
    check: impl Fn(&DynamicObject) -> bool,
) -> anyhow::Result<DynamicObject> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(e) = e2e.enactments(policy).await?.remove(node)
            && check(&e)
        {
            return Ok(e);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{policy} on {node}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn drifted_sample(url: &str, node: &str, policy: &str) -> anyhow::Result<Option<f64>> {
    let text = http_get(url).await?;
    Ok(metric_value(
        &text,
        "knmstate_enactments_drifted",
        &[("node", node), ("policy", policy)],
    ))
}

async fn drift_warnings(e2e: &E2e, policy: &str) -> anyhow::Result<Vec<String>> {
    let gvk = GroupVersionKind::gvk("events.k8s.io", "v1", "Event");
    let events: kube::Api<DynamicObject> =
        kube::Api::all_with(e2e.client.clone(), &ApiResource::from_gvk(&gvk));
    Ok(events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|ev| {
            ev.data["reason"] == "ConfigurationDrifted"
                && ev.data["type"] == "Warning"
                && ev.data["regarding"]["name"] == policy
        })
        .filter_map(|ev| ev.data["note"].as_str().map(str::to_owned))
        .collect())
}

/// The linux-bridge example (every node: br1 over eth1); eth1 leaves br1 by hand on one node.
#[tokio::test]
async fn drift_is_reported_within_2s_and_repaired_when_the_policy_opts_in() -> anyhow::Result<()> {
    let Some((e2e, exec, url)) = setup("drift").await else {
        return Ok(());
    };
    let _serial = SERIAL.lock().await;
    let nodes = e2e.handler_nodes().await?;
    let node = nodes
        .iter()
        .find(|n| n.ends_with("node2"))
        .unwrap_or(&nodes[0])
        .clone();
    let example: Value = serde_saphyr::from_str(&std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/linux-bridge.yaml"),
    )?)?;
    let name = example["metadata"]["name"]
        .as_str()
        .expect("the example's name")
        .to_owned();
    // As the example is (the box applied it already: then nothing changes).
    e2e.apply_policy(&policy(&name, example["spec"].clone()))
        .await?;
    let e = e2e
        .wait_until(
            "the bridge to be applied",
            Duration::from_secs(120),
            || async {
                let e = e2e.enactments(&name).await?.remove(&node);
                Ok(e.filter(|e| is_true(e, "Available")))
            },
        )
        .await?;
    let applied_at = e.data["status"]["lastApply"]["startTime"].clone();
    anyhow::ensure!(master_of(&exec, &node, "eth1")?.as_deref() == Some("br1"));
    let result = drift_then_repair(&e2e, &exec, &url, &name, &node, &applied_at).await;
    annotate(&e2e, &name, REAPPLY, None).await?;
    result
}

async fn drift_then_repair(
    e2e: &E2e,
    exec: &NodeExec,
    url: &str,
    name: &str,
    node: &str,
    applied_at: &Value,
) -> anyhow::Result<()> {
    // By hand, behind the handler's back. (`ip link set eth1 nomaster` does not last:
    // NetworkManager attaches the port it manages again at once.)
    let started = Instant::now();
    exec.run(node, &["nmcli", "device", "disconnect", "eth1"])?;
    let drifted = enactment_when(e2e, name, node, Duration::from_secs(2), |e| {
        e.data["status"]["drift"]["paths"].is_array()
    })
    .await?;
    let took = started.elapsed();
    let drift = &drifted.data["status"]["drift"];
    eprintln!("{node}: drift reported after {took:?}: {drift}");
    anyhow::ensure!(
        drift["paths"] == json!(["interfaces[br1].bridge.port"]),
        "{drift}"
    );
    anyhow::ensure!(drift["reapply"] != true, "{drift}");
    anyhow::ensure!(is_true(&drifted, "Available"), "no condition moves");
    let notes = e2e
        .wait_until("the Warning event", Duration::from_secs(10), || async {
            let n = drift_warnings(e2e, name).await?;
            Ok((!n.is_empty()).then_some(n))
        })
        .await?;
    eprintln!("event: {notes:?}");
    let sample = e2e
        .wait_until("the drift metric", Duration::from_secs(10), || async {
            Ok(drifted_sample(url, node, name).await?.filter(|v| *v == 1.0))
        })
        .await?;
    eprintln!("knmstate_enactments_drifted{{node={node:?},policy={name:?}}} {sample}");
    // Reported only: the node stays as it is.
    tokio::time::sleep(Duration::from_secs(2)).await;
    anyhow::ensure!(
        master_of(exec, node, "eth1")?.is_none(),
        "repaired without the opt-in"
    );
    let e = e2e.enactments(name).await?.remove(node).expect("enactment");
    anyhow::ensure!(e.data["status"]["lastApply"]["startTime"] == *applied_at);

    // The opt-in repairs it through the ordinary apply.
    annotate(e2e, name, REAPPLY, Some("true")).await?;
    let repaired = enactment_when(e2e, name, node, Duration::from_secs(60), |e| {
        is_true(e, "Available") && e.data["status"]["drift"]["paths"].is_null()
    })
    .await?;
    eprintln!(
        "{node}: repaired, lastApply = {}",
        repaired.data["status"]["lastApply"]
    );
    anyhow::ensure!(repaired.data["status"]["lastApply"]["startTime"] != *applied_at);
    anyhow::ensure!(
        master_of(exec, node, "eth1")?.as_deref() == Some("br1"),
        "eth1 is not back under br1"
    );
    e2e.wait_until(
        "the drift metric to go",
        Duration::from_secs(10),
        || async {
            Ok(drifted_sample(url, node, name)
                .await?
                .is_none()
                .then_some(()))
        },
    )
    .await
}
