//! End-to-end: how a policy's enactments move, how many nodes apply at once, and what is left
//! after a policy is deleted. Needs a cluster (`KUBECONFIG`); skips without one.

use std::collections::BTreeMap;
use std::time::Duration;

use knmstate_testkit::cluster::{
    E2e, EnactmentLog, EnactmentWatch, absent, active_condition, bad_gateway_spec, bridge, connect,
    policy,
};
use kube::api::DynamicObject;
use serde_json::json;

const ROLLOUT: Duration = Duration::from_mins(3);

/// A good policy: every node goes (Pending →) Progressing → Available, nothing else; the policy
/// ends Available with "N/N nodes successfully configured"; deleting it deletes its enactments.
#[tokio::test]
async fn a_good_policy_goes_progressing_then_available_on_every_node() -> anyhow::Result<()> {
    let Some(e2e) = connect("enactment sequences").await else {
        return Ok(());
    };
    let nodes = e2e.handler_nodes().await?;
    let name = "e2e-sequence";
    e2e.delete_policy(name).await?;
    let watch = EnactmentWatch::start(&e2e, name);
    tokio::time::sleep(Duration::from_millis(300)).await;
    e2e.apply_policy(&policy(
        name,
        json!({"desiredState": {"interfaces": [bridge("e2eseq0")]}}),
    ))
    .await?;
    let p = e2e.wait_policy(name, "Available", ROLLOUT).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = watch.stop();
    let (_, reason, message) = active_condition(&p).expect("an active condition");
    assert_eq!(reason, "SuccessfullyConfigured");
    assert_eq!(
        message,
        format!("{n}/{n} nodes successfully configured", n = nodes.len())
    );
    for node in &nodes {
        let types = log.types(node);
        let types: Vec<&str> = types
            .iter()
            .map(String::as_str)
            .filter(|t| *t != "None")
            .collect();
        assert_eq!(types.last(), Some(&"Available"), "{node}: {types:?}");
        assert!(
            types.contains(&"Progressing"),
            "{node} never showed Progressing: {types:?}"
        );
        assert!(
            types
                .iter()
                .all(|t| matches!(*t, "Pending" | "Progressing" | "Available")),
            "{node}: unexpected condition in {types:?}"
        );
        let first_progressing = types.iter().position(|t| *t == "Progressing");
        let last_pending = types.iter().rposition(|t| *t == "Pending");
        if let (Some(p), Some(q)) = (first_progressing, last_pending) {
            assert!(q < p, "{node}: Pending after Progressing: {types:?}");
        }
    }
    assert_eq!(log.peak.get("Failing").copied().unwrap_or(0), 0, "{log:?}");

    // Deleting the policy deletes its enactments (and leaves the configuration in place).
    e2e.delete_policy(name).await?;
    assert!(e2e.enactments(name).await?.is_empty());
    for node in &nodes {
        // Deleting a policy must not undo its configuration.
        e2e.wait_reported(node, "e2eseq0", true).await?;
    }
    e2e.restore(
        "e2e-sequence-undo",
        None,
        json!({"interfaces": [absent("e2eseq0")]}),
    )
    .await?;
    Ok(())
}

/// maxUnavailable 1: never more than one node Progressing at once, and all end Available.
#[tokio::test]
async fn max_unavailable_limits_the_nodes_progressing_at_once() -> anyhow::Result<()> {
    let Some(e2e) = connect("maxUnavailable").await else {
        return Ok(());
    };
    let nodes = e2e.handler_nodes().await?;
    let name = "e2e-max-unavailable";
    e2e.delete_policy(name).await?;
    let watch = EnactmentWatch::start(&e2e, name);
    tokio::time::sleep(Duration::from_millis(300)).await;
    e2e.apply_policy(&policy(
        name,
        json!({"maxUnavailable": 1, "desiredState": {"interfaces": [bridge("e2emu0")]}}),
    ))
    .await?;
    e2e.wait_policy(name, "Available", ROLLOUT).await?;
    let log = watch.stop();
    assert!(
        log.peak.get("Progressing").copied().unwrap_or(0) <= 1,
        "more than maxUnavailable=1 nodes progressing at once: {log:?}"
    );
    assert_eq!(log.peak.get("Progressing").copied(), Some(1), "{log:?}");
    for node in &nodes {
        assert_eq!(
            log.types(node).last().map(String::as_str),
            Some("Available")
        );
    }
    e2e.delete_policy(name).await?;
    e2e.restore(
        "e2e-max-unavailable-undo",
        None,
        json!({"interfaces": [absent("e2emu0")]}),
    )
    .await?;
    Ok(())
}

