//! nm-backend on real NetworkManager: every scenario runs on a fresh harness node
//! (`hack/nodes.sh`), one after the other.
//!
//! `cargo test -p knmstate-nm-backend --test nm_integration [FILTER]` must run as root; without
//! root (or with `KNMSTATE_SKIP_NODE_TESTS` set) it says why and skips. The outer run brings a
//! node up for each scenario and re-runs this binary inside it with `--inner SCENARIO`.

mod support;

use std::{
    collections::BTreeMap,
    future::Future,
    pin::Pin,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use futures::StreamExt;
use knmstate_nm_backend::{
    ApplyOptions, Attempt, Backend, ChangeKind, NmBackend,
    probe::{
        DefaultGatewayProbe, DnsProbe, Probe, ProbeContext, ProbeOutcome, RecordType,
        default_gateways, run_probes,
    },
};
use serde_json::{Value, json};

/// Where the backends of the stale-checkpoint scenario record their pending apply (the node's
/// own /run).
const RECORD_DIR: &str = "/run/knmstate-nm-backend";

type Scenario = fn(NmBackend) -> Pin<Box<dyn Future<Output = anyhow::Result<()>>>>;

const SCENARIOS: &[(&str, Scenario)] = &[
    ("current_state_and_versions", |b| {
        Box::pin(current_state_and_versions(b))
    }),
    ("linux_bridge_over_eth1_eth2", |b| {
        Box::pin(linux_bridge_over_eth1_eth2(b))
    }),
    ("static_ipv4_and_ipv6_on_eth1", |b| {
        Box::pin(static_ipv4_and_ipv6_on_eth1(b))
    }),
    ("static_routes", |b| Box::pin(static_routes(b))),
    ("global_dns", |b| Box::pin(global_dns(b))),
    ("dhcp_on_eth0", |b| Box::pin(dhcp_on_eth0(b))),
    ("mtu_change_and_rollback", |b| {
        Box::pin(mtu_change_and_rollback(b))
    }),
    ("broken_gateway_probe_fails_and_rollback_restores", |b| {
        Box::pin(broken_gateway_probe_fails_and_rollback_restores(b))
    }),
    ("wrong_global_dns_probe_fails_and_rollback_restores", |b| {
        Box::pin(wrong_global_dns_probe_fails_and_rollback_restores(b))
    }),
    ("removing_every_dns_server_is_rolled_back", |b| {
        Box::pin(removing_every_dns_server_is_rolled_back(b))
    }),
    ("bond_is_refused_fast_when_kernel_lacks_it", |b| {
        Box::pin(bond_is_refused_fast_when_kernel_lacks_it(b))
    }),
    (
        "capture_moves_default_gateway_interface_under_bridge",
        |b| Box::pin(capture_moves_default_gateway_interface_under_bridge(b)),
    ),
    ("stale_checkpoint_of_killed_apply_is_recovered", |b| {
        Box::pin(stale_checkpoint_of_killed_apply_is_recovered(b))
    }),
    (
        "timed_out_checkpoint_of_killed_apply_has_its_dns_restored",
        |b| Box::pin(timed_out_checkpoint_of_killed_apply_has_its_dns_restored(b)),
    ),
    ("foreign_checkpoint_is_left_alone", |b| {
        Box::pin(foreign_checkpoint_is_left_alone(b))
    }),
    ("change_stream_reports_out_of_band_bridge_within_1s", |b| {
        Box::pin(change_stream_reports_out_of_band_bridge_within_1s(b))
    }),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--inner") {
        return inner(args.get(i + 1).map(String::as_str).unwrap_or_default());
    }
    if let Some(i) = args.iter().position(|a| a == "--helper") {
        return helper(args.get(i + 1).map(String::as_str).unwrap_or_default());
    }
    if args.iter().any(|a| a == "--list") {
        for (name, _) in SCENARIOS {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let filter: Vec<&str> = args[1..]
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let selected: Vec<&str> = SCENARIOS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| filter.is_empty() || filter.iter().any(|f| n.contains(f)))
        .collect();
    println!("\nrunning {} tests", selected.len());
    if let Some(reason) = support::skip_reason() {
        println!("skipping nm-backend node tests: {reason}");
        println!(
            "\ntest result: ok. 0 passed; 0 failed; {} ignored; 0 measured; 0 filtered out; finished in 0.00s\n",
            selected.len()
        );
        return ExitCode::SUCCESS;
    }
    let started = Instant::now();
    let nodes = support::Nodes::new("knmt");
    let (mut passed, mut failed) = (0, 0);
    for name in &selected {
        let t = Instant::now();
        let outcome = nodes.up(1).and_then(|up| {
            let out = nodes.run_self("node1", &["--inner", name])?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if out.status.success() {
                Ok((up, text))
            } else {
                Err(text)
            }
        });
        match outcome {
            Ok((up, text)) => {
                passed += 1;
                println!(
                    "test {name} ... ok ({:.1}s, node up {:.1}s)",
                    t.elapsed().as_secs_f64(),
                    up.as_secs_f64()
                );
                for line in text.lines().filter(|l| l.starts_with("  ")) {
                    println!("{line}");
                }
            }
            Err(text) => {
                failed += 1;
                println!(
                    "test {name} ... FAILED ({:.1}s)\n{text}",
                    t.elapsed().as_secs_f64()
                );
            }
        }
    }
    nodes.down();
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {passed} passed; {failed} failed; 0 ignored; 0 measured; {} filtered out; finished in {:.2}s\n",
        SCENARIOS.len() - selected.len(),
        started.elapsed().as_secs_f64()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(101)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn inner(name: &str) -> ExitCode {
    let Some((_, scenario)) = SCENARIOS.iter().find(|(n, _)| *n == name) else {
        eprintln!("unknown scenario {name}");
        return ExitCode::from(2);
    };
    let rt = runtime();
    let backend = NmBackend::new();
    let local = tokio::task::LocalSet::new();
    match local.block_on(&rt, scenario(backend)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scenario {name} failed: {e:?}");
            ExitCode::FAILURE
        }
    }
}

/// Child processes of scenarios.
fn helper(name: &str) -> ExitCode {
    let rt = runtime();
    match name {
        // Apply and never commit: the scenario kills this process (before its checkpoint
        // times out, or after).
        "apply-and-hang" => rt.block_on(apply_and_hang(Duration::from_mins(5))),
        "apply-and-hang-short" => rt.block_on(apply_and_hang(SHORT_CHECKPOINT)),
        _ => ExitCode::from(2),
    }
}

/// The attempt the hanging helper records.
fn hung_attempt() -> Attempt {
    Attempt {
        policy: "hung".into(),
        generation: 1,
        number: 1,
    }
}

/// The checkpoint timeout of the helper whose checkpoint NetworkManager rolls back by itself.
const SHORT_CHECKPOINT: Duration = Duration::from_secs(10);

/// Apply an MTU and a wrong global name server holding a checkpoint of `checkpoint_timeout`,
/// recording the pending apply in [`RECORD_DIR`], then wait to be killed.
async fn apply_and_hang(checkpoint_timeout: Duration) -> ExitCode {
    let backend = NmBackend::with_state_dir(RECORD_DIR);
    let desired = json!({
        "interfaces": [{"name": "eth1", "type": "ethernet", "state": "up", "mtu": 1300}],
        "dns-resolver": {"config": {"server": ["198.18.0.99"]}}
    });
    let opts = ApplyOptions {
        checkpoint_timeout,
        verify: true,
        attempt: Some(hung_attempt()),
    };
    match backend.apply(&desired, &opts).await {
        Ok(p) => println!("applied {}", p.checkpoint),
        Err(e) => eprintln!("apply failed: {e}"),
    }
    tokio::time::sleep(Duration::from_mins(10)).await;
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------- helpers

async fn state(b: &NmBackend) -> anyhow::Result<Value> {
    Ok(b.current_state().await?.state)
}

fn iface<'a>(state: &'a Value, name: &str) -> Option<&'a Value> {
    state["interfaces"]
        .as_array()?
        .iter()
        .find(|i| i["name"] == name)
}

