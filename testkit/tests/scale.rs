//! The per-rollout API bound at 100 nodes, from the stand-in's request counters: 100 real
//! handlers (in-memory networks, the controller in-process) roll a policy out with
//! maxUnavailable 50 % (two waves: the test runs in a debug build), two nodes failing. The
//! rollout (until the slot releases after the last ends are done) costs at most 20 requests
//! per node, the slot path lists nothing (no list of Nodes, enactments or ledgers once the
//! handlers run: they read them from watches), maxUnavailable holds, and an idle handler
//! writes nothing. `hack/test.sh` runs it (the harness is behind the `scale` feature).

use std::time::Duration;

use anyhow::Result;
use knmstate_testkit::scale::{self, Scenario};

const NODES: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_over_100_nodes_costs_at_most_20_requests_per_node() -> Result<()> {
    let scenario = Scenario {
        nodes: NODES,
        max_unavailable: "50%".into(),
        apply_time: Duration::from_millis(300),
        failing: 2,
        idle_window: Duration::from_secs(5),
        layout: scale::Layout::InProcess,
        rollout_timeout: None,
    };
    let f = scale::run(&scenario).await?;
    println!("{}\n{}", scale::Figures::header(), f.row());
    println!("rollout: {}\nidle: {}", f.rollout_requests, f.idle_requests);
    let r = &f.rollout_requests;
    assert!(
        r.total() <= 20 * NODES as u64,
        "{} requests for {NODES} nodes: {r}",
        r.total()
    );
    for resource in [
        "nodes",
        "nodenetworkconfigurationenactments.nmstate.io",
        "leases.coordination.k8s.io",
    ] {
        assert_eq!(r.of("list", resource), 0, "lists of {resource}: {r}");
    }
    assert!(
        f.max_applying <= scenario.slots(),
        "{} applying at once",
        f.max_applying
    );
    // The controller's leader election renews its Lease; nothing else is written.
    assert_eq!(
        f.idle_handler_writes, 0,
        "handler objects written while idle"
    );
    let idle = &f.idle_requests;
    let election = idle.of("update", "leases.coordination.k8s.io");
    assert_eq!(idle.writes() - election, 0, "idle writes: {idle}");
    assert!(election <= 5, "idle lease updates: {idle}");
    assert_eq!(idle.verb("list"), 0, "idle lists: {idle}");
    Ok(())
}
