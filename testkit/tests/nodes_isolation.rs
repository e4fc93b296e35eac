//! The node harness leaves the host untouched: the host's resolver file, hostname, links,
//! routes, mounts, network namespaces and `/run` entries are byte-identical before setup and
//! after teardown, even though the nodes' `NetworkManagers` rewrote their own resolv.conf and
//! hostname meanwhile.

use std::{process::Command, sync::Mutex};

use anyhow::{Context, ensure};
use knmstate_testkit::nodes::Cluster;

fn run(cmd: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .with_context(|| cmd.join(" "))?;
    ensure!(out.status.success(), "{} failed", cmd.join(" "));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[derive(Debug, PartialEq, Eq)]
struct HostSnapshot {
    resolv_conf: Vec<u8>,
    etc_hostname: Option<Vec<u8>>,
    hostname: String,
    links: String,
    routes: String,
    routes6: String,
    mounts: String,
    netns: String,
    run_entries: Vec<String>,
}

fn snapshot() -> anyhow::Result<HostSnapshot> {
    // Other harness users' namespace mounts (`/run/netns/<prefix>-...`) are not ours to compare.
    let mounts = std::fs::read_to_string("/proc/self/mounts")?
        .lines()
        .filter(|l| {
            !l.contains("/run/netns/")
                || l.contains("/run/netns/knme-")
                || l.contains("/run/netns/knmf-")
        })
        .collect::<Vec<_>>()
        .join("\n");
    Ok(HostSnapshot {
        resolv_conf: std::fs::read("/etc/resolv.conf")?,
        etc_hostname: std::fs::read("/etc/hostname").ok(),
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")?,
        links: run(&["ip", "link"])?,
        routes: run(&["ip", "route"])?,
        routes6: run(&["ip", "-6", "route"])?,
        mounts,
        run_entries: {
            let mut names: Vec<String> = std::fs::read_dir("/run")?
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect();
            names.sort();
            names
        },
        netns: run(&["ip", "netns", "list"])?
            .lines()
            .filter(|l| l.starts_with("knme-") || l.starts_with("knmf-"))
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

/// The host snapshots of two tests running at once would see each other's clusters.
static HOST: Mutex<()> = Mutex::new(());

#[test]
fn host_is_identical_before_setup_and_after_teardown() -> anyhow::Result<()> {
    if let Some(reason) = Cluster::skip_reason() {
        println!("skipping harness isolation test: {reason}");
        return Ok(());
    }
    let _host = HOST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = snapshot()?;
    let cluster = Cluster::up("knme", 2)?;
    ensure!(cluster.nodes().len() == 2);

    for node in cluster.nodes() {
        ensure!(
            node.exec(&["hostname"])?.trim() == node.name(),
            "{} hostname",
            node.name()
        );
        let resolv = node.exec(&["cat", "/etc/resolv.conf"])?;
        ensure!(
            resolv.contains("nameserver 198.18.0.1"),
            "{}: {resolv}",
            node.name()
        );
        let route = node.exec(&["ip", "route", "show", "default"])?;
        ensure!(
            route.contains("via 198.18.0.1 dev eth0"),
            "{}: {route}",
            node.name()
        );
        node.exec(&["ping", "-n", "-c1", "-W2", "198.18.0.1"])?;
    }
    // The switch reaches the nodes (and serves DNS for them).
    let node1_addr = cluster
        .node("node1")
        .context("node1")?
        .exec(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"])?;
    let node1_ip = node1_addr
        .split_whitespace()
        .find_map(|w| w.strip_suffix("/24"))
        .context("node1 has no 198.18.0.x/24")?
        .to_string();
    cluster.switch_exec(&["ping", "-n", "-c1", "-W2", &node1_ip])?;
    ensure!(
        cluster.switch_exec(&["hostname"])? == before.hostname,
        "the switch shares the host UTS"
    );

    // Make node1's NetworkManager rewrite its resolv.conf and hostname file.
    let node1 = cluster.node("node1").context("node1")?;
    node1.exec(&[
        "nmcli",
        "connection",
        "modify",
        "eth0",
        "ipv4.dns",
        "198.18.0.53",
        "ipv4.dns-search",
        "isolation.test",
    ])?;
    node1.exec(&["nmcli", "connection", "up", "eth0"])?;
    node1.exec(&["nmcli", "general", "hostname", "renamed-node1"])?;
    let resolv = node1.exec(&["cat", "/etc/resolv.conf"])?;
    ensure!(
        resolv.contains("198.18.0.53"),
        "node1 resolv.conf: {resolv}"
    );
    ensure!(
        node1
            .exec(&["cat", "/etc/hostname"])?
            .contains("renamed-node1")
    );
    let during = snapshot()?;
    ensure!(
        during.resolv_conf == before.resolv_conf,
        "host resolv.conf changed while nodes ran"
    );
    ensure!(
        during.hostname == before.hostname,
        "host hostname changed while nodes ran"
    );
    ensure!(
        during.etc_hostname == before.etc_hostname,
        "host /etc/hostname changed while nodes ran"
    );
    ensure!(
        during.links == before.links,
        "host links changed while nodes ran"
    );
    ensure!(
        during.routes == before.routes && during.routes6 == before.routes6,
        "host routes changed"
    );

    cluster.teardown()?;
    let after = snapshot()?;
    assert_eq!(before, after, "host state differs after teardown");
    Ok(())
}

#[test]
fn exec_on_a_missing_node_is_an_error() {
    if Cluster::skip_reason().is_some() {
        return;
    }
    // No cluster with this prefix is up: the harness must refuse, not run on the host.
    let err = Command::new("bash")
        .arg(Cluster::script())
        .args(["--prefix", "knmnone", "exec", "node1", "true"])
        .output()
        .map(|o| o.status.success());
    assert_eq!(err.ok(), Some(false));
}

#[test]
fn down_cleans_up_after_a_crashed_test() -> anyhow::Result<()> {
    if let Some(reason) = Cluster::skip_reason() {
        println!("skipping harness crash test: {reason}");
        return Ok(());
    }
    let _host = HOST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = snapshot()?;
    let cluster = Cluster::up("knmf", 1)?;
    let status = cluster.status()?;
    let nm_pid = status
        .split_whitespace()
        .find_map(|w| w.strip_prefix("nm-pid="))
        .context("no nm-pid in status")?
        .to_string();
    // A test process that dies takes no teardown with it: forget the cluster, leave a process
    // running on the node and kill its NetworkManager, as a crash would.
    std::mem::forget(cluster);
    let _sleeper = Command::new("bash")
        .arg(Cluster::script())
        .args(["--prefix", "knmf", "exec", "node1", "sleep", "3141"])
        .spawn()?;
    let started = std::time::Instant::now();
    while run(&["pgrep", "-f", "^sleep 3141$"]).is_err() {
        ensure!(
            started.elapsed().as_secs() < 10,
            "the process on the node never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    run(&["kill", "-9", &nm_pid])?;
    ensure!(
        run(&["ip", "netns", "list"])?.contains("knmf-node1"),
        "node namespace should outlive the crash"
    );

    let out = Command::new("bash")
        .arg(Cluster::script())
        .args(["--prefix", "knmf", "down"])
        .output()?;
    ensure!(
        out.status.success(),
        "down failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let leftovers = run(&["pgrep", "-af", "^sleep 3141$"]).unwrap_or_default();
    ensure!(leftovers.trim().is_empty(), "processes left: {leftovers}");
    let after = snapshot()?;
    assert_eq!(before, after, "host state differs after down");
    Ok(())
}
