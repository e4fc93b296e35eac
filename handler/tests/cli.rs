//! The `handler` binary's start-up rules: `NODE_NAME` is mandatory, and a second handler on a
//! node waits for the node lock (and says so in a JSON log line).

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Result;
use knmstate_handler::lock::NodeLock;

const BIN: &str = env!("CARGO_BIN_EXE_handler");

#[test]
fn refuses_to_start_without_node_name() -> Result<()> {
    let out = Command::new(BIN).env_remove("NODE_NAME").output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NODE_NAME is not set"), "{err}");
    Ok(())
}

#[test]
fn waits_while_another_handler_holds_the_node_lock() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let lock_path = dir.path().join("handler_lock");
    let held = NodeLock::try_acquire(&lock_path)?.expect("lock free");
    let mut child = Command::new(BIN)
        .env("NODE_NAME", "n1")
        .env("NMSTATE_INSTANCE_NODE_LOCK_FILE", &lock_path)
        .env("READINESS_FILE", dir.path().join("healthy"))
        .env("LOCK_POLL_SECONDS", "1")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(1500));
    let still_waiting = child.try_wait()?.is_none();
    child.kill()?;
    let out = child.wait_with_output()?;
    drop(held);
    assert!(still_waiting, "the second handler must wait for the lock");
    assert!(
        !dir.path().join("healthy").exists(),
        "and must not be ready"
    );
    let log = String::from_utf8_lossy(&out.stdout);
    let line = log
        .lines()
        .find(|l| l.contains("another handler holds the node lock"))
        .unwrap_or_else(|| panic!("no lock message in {log}"));
    let json: serde_json::Value = serde_json::from_str(line)?;
    assert_eq!(json["level"], "WARN", "structured JSON log: {line}");
    Ok(())
}
