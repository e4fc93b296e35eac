//! End-to-end: admission of policies as a user sees it — `kubectl apply` of a bad policy prints
//! the webhook's message, upstream's rules hold, the mutation timestamp is set. Needs a cluster
//! (`KUBECONFIG`); skips without one (and the kubectl case without `kubectl`).

use std::process::Command;
use std::time::Duration;

use knmstate_testkit::cluster::{bridge, connect, on_node, policy};
use kube::ResourceExt;
use serde_json::json;

const VALIDATE: &str = "nodenetworkconfigurationpolicies-validate.nmstate.io";

fn api_message(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}

/// `kubectl apply` of a policy whose desired state nmstate cannot parse fails, and kubectl prints
/// the webhook's name and nmstate's message with the field path.
#[tokio::test]
async fn kubectl_apply_of_a_bad_policy_prints_the_webhooks_message() -> anyhow::Result<()> {
    let Some(e2e) = connect("webhook via kubectl").await else {
        return Ok(());
    };
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        knmstate_testkit::cluster::skip("webhook via kubectl", "kubectl not found");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: nmstate.io/v1\nkind: NodeNetworkConfigurationPolicy\nmetadata:\n  \
         name: e2e-bad-state\nspec:\n  desiredState:\n    interfaces:\n    - name: eth1\n      \
         type: ethernet\n      state: sideways\n",
    )?;
    let out = Command::new("kubectl")
        .args(["apply", "-f"])
        .arg(&file)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "kubectl accepted it: {stderr}");
    assert!(
        stderr.contains(&format!(
            "admission webhook \"{VALIDATE}\" denied the request"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("spec.desiredState.interfaces[0].state") && stderr.contains("sideways"),
        "the message names the field and the value: {stderr}"
    );
    assert!(e2e.nncp.get_opt("e2e-bad-state").await?.is_none());
    Ok(())
}

/// Upstream's rules: a policy name must fit a label value; node selector values must be label
/// values; `capture` cannot change; a good policy gets the mutation timestamp annotation.
#[tokio::test]
async fn upstream_admission_rules_hold() -> anyhow::Result<()> {
    let Some(e2e) = connect("webhook rules").await else {
        return Ok(());
    };
    let long = "e2e-".to_owned() + &"x".repeat(60);
    let err = e2e
        .apply_policy(&policy(
            &long,
            json!({"desiredState": {"interfaces": [bridge("e2ewh0")]}}),
        ))
        .await
        .expect_err("a 64-character name is refused");
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!(
            "invalid policy name: \"{long}\": must be no more than 63 characters or match label value format"
        )),
        "{msg}"
    );

    let err = e2e
        .nncp
        .create(
            &Default::default(),
            &policy(
                "e2e-bad-selector",
                json!({"nodeSelector": {"kubernetes.io/hostname": "not a label value!"},
                       "desiredState": {"interfaces": [bridge("e2ewh0")]}}),
            ),
        )
        .await
        .expect_err("a selector value that is no label value is refused");
    assert!(
        api_message(err).contains("nodeSelector values must be valid label values"),
        "selector"
    );

    // Capture is immutable: create with a capture, wait until it settled, change the capture.
    let node = e2e.handler_nodes().await?.remove(0);
    let name = "e2e-capture";
    e2e.delete_policy(name).await?;
    let spec = |capture: &str| {
        json!({
            "nodeSelector": on_node(&node),
            "capture": {"lo": capture},
            "desiredState": {"interfaces": [bridge("e2ewh0")]}
        })
    };
    let created = e2e
        .apply_policy(&policy(name, spec("interfaces.name==\"lo\"")))
        .await?;
    let stamp = created
        .annotations()
        .get("nmstate.io/webhook-mutating-timestamp")
        .cloned()
        .expect("the mutating webhook stamps the policy");
    assert!(stamp.parse::<u128>().is_ok(), "unix nanoseconds: {stamp}");
    e2e.wait_policy(name, "Available", Duration::from_secs(120))
        .await?;
    let err = e2e
        .apply_policy(&policy(name, spec("interfaces.name==\"eth0\"")))
        .await
        .expect_err("a capture change is refused");
    assert!(
        format!("{err:#}").contains("invalid policy operation: capture field cannot be modified"),
        "{err:#}"
    );
    e2e.delete_policy(name).await?;
    e2e.restore(
        "e2e-capture-undo",
        Some(on_node(&node)),
        json!({"interfaces": [{"name": "e2ewh0", "state": "absent"}]}),
    )
    .await?;
    Ok(())
}
