//! A default route in a non-main table is not treated as breaking (upstream's rollback e2e):
//! a policy that adds a default route in table 200 through a gateway nobody answers ends
//! Available, not rolled back (the gateway probe judges the main table only), and the route
//! survives the commit and a later apply of another policy. (The out-of-band table-200 route
//! that survives the fault runs is checked there.)

use std::time::Instant;

use anyhow::{Result, bail};
use serde_json::json;

use super::fault_points::{NODE, POLICY, converged, set_desired};
use super::{Cluster, HarnessNodes, T, has_checkpoint, wait_condition};

const ROUTE: &str = "default via 198.19.20.254 dev eth2";

pub(crate) async fn run(c: &Cluster, h: &HarnessNodes) -> Result<()> {
    let t = Instant::now();
    let node = h.get(NODE);
    let main_before = node.exec(&["ip", "route", "show", "default"])?;
    c.create_policy(json!({
        "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": "table200"},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": NODE},
            "desiredState": {"routes": {"config": [
                {"destination": "0.0.0.0/0", "next-hop-address": "198.19.20.254",
                 "next-hop-interface": "eth2", "table-id": 200}]}}}
    }))
    .await?;
    let e = wait_condition(c, &format!("{NODE}.table200"), "Available", T).await?;
    let report = e.status.and_then(|s| s.last_apply);
    if report.as_ref().is_none_or(|r| r.rolled_back) {
        bail!("the table-200 default route was rolled back: {report:?}");
    }
    let table200 = node.exec(&["ip", "route", "show", "table", "200"])?;
    if !table200.contains(ROUTE) {
        bail!("no table-200 default route after the commit: {table200:?}");
    }
    let main_after = node.exec(&["ip", "route", "show", "default"])?;
    if main_after != main_before {
        bail!("the main table's default route changed: {main_before:?} -> {main_after:?}");
    }
    // Another policy's apply (and commit) leaves it alone.
    let policy = c.policies().get(POLICY).await?;
    let generation = policy.metadata.generation.unwrap_or_default() + 1;
    let to_a = policy
        .spec
        .desired_state
        .as_ref()
        .is_some_and(|d| d.to_value().pointer("/interfaces/0/mtu") != Some(&json!(1400)));
    set_desired(c, to_a).await?;
    converged(c, generation).await?;
    let table200 = node.exec(&["ip", "route", "show", "table", "200"])?;
    if !table200.contains(ROUTE) || !table200.contains("default via 198.18.0.1 dev eth0") {
        bail!("table 200 after another policy's apply: {table200:?}");
    }
    if has_checkpoint(node)? {
        bail!("a checkpoint was left");
    }
    super::scenarios::step(
        "a default route in table 200 is not rolled back and survives other applies",
        t,
    );
    Ok(())
}