fn probes(timeout: Duration) -> Vec<Box<dyn Probe>> {
    vec![
        Box::new(DefaultGatewayProbe {
            timeout,
            tcp_port: 53,
            use_icmp: true,
        }),
        Box::new(DnsProbe {
            timeout,
            ..DnsProbe::default()
        }),
    ]
}

fn opts() -> ApplyOptions {
    ApplyOptions {
        checkpoint_timeout: Duration::from_mins(1),
        ..ApplyOptions::default()
    }
}

/// Apply, probe while the checkpoint is held, then commit; roll back and fail when a probe fails.
async fn apply_probe_commit(b: &NmBackend, desired: &Value) -> anyhow::Result<Value> {
    let before = state(b).await?;
    let pending = b.apply(desired, &opts()).await.context("apply")?;
    let ctx = ProbeContext {
        before: &before,
        current: b,
    };
    match run_probes(&probes(Duration::from_secs(10)), &ctx).await {
        Ok(outcomes) => {
            for (name, outcome) in outcomes {
                println!("  probe {name}: {outcome:?}");
            }
            b.commit(&pending.checkpoint).await.context("commit")?;
        }
        Err(e) => {
            b.rollback(&pending.checkpoint).await.context("rollback")?;
            bail!("probe failed, rolled back: {e}");
        }
    }
    ensure!(
        b.checkpoints().await?.is_empty(),
        "a checkpoint is left after commit"
    );
    state(b).await
}

fn addresses(iface: &Value, family: &str) -> Vec<String> {
    let mut v: Vec<String> = iface[family]["address"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            format!(
                "{}/{}",
                a["ip"].as_str().unwrap_or_default(),
                a["prefix-length"]
            )
        })
        .collect();
    v.sort();
    v
}

