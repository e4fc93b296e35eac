//! The handler against the API stand-in with in-memory node networks (no root needed).

#[path = "../support/mod.rs"]
mod support;

mod apiserver_restart;
mod concurrency;
mod drift;
mod failures;
mod foreign_checkpoint;
mod ghost;
mod ordering;
mod oversized;
mod rejected;
mod secrets;
mod stall;
mod state;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::events::v1::Event;
use knmstate_api::v1beta1::NodeNetworkState;
use knmstate_handler::probes::{ModelProbes, ProbeEnv, ProbeFactory};
use knmstate_nm_backend::probe::{Probe, ProbeContext, ProbeFuture, ProbeOutcome};
use knmstate_nm_backend::{ApplyOptions, Backend, MemoryBackend};
use knmstate_state_engine::rollback::{ProbeKind, ProbeSpec};
use knmstate_testkit::scale::handlers::track_applying;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::*;

const T: Duration = Duration::from_secs(20);

async fn rollout(max_unavailable: Option<Value>) -> Result<(usize, Vec<MemoryBackend>, Cluster)> {
    let c = Cluster::start().await?;
    let mut policy = example("linux-bridge.yaml")?;
    if let Some(m) = max_unavailable {
        policy["spec"]["maxUnavailable"] = m;
    }
    let mut backends = Vec::new();
    let mut handlers = Vec::new();
    for i in 1..=3 {
        let node = format!("n{i}");
        c.add_node(&node, &[]).await?;
        let b = MemoryBackend::harness_like(&format!("198.18.0.10{i}"));
        handlers.push(c.start_handler(&node, b.clone(), Duration::from_millis(400)));
        backends.push(b);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (max, tracker) = track_applying(backends.clone(), stop.clone());
    c.create_policy(policy).await?;
    for i in 1..=3 {
        wait_condition(&c, &format!("n{i}.linux-bridge"), "Available", T).await?;
    }
    stop.store(true, Ordering::SeqCst);
    tracker.await?;
    for h in handlers {
        h.stop().await?;
    }
    Ok((max.load(Ordering::SeqCst), backends, c))
}
