//! End-to-end: a NetworkManager checkpoint left pending on a node (as after a handler crash
//! mid-apply) does not block the next policy. Needs a cluster (`KUBECONFIG`) and
//! `KNMSTATE_E2E_NODE_EXEC` (with `dbus-send` on the node); skips without them.

use std::time::Duration;

use knmstate_testkit::cluster::{NodeExec, absent, bridge, connect, on_node, policy};
use serde_json::json;

const NM: &str = "org.freedesktop.NetworkManager";
const NM_PATH: &str = "/org/freedesktop/NetworkManager";

fn object_paths(reply: &str) -> Vec<String> {
    reply
        .lines()
        .filter_map(|l| l.trim().strip_prefix("object path \""))
        .filter_map(|l| l.strip_suffix('"'))
        .map(str::to_owned)
        .collect()
}

fn checkpoints(exec: &NodeExec, node: &str) -> anyhow::Result<Vec<String>> {
    let reply = exec.run(
        node,
        &[
            "dbus-send",
            "--system",
            "--print-reply",
            &format!("--dest={NM}"),
            NM_PATH,
            "org.freedesktop.DBus.Properties.Get",
            &format!("string:{NM}"),
            "string:Checkpoints",
        ],
    )?;
    Ok(object_paths(&reply))
}

/// Create a checkpoint over every device (as a crashed apply would leave), then apply a policy on
/// that node: it must become Available, and no checkpoint is left afterwards.
#[tokio::test]
async fn a_pending_checkpoint_does_not_block_the_next_policy() -> anyhow::Result<()> {
    let Some(e2e) = connect("pending checkpoint").await else {
        return Ok(());
    };
    let Some(exec) = NodeExec::from_env("pending checkpoint") else {
        return Ok(());
    };
    let node = e2e.handler_nodes().await?.remove(0);
    let devices = object_paths(&exec.run(
        &node,
        &[
            "dbus-send",
            "--system",
            "--print-reply",
            &format!("--dest={NM}"),
            NM_PATH,
            &format!("{NM}.GetDevices"),
        ],
    )?);
    assert!(!devices.is_empty(), "{node}: no NetworkManager device");
    let created = exec.run(
        &node,
        &[
            "dbus-send",
            "--system",
            "--print-reply",
            &format!("--dest={NM}"),
            NM_PATH,
            &format!("{NM}.CheckpointCreate"),
            &format!("array:objpath:{}", devices.join(",")),
            "uint32:600",
            "uint32:0",
        ],
    )?;
    let stale = object_paths(&created);
    assert_eq!(stale.len(), 1, "CheckpointCreate answered: {created}");
    assert_eq!(checkpoints(&exec, &node)?, stale);

    let name = "e2e-pending-checkpoint";
    e2e.delete_policy(name).await?;
    e2e.apply_policy(&policy(
        name,
        json!({"nodeSelector": on_node(&node), "desiredState": {"interfaces": [bridge("e2eckp0")]}}),
    ))
    .await?;
    let result = e2e
        .wait_policy(name, "Available", Duration::from_secs(120))
        .await;
    let left = checkpoints(&exec, &node)?;
    if !left.is_empty() {
        // Do not leave it behind for the next test, whatever the outcome.
        for c in &left {
            let _ = exec.run(
                &node,
                &[
                    "dbus-send",
                    "--system",
                    "--print-reply",
                    &format!("--dest={NM}"),
                    NM_PATH,
                    &format!("{NM}.CheckpointDestroy"),
                    &format!("objpath:{c}"),
                ],
            );
        }
    }
    result?;
    assert!(left.is_empty(), "{node}: checkpoints left: {left:?}");
    e2e.delete_policy(name).await?;
    e2e.restore(
        "e2e-pending-checkpoint-undo",
        Some(on_node(&node)),
        json!({"interfaces": [absent("e2eckp0")]}),
    )
    .await?;
    Ok(())
}
