//! End-to-end: every policy in `examples/` on one node. Where the node can do what the example
//! asks, it becomes Available; where it cannot (a kernel without bonds, VLANs or bridge VLAN
//! filtering, no Open vSwitch), the policy is Degraded with a message that says why. What the
//! node can do is found out on the node itself, so the expectations hold on any kernel. Needs a
//! cluster (`KUBECONFIG`) and `KNMSTATE_E2E_NODE_EXEC`; skips without them.

use std::path::PathBuf;
use std::time::Duration;

use knmstate_testkit::cluster::{
    E2e, NodeExec, active_condition, connect, is_true, on_node, policy,
};
use serde_json::{Value, json};

/// What a node offers, probed on the node.
#[derive(Debug)]
struct Support {
    bond: bool,
    vlan: bool,
    bridge_vlan_filtering: bool,
    ovs: bool,
    /// NetworkManager 1.54 brought per-interface IPv4 forwarding (`ipv4.forwarding`).
    nm_forwarding: bool,
}

/// Whether NetworkManager version `v` ("1.42.4") is at least `major.minor`.
fn nm_at_least(v: &str, major: u32, minor: u32) -> bool {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

#[test]
fn networkmanager_versions_compare() {
    assert!(nm_at_least("1.54.0", 1, 54));
    assert!(nm_at_least("2.0", 1, 54));
    assert!(!nm_at_least("1.42.4", 1, 54));
}

fn probe_link(exec: &NodeExec, node: &str, args: &str) -> bool {
    let script = format!("ip link add e2eprobe0 {args} && ip link del e2eprobe0");
    exec.run(node, &["sh", "-c", &script]).is_ok()
}

fn support(exec: &NodeExec, node: &str, nm_version: &str) -> Support {
    Support {
        nm_forwarding: nm_at_least(nm_version, 1, 54),
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
            _ if i["ipv4"]["forwarding"] == json!(true) && !s.nm_forwarding => {
                return Some("ipv4.forwarding");
            }
            "linux-bridge" if !s.bridge_vlan_filtering => {
                // Ports that ask for VLANs need bridge VLAN filtering. (The default trunk that
                // ports without `vlan` get is left out by the handler on such a kernel.)
                let ports = i["bridge"]["port"].as_array().cloned().unwrap_or_default();
                if ports
                    .iter()
                    .any(|p| p.get("vlan").is_some_and(|v| v != &json!({})))
                {
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

/// Apply `examples/<stem>.yaml` on one node (a worker, so that the worker-selector example
/// selects it too) and check the outcome against what the node can do; undo it afterwards.
async fn run_example(stem: &str) -> anyhow::Result<()> {
    let Some(e2e) = connect("examples").await else {
        return Ok(());
    };
    let Some(exec) = NodeExec::from_env("examples") else {
        return Ok(());
    };
    let nodes = e2e.handler_nodes().await?;
    let node = nodes.last().expect("a node").clone();
    let nm_version = e2e.state(&node).await?.data["status"]["hostNetworkManagerVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let s = support(&exec, &node, &nm_version);
    eprintln!("{node}: {s:?}");
    let file = examples_dir().join(format!("{stem}.yaml"));
    let example: Value = serde_saphyr::from_str(&std::fs::read_to_string(file)?)?;
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
            // It names what is missing, and says that it is missing.
            let clear = lower.contains(what)
                && (lower.contains("not support")
                    || lower.contains("unavailable")
                    || lower.contains("not available")
                    || lower.contains("not able to connect")
                    || lower.contains("missing")
                    || (what == "ipv4.forwarding" && lower.contains("verification failure")));
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
    e2e.delete_policy(&name).await?;
    reset(&e2e, &node).await?;
    match verdict {
        Ok(v) => {
            eprintln!("{stem}: {v}");
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!(e)),
    }
}

/// One test per example, so that each shows in the pass count.
macro_rules! examples {
    ($($test:ident => $stem:literal),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() -> anyhow::Result<()> {
                run_example($stem).await
            }
        )*

        #[test]
        fn every_example_has_a_test() {
            let mut listed = vec![$($stem),*];
            listed.sort_unstable();
            let mut found: Vec<String> = std::fs::read_dir(examples_dir())
                .expect("examples/")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
                .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .collect();
            found.sort();
            assert_eq!(found, listed);
        }
    };
}

examples! {
    bond_vlan => "bond-vlan",
    bond => "bond",
    detach_bridge_port_and_restore_eth => "detach-bridge-port-and-restore-eth",
    dhcp => "dhcp",
    dns_cleanup => "dns-cleanup",
    dns => "dns",
    ethernet => "ethernet",
    linux_bridge_vlan => "linux-bridge-vlan",
    linux_bridge => "linux-bridge",
    lldp => "lldp",
    ovs_bridge_iface => "ovs-bridge-iface",
    ovs_bridge => "ovs-bridge",
    per_interface_ipv4_forwarding => "per-interface-ipv4-forwarding",
    route => "route",
    static_ip => "static-ip",
    vlan => "vlan",
    worker_selector => "worker-selector",
}
