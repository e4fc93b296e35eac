//! End-to-end: how a policy's enactments move, how many nodes apply at once, and what is left
//! after a policy is deleted. Needs a cluster (`KUBECONFIG`); skips without one.

use std::time::Duration;

use knmstate_testkit::cluster::{
    EnactmentWatch, absent, active_condition, bad_gateway_spec, bridge, connect, policy,
};
use serde_json::json;

const ROLLOUT: Duration = Duration::from_secs(180);

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
    let enactments = e2e
        .wait_until("every enactment to fail or abort", ROLLOUT, || async {
            let es = e2e.enactments(name).await?;
            let done = es.len() == nodes.len()
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
    assert_eq!(aborted, nodes.len() - 1, "{log:?}");
    assert!(
        log.peak.get("Progressing").copied().unwrap_or(0) <= 1,
        "{log:?}"
    );
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
    // The policy status follows the enactments (the controller aggregates asynchronously).
    let want = format!(
        "1/{} nodes failed to configure, {} nodes aborted configuration",
        nodes.len(),
        nodes.len() - 1
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
    e2e.delete_policy(name).await?;
    let (_, reason, _) = seen.map_err(|e| e.context(format!("last seen: {last:?}")))?;
    assert_eq!(reason, "FailedToConfigure");
    Ok(())
}
