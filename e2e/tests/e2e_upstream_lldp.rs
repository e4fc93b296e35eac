//! End-to-end: upstream's `lldp_with_nmpolicy` — LLDP enabled by captures on every up NIC of a
//! node, with a real neighbour: `lldpd` runs in the switch the nodes' NICs are plugged into
//! (`KNMSTATE_E2E_SWITCH_EXEC`, the box's switch namespace), and the node's NodeNetworkState
//! shows the switch as the neighbour of each of them. Needs a cluster (`KUBECONFIG`) and
//! `KNMSTATE_E2E_SWITCH_EXEC`, and `lldpd` on the machine (hack/install-deps.sh installs it);
//! skips without them.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use knmstate_testkit::cluster::{E2e, command_prefix, connect, on_node, policy, skip};
use serde_json::{Value, json};

/// The system name the switch announces.
const SWITCH: &str = "e2e-switch";

/// `lldpd` in the switch, announcing [`SWITCH`] every second on the nodes' ports, in a process
/// group of its own; stopped (the whole group) when dropped.
struct Lldpd {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Lldpd {
    fn start(prefix: &[String]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("lldpd.conf");
        std::fs::write(
            &conf,
            format!("configure system hostname {SWITCH}\nconfigure lldp tx-interval 1\n"),
        )?;
        // Its privilege-separation chroot is /run/lldpd: a private /run keeps the machine's
        // untouched. It announces on the node-facing ports only (not the switch's bridges).
        let script = format!(
            "mount -n -t tmpfs tmpfs /run && mkdir /run/lldpd && exec lldpd -d -u {} -O {} -I 'n*'",
            dir.path().join("lldpd.sock").display(),
            conf.display()
        );
        let child = Command::new(&prefix[0])
            .args(&prefix[1..])
            .args([
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        Ok(Self { child, _dir: dir })
    }
}

impl Drop for Lldpd {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// The system names of the LLDP neighbours `iface` reports.
fn neighbour_names(iface: &Value) -> Vec<String> {
    iface["lldp"]["neighbors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|tlvs| {
            tlvs.as_array()?
                .iter()
                .find_map(|t| t["system-name"].as_str().map(str::to_owned))
        })
        .collect()
}

/// The up interfaces of `node` of its primary NIC's type (upstream: `ethernet`; the box's NICs
/// are veths) and that type.
async fn up_nics(e2e: &E2e, node: &str) -> anyhow::Result<(String, Vec<String>)> {
    let nic = e2e.primary_nic(node).await?;
    let state = e2e.current_state(node).await?;
    let ifaces = state["interfaces"].as_array().cloned().unwrap_or_default();
    let kind = ifaces
        .iter()
        .find(|i| i["name"] == nic.as_str())
        .and_then(|i| i["type"].as_str())
        .unwrap_or("ethernet")
        .to_owned();
    let up = ifaces
        .iter()
        .filter(|i| i["type"] == kind.as_str() && i["state"] == "up")
        .filter_map(|i| i["name"].as_str().map(str::to_owned))
        .collect();
    Ok((kind, up))
}

/// The policy of upstream's test: every up NIC of `kind`, as captured, with LLDP set to
/// `enabled`.
fn lldp_policy(node: &str, kind: &str, enabled: bool) -> Value {
    json!({
        "nodeSelector": on_node(node),
        "capture": {
            "nics": format!("interfaces.type==\"{kind}\""),
            "nics-up": "capture.nics | interfaces.state==\"up\"",
            "nics-lldp": format!("capture.nics-up | interfaces.lldp.enabled:={enabled}")
        },
        "desiredState": {"interfaces": "{{ capture.nics-lldp.interfaces }}"}
    })
}

/// LLDP enabled by captures on every up NIC of one node: each reports LLDP enabled and the
/// switch as its neighbour; switched off again afterwards.
#[tokio::test]
async fn lldp_by_capture_shows_the_switch_as_neighbour() -> anyhow::Result<()> {
    let Some(e2e) = connect("LLDP neighbour").await else {
        return Ok(());
    };
    let Some(prefix) = command_prefix(
        "KNMSTATE_E2E_SWITCH_EXEC",
        "LLDP neighbour",
        "a command prefix that runs a command in the switch the nodes are plugged into; the \
         cluster in a box sets it",
    ) else {
        return Ok(());
    };
    if Command::new("lldpd").arg("-v").output().is_err() {
        skip("LLDP neighbour", "lldpd is not installed");
        return Ok(());
    }
    let node = e2e.handler_nodes().await?.remove(0);
    let (kind, nics) = up_nics(&e2e, &node).await?;
    anyhow::ensure!(!nics.is_empty(), "{node} has no up {kind} interface");
    let switch = Lldpd::start(&prefix)?;
    let name = "e2e-ups-lldp";
    e2e.delete_policy(name).await?;
    let outcome = async {
        e2e.apply_policy(&policy(name, lldp_policy(&node, &kind, true)))
            .await?;
        e2e.wait_policy(name, "Available", Duration::from_mins(2))
            .await?;
        for nic in &nics {
            e2e.wait_until(
                &format!("{node} to report {SWITCH} as the LLDP neighbour of {nic}"),
                Duration::from_secs(30),
                || async {
                    let iface = e2e
                        .reported_interface(&node, nic)
                        .await?
                        .unwrap_or_default();
                    let ok = iface["lldp"]["enabled"] == true
                        && neighbour_names(&iface).iter().any(|n| n == SWITCH);
                    Ok(ok.then_some(()))
                },
            )
            .await?;
        }
        anyhow::Ok(())
    }
    .await;
    drop(switch);
    e2e.delete_policy(name).await?;
    e2e.restore_spec(
        &format!("{name}-undo"),
        Some(on_node(&node)),
        lldp_policy(&node, &kind, false),
    )
    .await?;
    outcome
}
