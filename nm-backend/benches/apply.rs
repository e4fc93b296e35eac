//! Apply latency of nm-backend beside direct nmstate, and change-stream latency, on a harness
//! node.
//!
//! `cargo bench -p knmstate-nm-backend --bench apply` (root): brings up one harness node and
//! re-runs itself inside it. The desired state is the `examples/linux-bridge.yaml` policy's
//! (`br1` over `eth1`, STP off, no IPv4). Each of 10 rounds measures, from a node without `br1`:
//! nm-backend `apply` + `commit` (checkpoint held, stale-checkpoint and kernel checks included),
//! and the nmstate crate's own blocking `NetworkState::apply()` called directly; `br1` is removed
//! (not timed) before each measurement. Then 20 out-of-band `ip link add ... type bridge` measure
//! the change stream (50 ms debounce).

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use futures::StreamExt;
use knmstate_nm_backend::{ApplyOptions, Backend, NmBackend};
use nmstate::NetworkState;
use serde_json::{Value, json};

const ROUNDS: usize = 10;
const CHANGE_ROUNDS: usize = 20;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--inner") {
        return inner();
    }
    // `cargo test --benches` runs benches in test mode: nothing to measure there.
    if args.iter().any(|a| a == "--test" || a == "--list") || !args.iter().any(|a| a == "--bench") {
        println!("apply bench: run with `cargo bench` to measure");
        return ExitCode::SUCCESS;
    }
    if let Some(reason) = support::skip_reason() {
        println!("skipping apply bench: {reason}");
        return ExitCode::SUCCESS;
    }
    let nodes = support::Nodes::new("knmb");
    if let Err(e) = nodes.up(1) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    let out = match nodes.run_self("node1", &["--inner"]) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    nodes.down();
    if out.status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn bridge() -> Value {
    json!({"interfaces": [{
        "name": "br1", "description": "Linux bridge with eth1 as a port",
        "type": "linux-bridge", "state": "up", "ipv4": {"enabled": false},
        "bridge": {"options": {"stp": {"enabled": false}}, "port": [{"name": "eth1"}]}
    }]})
}

fn direct_apply(desired: &Value) -> Result<Duration, String> {
    let state: NetworkState = serde_json::from_value(desired.clone()).map_err(|e| e.to_string())?;
    // nmstate's blocking API starts its own runtime: call it from a plain thread.
    std::thread::spawn(move || {
        let started = Instant::now();
        state
            .apply()
            .map(|()| started.elapsed())
            .map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "nmstate apply thread panicked".to_string())?
}

fn remove_bridge() -> Result<(), String> {
    direct_apply(
        &json!({"interfaces": [{"name": "br1", "type": "linux-bridge", "state": "absent"}]}),
    )
    .map(|_| ())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn inner() -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(measure()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn measure() -> Result<(), String> {
    let backend = NmBackend::new();
    let options = ApplyOptions::default();
    let desired = bridge();
    let (mut via_backend, mut direct) = (Vec::new(), Vec::new());
    // One unmeasured warm-up of each path.
    for round in 0..=ROUNDS {
        remove_bridge()?;
        let started = Instant::now();
        let pending = backend
            .apply(&desired, &options)
            .await
            .map_err(|e| e.to_string())?;
        backend
            .commit(&pending.checkpoint)
            .await
            .map_err(|e| e.to_string())?;
        let t_backend = started.elapsed();
        remove_bridge()?;
        let d = desired.clone();
        let t_direct = tokio::task::spawn_blocking(move || direct_apply(&d))
            .await
            .map_err(|e| e.to_string())??;
        if round > 0 {
            via_backend.push(ms(t_backend));
            direct.push(ms(t_direct));
        }
    }
    remove_bridge()?;
    let version = backend.nm_version().await.map_err(|e| e.to_string())?;
    println!(
        "NetworkManager {version}, nmstate {}",
        knmstate_nm_backend::NMSTATE_VERSION
    );
    // nmstate sleeps 1 s before re-verifying when NetworkManager was not done at the first check:
    // count the rounds that paid for it.
    let slow = |v: &[f64]| v.iter().filter(|ms| **ms > 1000.0).count();
    println!(
        "linux-bridge apply, median of {ROUNDS}: nm-backend apply+commit {:.0} ms (min {:.0}, max {:.0}, {} rounds > 1 s); direct nmstate apply {:.0} ms (min {:.0}, max {:.0}, {} rounds > 1 s)",
        median(via_backend.clone()),
        via_backend.iter().copied().fold(f64::MAX, f64::min),
        via_backend.iter().copied().fold(0.0, f64::max),
        slow(&via_backend),
        median(direct.clone()),
        direct.iter().copied().fold(f64::MAX, f64::min),
        direct.iter().copied().fold(0.0, f64::max),
        slow(&direct),
    );
    println!("  nm-backend rounds (ms): {via_backend:.0?}");
    println!("  direct rounds (ms):     {direct:.0?}");

    let mut changes = backend
        .changes(Duration::from_millis(50))
        .await
        .map_err(|e| e.to_string())?;
    while tokio::time::timeout(Duration::from_millis(700), changes.next())
        .await
        .is_ok()
    {}
    let (mut first, mut delivered) = (Vec::new(), Vec::new());
    for i in 0..CHANGE_ROUNDS {
        let name = format!("knmbench{i}");
        let started = Instant::now();
        let status = std::process::Command::new("ip")
            .args(["link", "add", &name, "type", "bridge"])
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("ip link add {name} failed"));
        }
        let batch = tokio::time::timeout(Duration::from_secs(2), changes.next())
            .await
            .map_err(|_| "no change batch within 2 s".to_string())?
            .ok_or("change stream ended")?;
        delivered.push(ms(started.elapsed()));
        first.push(ms(batch.first_signal.saturating_duration_since(started)));
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &name])
            .status();
        while tokio::time::timeout(Duration::from_millis(400), changes.next())
            .await
            .is_ok()
        {}
    }
    println!(
        "change stream, median of {CHANGE_ROUNDS} out-of-band bridges: first NM signal {:.1} ms, debounced batch delivered {:.1} ms (max {:.1} ms, debounce 50 ms)",
        median(first),
        median(delivered.clone()),
        delivered.iter().copied().fold(0.0, f64::max)
    );
    Ok(())
}