/// What must come back exactly after a rollback: the node's interfaces (type, state, MTU,
/// controller, IP settings and addresses), its routes and its DNS.
fn fingerprint(state: &Value) -> Value {
    let mut ifaces: Vec<Value> = state["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["type"] != "loopback")
        .map(|i| {
            json!({
                "name": i["name"], "type": i["type"], "state": i["state"], "mtu": i["mtu"],
                "controller": i["controller"],
                "ipv4": {"enabled": i["ipv4"]["enabled"], "dhcp": i["ipv4"]["dhcp"],
                         "address": addresses(i, "ipv4")},
                "ipv6": {"enabled": i["ipv6"]["enabled"], "dhcp": i["ipv6"]["dhcp"],
                         "autoconf": i["ipv6"]["autoconf"], "address": addresses(i, "ipv6")},
            })
        })
        .collect();
    ifaces.sort_by_key(|i| i["name"].to_string());
    let mut routes: Vec<String> = state["routes"]["running"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{} via {} dev {} table {} metric {}",
                r["destination"],
                r["next-hop-address"],
                r["next-hop-interface"],
                r["table-id"],
                r["metric"]
            )
        })
        .collect();
    routes.sort();
    json!({
        "interfaces": ifaces,
        "routes": routes,
        "route-config": state["routes"]["config"],
        "dns": state["dns-resolver"],
    })
}

