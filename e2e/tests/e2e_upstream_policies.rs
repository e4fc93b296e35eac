//! End-to-end: upstream's policy scenarios not covered by the other suites — several policies on
//! one node applied in name order, a bridge without ports, bridge ports with `vlan: {}` (no
//! VLAN filtering, no default trunk), and the user guide's troubleshooting flow (a typo'd
//! interface goes Degraded naming it, then is fixed) with the controller's metrics for the
//! Degraded policy and its Failing and Aborted enactments; static addresses and routes on both
//! stacks with the static-route count; several nodes applying at once. Needs a cluster
//! (`KUBECONFIG`) and `KNMSTATE_E2E_NODE_EXEC`; the metrics checks also
//! `KNMSTATE_E2E_METRICS_URL`.

use std::time::Duration;

use knmstate_testkit::cluster::{
    E2e, EnactmentWatch, NodeExec, ProgressOrder, absent, active_condition, bridge, connect,
    http_get, is_true, metric_value, on_node, policy,
};
use kube::api::ListParams;
use serde_json::{Value, json};

const ORDER_LABEL: &str = "knmstate-e2e/ups-order";

/// The spare NIC the bridge cases enslave, and its state when no policy holds it.
const SPARE: &str = "eth2";

fn spare_released() -> Value {
    json!({"name": SPARE, "type": "ethernet", "state": "up",
           "ipv4": {"enabled": false}, "ipv6": {"enabled": false}})
}

/// Upstream `multiple_policies_for_same_node`: several policies on one node are all configured.
/// Here also their order: three policies (created in reverse name order) wait for a label; when
/// the node gets it they arrive at once, and the node applies them in name order — each one's
/// enactment first goes Progressing after the previous one's.
#[tokio::test]
async fn several_policies_on_one_node_apply_in_name_order() -> anyhow::Result<()> {
    let Some(e2e) = connect("several policies in name order").await else {
        return Ok(());
    };
    let node = e2e.handler_nodes().await?.remove(0);
    let names = ["e2e-ups-order-a", "e2e-ups-order-b", "e2e-ups-order-c"];
    let iface = |i: usize| format!("e2eord{i}");
    e2e.label_node(&node, ORDER_LABEL, None).await?;
    for (i, name) in names.iter().enumerate().rev() {
        e2e.delete_policy(name).await?;
        e2e.apply_policy(&policy(
            name,
            json!({"nodeSelector": {ORDER_LABEL: "yes"},
                   "desiredState": {"interfaces": [bridge(&iface(i))]}}),
        ))
        .await?;
    }
    for name in names {
        e2e.wait_policy(name, "Ignored", Duration::from_mins(1))
            .await?;
    }
    // Record, in the API's order, when each enactment on the node first went Progressing.
    let watch = ProgressOrder::start(&e2e, &node);
    tokio::time::sleep(Duration::from_millis(500)).await;
    e2e.label_node(&node, ORDER_LABEL, Some("yes")).await?;
    let mut outcome = Ok(());
    for name in names {
        if let Err(e) = e2e
            .wait_policy(name, "Available", Duration::from_mins(2))
            .await
        {
            outcome = Err(e);
            break;
        }
    }
    if outcome.is_ok() {
        for i in 0..names.len() {
            if let Err(e) = e2e.wait_reported(&node, &iface(i), true).await {
                outcome = Err(e);
            }
        }
    }
    let seen = watch.stop();
    for name in names {
        e2e.delete_policy(name).await?;
    }
    e2e.label_node(&node, ORDER_LABEL, None).await?;
    e2e.restore(
        "e2e-ups-order-undo",
        Some(on_node(&node)),
        json!({"interfaces": (0..names.len()).map(|i| absent(&iface(i))).collect::<Vec<_>>()}),
    )
    .await?;
    outcome?;
    assert_eq!(seen, names, "the order the enactments went Progressing");
    Ok(())
}

/// `ip -d link show <iface>` on `node`.
fn link_details(exec: &NodeExec, node: &str, iface: &str) -> anyhow::Result<String> {
    exec.run(node, &["ip", "-d", "link", "show", iface])
}

