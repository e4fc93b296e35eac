//! End-to-end: every policy in `examples/` on one node. Where the node can do what the example
//! asks, it becomes Available; where it cannot (a kernel without bonds, VLANs or bridge VLAN
//! filtering, no Open vSwitch), the policy is Degraded with a message that says why. What the
//! node can do is found out on the node itself, so the expectations hold on any kernel. Needs a
//! cluster (`KUBECONFIG`) and `KNMSTATE_E2E_NODE_EXEC`; skips without them.

use std::path::PathBuf;
use std::time::Duration;

use knmstate_e2e::cluster::{E2e, NodeExec, active_condition, connect, is_true, on_node, policy};
use serde_json::{Value, json};

/// What a node offers, probed on the node.
#[derive(Debug)]
struct Support {
    bond: bool,
    vlan: bool,
    bridge_vlan_filtering: bool,
    ovs: bool,
}

fn probe_link(exec: &NodeExec, node: &str, args: &str) -> bool {
    let script = format!("ip link add e2eprobe0 {args} && ip link del e2eprobe0");
    exec.run(node, &["sh", "-c", &script]).is_ok()
}

fn support(exec: &NodeExec, node: &str) -> Support {
    Support {
        bond: probe_link(exec, node, "type bond"),
        vlan: probe_link(exec, node, "link lo type vlan id 42"),
        bridge_vlan_filtering: probe_link(exec, node, "type bridge vlan_filtering 1"),
        ovs: exec
            .run(node, &["sh", "-c", "command -v ovs-vswitchd"])
            .is_ok(),
    }
}

/// What an example needs that a node may lack, as the phrases a clear failure message names.
fn lacking(desired: &Value, s: &Support) -> Option<&'static str> {
    let ifaces = desired["interfaces"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for i in &ifaces {
        let t = i["type"].as_str().unwrap_or_default();
        match t {
            "bond" if !s.bond => return Some("bond"),
            "vlan" if !s.vlan => return Some("vlan"),
            "ovs-bridge" | "ovs-interface" if !s.ovs => return Some("ovs"),
            "linux-bridge" if !s.bridge_vlan_filtering => {
                // Ports without an explicit `vlan` get the default trunk, which needs VLAN
                // filtering; `vlan: {}` opts out.
                let ports = i["bridge"]["port"].as_array().cloned().unwrap_or_default();
                if ports.iter().any(|p| p.get("vlan") != Some(&json!({}))) {
                    return Some("vlan");
                }
            }
            _ => {}
        }
    }
    None
}

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Undo whatever the examples configure on `node`.
async fn reset(e2e: &E2e, node: &str) -> anyhow::Result<()> {
    e2e.restore(
        "e2e-example-reset",
        Some(on_node(node)),
        json!({
            "interfaces": [
                {"name": "bond0.102", "state": "absent"},
                {"name": "eth1.102", "state": "absent"},
                {"name": "bond0", "state": "absent"},
                {"name": "br1", "state": "absent"},
                {"name": "ovs0", "state": "absent"},
                {"name": "eth1", "type": "ethernet", "state": "up",
                 "ipv4": {"enabled": false}, "ipv6": {"enabled": false}, "lldp": {"enabled": false}},
                {"name": "eth2", "type": "ethernet", "state": "up",
                 "ipv4": {"enabled": false}, "ipv6": {"enabled": false}}
            ],
            "routes": {"config": [{"destination": "198.19.14.0/24", "state": "absent"}]},
            "dns-resolver": {"config": {"server": [], "search": []}}
        }),
    )
    .await
}

#[tokio::test]
async fn every_example_is_available_or_says_clearly_why_not() -> anyhow::Result<()> {
    let Some(e2e) = connect("examples").await else {
        return Ok(());
    };
    let Some(exec) = NodeExec::from_env("examples") else {
        return Ok(());
    };
    // A worker, so that the worker-selector example selects it too.
    let nodes = e2e.handler_nodes().await?;
    let node = nodes.last().expect("a node").clone();
    let s = support(&exec, &node);
    eprintln!("{node}: {s:?}");
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "examples not found");
    let mut failures = Vec::new();
    let mut report = Vec::new();
    for file in &files {
        let example: Value = serde_saphyr::from_str(&std::fs::read_to_string(file)?)?;
        let stem = file.file_stem().unwrap_or_default().to_string_lossy();
        let name = format!("e2e-ex-{stem}");
        let mut spec = example["spec"].clone();
        if spec.get("nodeSelector").is_some() {
            // Keep the example's selector and add the node's name to it.
            spec["nodeSelector"]["kubernetes.io/hostname"] = json!(node);
        } else {
            spec["nodeSelector"] = on_node(&node);
        }
        let expect_missing = lacking(&spec["desiredState"], &s);
        e2e.delete_policy(&name).await?;
        e2e.apply_policy(&policy(&name, spec)).await?;
        let outcome = e2e
            .wait_until(
                &format!("{name} to settle"),
                Duration::from_secs(180),
                || async {
                    let p = e2e.nncp.get(&name).await?;
                    let es = e2e.enactments(&name).await?;
                    let settled_failure =
                        is_true(&p, "Degraded") && es.values().all(|e| !is_true(e, "Progressing"));
                    Ok((is_true(&p, "Available") || settled_failure).then_some(p))
                },
            )
            .await;
        let es = e2e.enactments(&name).await?;
        let message = es
            .get(&node)
            .and_then(active_condition)
            .map(|c| c.2)
            .unwrap_or_default();
        let verdict = match (&outcome, expect_missing) {
            (Err(e), _) => Err(format!("{stem}: did not settle: {e:#}")),
            (Ok(p), None) if is_true(p, "Available") => Ok("Available".to_owned()),
            (Ok(_), None) => Err(format!(
                "{stem}: expected Available, got Degraded: {message}"
            )),
            (Ok(p), Some(what)) if is_true(p, "Degraded") => {
                let lower = message.to_lowercase();
                let clear = lower.contains(what)
                    && (lower.contains("not supported")
                        || lower.contains("unavailable")
                        || lower.contains("not available")
                        || lower.contains("missing"));
                if clear {
                    Ok(format!("Degraded: {message}"))
                } else {
                    Err(format!(
                        "{stem}: Degraded as expected ({what} is missing) but the message does not \
                         say so: {message}"
                    ))
                }
            }
            (Ok(_), Some(what)) => Err(format!(
                "{stem}: Available although the node lacks {what} (probe wrong?)"
            )),
        };
        match verdict {
            Ok(v) => report.push(format!("{stem}: {v}")),
            Err(e) => failures.push(e),
        }
        e2e.delete_policy(&name).await?;
        reset(&e2e, &node).await?;
    }
    eprintln!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
