//! End-to-end: upstream's `dns_test` and the `dns-cleanup` example — static name servers and
//! search domains on the primary NIC, with it on DHCP (`auto-dns: false`) or with a static
//! address and gateway that DHCP knows nothing of, for an IPv4 and an IPv6 name server; and
//! `examples/dns.yaml` undone by `examples/dns-cleanup.yaml`. The name servers are the switch's
//! own (198.18.0.1 and 2001:db8::1): the handler's DNS probe must get an answer from them.
//! Needs a cluster (`KUBECONFIG`); skips without one. One node, a different one than the other
//! upstream suites start with.

use std::path::PathBuf;
use std::time::Duration;

use knmstate_testkit::cluster::{
    E2e, addresses, connect, default_routes, dns_search, dns_servers, healthy_uplink_spec, on_node,
    policy,
};
use serde_json::{Value, json};

const SEARCH: [&str; 2] = ["example.com", "example.org"];
/// The switch's name servers, one per stack.
const SERVERS: [&str; 2] = ["198.18.0.1", "2001:db8::1"];

/// The node these tests run on: the second one when there are several.
async fn dns_node(e2e: &E2e) -> anyhow::Result<String> {
    let nodes = e2e.handler_nodes().await?;
    Ok(nodes[1 % nodes.len()].clone())
}

/// Apply `desired` as `name` on `node` and wait until it is Available.
async fn apply_on(e2e: &E2e, name: &str, node: &str, desired: Value) -> anyhow::Result<()> {
    e2e.apply_policy(&policy(
        name,
        json!({"nodeSelector": on_node(node), "desiredState": desired}),
    ))
    .await?;
    e2e.wait_policy(name, "Available", Duration::from_mins(2))
        .await?;
    Ok(())
}

/// Wait until `node` reports `server` as its only configured and only running name server,
/// with upstream's search domains.
async fn wait_only_server(e2e: &E2e, node: &str, server: &str) -> anyhow::Result<()> {
    e2e.wait_until(
        &format!("{node} to report {server} as its only name server, searching {SEARCH:?}"),
        Duration::from_secs(10),
        || async {
            let s = e2e.current_state(node).await?;
            let ok = dns_servers(&s, "config") == [server]
                && dns_servers(&s, "running") == [server]
                && dns_search(&s, "config") == SEARCH
                && dns_search(&s, "running") == SEARCH;
            Ok(ok.then_some(()))
        },
    )
    .await
}

/// Put `node`'s primary NIC back on DHCP for everything, without static routes or DNS.
async fn restore_uplink(e2e: &E2e, name: &str, node: &str, nic: &str) -> anyhow::Result<()> {
    let mut spec = healthy_uplink_spec();
    spec["desiredState"]["routes"] =
        json!({"config": [{"next-hop-interface": nic, "state": "absent"}]});
    e2e.restore_spec(&format!("{name}-undo"), Some(on_node(node)), spec)
        .await?;
    // Back: DHCP's name servers on both stacks, nothing configured.
    e2e.wait_until(
        &format!("{node} to run DHCP's name servers again"),
        Duration::from_secs(30),
        || async {
            let s = e2e.current_state(node).await?;
            let running = dns_servers(&s, "running");
            let ok = dns_servers(&s, "config").is_empty()
                && SERVERS.iter().all(|d| running.iter().any(|r| r == d));
            Ok(ok.then_some(()))
        },
    )
    .await
}

/// Upstream `dns_test`, "with DHCP" (the primary NIC keeps DHCP, `auto-dns: false`): a static
/// IPv4 name server with two search domains, then an IPv6 one. Each becomes the node's only
/// name server (DHCP's are dropped) and the search domains are reported.
#[tokio::test]
async fn dhcp_primary_nic_with_static_name_servers_on_both_stacks() -> anyhow::Result<()> {
    let Some(e2e) = connect("DNS with DHCP").await else {
        return Ok(());
    };
    let node = dns_node(&e2e).await?;
    let nic = e2e.primary_nic(&node).await?;
    let name = "e2e-ups-dns-dhcp";
    e2e.delete_policy(name).await?;
    let outcome = async {
        for server in SERVERS {
            apply_on(
                &e2e,
                name,
                &node,
                json!({
                    "interfaces": [{"name": nic, "type": "ethernet", "state": "up",
                        "ipv4": {"enabled": true, "dhcp": true, "auto-dns": false},
                        "ipv6": {"enabled": true, "dhcp": true, "autoconf": true,
                                 "auto-dns": false}}],
                    "dns-resolver": {"config": {"server": [server], "search": SEARCH}}
                }),
            )
            .await?;
            wait_only_server(&e2e, &node, server).await?;
        }
        anyhow::Ok(())
    }
    .await;
    e2e.delete_policy(name).await?;
    restore_uplink(&e2e, name, &node, &nic).await?;
    outcome
}