/// Poll until the node's fingerprint equals `want` (DHCP and RA take a moment after a rollback).
async fn wait_fingerprint(
    b: &NmBackend,
    want: &Value,
    within: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let got = fingerprint(&state(b).await?);
        if &got == want {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            bail!(
                "state not restored after {within:?}:\nwant {}\ngot  {}",
                serde_json::to_string_pretty(want)?,
                serde_json::to_string_pretty(&got)?
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn sh(cmd: &str) -> anyhow::Result<String> {
    let out = std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()?;
    ensure!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Ping `addr` until it answers or `within` passed.
async fn ping_within(addr: &str, within: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let last = sh(&format!("ping -n -c1 -W1 {addr}"));
        if last.is_ok() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            return last
                .map(|_| started.elapsed())
                .context(format!("{addr} unreachable"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------- scenarios

async fn current_state_and_versions(b: NmBackend) -> anyhow::Result<()> {
    let cur = b.current_state().await?;
    ensure!(
        cur.nm_version.starts_with("1."),
        "NM version {:?}",
        cur.nm_version
    );
    ensure!(
        cur.nmstate_version.starts_with("2.2."),
        "nmstate version {:?}",
        cur.nmstate_version
    );
    for name in ["eth0", "eth1", "eth2"] {
        ensure!(iface(&cur.state, name).is_some(), "{name} missing");
    }
    let gws = default_gateways(&cur.state);
    ensure!(
        gws.first().map(|g| g.address.to_string()) == Some("198.18.0.1".into()),
        "default gateway {gws:?}"
    );
    let stats = b
        .feature_statistics(&json!({
            "dns-resolver": {"config": {"server": ["198.18.0.1"]}},
            "routes": {"config": [{"destination": "198.19.50.0/24", "next-hop-address": "198.18.0.1",
                                   "next-hop-interface": "eth0"}]}
        }))
        .await?;
    ensure!(
        stats.features == vec!["static-dns-name-server", "static-route"],
        "features {stats:?}"
    );
    println!(
        "  NetworkManager {} nmstate {}",
        cur.nm_version, cur.nmstate_version
    );
    Ok(())
}

async fn linux_bridge_over_eth1_eth2(b: NmBackend) -> anyhow::Result<()> {
    let desired = json!({"interfaces": [{
        "name": "br1", "type": "linux-bridge", "state": "up",
        "ipv4": {"enabled": false}, "ipv6": {"enabled": false},
        "bridge": {"options": {"stp": {"enabled": false}},
                   "port": [{"name": "eth1"}, {"name": "eth2"}]}
    }]});
    let after = apply_probe_commit(&b, &desired).await?;
    let br = iface(&after, "br1").context("br1 missing")?;
    let mut ports: Vec<&str> = br["bridge"]["port"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    ports.sort_unstable();
    ensure!(ports == ["eth1", "eth2"], "ports {ports:?}");
    for port in ["eth1", "eth2"] {
        ensure!(
            iface(&after, port).map(|i| &i["controller"]) == Some(&json!("br1")),
            "{port} controller"
        );
    }
    ensure!(sh("cat /sys/class/net/eth1/master/uevent")?.contains("INTERFACE=br1"));
    Ok(())
}

async fn static_ipv4_and_ipv6_on_eth1(b: NmBackend) -> anyhow::Result<()> {
    let desired = json!({"interfaces": [{
        "name": "eth1", "type": "ethernet", "state": "up",
        "ipv4": {"enabled": true, "dhcp": false, "address": [{"ip": "198.19.0.11", "prefix-length": 24}]},
        "ipv6": {"enabled": true, "dhcp": false, "autoconf": false,
                 "address": [{"ip": "2001:db8:1::11", "prefix-length": 64}]}
    }]});
    let after = apply_probe_commit(&b, &desired).await?;
    let eth1 = iface(&after, "eth1").context("eth1")?;
    ensure!(
        addresses(eth1, "ipv4") == ["198.19.0.11/24"],
        "{:?}",
        addresses(eth1, "ipv4")
    );
    ensure!(
        addresses(eth1, "ipv6").contains(&"2001:db8:1::11/64".to_string()),
        "{:?}",
        addresses(eth1, "ipv6")
    );
    ping_within("198.19.0.254", Duration::from_secs(5)).await?;
    // The new IPv6 address is usable once duplicate address detection is over.
    ping_within("2001:db8:1::fe", Duration::from_secs(10)).await?;
    Ok(())
}

async fn static_routes(b: NmBackend) -> anyhow::Result<()> {
    let route4 = json!({"destination": "198.19.100.0/24", "next-hop-address": "198.19.0.254",
                        "next-hop-interface": "eth1", "metric": 150, "table-id": 254});
    let route6 = json!({"destination": "2001:db8:100::/64", "next-hop-address": "2001:db8:1::fe",
                        "next-hop-interface": "eth1", "metric": 150, "table-id": 254});
    let desired = json!({
        "interfaces": [{"name": "eth1", "type": "ethernet", "state": "up",
            "ipv4": {"enabled": true, "dhcp": false, "address": [{"ip": "198.19.0.12", "prefix-length": 24}]},
            "ipv6": {"enabled": true, "dhcp": false, "autoconf": false,
                     "address": [{"ip": "2001:db8:1::12", "prefix-length": 64}]}}],
        "routes": {"config": [route4, route6]}
    });
    let after = apply_probe_commit(&b, &desired).await?;
    let has = |s: &Value, dest: &str| {
        s["routes"]["running"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["destination"] == dest)
    };
    ensure!(
        has(&after, "198.19.100.0/24") && has(&after, "2001:db8:100::/64"),
        "routes missing"
    );
    ensure!(sh("ip route show 198.19.100.0/24")?.contains("via 198.19.0.254 dev eth1"));
    let remove = json!({"routes": {"config": [
        {"destination": "198.19.100.0/24", "state": "absent"},
        {"destination": "2001:db8:100::/64", "state": "absent"}
    ]}});
    let after = apply_probe_commit(&b, &remove).await?;
    ensure!(
        !has(&after, "198.19.100.0/24") && !has(&after, "2001:db8:100::/64"),
        "routes not removed"
    );
    Ok(())
}

async fn global_dns(b: NmBackend) -> anyhow::Result<()> {
    let desired = json!({"dns-resolver": {"config": {
        "server": ["198.18.0.1", "2001:db8::1"], "search": ["knmstate.test", "example.test"]
    }}});
    let after = apply_probe_commit(&b, &desired).await?;
    ensure!(
        after["dns-resolver"]["config"]["server"] == json!(["198.18.0.1", "2001:db8::1"]),
        "dns config {}",
        after["dns-resolver"]
    );
    let resolv = sh("cat /etc/resolv.conf")?;
    ensure!(resolv.contains("example.test"), "resolv.conf: {resolv}");
    let probe = DnsProbe {
        timeout: Duration::from_secs(5),
        name: "gw.knmstate.test.".into(),
        record_type: RecordType::A,
        ..DnsProbe::default()
    };
    let outcome = probe
        .run(&ProbeContext {
            before: &after,
            current: &b,
        })
        .await?;
    println!("  local name: {outcome:?}");
    Ok(())
}

async fn dhcp_on_eth0(b: NmBackend) -> anyhow::Result<()> {
    let desired = json!({"interfaces": [{
        "name": "eth0", "type": "ethernet", "state": "up",
        "ipv4": {"enabled": true, "dhcp": true, "auto-dns": true, "auto-gateway": true, "auto-routes": true},
        "ipv6": {"enabled": true, "dhcp": true, "autoconf": true}
    }]});
    let after = apply_probe_commit(&b, &desired).await?;
    let eth0 = iface(&after, "eth0").context("eth0")?;
    ensure!(eth0["ipv4"]["dhcp"] == true, "dhcp flag {}", eth0["ipv4"]);
    let lease = addresses(eth0, "ipv4");
    ensure!(
        lease.len() == 1 && lease[0].starts_with("198.18.0.1") && lease[0].ends_with("/24"),
        "lease {lease:?}"
    );
    let gws = default_gateways(&after);
    ensure!(
        gws.iter().any(|g| g.address.to_string() == "198.18.0.1"),
        "gateways {gws:?}"
    );
    println!("  lease {}", lease[0]);
    Ok(())
}

async fn mtu_change_and_rollback(b: NmBackend) -> anyhow::Result<()> {
    let read_mtu = || sh("cat /sys/class/net/eth1/mtu").map(|s| s.trim().to_string());
    let before_mtu = read_mtu()?;
    let desired =
        json!({"interfaces": [{"name": "eth1", "type": "ethernet", "state": "up", "mtu": 1400}]});
    let pending = b.apply(&desired, &opts()).await?;
    ensure!(read_mtu()? == "1400", "mtu {}", read_mtu()?);
    ensure!(
        b.checkpoints().await? == vec![pending.checkpoint.clone()],
        "checkpoint not listed"
    );
    b.rollback(&pending.checkpoint).await?;
    ensure!(
        read_mtu()? == before_mtu,
        "rollback left mtu {}",
        read_mtu()?
    );
    let after = apply_probe_commit(&b, &desired).await?;
    ensure!(iface(&after, "eth1").map(|i| &i["mtu"]) == Some(&json!(1400)));
    ensure!(read_mtu()? == "1400");
    Ok(())
}

async fn broken_gateway_probe_fails_and_rollback_restores(b: NmBackend) -> anyhow::Result<()> {
    let before = state(&b).await?;
    let want = fingerprint(&before);
    let desired = json!({
        "interfaces": [{"name": "eth0", "type": "ethernet", "state": "up",
            "ipv4": {"enabled": true, "dhcp": false, "address": [{"ip": "198.18.0.250", "prefix-length": 24}]}}],
        "routes": {"config": [{"destination": "0.0.0.0/0", "next-hop-address": "198.18.0.254",
                               "next-hop-interface": "eth0"}]}
    });
    let pending = b.apply(&desired, &opts()).await.context("apply")?;
    let after = state(&b).await?;
    let gws = default_gateways(&after);
    ensure!(
        gws.iter().any(|g| g.address.to_string() == "198.18.0.254"),
        "gateways {gws:?}"
    );
    let started = Instant::now();
    let probe = DefaultGatewayProbe {
        timeout: Duration::from_secs(3),
        tcp_port: 53,
        use_icmp: true,
    };
    let verdict = probe
        .run(&ProbeContext {
            before: &before,
            current: &b,
        })
        .await;
    let err = match verdict {
        Ok(o) => bail!("probe passed on a broken gateway: {o:?}"),
        Err(e) => e,
    };
    ensure!(err.category() == "probe-failed", "{err}");
    println!(
        "  probe failed after {:.1}s: {err}",
        started.elapsed().as_secs_f64()
    );
    b.rollback(&pending.checkpoint).await?;
    ensure!(
        b.checkpoints().await?.is_empty(),
        "checkpoint left after rollback"
    );
    let took = wait_fingerprint(&b, &want, Duration::from_secs(30)).await?;
    println!(
        "  state identical again {:.1}s after rollback",
        took.as_secs_f64()
    );
    ping_within("198.18.0.1", Duration::from_secs(5)).await?;
    Ok(())
}

async fn wrong_global_dns_probe_fails_and_rollback_restores(b: NmBackend) -> anyhow::Result<()> {
    let before = state(&b).await?;
    let want = fingerprint(&before);
    // Nobody answers DNS at 198.18.0.99.
    let desired = json!({"dns-resolver": {"config": {"server": ["198.18.0.99"]}}});
    let pending = b.apply(&desired, &opts()).await.context("apply")?;
    let probe = DnsProbe {
        timeout: Duration::from_secs(3),
        ..DnsProbe::default()
    };
    let verdict = probe
        .run(&ProbeContext {
            before: &before,
            current: &b,
        })
        .await;
    let err = match verdict {
        Ok(o) => bail!("DNS probe passed with a dead name server: {o:?}"),
        Err(e) => e,
    };
    println!("  {err}");
    b.rollback(&pending.checkpoint).await?;
    let took = wait_fingerprint(&b, &want, Duration::from_secs(30)).await?;
    println!(
        "  state identical again {:.1}s after rollback",
        took.as_secs_f64()
    );
    let outcome = probe
        .run(&ProbeContext {
            before: &before,
            current: &b,
        })
        .await?;
    ensure!(matches!(outcome, ProbeOutcome::Passed(_)), "{outcome:?}");
    Ok(())
}

/// Upstream's "remove all DNS servers" rollback case: DHCP and RA name servers ignored on both
/// stacks and no static one leaves the node without name resolution, so the probe must fail and
/// the rollback must bring the learned servers back.
async fn removing_every_dns_server_is_rolled_back(b: NmBackend) -> anyhow::Result<()> {
    let before = state(&b).await?;
    let want = fingerprint(&before);
    let learned = &before["dns-resolver"]["running"]["server"];
    ensure!(
        learned.as_array().is_some_and(|s| s.len() == 2),
        "the node should start with the DHCP and RA name servers: {learned}"
    );
    let desired = json!({
        "interfaces": [{"name": "eth0", "type": "ethernet", "state": "up",
            "ipv4": {"enabled": true, "dhcp": true, "auto-dns": false},
            "ipv6": {"enabled": true, "dhcp": true, "autoconf": true, "auto-dns": false}}],
        "dns-resolver": {"config": {"server": [], "search": []}}
    });
    let pending = b.apply(&desired, &opts()).await.context("apply")?;
    let after = state(&b).await?;
    ensure!(
        after["dns-resolver"]["running"]["server"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "name servers still running after the apply: {}",
        after["dns-resolver"]["running"]
    );
    let resolv = sh("cat /etc/resolv.conf")?;
    ensure!(
        !resolv.lines().any(|l| l.starts_with("nameserver")),
        "resolv.conf still names a server:\n{resolv}"
    );
    let probe = DnsProbe {
        timeout: Duration::from_secs(3),
        ..DnsProbe::default()
    };
    let verdict = probe
        .run(&ProbeContext {
            before: &before,
            current: &b,
        })
        .await;
    let err = match verdict {
        Ok(o) => bail!("DNS probe passed without a name server: {o:?}"),
        Err(e) => e,
    };
    ensure!(err.category() == "probe-failed", "{err}");
    println!("  {err}");
    b.rollback(&pending.checkpoint).await?;
    let took = wait_fingerprint(&b, &want, Duration::from_secs(30)).await?;
    println!(
        "  state identical again {:.1}s after rollback",
        took.as_secs_f64()
    );
    let outcome = probe
        .run(&ProbeContext {
            before: &before,
            current: &b,
        })
        .await?;
    ensure!(matches!(outcome, ProbeOutcome::Passed(_)), "{outcome:?}");
    Ok(())
}

async fn bond_is_refused_fast_when_kernel_lacks_it(b: NmBackend) -> anyhow::Result<()> {
    if std::path::Path::new("/sys/module/bonding").exists() {
        println!("  this kernel has bonding: checking that a bond applies instead");
    }
    let before = fingerprint(&state(&b).await?);
    let desired = json!({"interfaces": [{
        "name": "bond0", "type": "bond", "state": "up",
        "link-aggregation": {"mode": "active-backup", "port": ["eth2"]}
    }]});
    let started = Instant::now();
    let outcome = b.apply(&desired, &opts()).await;
    let took = started.elapsed();
    let kernel_has_bond =
        sh("ip link add knmbondtest type bond && ip link del knmbondtest").is_ok();
    match outcome {
        Err(e) if !kernel_has_bond => {
            ensure!(
                e.category() == "unsupported-interface-type",
                "wrong error: {e}"
            );
            ensure!(
                e.to_string().contains("not supported by this kernel"),
                "{e}"
            );
            ensure!(took < Duration::from_secs(5), "took {took:?}");
            ensure!(b.checkpoints().await?.is_empty(), "checkpoint left");
            ensure!(fingerprint(&state(&b).await?) == before, "node changed");
            println!("  refused in {:.0} ms: {e}", took.as_secs_f64() * 1000.0);
        }
        Ok(p) if kernel_has_bond => {
            b.rollback(&p.checkpoint).await?;
        }
        other => bail!("unexpected outcome (kernel has bond: {kernel_has_bond}): {other:?}"),
    }
    Ok(())
}

async fn capture_moves_default_gateway_interface_under_bridge(b: NmBackend) -> anyhow::Result<()> {
    let policy = json!({
        "capture": {
            "default-gw": "routes.running.destination==\"0.0.0.0/0\"",
            "base-iface": "interfaces.name==capture.default-gw.routes.running.0.next-hop-interface"
        },
        "desiredState": {"interfaces": [{
            "name": "br-ex", "type": "linux-bridge", "state": "up",
            "mac-address": "{{ capture.base-iface.interfaces.0.mac-address }}",
            "ipv4": "{{ capture.base-iface.interfaces.0.ipv4 }}",
            "ipv6": "{{ capture.base-iface.interfaces.0.ipv6 }}",
            "bridge": {"options": {"stp": {"enabled": false}},
                       "port": [{"name": "{{ capture.base-iface.interfaces.0.name }}"}]}
        }]}
    });
    let resolved = b.resolve_policy(&policy, &BTreeMap::new()).await?;
    let br = &resolved.desired_state["interfaces"][0];
    ensure!(
        br["bridge"]["port"][0]["name"] == "eth0",
        "resolved {}",
        resolved.desired_state
    );
    ensure!(br["ipv4"]["dhcp"] == true, "captured ipv4 {}", br["ipv4"]);
    ensure!(
        resolved
            .captured_states
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            == ["base-iface", "default-gw"],
        "captures {:?}",
        resolved.captured_states.keys()
    );
    let after = apply_probe_commit(&b, &resolved.desired_state).await?;
    ensure!(
        iface(&after, "eth0").map(|i| &i["controller"]) == Some(&json!("br-ex")),
        "eth0 not a port"
    );
    let gws = default_gateways(&after);
    ensure!(
        gws.iter()
            .any(|g| g.interface.as_deref() == Some("br-ex")
                && g.address.to_string() == "198.18.0.1"),
        "default gateway not via br-ex: {gws:?}"
    );
    // The node changed; with the cached captures the policy still resolves to the same state.
    let again = b.resolve_policy(&policy, &resolved.captured_states).await?;
    ensure!(again == resolved, "cached resolution differs");
    Ok(())
}

async fn stale_checkpoint_of_killed_apply_is_recovered(_: NmBackend) -> anyhow::Result<()> {
    // The handler would keep its record directory across restarts; so does this one.
    let b = NmBackend::with_state_dir(RECORD_DIR);
    let before = state(&b).await?;
    let want = fingerprint(&before);
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .args(["--helper", "apply-and-hang"])
        .kill_on_drop(true)
        .spawn()?;
    let started = Instant::now();
    // Kill the apply as soon as its wrong name server reached NetworkManager: the checkpoint is
    // held and nmstate may still be verifying.
    let stale = loop {
        let cps = b.checkpoints().await?;
        let dns = state(&b).await?["dns-resolver"]["config"]["server"].clone();
        if let Some(cp) = cps.into_iter().next()
            && dns == json!(["198.18.0.99"])
        {
            break cp;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(20),
            "the helper never got its state into NetworkManager"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.start_kill()?;
    child.wait().await?;
    println!(
        "  killed the apply {:.0} ms in, holding {stale}",
        started.elapsed().as_secs_f64() * 1000.0
    );
    ensure!(
        b.checkpoints().await? == vec![stale.clone()],
        "stale checkpoint should survive the kill"
    );

    let desired =
        json!({"interfaces": [{"name": "eth1", "type": "ethernet", "state": "up", "mtu": 1450}]});
    let pending = b
        .apply(&desired, &opts())
        .await
        .context("apply after the crash")?;
    ensure!(
        pending.destroyed_stale == vec![stale.clone()],
        "stale {:?}",
        pending.destroyed_stale
    );
    ensure!(
        b.checkpoints().await? == vec![pending.checkpoint.clone()],
        "checkpoints after apply"
    );
    let mtu = sh("cat /sys/class/net/eth1/mtu")?.trim().to_string();
    ensure!(mtu == "1450", "mtu {mtu} after the new apply");
    // Rolling back the new apply returns to the state before the crashed one, DNS included.
    b.rollback(&pending.checkpoint).await?;
    ensure!(b.checkpoints().await?.is_empty(), "checkpoints left");
    let took = wait_fingerprint(&b, &want, Duration::from_secs(30)).await?;
    println!(
        "  state identical to before the crashed apply {:.1}s after rollback",
        took.as_secs_f64()
    );
    Ok(())
}

/// A crashed apply whose checkpoint NetworkManager rolled back by itself (timeout): the
/// interfaces are back but the global DNS is not (checkpoints do not cover it); start-up
/// recovery restores the DNS the crashed process recorded.
async fn timed_out_checkpoint_of_killed_apply_has_its_dns_restored(
    _: NmBackend,
) -> anyhow::Result<()> {
    let b = NmBackend::with_state_dir(RECORD_DIR);
    let before = state(&b).await?;
    let want = fingerprint(&before);
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .args(["--helper", "apply-and-hang-short"])
        .kill_on_drop(true)
        .spawn()?;
    let started = Instant::now();
    loop {
        let held = !b.checkpoints().await?.is_empty();
        let dns = state(&b).await?["dns-resolver"]["config"]["server"].clone();
        if held && dns == json!(["198.18.0.99"]) {
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(20),
            "the helper never got its state into NetworkManager"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // NetworkManager rolls the checkpoint back once it times out.
    while !b.checkpoints().await?.is_empty() {
        ensure!(
            started.elapsed() < SHORT_CHECKPOINT + Duration::from_secs(40),
            "the checkpoint did not time out"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    child.start_kill()?;
    child.wait().await?;
    let dns = state(&b).await?["dns-resolver"]["config"]["server"].clone();
    ensure!(
        dns == json!(["198.18.0.99"]),
        "the timeout was expected to leave the wrong DNS behind: {dns}"
    );
    println!(
        "  checkpoint timed out {:.1}s in, wrong DNS left behind",
        started.elapsed().as_secs_f64()
    );
    // Start-up recovery of the next process: no checkpoint to roll back, the DNS restored,
    // the attempt reported interrupted.
    let recovery = b.roll_back_stale_checkpoints().await?;
    ensure!(
        recovery.rolled_back.is_none() && recovery.foreign.is_empty(),
        "recovery {recovery:?}"
    );
    ensure!(
        recovery.dns_restored,
        "the DNS was not restored: {recovery:?}"
    );
    ensure!(
        recovery.interrupted == Some(hung_attempt()),
        "interrupted {:?}",
        recovery.interrupted
    );
    ensure!(
        b.interrupted_attempts() == vec![hung_attempt()],
        "interrupted attempts {:?}",
        b.interrupted_attempts()
    );
    b.forget_interrupted(&hung_attempt());
    let took = wait_fingerprint(&b, &want, Duration::from_secs(30)).await?;
    println!(
        "  state identical to before the crashed apply {:.1}s after recovery",
        took.as_secs_f64()
    );
    ensure!(
        !std::path::Path::new(RECORD_DIR)
            .join("pending-apply")
            .exists(),
        "the record was not removed"
    );
    Ok(())
}

/// NetworkManager's `CheckpointCreate` over all devices, as another tool would call it.
async fn create_foreign_checkpoint(timeout_secs: u32) -> anyhow::Result<String> {
    let conn = zbus::Connection::system().await?;
    let devices: Vec<zbus::zvariant::ObjectPath<'_>> = Vec::new();
    let reply = conn
        .call_method(
            Some("org.freedesktop.NetworkManager"),
            "/org/freedesktop/NetworkManager",
            Some("org.freedesktop.NetworkManager"),
            "CheckpointCreate",
            &(devices, timeout_secs, 0u32),
        )
        .await?;
    let path: zbus::zvariant::OwnedObjectPath = reply.body().deserialize()?;
    Ok(path.as_str().to_owned())
}

/// A checkpoint another tool created is never rolled back or committed: start-up recovery
/// leaves it (logged), an apply refuses to start beside it and changes nothing.
async fn foreign_checkpoint_is_left_alone(_: NmBackend) -> anyhow::Result<()> {
    let b = NmBackend::with_state_dir(RECORD_DIR);
    let before = fingerprint(&state(&b).await?);
    let foreign = create_foreign_checkpoint(60).await?;
    let recovery = b.roll_back_stale_checkpoints().await?;
    ensure!(
        recovery.rolled_back.is_none()
            && recovery
                .foreign
                .iter()
                .map(|c| c.0.as_str())
                .eq([foreign.as_str()]),
        "recovery {recovery:?}"
    );
    let desired =
        json!({"interfaces": [{"name": "eth1", "type": "ethernet", "state": "up", "mtu": 1450}]});
    let err = b
        .apply(&desired, &opts())
        .await
        .err()
        .context("the apply started beside a foreign checkpoint")?;
    ensure!(err.category() == "foreign-checkpoint", "{err}");
    println!("  refused: {err}");
    let held: Vec<String> = b.checkpoints().await?.into_iter().map(|c| c.0).collect();
    ensure!(held == vec![foreign.clone()], "checkpoints {held:?}");
    ensure!(fingerprint(&state(&b).await?) == before, "the node changed");
    // Once its owner is done with it, applies work again.
    let conn = zbus::Connection::system().await?;
    let path = zbus::zvariant::ObjectPath::try_from(foreign.as_str())?;
    conn.call_method(
        Some("org.freedesktop.NetworkManager"),
        "/org/freedesktop/NetworkManager",
        Some("org.freedesktop.NetworkManager"),
        "CheckpointDestroy",
        &(path,),
    )
    .await?;
    let pending = b.apply(&desired, &opts()).await.context("apply")?;
    ensure!(pending.destroyed_stale.is_empty(), "{pending:?}");
    b.commit(&pending.checkpoint).await?;
    ensure!(b.checkpoints().await?.is_empty(), "checkpoints left");
    Ok(())
}

async fn change_stream_reports_out_of_band_bridge_within_1s(b: NmBackend) -> anyhow::Result<()> {
    let mut changes = b.changes(Duration::from_millis(50)).await?;
    // Let start-up chatter pass.
    while tokio::time::timeout(Duration::from_millis(700), changes.next())
        .await
        .is_ok()
    {}
    let mut latencies = Vec::new();
    for round in 0..5 {
        let name = format!("knmoob{round}");
        let t0 = Instant::now();
        sh(&format!("ip link add {name} type bridge"))?;
        let batch = tokio::time::timeout(Duration::from_secs(1), changes.next())
            .await
            .context("no change batch within 1 s")?
            .context("change stream ended")?;
        let delivered = t0.elapsed();
        let first = batch.first_signal.saturating_duration_since(t0);
        ensure!(
            batch.kinds.contains(&ChangeKind::DeviceAdded),
            "kinds {:?}",
            batch.kinds
        );
        latencies.push((first, delivered));
        sh(&format!("ip link del {name}"))?;
        while tokio::time::timeout(Duration::from_millis(500), changes.next())
            .await
            .is_ok()
        {}
    }
    let mut firsts: Vec<f64> = latencies
        .iter()
        .map(|(f, _)| f.as_secs_f64() * 1000.0)
        .collect();
    let mut delivered: Vec<f64> = latencies
        .iter()
        .map(|(_, d)| d.as_secs_f64() * 1000.0)
        .collect();
    firsts.sort_by(f64::total_cmp);
    delivered.sort_by(f64::total_cmp);
    println!(
        "  change-stream latency over 5 out-of-band bridges: first signal median {:.1} ms, batch delivered (50 ms debounce) median {:.1} ms, max {:.1} ms",
        firsts[2], delivered[2], delivered[4]
    );

    // An apply through NetworkManager shows up as device, connection and IP changes.
    let desired = json!({"interfaces": [{"name": "eth1", "type": "ethernet", "state": "up",
        "ipv4": {"enabled": true, "dhcp": false, "address": [{"ip": "198.19.0.13", "prefix-length": 24}]}}]});
    let pending = b.apply(&desired, &opts()).await?;
    b.commit(&pending.checkpoint).await?;
    let mut seen = std::collections::BTreeSet::new();
    while let Ok(Some(batch)) = tokio::time::timeout(Duration::from_secs(1), changes.next()).await {
        seen.extend(batch.kinds);
    }
    for kind in [
        ChangeKind::DeviceState,
        ChangeKind::ActiveConnections,
        ChangeKind::IpConfig,
    ] {
        ensure!(
            seen.contains(&kind),
            "{kind:?} missing after an apply: {seen:?}"
        );
    }
    Ok(())
}
