//! End-to-end: the controller's Prometheus metrics agree with what the API holds. Needs a
//! cluster (`KUBECONFIG`) and the metrics URL (`KNMSTATE_E2E_METRICS_URL`); skips without them.

use std::collections::BTreeMap;
use std::time::Duration;

use knmstate_testkit::cluster::{
    E2e, absent, active_condition, bridge, connect, http_get, metric_value, policy,
};
use kube::ResourceExt;
use kube::api::ListParams;
use serde_json::json;

const POLICY_TYPES: [&str; 4] = ["Available", "Degraded", "Progressing", "Ignored"];
const ENACTMENT_TYPES: [&str; 5] = ["Available", "Failing", "Progressing", "Pending", "Aborted"];

/// Every expected sample `(name, labels) → value` computed from the API objects.
async fn expected_samples(e2e: &E2e) -> anyhow::Result<Vec<(String, Vec<(String, String)>, f64)>> {
    let mut out = Vec::new();
    let policies = e2e.nncp.list(&ListParams::default()).await?.items;
    for t in POLICY_TYPES {
        let n = policies
            .iter()
            .filter(|p| active_condition(p).is_some_and(|c| c.0 == t))
            .count();
        out.push((
            "kubernetes_nmstate_policies_status".into(),
            vec![("status".into(), t.into())],
            n as f64,
        ));
    }
    let enactments = e2e.nnce.list(&ListParams::default()).await?.items;
    let mut per_node: BTreeMap<String, BTreeMap<&str, usize>> = BTreeMap::new();
    for e in &enactments {
        let node = e
            .labels()
            .get("nmstate.io/node")
            .cloned()
            .unwrap_or_default();
        let entry = per_node.entry(node).or_default();
        if let Some((t, _, _)) = active_condition(e)
            && let Some(k) = ENACTMENT_TYPES.iter().find(|k| **k == t)
        {
            *entry.entry(k).or_default() += 1;
        }
    }
    for (node, counts) in &per_node {
        for t in ENACTMENT_TYPES {
            out.push((
                "kubernetes_nmstate_enactments_status".into(),
                vec![("node".into(), node.clone()), ("status".into(), t.into())],
                counts.get(t).copied().unwrap_or(0) as f64,
            ));
        }
    }
    for e in &enactments {
        for f in e.data["status"]["features"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(f) = f.as_str() {
                out.push((
                    "kubernetes_nmstate_features_applied".into(),
                    vec![("name".into(), f.into())],
                    1.0,
                ));
            }
        }
    }
    for nns in e2e.nns.list(&ListParams::default()).await?.items {
        let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
        for i in nns.data["status"]["currentState"]["interfaces"]
            .as_array()
            .into_iter()
            .flatten()
        {
            *by_type
                .entry(i["type"].as_str().unwrap_or("unknown").to_owned())
                .or_default() += 1;
        }
        for (t, n) in by_type {
            out.push((
                "kubernetes_nmstate_network_interfaces".into(),
                vec![("node".into(), nns.name_any()), ("type".into(), t)],
                n as f64,
            ));
        }
    }
    Ok(out)
}

/// Poll until every expected sample is exposed with its value; returns how many were compared.
async fn metrics_agree(e2e: &E2e, url: &str, what: &str) -> anyhow::Result<usize> {
    e2e.wait_until(what, Duration::from_secs(60), || async {
        let expected = expected_samples(e2e).await?;
        let text = http_get(url).await?;
        let mismatches: Vec<String> = expected
            .iter()
            .filter_map(|(m, labels, v)| {
                let l: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(a, b)| (a.as_str(), b.as_str()))
                    .collect();
                let got = metric_value(&text, m, &l);
                (got != Some(*v)).then(|| format!("{m}{labels:?}: want {v}, got {got:?}"))
            })
            .collect();
        if mismatches.is_empty() {
            Ok(Some(expected.len()))
        } else {
            Err(anyhow::anyhow!(mismatches.join("\n")))
        }
    })
    .await
}

