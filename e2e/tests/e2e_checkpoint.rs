//! End-to-end: a NetworkManager checkpoint another tool created on a node is left to its owner
//! or its rollback timeout; the next policy on that node waits for it without using an attempt
//! and applies once it is gone. Needs a cluster (`KUBECONFIG`) and `KNMSTATE_E2E_NODE_EXEC`
//! (with `dbus-send` on the node); skips without them.

use std::time::{Duration, Instant};

use knmstate_testkit::cluster::{NodeExec, absent, bridge, condition, connect, on_node, policy};
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

/// Rollback timeout of the foreign checkpoint: NetworkManager rolls it back then.
const FOREIGN_TIMEOUT: Duration = Duration::from_secs(20);

fn nm_call(exec: &NodeExec, node: &str, method: &str, args: &[&str]) -> anyhow::Result<String> {
    let dest = format!("--dest={NM}");
    let method = format!("{NM}.{method}");
    let mut argv = vec![
        "dbus-send",
        "--system",
        "--print-reply",
        &dest,
        NM_PATH,
        &method,
    ];
    argv.extend_from_slice(args);
    exec.run(node, &argv)
}

/// Create a checkpoint over every device as another tool would, with a 20 s rollback timeout,
/// then apply a policy on that node: its enactment waits for the checkpoint (Pending, reason
/// `ForeignCheckpointHeld`, naming it) without using an attempt while the checkpoint is still
/// there (knmstate neither destroys nor rolls it back), and the policy becomes Available once
/// NetworkManager dropped it at its timeout; no checkpoint is left.
#[tokio::test]
async fn a_foreign_checkpoint_is_waited_for_and_the_policy_applies_once_it_expired()
-> anyhow::Result<()> {
    let Some(e2e) = connect("foreign checkpoint").await else {
        return Ok(());
    };
    let Some(exec) = NodeExec::from_env("foreign checkpoint") else {
        return Ok(());
    };
    let node = e2e.handler_nodes().await?.remove(0);
    let devices = object_paths(&nm_call(&exec, &node, "GetDevices", &[])?);
    assert!(!devices.is_empty(), "{node}: no NetworkManager device");
    let name = "e2e-pending-checkpoint";
    e2e.delete_policy(name).await?;
    let devices_arg = format!("array:objpath:{}", devices.join(","));
    let timeout_arg = format!("uint32:{}", FOREIGN_TIMEOUT.as_secs());
    let created = nm_call(
        &exec,
        &node,
        "CheckpointCreate",
        &[&devices_arg, &timeout_arg, "uint32:0"],
    )?;
    let created_at = Instant::now();
    let foreign = object_paths(&created);
    assert_eq!(foreign.len(), 1, "CheckpointCreate answered: {created}");
    assert_eq!(checkpoints(&exec, &node)?, foreign);

    e2e.apply_policy(&policy(
        name,
        json!({"nodeSelector": on_node(&node), "desiredState": {"interfaces": [bridge("e2eckp0")]}}),
    ))
    .await?;
    let waiting = e2e
        .wait_until(
            "the enactment waiting for the foreign checkpoint",
            FOREIGN_TIMEOUT.saturating_sub(created_at.elapsed()),
            || async {
                let es = e2e.enactments(name).await?;
                let Some(e) = es.get(&node) else {
                    return Ok(None);
                };
                let pending = condition(e, "Pending");
                let waits = pending.as_ref().is_some_and(|c| {
                    c["status"] == "True" && c["reason"] == "ForeignCheckpointHeld"
                });
                Ok(waits.then(|| (e.clone(), pending)))
            },
        )
        .await;
    // Still there while the enactment waits: knmstate left it alone.
    let held_while_waiting = checkpoints(&exec, &node)?;
    let result = match waiting {
        Ok((enactment, pending)) => {
            let message = pending
                .map(|c| c["message"].to_string())
                .unwrap_or_default();
            assert!(message.contains(&foreign[0]), "{message}");
            assert!(
                message.contains("leaves them to their owner or their rollback timeout"),
                "{message}"
            );
            assert_eq!(
                held_while_waiting, foreign,
                "the foreign checkpoint was touched"
            );
            let used = &enactment.data["status"]["retryCount"]["1"];
            assert!(used.is_null() || used == 0, "an attempt was used: {used}");
            e2e.wait_policy(name, "Available", Duration::from_mins(2))
                .await
                .map(drop)
        }
        Err(e) => Err(e),
    };
    let available_after = created_at.elapsed();
    let left = checkpoints(&exec, &node)?;
    // Do not leave it behind for the next test, whatever the outcome.
    for c in &left {
        let _ = nm_call(
            &exec,
            &node,
            "CheckpointDestroy",
            &[&format!("objpath:{c}")],
        );
    }
    result?;
    assert!(
        available_after >= FOREIGN_TIMEOUT.saturating_sub(Duration::from_secs(1)),
        "Available {available_after:?} after the checkpoint's creation, before its timeout"
    );
    assert!(left.is_empty(), "{node}: checkpoints left: {left:?}");
    let used = e2e
        .enactments(name)
        .await?
        .get(&node)
        .map(|e| e.data["status"]["retryCount"]["1"].clone());
    assert!(
        used.as_ref().is_none_or(|u| u.is_null() || *u == 0),
        "an attempt was used: {used:?}"
    );
    e2e.delete_policy(name).await?;
    e2e.restore(
        "e2e-pending-checkpoint-undo",
        Some(on_node(&node)),
        json!({"interfaces": [absent("e2eckp0")]}),
    )
    .await?;
    Ok(())
}