/// A policy that breaks every node (and is rolled back), maxUnavailable 1: at most one node Failing, the others
/// Aborted without touching their network; the policy is Degraded and says so.
#[tokio::test]
async fn a_bad_policy_fails_on_max_unavailable_nodes_and_aborts_the_rest() -> anyhow::Result<()> {
    let Some(e2e) = connect("maxUnavailable with a bad policy").await else {
        return Ok(());
    };
    let nodes = e2e.handler_nodes().await?;
    let name = "e2e-bad-max-unavailable";
    e2e.delete_policy(name).await?;
    let watch = EnactmentWatch::start(&e2e, name);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A default gateway that does not answer: the probe fails and the apply is rolled back.
    let mut spec = bad_gateway_spec();
    spec["maxUnavailable"] = json!(1);
    e2e.apply_policy(&policy(name, spec)).await?;
    let (enactments, log) = wait_one_failing_rest_aborted(&e2e, name, nodes.len(), watch).await?;
    for (node, e) in &enactments {
        let (t, _, message) = active_condition(e).expect("active");
        // Condition sequences: the failed node applied (Progressing, Retrying) and then failed
        // for good; an aborted node never applied, so it never failed.
        let seq = log.sequences.get(node).cloned().unwrap_or_default();
        if t == "Failing" {
            assert!(
                message.contains("198.18.0.250"),
                "the failure names the gateway: {message}"
            );
            assert!(
                seq.iter().any(|s| s.starts_with("Progressing/")),
                "{node}: {seq:?}"
            );
            assert!(
                seq.iter().any(|s| s == "Progressing/Retrying"),
                "{node}: a failed attempt is retried before the enactment fails: {seq:?}"
            );
            assert_eq!(
                seq.last().map(String::as_str),
                Some("Failing/FailedToConfigure")
            );
        } else {
            assert!(
                !seq.iter().any(|s| s.starts_with("Failing/")),
                "{node}: {seq:?}"
            );
            assert_eq!(
                seq.last().map(String::as_str),
                Some("Aborted/ConfigurationAborted"),
                "{node}"
            );
        }
    }
    let degraded = wait_degraded_one_failing(&e2e, name, nodes.len()).await;
    e2e.delete_policy(name).await?;
    assert_eq!(degraded?, "FailedToConfigure");
    Ok(())
}

/// A desired state nmstate rejects (an ethernet interface no node has), maxUnavailable 1: only
/// the apply finds the error, inside a slot, so exactly one node Failing and the others
/// Aborted, and the policy Degraded with upstream's message (nmstate's feature statistics,
/// which also fail on it, must not fail the policy on every node at once).
#[tokio::test]
async fn a_policy_nmstate_rejects_fails_on_max_unavailable_nodes_and_aborts_the_rest()
-> anyhow::Result<()> {
    let Some(e2e) = connect("maxUnavailable with a rejected policy").await else {
        return Ok(());
    };
    let nodes = e2e.handler_nodes().await?;
    let name = "e2e-rejected-max-unavailable";
    e2e.delete_policy(name).await?;
    let watch = EnactmentWatch::start(&e2e, name);
    tokio::time::sleep(Duration::from_millis(300)).await;
    e2e.apply_policy(&policy(
        name,
        json!({"maxUnavailable": 1, "desiredState": {"interfaces": [
            {"name": "e2enic9", "type": "ethernet", "state": "up"}]}}),
    ))
    .await?;
    let (enactments, log) = wait_one_failing_rest_aborted(&e2e, name, nodes.len(), watch).await?;
    for (node, e) in &enactments {
        let (t, _, message) = active_condition(e).expect("active");
        let seq = log.sequences.get(node).cloned().unwrap_or_default();
        if t == "Failing" {
            assert!(
                !message.contains("feature statistics"),
                "the statistics failed the policy: {message}"
            );
            assert!(message.contains("e2enic9"), "{message}");
            assert!(
                seq.iter().any(|s| s.starts_with("Progressing/")),
                "{node}: the failure came from an apply inside the slot: {seq:?}"
            );
        } else {
            assert!(
                !seq.iter().any(|s| s.starts_with("Failing/")),
                "{node}: {seq:?}"
            );
        }
    }
    let degraded = wait_degraded_one_failing(&e2e, name, nodes.len()).await;
    e2e.delete_policy(name).await?;
    assert_eq!(degraded?, "FailedToConfigure");
    Ok(())
}

/// Wait until every one of the `nodes` enactments of `name` failed or aborted; asserts exactly
/// one Failing, the others Aborted, never more than one Progressing at once.
async fn wait_one_failing_rest_aborted(
    e2e: &E2e,
    name: &str,
    nodes: usize,
    watch: EnactmentWatch,
) -> anyhow::Result<(BTreeMap<String, DynamicObject>, EnactmentLog)> {
    let enactments = e2e
        .wait_until("every enactment to fail or abort", ROLLOUT, || async {
            let es = e2e.enactments(name).await?;
            let done = es.len() == nodes
                && es.values().all(|e| {
                    matches!(
                        active_condition(e).map(|c| c.0).as_deref(),
                        Some("Failing" | "Aborted")
                    ) && !knmstate_testkit::cluster::is_true(e, "Progressing")
                });
            Ok(done.then_some(es))
        })
        .await
        .map_err(|e| e.context(format!("{:?}", watch.snapshot())))?;
    let log = watch.stop();
    let failing = enactments
        .values()
        .filter(|e| active_condition(e).is_some_and(|c| c.0 == "Failing"))
        .count();
    let aborted = enactments.len() - failing;
    assert_eq!(failing, 1, "{log:?}");
    assert_eq!(aborted, nodes - 1, "{log:?}");
    assert!(
        log.peak.get("Progressing").copied().unwrap_or(0) <= 1,
        "{log:?}"
    );
    Ok((enactments, log))
}

/// Wait for the policy `name` to be Degraded with one of `nodes` failed and the others
/// aborted (the controller aggregates asynchronously); its reason.
async fn wait_degraded_one_failing(e2e: &E2e, name: &str, nodes: usize) -> anyhow::Result<String> {
    let want = format!(
        "1/{nodes} nodes failed to configure, {} nodes aborted configuration",
        nodes - 1
    );
    let seen = e2e
        .wait_until(
            "the policy to be Degraded with the final counts",
            Duration::from_secs(30),
            || async {
                let p = e2e.nncp.get(name).await?;
                let c = active_condition(&p).unwrap_or_default();
                Ok((c.0 == "Degraded" && c.2 == want).then_some(c))
            },
        )
        .await;
    let last = active_condition(&e2e.nncp.get(name).await?);
    let (_, reason, _) = seen.map_err(|e| e.context(format!("last seen: {last:?}")))?;
    Ok(reason)
}
