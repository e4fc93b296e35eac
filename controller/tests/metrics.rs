//! `/metrics`, `/healthz` and `/readyz` of a running controller after a successful and a
//! failed policy.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{Cluster, eventually, http_get};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use knmstate_api::shared::{ApplyReport, ProbeReport};
use knmstate_api::v1beta1::NodeNetworkState;
use knmstate_state_engine::conditions::EnactmentTransition as T;
use kube::api::{Api, DeleteParams};

fn report(rolled_back: bool) -> ApplyReport {
    ApplyReport {
        start_time: Some(Time(Timestamp::now())),
        duration_seconds: if rolled_back { 12.5 } else { 0.8 },
        rolled_back,
        connectivity_restored: None,
        steps: None,
        slot_claim: None,
        rollback_reason: if rolled_back {
            "probe-failed".into()
        } else {
            String::new()
        },
        probes: vec![
            ProbeReport {
                name: "default-gateway".into(),
                succeeded: true,
                duration_seconds: 0.02,
                message: String::new(),
            },
            ProbeReport {
                name: "dns".into(),
                succeeded: !rolled_back,
                duration_seconds: if rolled_back { 10.0 } else { 0.03 },
                message: if rolled_back {
                    "no answer".into()
                } else {
                    String::new()
                },
            },
        ],
    }
}

fn has(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_a_successful_and_a_failed_policy() -> Result<()> {
    let c = Cluster::start().await?;
    for i in 0..3 {
        c.add_node(&format!("node-{i}"), &[("role", "worker")], true, true)
            .await?;
    }
    let ctl = c.start_controller("a").await?;
    eventually("ready", Duration::from_secs(10), || async {
        let (code, _) = http_get(ctl.addr, "/readyz").await?;
        Ok((code == 200).then_some(()))
    })
    .await?;
    assert_eq!(http_get(ctl.addr, "/healthz").await?.0, 200);

    let good = c.create_policy("good", &[("role", "worker")]).await?;
    for i in 0..3 {
        let node = format!("node-{i}");
        c.create_enactment(&node, "good").await?;
        c.enact(&node, "good", good, T::Success, |s| {
            s.features = vec!["static_route".into(), "linux_bridge".into()];
            s.last_apply = Some(report(false));
        })
        .await?;
    }
    let bad = c
        .create_policy("bad", &[("kubernetes.io/hostname", "node-0")])
        .await?;
    c.create_enactment("node-0", "bad").await?;
    c.enact(
        "node-0",
        "bad",
        bad,
        T::FailedToConfigure {
            message: "probe failed".into(),
        },
        |s| s.last_apply = Some(report(true)),
    )
    .await?;
    c.wait_policy("good", "Available", "3/3 nodes successfully configured")
        .await?;
    c.wait_policy("bad", "Degraded", "1/1 nodes failed to configure")
        .await?;

    let (code, text) = http_get(ctl.addr, "/metrics").await?;
    assert_eq!(code, 200);
    println!("---- /metrics after a successful and a failed policy ----\n{text}");
    for line in [
        r#"kubernetes_nmstate_policies_status{status="Available"} 1"#,
        r#"kubernetes_nmstate_policies_status{status="Degraded"} 1"#,
        r#"kubernetes_nmstate_policies_status{status="Progressing"} 0"#,
        r#"kubernetes_nmstate_policies_status{status="Ignored"} 0"#,
        r#"kubernetes_nmstate_enactments_status{node="node-0",status="Available"} 1"#,
        r#"kubernetes_nmstate_enactments_status{node="node-0",status="Failing"} 1"#,
        r#"kubernetes_nmstate_enactments_status{node="node-0",status="Pending"} 0"#,
        r#"kubernetes_nmstate_enactments_status{node="node-1",status="Failing"} 0"#,
        r#"kubernetes_nmstate_enactments_status{node="node-1",status="Aborted"} 0"#,
        r#"kubernetes_nmstate_features_applied{name="static_route"} 1"#,
        r#"kubernetes_nmstate_features_applied{name="linux_bridge"} 1"#,
        r#"kubernetes_nmstate_network_interfaces{type="ethernet",node="node-0"} 2"#,
        r#"kubernetes_nmstate_network_interfaces{type="linux-bridge",node="node-2"} 1"#,
        r#"kubernetes_nmstate_routes{node="node-1",ip_stack="ipv4",type="static"} 1"#,
        r#"kubernetes_nmstate_routes{node="node-1",ip_stack="ipv4",type="dynamic"} 1"#,
        r#"kubernetes_nmstate_routes{node="node-1",ip_stack="ipv6",type="dynamic"} 1"#,
        r#"knmstate_apply_duration_seconds_count{result="committed"} 3"#,
        r#"knmstate_apply_duration_seconds_count{result="rolled-back"} 1"#,
        r#"knmstate_rollbacks_total{reason="probe-failed"} 1"#,
        r#"knmstate_probe_duration_seconds_count{probe="dns",result="failure"} 1"#,
        r#"knmstate_probe_duration_seconds_count{probe="dns",result="success"} 3"#,
        r#"knmstate_policies_by_condition_age{status="Available",max_age_seconds="+Inf"} 1"#,
        r#"knmstate_policies_by_condition_age{status="Degraded",max_age_seconds="60"} 1"#,
    ] {
        assert!(has(&text, line), "missing {line}");
    }
    // Scraping again counts no report twice.
    let (_, again) = http_get(ctl.addr, "/metrics").await?;
    assert!(has(
        &again,
        r#"knmstate_apply_duration_seconds_count{result="committed"} 3"#
    ));

    // Series go with their objects.
    let states: Api<NodeNetworkState> = Api::all(c.client.clone());
    states.delete("node-2", &DeleteParams::default()).await?;
    c.delete_policy("bad").await?;
    let text = eventually("series removed", Duration::from_secs(20), || async {
        let (_, text) = http_get(ctl.addr, "/metrics").await?;
        let nns_gone = !text
            .contains(r#"kubernetes_nmstate_network_interfaces{type="ethernet",node="node-2"}"#);
        let degraded_zero = has(
            &text,
            r#"kubernetes_nmstate_policies_status{status="Degraded"} 0"#,
        );
        let failing_gone = has(
            &text,
            r#"kubernetes_nmstate_enactments_status{node="node-0",status="Failing"} 0"#,
        );
        Ok((nns_gone && degraded_zero && failing_gone).then_some(text))
    })
    .await?;
    assert!(!text.contains(r#"kubernetes_nmstate_routes{node="node-2""#));

    ctl.shutdown().await;
    c.server.shutdown().await;
    Ok(())
}