/// With a policy Available everywhere: policies, enactments, features and interfaces metrics
/// equal what the API objects say.
#[tokio::test]
async fn metrics_match_the_api_objects() -> anyhow::Result<()> {
    let Some(e2e) = connect("metrics").await else {
        return Ok(());
    };
    let Ok(url) = std::env::var("KNMSTATE_E2E_METRICS_URL") else {
        knmstate_testkit::cluster::skip("metrics", "KNMSTATE_E2E_METRICS_URL is not set");
        return Ok(());
    };
    let name = "e2e-metrics";
    e2e.delete_policy(name).await?;
    e2e.apply_policy(&policy(
        name,
        json!({"maxUnavailable": "100%", "desiredState": {"interfaces": [bridge("e2emet0")]}}),
    ))
    .await?;
    e2e.wait_policy(name, "Available", Duration::from_secs(120))
        .await?;
    let checked = metrics_agree(&e2e, &url, "the metrics to match the API objects").await;
    e2e.delete_policy(name).await?;
    e2e.restore(
        "e2e-metrics-undo",
        None,
        json!({"interfaces": [absent("e2emet0")]}),
    )
    .await?;
    let n = checked?;
    assert!(n >= 4 + 5, "too few samples compared: {n}");
    // The policies are gone: the policy counts follow.
    metrics_agree(&e2e, &url, "the metrics to follow the deletions").await?;
    Ok(())
}

/// On a box that serves metrics over TLS (`KNMSTATE_BOX_AUTH=1`): a scrape without a token is
/// 401, with a token whose user may not `get /metrics` (the second node's handler) 403, with the
/// bundle's Prometheus ServiceAccount `monitoring/prometheus-k8s` (created here when the box has
/// none) 200 with the controller's series.
#[tokio::test]
async fn only_an_authorized_scraper_reads_the_metrics() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    use knmstate_testkit::cluster::{get, identity};
    use kube::api::{Api, PostParams};
    let Some(e2e) = connect("metrics access").await else {
        return Ok(());
    };
    let Ok(url) = std::env::var("KNMSTATE_E2E_METRICS_URL") else {
        knmstate_testkit::cluster::skip("metrics access", "KNMSTATE_E2E_METRICS_URL is not set");
        return Ok(());
    };
    if !url.starts_with("https://") {
        eprintln!(
            "metrics access: {url} is plain HTTP (KNMSTATE_BOX_AUTH=0): every scrape is answered, nothing to check"
        );
        return Ok(());
    }
    let (status, body) = get(&url, None).await?;
    assert_eq!(status, 401, "no token: {body}");

    let nodes = e2e.handler_nodes().await?;
    let node = nodes.get(1).or(nodes.first()).cloned().unwrap_or_default();
    let pod = identity::pod_on(&e2e.client, "nmstate", "nmstate-handler", &node).await?;
    let handler = identity::token(&e2e.client, "nmstate", "nmstate-handler", Some(&pod)).await?;
    let (status, body) = get(&url, Some(&handler)).await?;
    assert_eq!(status, 403, "the handler's token: {body}");

    let pp = PostParams::default();
    let namespaces: Api<Namespace> = Api::all(e2e.client.clone());
    if namespaces.get_opt("monitoring").await?.is_none() {
        namespaces
            .create(
                &pp,
                &serde_json::from_value(json!({"metadata": {"name": "monitoring"}}))?,
            )
            .await?;
    }
    let accounts: Api<ServiceAccount> = Api::namespaced(e2e.client.clone(), "monitoring");
    if accounts.get_opt("prometheus-k8s").await?.is_none() {
        accounts
            .create(
                &pp,
                &serde_json::from_value(json!({"metadata": {"name": "prometheus-k8s"}}))?,
            )
            .await?;
    }
    let prometheus = identity::token(&e2e.client, "monitoring", "prometheus-k8s", None).await?;
    // The controller caches review results briefly; a leader may need a moment for its gauges.
    let body = e2e
        .wait_until(
            "Prometheus' scrape to succeed",
            Duration::from_secs(30),
            || async {
                let (status, body) = get(&url, Some(&prometheus)).await?;
                Ok(
                    (status == 200 && body.contains("kubernetes_nmstate_policies_status"))
                        .then_some(body),
                )
            },
        )
        .await?;
    assert!(
        metric_value(
            &body,
            "kubernetes_nmstate_policies_status",
            &[("status", "Available")]
        )
        .is_some(),
        "{body}"
    );
    Ok(())
}
