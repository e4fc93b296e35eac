//! How many API requests the controller needs to aggregate one policy over 100 simulated
//! nodes, from the stand-in's request counters. Upstream has every handler list all
//! enactments, nodes and handler pods and write the policy status on each of its
//! reconciles: O(N) reads per handler, O(N²) per rollout. Here the controller lists and
//! watches once and writes only when the status changes meaning.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use common::Cluster;
use knmstate_state_engine::conditions::EnactmentTransition as T;

const NODES: usize = 100;

fn diff(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> Vec<String> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0);
            (d > 0).then(|| format!("  {k} {d}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_aggregate_a_policy_over_100_nodes() -> Result<()> {
    let c = Cluster::start().await?;
    for i in 0..NODES {
        c.add_node(&format!("node-{i:03}"), &[("role", "worker")], true, true)
            .await?;
    }
    // A finished rollout the controller has not seen yet.
    let g = c.create_policy("p", &[("role", "worker")]).await?;
    for i in 0..NODES {
        let node = format!("node-{i:03}");
        c.create_enactment(&node, "p").await?;
        c.enact(&node, "p", g, T::Success, |_| {}).await?;
    }

    // 1. Cold start: list+watch four kinds, elect, aggregate, write once.
    let (total0, own0, kinds0) = (c.total_requests(), c.own(), c.requests_by_kind());
    let ctl = c
        .start_controller_with("a", |cfg| {
            // Production election timings: the measurement is not inflated by fast renewals.
            cfg.lease.lease_duration = Duration::from_secs(15);
            cfg.lease.renew_deadline = Duration::from_secs(10);
            cfg.lease.retry_period = Duration::from_secs(2);
        })
        .await?;
    c.wait_policy("p", "Available", "100/100 nodes successfully configured")
        .await?;
    let (total1, own1, kinds1) = (c.total_requests(), c.own(), c.requests_by_kind());
    let cold = (total1 - total0) - (own1 - own0);
    println!(
        "controller API requests to aggregate 1 policy over {NODES} nodes from a cold start: {cold}\n{}",
        diff(&kinds0, &kinds1).join("\n")
    );

    // 2. A live rollout: 100 handlers each create their enactment, report Progressing,
    //    then Success, one after another, while the controller keeps the policy status
    //    current. Every finished node changes the status message; the controller writes
    //    transitions at once and counts at most once per second.
    let started = std::time::Instant::now();
    let g2 = c.create_policy("q", &[("role", "worker")]).await?;
    c.wait_policy(
        "q",
        "Progressing",
        "Policy is progressing 0/100 nodes finished",
    )
    .await?;
    for i in 0..NODES {
        let node = format!("node-{i:03}");
        c.create_enactment(&node, "q").await?;
        c.enact(&node, "q", g2, T::Progressing, |_| {}).await?;
        c.enact(&node, "q", g2, T::Success, |_| {}).await?;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    c.wait_policy("q", "Available", "100/100 nodes successfully configured")
        .await?;
    let (total2, own2, kinds2) = (c.total_requests(), c.own(), c.requests_by_kind());
    let seconds = started.elapsed().as_secs();
    let rollout = (total2 - total1) - (own2 - own1);
    println!(
        "controller API requests during a live rollout of 1 policy over {NODES} nodes ({seconds} s): {rollout}\n{}",
        diff(&kinds1, &kinds2)
            .into_iter()
            .filter(|l| !l.contains("nodenetworkconfigurationenactments"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Cold: 4 lists + 4 watches, a few Lease calls, 1 status write, 1 event.
    assert!(cold <= 20, "cold aggregation took {cold} requests");
    // Live: at most one status write per second of rollout (and never more than one per
    // finished node) plus an event per transition; never a read per node. Lease renewals
    // depend on the elapsed time, not on the number of nodes.
    let count = |kinds: &BTreeMap<String, u64>, part: &str| -> u64 {
        kinds
            .iter()
            .filter(|(k, _)| k.contains(part))
            .map(|(_, v)| v)
            .sum()
    };
    let lease = count(&kinds2, "leases.") - count(&kinds1, "leases.");
    let writes = count(
        &kinds2,
        "nodenetworkconfigurationpolicies.nmstate.io/status",
    ) - count(
        &kinds1,
        "nodenetworkconfigurationpolicies.nmstate.io/status",
    );
    let bound = (seconds + 4).min(NODES as u64 + 2);
    assert!(writes <= bound, "{writes} status writes in {seconds} s");
    assert!(
        rollout - lease <= bound + 5,
        "a rollout took {rollout} requests ({lease} for the Lease)"
    );
    ctl.shutdown().await;
    c.server.shutdown().await;
    Ok(())
}