/// The VLANs `bridge vlan show dev <iface>` lists on `node` (empty when none).
fn bridge_vlans(exec: &NodeExec, node: &str, iface: &str) -> anyhow::Result<String> {
    let out = exec.run(node, &["bridge", "-j", "vlan", "show", "dev", iface])?;
    let v: Value = serde_json::from_str(out.trim()).unwrap_or(Value::Null);
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["vlans"].as_array().cloned().unwrap_or_default())
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(","))
}

/// Upstream's linux-bridge cases that need no VLAN filtering: a bridge without ports is created
/// and reported with no ports and `vlan_filtering 0` (upstream sees 1 on a kernel with bridge
/// VLAN filtering; this one has none), and its enactment carries that desired state; then the
/// same bridge with the spare NIC as a port with `vlan: {}` — the explicit empty VLAN config
/// suppresses the default trunk, so the port is enslaved, VLAN filtering stays off and the
/// port carries no VLAN list.
#[tokio::test]
async fn a_bridge_without_ports_then_a_port_with_empty_vlan() -> anyhow::Result<()> {
    let Some(e2e) = connect("bridge without ports, port with vlan {}").await else {
        return Ok(());
    };
    let Some(exec) = NodeExec::from_env("bridge without ports, port with vlan {}") else {
        return Ok(());
    };
    let node = e2e.handler_nodes().await?.remove(0);
    let name = "e2e-ups-bridge";
    let br = "e2eubr0";
    e2e.delete_policy(name).await?;
    let outcome = async {
        e2e.apply_policy(&policy(
            name,
            json!({"nodeSelector": on_node(&node), "desiredState": {"interfaces": [bridge(br)]}}),
        ))
        .await?;
        e2e.wait_policy(name, "Available", Duration::from_mins(2))
            .await?;
        e2e.wait_reported(&node, br, true).await?;
        let reported = e2e.reported_interface(&node, br).await?.unwrap_or_default();
        anyhow::ensure!(reported["type"] == "linux-bridge", "{reported}");
        let ports = reported["bridge"]["port"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(ports == 0, "a bridge without ports reports {ports} ports");
        let details = link_details(&exec, &node, br)?;
        anyhow::ensure!(details.contains("vlan_filtering 0"), "{details}");
        // Upstream nnce_desiredstate: the enactment carries the desired state it applied.
        let enactment = e2e.enactments(name).await?.remove(&node);
        let applied = enactment.map(|e| e.data["status"]["desiredState"].clone());
        let want = json!({"interfaces": [bridge(br)]});
        anyhow::ensure!(
            applied.as_ref() == Some(&want),
            "enactment desiredState {applied:?}, want {want}"
        );

        let mut with_port = bridge(br);
        with_port["bridge"]["port"] = json!([{"name": SPARE, "vlan": {}}]);
        e2e.apply_policy(&policy(
            name,
            json!({"nodeSelector": on_node(&node), "desiredState": {"interfaces": [with_port]}}),
        ))
        .await?;
        e2e.wait_until(
            &format!("{name} to be Available with {SPARE} in {br}"),
            Duration::from_mins(2),
            || async {
                let p = e2e.nncp.get(name).await?;
                let port = e2e
                    .reported_interface(&node, br)
                    .await?
                    .and_then(|i| i["bridge"]["port"].as_array().cloned())
                    .unwrap_or_default();
                Ok(
                    (is_true(&p, "Available") && port.iter().any(|p| p["name"] == SPARE))
                        .then_some(()),
                )
            },
        )
        .await?;
        let spare = link_details(&exec, &node, SPARE)?;
        anyhow::ensure!(spare.contains(&format!("master {br}")), "{spare}");
        let details = link_details(&exec, &node, br)?;
        anyhow::ensure!(details.contains("vlan_filtering 0"), "{details}");
        let vlans = bridge_vlans(&exec, &node, SPARE)?;
        anyhow::ensure!(
            vlans.is_empty(),
            "no default trunk on a vlan: {{}} port: {vlans}"
        );
        anyhow::Ok(())
    }
    .await;
    e2e.delete_policy(name).await?;
    e2e.restore(
        "e2e-ups-bridge-undo",
        Some(on_node(&node)),
        json!({"interfaces": [absent(br), spare_released()]}),
    )
    .await?;
    outcome
}

/// What the controller's metrics must say about `name`'s enactments and the Degraded policies.
async fn metrics_agree(
    e2e: &E2e,
    url: &str,
    name: &str,
    failing: &[String],
    aborted: &[String],
) -> anyhow::Result<()> {
    e2e.wait_until(
        &format!("the metrics to show {name}'s enactments and the Degraded policies"),
        Duration::from_mins(1),
        || async {
            let degraded = e2e
                .nncp
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .filter(|p| active_condition(p).is_some_and(|c| c.0 == "Degraded"))
                .count();
            let text = http_get(url).await?;
            let mut wrong = Vec::new();
            let got = metric_value(
                &text,
                "kubernetes_nmstate_policies_status",
                &[("status", "Degraded")],
            );
            if got != Some(f64::from(u32::try_from(degraded)?)) {
                wrong.push(format!("policies Degraded: want {degraded}, got {got:?}"));
            }
            for (status, nodes) in [("Failing", failing), ("Aborted", aborted)] {
                for node in nodes {
                    let got = metric_value(
                        &text,
                        "kubernetes_nmstate_enactments_status",
                        &[("node", node), ("status", status)],
                    );
                    // Only this test's policy is failing or aborting on the box.
                    if got != Some(1.0) {
                        wrong.push(format!("{node} {status}: want 1, got {got:?}"));
                    }
                }
            }
            if wrong.is_empty() {
                Ok(Some(()))
            } else {
                Err(anyhow::anyhow!(wrong.join("\n")))
            }
        },
    )
    .await
}

/// Upstream user guide, troubleshooting: a policy naming an interface that does not exist
/// (`eth666`) goes Degraded, and the failing enactment's message names the interface; with
/// maxUnavailable 1 one node is Failing and the rest Aborted, and the controller's metrics
/// count the Degraded policy and the Failing and Aborted enactments. The typo fixed (`eth2`),
/// the policy becomes Available on every node and the failure counts drop.
#[tokio::test]
async fn a_typo_goes_degraded_naming_the_interface_then_is_fixed() -> anyhow::Result<()> {
    let Some(e2e) = connect("typo'd interface").await else {
        return Ok(());
    };
    let url = std::env::var("KNMSTATE_E2E_METRICS_URL").ok();
    if url.is_none() {
        knmstate_testkit::cluster::skip(
            "typo'd interface metrics",
            "KNMSTATE_E2E_METRICS_URL is not set",
        );
    }
    let nodes = e2e.handler_nodes().await?;
    let name = "e2e-ups-typo";
    e2e.delete_policy(name).await?;
    let spec = |iface: &str| {
        json!({"maxUnavailable": 1, "desiredState": {"interfaces": [
            {"name": iface, "type": "ethernet", "state": "up",
             "ipv4": {"enabled": false}, "ipv6": {"enabled": false}}]}})
    };
    let outcome = async {
        e2e.apply_policy(&policy(name, spec("eth666"))).await?;
        let p = e2e
            .wait_policy(name, "Degraded", Duration::from_mins(4))
            .await?;
        let (_, reason, _) = active_condition(&p).unwrap_or_default();
        anyhow::ensure!(reason == "FailedToConfigure", "policy reason {reason}");
        // Every enactment settled: one Failing, the others Aborted.
        let es = e2e
            .wait_until(
                &format!("{name}'s enactments to settle"),
                Duration::from_mins(2),
                || async {
                    let es = e2e.enactments(name).await?;
                    let settled = es.len() == nodes.len()
                        && es.values().all(|e| {
                            (is_true(e, "Failing") || is_true(e, "Aborted"))
                                && !is_true(e, "Progressing")
                        });
                    Ok(settled.then_some(es))
                },
            )
            .await?;
        let (mut failing, mut aborted) = (Vec::new(), Vec::new());
        for (node, e) in &es {
            let (t, _, message) = active_condition(e).unwrap_or_default();
            if t == "Failing" {
                anyhow::ensure!(message.contains("eth666"), "{node}: {message}");
                // Upstream's error_messages_formatting: no debug noise in the message.
                for noise in [
                    "Traceback (most recent call last):",
                    "DEBUG",
                    "warnings.warn",
                ] {
                    anyhow::ensure!(!message.contains(noise), "{node}: {noise:?} in {message}");
                }
                failing.push(node.clone());
            } else {
                aborted.push(node.clone());
            }
        }
        anyhow::ensure!(
            failing.len() == 1,
            "Failing on {failing:?}, Aborted on {aborted:?}"
        );
        if let Some(url) = &url {
            metrics_agree(&e2e, url, name, &failing, &aborted).await?;
        }

        // Fixed: the interface meant was eth2.
        e2e.apply_policy(&policy(name, spec(SPARE))).await?;
        let p = e2e
            .wait_policy(name, "Available", Duration::from_mins(3))
            .await?;
        let n = nodes.len();
        let message = active_condition(&p).map(|c| c.2).unwrap_or_default();
        anyhow::ensure!(
            message == format!("{n}/{n} nodes successfully configured"),
            "{message}"
        );
        if let Some(url) = &url {
            metrics_agree(&e2e, url, name, &[], &[]).await?;
            let text = http_get(url).await?;
            for node in &nodes {
                for status in ["Failing", "Aborted"] {
                    let got = metric_value(
                        &text,
                        "kubernetes_nmstate_enactments_status",
                        &[("node", node), ("status", status)],
                    );
                    anyhow::ensure!(got == Some(0.0), "{node} {status}: {got:?} after the fix");
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    e2e.delete_policy(name).await?;
    outcome
}

/// The `kubernetes_nmstate_routes{type="static"}` sample of `node` for `stack` (0 when absent).
async fn static_routes(url: &str, node: &str, stack: &str) -> anyhow::Result<f64> {
    let text = http_get(url).await?;
    Ok(metric_value(
        &text,
        "kubernetes_nmstate_routes",
        &[("node", node), ("ip_stack", stack), ("type", "static")],
    )
    .unwrap_or(0.0))
}

/// Whether `node`'s reported state has `ip` on `iface` and a running route to `dest` through it.
async fn reports_address_and_route(
    e2e: &E2e,
    node: &str,
    iface: &str,
    (family, ip): (&str, &str),
    dest: &str,
) -> anyhow::Result<(bool, bool)> {
    let has_ip = e2e
        .reported_interface(node, iface)
        .await?
        .and_then(|i| i[family]["address"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .any(|a| a["ip"] == ip);
    let state = e2e.state(node).await?;
    let has_route = state.data["status"]["currentState"]["routes"]["running"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["destination"] == dest && r["next-hop-interface"] == iface);
    Ok((has_ip, has_route))
}

/// Upstream `static_addr_and_route` (static V4 and V6 addresses, each with a route) and the
/// static-route count of upstream's metrics: on the spare NIC of one node, both addresses and
/// both routes are reported, the controller counts one more static route per stack, and once
/// they are removed the addresses, the routes and the counts are back where they were.
#[tokio::test]
async fn static_addresses_and_routes_on_both_stacks() -> anyhow::Result<()> {
    let Some(e2e) = connect("static addresses and routes").await else {
        return Ok(());
    };
    let url = std::env::var("KNMSTATE_E2E_METRICS_URL").ok();
    if url.is_none() {
        knmstate_testkit::cluster::skip(
            "static route metrics",
            "KNMSTATE_E2E_METRICS_URL is not set",
        );
    }
    let node = e2e.handler_nodes().await?.remove(0);
    let name = "e2e-ups-static";
    let (v4, v6) = ("198.18.200.1", "2001:db8:200::1");
    let (dest4, dest6) = ("198.19.200.0/24", "2001:db8:201::/64");
    let before = match &url {
        Some(u) => Some((
            static_routes(u, &node, "ipv4").await?,
            static_routes(u, &node, "ipv6").await?,
        )),
        None => None,
    };
    e2e.delete_policy(name).await?;
    let outcome = async {
        e2e.apply_policy(&policy(
            name,
            json!({"nodeSelector": on_node(&node), "desiredState": {
                "interfaces": [{"name": SPARE, "type": "ethernet", "state": "up",
                    "ipv4": {"enabled": true, "dhcp": false,
                             "address": [{"ip": v4, "prefix-length": 24}]},
                    "ipv6": {"enabled": true, "dhcp": false, "autoconf": false,
                             "address": [{"ip": v6, "prefix-length": 64}]}}],
                "routes": {"config": [
                    {"destination": dest4, "metric": 150, "next-hop-address": "198.18.200.254",
                     "next-hop-interface": SPARE, "table-id": 254},
                    {"destination": dest6, "metric": 150, "next-hop-address": "2001:db8:200::fe",
                     "next-hop-interface": SPARE, "table-id": 254}]}}}),
        ))
        .await?;
        e2e.wait_policy(name, "Available", Duration::from_mins(2))
            .await?;
        for (family, ip, dest) in [("ipv4", v4, dest4), ("ipv6", v6, dest6)] {
            e2e.wait_until(
                &format!("{node} to report {ip} on {SPARE} and a route to {dest}"),
                Duration::from_secs(10),
                || async {
                    let (a, r) =
                        reports_address_and_route(&e2e, &node, SPARE, (family, ip), dest).await?;
                    Ok((a && r).then_some(()))
                },
            )
            .await?;
        }
        if let (Some(u), Some((b4, b6))) = (&url, before) {
            e2e.wait_until(
                "one more static route per stack in the metrics",
                Duration::from_mins(1),
                || async {
                    let now = (
                        static_routes(u, &node, "ipv4").await?,
                        static_routes(u, &node, "ipv6").await?,
                    );
                    Ok((now == (b4 + 1.0, b6 + 1.0)).then_some(()))
                },
            )
            .await?;
        }
        anyhow::Ok(())
    }
    .await;
    e2e.delete_policy(name).await?;
    e2e.restore(
        "e2e-ups-static-undo",
        Some(on_node(&node)),
        json!({"interfaces": [spare_released()],
               "routes": {"config": [{"next-hop-interface": SPARE, "state": "absent"}]}}),
    )
    .await?;
    outcome?;
    // The report follows the node's change stream, which may land just after the undo's
    // enactment turned Available.
    for (family, ip, dest) in [("ipv4", v4, dest4), ("ipv6", v6, dest6)] {
        e2e.wait_until(
            &format!("{node} to stop reporting {ip} and the route to {dest}"),
            Duration::from_secs(30),
            || async {
                let (a, r) =
                    reports_address_and_route(&e2e, &node, SPARE, (family, ip), dest).await?;
                Ok((!a && !r).then_some(()))
            },
        )
        .await?;
    }
    if let (Some(u), Some(b)) = (&url, before) {
        e2e.wait_until(
            "the static route counts to be back",
            Duration::from_mins(1),
            || async {
                let now = (
                    static_routes(u, &node, "ipv4").await?,
                    static_routes(u, &node, "ipv6").await?,
                );
                Ok((now == b).then_some(()))
            },
        )
        .await?;
    }
    Ok(())
}

/// Upstream `nncp_parallel`: with the default maxUnavailable (50 %, rounded up) several nodes
/// apply a policy at once — more than one enactment is Progressing at the same time, never
/// more than the limit — and all end Available.
#[tokio::test]
async fn several_nodes_apply_at_once_within_the_default_max_unavailable() -> anyhow::Result<()> {
    let Some(e2e) = connect("parallel apply").await else {
        return Ok(());
    };
    let nodes = e2e.handler_nodes().await?;
    if nodes.len() < 3 {
        knmstate_testkit::cluster::skip("parallel apply", "fewer than three nodes");
        return Ok(());
    }
    let limit = nodes.len().div_ceil(2);
    let name = "e2e-ups-parallel";
    e2e.delete_policy(name).await?;
    let watch = EnactmentWatch::start(&e2e, name);
    tokio::time::sleep(Duration::from_millis(300)).await;
    e2e.apply_policy(&policy(
        name,
        json!({"desiredState": {"interfaces": [bridge("e2epar0")]}}),
    ))
    .await?;
    let available = e2e
        .wait_policy(name, "Available", Duration::from_mins(3))
        .await;
    let log = watch.stop();
    e2e.delete_policy(name).await?;
    e2e.restore(
        "e2e-ups-parallel-undo",
        None,
        json!({"interfaces": [absent("e2epar0")]}),
    )
    .await?;
    available?;
    let peak = log.peak.get("Progressing").copied().unwrap_or(0);
    assert!(
        (2..=limit).contains(&peak),
        "{peak} enactments Progressing at once, want 2..={limit}: {log:?}"
    );
    Ok(())
}
