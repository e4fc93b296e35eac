//! The `knmstate-controller` binary as a separate process: cluster found through
//! `KUBECONFIG`, metrics address from `METRICS_BIND_ADDRESS`, graceful SIGTERM releasing the
//! Lease.

mod common;

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use common::{Cluster, eventually, http_get};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_aggregates_serves_health_and_stops_on_sigterm() -> Result<()> {
    let c = Cluster::start().await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    c.server.write_kubeconfig(&kubeconfig)?;
    c.add_node("node-0", &[], true, true).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_knmstate-controller"))
        .env("KUBECONFIG", &kubeconfig)
        .env("METRICS_BIND_ADDRESS", addr.to_string())
        // Plain HTTP, the development setting: this test reads health and metrics without a
        // token (tests/metrics_access.rs covers the secure default).
        .env("METRICS_SECURE", "false")
        .env("RUST_LOG", "warn")
        .args(["--identity", "bin", "--retry-period-seconds", "1"])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("no pid")?;

    eventually("healthy and ready", Duration::from_secs(20), || async {
        let health = http_get(addr, "/healthz").await?.0;
        let ready = http_get(addr, "/readyz").await?.0;
        Ok((health == 200 && ready == 200).then_some(()))
    })
    .await?;
    let holder = eventually("lease holder", Duration::from_secs(10), || async {
        c.lease_holder().await
    })
    .await?;
    assert!(holder.starts_with("bin-"), "{holder}");
    c.create_policy("p", &[]).await?;
    c.wait_policy(
        "p",
        "Progressing",
        "Policy is progressing 0/1 nodes finished",
    )
    .await?;

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await??;
    assert!(status.success(), "{status}");
    assert_eq!(
        c.lease_holder().await?,
        None,
        "the Lease is released on SIGTERM"
    );
    c.server.shutdown().await;
    Ok(())
}
