//! End-to-end: what a user is told — upstream's `error_messages_formatting` cases not run by
//! the other suites (an unknown interface field; a desired state that refers to a capture the
//! policy does not define) and the feature metric of upstream's `metrics_test`
//! (`kubernetes_nmstate_features_applied`: 1 for a feature two policies share, the series gone
//! once no enactment has it). Needs a cluster (`KUBECONFIG`); the metric case also
//! `KNMSTATE_E2E_METRICS_URL`. Skips without them.

use std::collections::BTreeSet;
use std::time::Duration;

use knmstate_testkit::cluster::{
    E2e, absent, active_condition, bridge, connect, http_get, metric_value, on_node, policy, skip,
};
use kube::api::ListParams;
use serde_json::{Value, json};

/// The node's spare NIC, alone on its link.
const SPARE: &str = "eth2";
/// The empty bridge the second feature policy makes.
const BRIDGE: &str = "e2efeat0";

/// The messages nmstate's Python tooling printed, which upstream strips from failures.
const NOISE: [&str; 3] = [
    "Traceback (most recent call last):",
    "DEBUG",
    "warnings.warn",
];

/// Upstream "unknown interface field": the message says what is wrong without debug noise and
/// keeps nmstate's own error. Here nmstate's parser runs at admission, so the policy is refused
/// when written — the refusal names the field's path and carries nmstate's message (the field
/// it expected), and no policy is stored.
#[tokio::test]
async fn an_unknown_interface_field_is_refused_naming_it() -> anyhow::Result<()> {
    let Some(e2e) = connect("unknown interface field").await else {
        return Ok(());
    };
    let node = e2e.handler_nodes().await?.remove(0);
    let name = "e2e-ups-unknown-field";
    e2e.delete_policy(name).await?;
    let refused = e2e
        .apply_policy(&policy(
            name,
            json!({"nodeSelector": on_node(&node), "desiredState": {"interfaces": [
                {"name": "eth1", "type": "ethernet", "state": "up",
                 "ipv4": {"enabled": true,
                          "adress": [{"ip": "198.18.210.1", "prefix-length": 24}]}}]}}),
        ))
        .await;
    let Err(e) = refused else {
        e2e.delete_policy(name).await?;
        anyhow::bail!("a policy with an unknown interface field was accepted");
    };
    let message = format!("{e:#}");
    anyhow::ensure!(
        message.contains("spec.desiredState.interfaces[0].ipv4.adress")
            && message.contains("unknown field `adress`")
            && message.contains("`address`"),
        "the refusal names the field and nmstate's expectation: {message}"
    );
    for noise in NOISE {
        anyhow::ensure!(!message.contains(noise), "{noise:?} in {message}");
    }
    anyhow::ensure!(
        e2e.nncp.get_opt(name).await?.is_none(),
        "the refused policy was stored"
    );
    Ok(())
}

/// Upstream "capture not defined": a desired state that uses `{{ capture.missing… }}` in a
/// policy without that capture fails on the node with "failure generating desiredState and
/// capturedStates", naming the capture; the policy is Degraded and nothing was applied.
#[tokio::test]
async fn a_reference_to_an_undefined_capture_fails_to_render() -> anyhow::Result<()> {
    let Some(e2e) = connect("undefined capture").await else {
        return Ok(());
    };
    let node = e2e.handler_nodes().await?.remove(0);
    let name = "e2e-ups-no-capture";
    e2e.delete_policy(name).await?;
    let outcome = async {
        e2e.apply_policy(&policy(
            name,
            json!({"nodeSelector": on_node(&node),
                   "capture": {"gw": "routes.running.destination==\"0.0.0.0/0\""},
                   "desiredState": {"interfaces": [{
                       "name": "{{ capture.missing.interfaces.0.name }}",
                       "type": "ethernet", "state": "up"}]}}),
        ))
        .await?;
        let enactment = e2e
            .wait_enactment_settled(name, &node, Duration::from_mins(2))
            .await?;
        let (t, reason, message) = active_condition(&enactment).unwrap_or_default();
        anyhow::ensure!(
            t == "Failing" && reason == "FailedToConfigure",
            "{t}/{reason}: {message}"
        );
        anyhow::ensure!(
            message.starts_with("failure generating desiredState and capturedStates")
                && message.contains("missing"),
            "{message}"
        );
        for noise in NOISE {
            anyhow::ensure!(!message.contains(noise), "{noise:?} in {message}");
        }
        e2e.wait_policy(name, "Degraded", Duration::from_secs(30))
            .await?;
        anyhow::Ok(())
    }
    .await;
    e2e.delete_policy(name).await?;
    outcome
}