/// Upstream `dns_test`, "with static address and gateway" (DHCP-unaware): the primary NIC's
/// addresses made static on both stacks (the ones DHCP gave it, the IPv6 one on its /64),
/// its default routes static through the same gateways, and a static IPv4 name server, then an
/// IPv6 one — Available, the node still reaching the API and the server, DHCP off.
#[tokio::test]
async fn static_primary_nic_with_static_name_servers_on_both_stacks() -> anyhow::Result<()> {
    let Some(e2e) = connect("DNS with a static address").await else {
        return Ok(());
    };
    let node = dns_node(&e2e).await?;
    let nic = e2e.primary_nic(&node).await?;
    let state = e2e.current_state(&node).await?;
    let iface = state["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["name"] == nic.as_str())
        .cloned()
        .unwrap_or_default();
    let v4 = addresses(&iface, "ipv4")
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("{node}: no IPv4 address on {nic}"))?;
    // DHCPv6 leases a /128; made static, the address gets its on-link /64.
    let v6 = addresses(&iface, "ipv6")
        .into_iter()
        .find(|(ip, _)| !ip.starts_with("fe80"))
        .map(|(ip, _)| (ip, 64))
        .ok_or_else(|| anyhow::anyhow!("{node}: no global IPv6 address on {nic}"))?;
    let gateways = default_routes(&state);
    anyhow::ensure!(gateways.len() == 2, "{node}: default routes {gateways:?}");
    let routes: Vec<Value> = gateways
        .iter()
        .map(|(gw, _)| {
            json!({"destination": if gw.contains(':') { "::/0" } else { "0.0.0.0/0" },
                   "next-hop-address": gw, "next-hop-interface": nic})
        })
        .collect();
    let name = "e2e-ups-dns-static";
    e2e.delete_policy(name).await?;
    let outcome = async {
        for server in SERVERS {
            apply_on(
                &e2e,
                name,
                &node,
                json!({
                    "interfaces": [{"name": nic, "type": "ethernet", "state": "up",
                        "ipv4": {"enabled": true, "dhcp": false,
                                 "address": [{"ip": v4.0, "prefix-length": v4.1}]},
                        "ipv6": {"enabled": true, "dhcp": false, "autoconf": false,
                                 "address": [{"ip": v6.0, "prefix-length": v6.1}]}}],
                    "routes": {"config": routes},
                    "dns-resolver": {"config": {"server": [server], "search": SEARCH}}
                }),
            )
            .await?;
            wait_only_server(&e2e, &node, server).await?;
            let reported = e2e
                .reported_interface(&node, &nic)
                .await?
                .unwrap_or_default();
            anyhow::ensure!(
                reported["ipv4"]["dhcp"] == false && reported["ipv6"]["dhcp"] == false,
                "{nic} still on DHCP: {reported}"
            );
            anyhow::ensure!(
                default_routes(&e2e.current_state(&node).await?).len() == 2,
                "{node} lost a default route"
            );
        }
        anyhow::Ok(())
    }
    .await;
    e2e.delete_policy(name).await?;
    restore_uplink(&e2e, name, &node, &nic).await?;
    outcome
}

fn example(stem: &str) -> anyhow::Result<Value> {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/{stem}.yaml"));
    Ok(serde_saphyr::from_str(&std::fs::read_to_string(file)?)?)
}

/// Upstream's `dns.yaml` then `dns-cleanup.yaml` examples: the first sets the global name
/// servers and search domains, the second clears them — the node's configured DNS is empty
/// again and DHCP's servers run.
#[tokio::test]
async fn the_dns_example_is_undone_by_the_dns_cleanup_example() -> anyhow::Result<()> {
    let Some(e2e) = connect("dns-cleanup example").await else {
        return Ok(());
    };
    let node = dns_node(&e2e).await?;
    let dns = example("dns")?;
    let cleanup = example("dns-cleanup")?;
    let name = "e2e-ups-dns-example";
    e2e.delete_policy(name).await?;
    let outcome = async {
        apply_on(&e2e, name, &node, dns["spec"]["desiredState"].clone()).await?;
        let want = dns["spec"]["desiredState"]["dns-resolver"]["config"].clone();
        e2e.wait_until(
            &format!("{node} to report the dns example's servers"),
            Duration::from_secs(10),
            || async {
                let s = e2e.current_state(&node).await?;
                let ok = json!(dns_servers(&s, "config")) == want["server"]
                    && json!(dns_search(&s, "config")) == want["search"];
                Ok(ok.then_some(()))
            },
        )
        .await?;
        apply_on(&e2e, name, &node, cleanup["spec"]["desiredState"].clone()).await?;
        e2e.wait_until(
            &format!("{node} to report no configured DNS after dns-cleanup"),
            Duration::from_secs(10),
            || async {
                let s = e2e.current_state(&node).await?;
                let ok = dns_servers(&s, "config").is_empty()
                    && dns_search(&s, "config").is_empty()
                    && !dns_servers(&s, "running").is_empty();
                Ok(ok.then_some(()))
            },
        )
        .await?;
        anyhow::Ok(())
    }
    .await;
    e2e.delete_policy(name).await?;
    outcome
}