/// The features every enactment on the cluster lists, except those of `skip`.
async fn features_in_use(e2e: &E2e, skip_policies: &[&str]) -> anyhow::Result<BTreeSet<String>> {
    Ok(e2e
        .nnce
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|e| {
            e.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(knmstate_testkit::cluster::POLICY_LABEL))
                .is_none_or(|p| !skip_policies.contains(&p.as_str()))
        })
        .flat_map(|e| features(&e.data["status"]))
        .collect())
}

fn features(status: &Value) -> BTreeSet<String> {
    status["features"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect()
}

/// Wait until the metric says `want` (a value, or `None`: no series) for every feature of `fs`.
async fn wait_features(
    e2e: &E2e,
    url: &str,
    fs: &BTreeSet<String>,
    want: Option<f64>,
) -> anyhow::Result<()> {
    e2e.wait_until(
        &format!("kubernetes_nmstate_features_applied of {fs:?} to be {want:?}"),
        Duration::from_mins(1),
        || async {
            let text = http_get(url).await?;
            let all = fs.iter().all(|f| {
                metric_value(&text, "kubernetes_nmstate_features_applied", &[("name", f)]) == want
            });
            Ok(all.then_some(()))
        },
    )
    .await
}

/// Upstream `metrics_test` features: two policies on one node that use the same nmstate
/// features (a static address and a static route: on the spare NIC, on an empty bridge) — the
/// enactments list their features, the gauge is 1 for the shared ones (a flag, not
/// a count); one policy deleted, still 1; both deleted, the series of every feature no other
/// enactment lists is gone.
#[tokio::test]
async fn a_feature_two_policies_share_is_one_and_goes_with_them() -> anyhow::Result<()> {
    let Some(e2e) = connect("feature metrics").await else {
        return Ok(());
    };
    let Some(url) = std::env::var("KNMSTATE_E2E_METRICS_URL").ok() else {
        skip("feature metrics", "KNMSTATE_E2E_METRICS_URL is not set");
        return Ok(());
    };
    let node = e2e.handler_nodes().await?.remove(0);
    let names = ["e2e-ups-feature-a", "e2e-ups-feature-b"];
    // The node's spare NIC and an empty bridge, each with a static address and route.
    let spec = |iface: Value, addr: &str, dest: &str| {
        let name = iface["name"].clone();
        let mut iface = iface;
        iface["ipv4"] = json!({"enabled": true, "dhcp": false,
                               "address": [{"ip": addr, "prefix-length": 24}]});
        json!({"nodeSelector": on_node(&node), "desiredState": {
            "interfaces": [iface],
            "routes": {"config": [{"destination": dest, "next-hop-interface": name}]}}})
    };
    let specs = [
        spec(
            json!({"name": SPARE, "type": "ethernet", "state": "up", "ipv6": {"enabled": false}}),
            "198.18.220.1",
            "198.18.221.0/24",
        ),
        spec(bridge(BRIDGE), "198.18.222.1", "198.18.223.0/24"),
    ];
    for name in names {
        e2e.delete_policy(name).await?;
    }
    let outcome = async {
        for (name, spec) in names.iter().zip(specs) {
            e2e.apply_policy(&policy(name, spec)).await?;
        }
        let mut listed = Vec::new();
        for name in names {
            e2e.wait_policy(name, "Available", Duration::from_mins(2))
                .await?;
            let e = e2e.enactments(name).await?.remove(&node);
            listed.push(e.map(|e| features(&e.data["status"])).unwrap_or_default());
        }
        let shared: BTreeSet<String> = listed[0].intersection(&listed[1]).cloned().collect();
        anyhow::ensure!(!shared.is_empty(), "no shared feature: {listed:?}");
        wait_features(&e2e, &url, &shared, Some(1.0)).await?;
        e2e.delete_policy(names[0]).await?;
        wait_features(&e2e, &url, &shared, Some(1.0)).await?;
        e2e.delete_policy(names[1]).await?;
        let elsewhere = features_in_use(&e2e, &names).await?;
        let unused: BTreeSet<String> = shared.difference(&elsewhere).cloned().collect();
        anyhow::ensure!(!unused.is_empty(), "{shared:?} all used elsewhere too");
        wait_features(&e2e, &url, &unused, None).await?;
        anyhow::Ok(())
    }
    .await;
    for name in names {
        e2e.delete_policy(name).await?;
    }
    e2e.restore(
        "e2e-ups-feature-undo",
        Some(on_node(&node)),
        json!({"interfaces": [
                   {"name": SPARE, "type": "ethernet", "state": "up",
                    "ipv4": {"enabled": false}, "ipv6": {"enabled": false}},
                   absent(BRIDGE)],
               "routes": {"config": [{"next-hop-interface": SPARE, "state": "absent"}]}}),
    )
    .await?;
    outcome
}
