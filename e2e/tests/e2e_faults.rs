//! End-to-end faults on the cluster in a box: a node whose handler stalls mid-apply for longer
//! than its slot lease (its process frozen with SIGSTOP, which stops its slot renewals exactly
//! as a dead one would) and is then thawed (SIGCONT), and
//! the API server stand-in restarted from its persisted store mid-rollout. Needs a cluster
//! (`KUBECONFIG`), `KNMSTATE_E2E_NODE_EXEC`, and the box's `KNMSTATE_E2E_HANDLER_ENV`,
//! `KNMSTATE_E2E_LOGS` and `KNMSTATE_E2E_RESTART_APISERVER` (`hack/cluster.sh env`); run as
//! root on the box's machine (it signals the handler processes). Skips without them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use knmstate_testkit::cluster::{
    E2e, EnactmentWatch, NodeExec, absent, bridge, condition, connect, is_true, policy, skip,
};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::{Value, json};

/// The tests share the nodes' `eth2` and the API server: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const NM: &str = "org.freedesktop.NetworkManager";
/// The bridge the tests put over each node's standalone `eth2`.
const BRIDGE: &str = "e2eflt0";
/// Its static address: eth2's peer is alone in the switch, so every node may hold it.
const ADDRESS: &str = "198.18.250.1";

/// Empty bridges beside it, so that an apply lasts a few seconds.
const EXTRA_BRIDGES: usize = 8;

fn extra_bridge(i: usize) -> String {
    format!("e2eflt{}", i + 1)
}

/// A policy over every node, one at a time: a bridge over `eth2` with a static address, and
/// [`EXTRA_BRIDGES`] empty ones.
fn bridge_over_eth2() -> Value {
    let mut interfaces: Vec<Value> = (0..EXTRA_BRIDGES)
        .map(|i| bridge(&extra_bridge(i)))
        .collect();
    interfaces.push(json!({
            "name": BRIDGE, "type": "linux-bridge", "state": "up",
            "ipv4": {"enabled": true, "dhcp": false,
                     "address": [{"ip": ADDRESS, "prefix-length": 24}]},
            "ipv6": {"enabled": false},
            "bridge": {"options": {"stp": {"enabled": false}}, "port": [{"name": "eth2"}]}
    }));
    json!({"maxUnavailable": 1, "desiredState": {"interfaces": interfaces}})
}

/// What the box tells the suites beyond the common variables.
struct Box {
    exec: NodeExec,
    /// The box's state dir (the kubeconfig's directory): its `bin/handler` is the handler.
    state: PathBuf,
    logs: PathBuf,
    restart_apiserver: Vec<String>,
    /// The handler's settings, as the box gives them to the operator.
    handler_env: BTreeMap<String, String>,
}

impl Box {
    fn from_env(test: &str) -> Option<Self> {
        let exec = NodeExec::from_env(test)?;
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let (Some(kubeconfig), Some(logs), Some(restart), Some(env)) = (
            var("KUBECONFIG"),
            var("KNMSTATE_E2E_LOGS"),
            var("KNMSTATE_E2E_RESTART_APISERVER"),
            var("KNMSTATE_E2E_HANDLER_ENV"),
        ) else {
            skip(
                test,
                "KNMSTATE_E2E_LOGS, KNMSTATE_E2E_RESTART_APISERVER or KNMSTATE_E2E_HANDLER_ENV \
                 is not set (the cluster in a box sets them: hack/cluster.sh env)",
            );
            return None;
        };
        let state = Path::new(&kubeconfig).parent()?.to_path_buf();
        Some(Self {
            exec,
            state,
            logs: PathBuf::from(logs),
            restart_apiserver: restart.split_whitespace().map(str::to_owned).collect(),
            handler_env: env
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        })
    }

    fn seconds(&self, key: &str) -> anyhow::Result<Duration> {
        let v = self
            .handler_env
            .get(key)
            .ok_or_else(|| anyhow::anyhow!("{key} not in KNMSTATE_E2E_HANDLER_ENV"))?;
        Ok(Duration::from_secs(v.parse()?))
    }

    /// How long a slot holder that stopped renewing keeps its slot at most: the checkpoint
    /// timeout plus the retry backoff cap plus the margin (a quarter of the checkpoint timeout,
    /// at least 5 s), counted from its last renewal; it renews every half margin.
    fn slot_expiry(&self) -> anyhow::Result<(Duration, Duration)> {
        let checkpoint = self.seconds("CHECKPOINT_TIMEOUT_SECONDS")?;
        let margin = (checkpoint / 4).max(Duration::from_secs(5));
        let hold = checkpoint + self.seconds("NNCP_MAX_BACKOFF_SECONDS")? + margin;
        Ok((hold, margin / 2))
    }

    /// The pid of `node`'s handler process of this box.
    fn handler_pid(&self, node: &str) -> anyhow::Result<i32> {
        let exe = self.state.join("bin/handler");
        let want = format!("NODE_NAME={node}");
        for entry in std::fs::read_dir("/proc")? {
            let path = entry?.path();
            let Some(pid) = path
                .file_name()
                .and_then(|n| n.to_str()?.parse::<i32>().ok())
            else {
                continue;
            };
            if std::fs::read_link(path.join("exe")).ok().as_deref() != Some(exe.as_path()) {
                continue;
            }
            let environ = std::fs::read(path.join("environ")).unwrap_or_default();
            if environ.split(|b| *b == 0).any(|kv| kv == want.as_bytes()) {
                return Ok(pid);
            }
        }
        anyhow::bail!("no handler process of {} on {node}", exe.display())
    }

    fn signal(pid: i32, signal: &str) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {pid}: {status}");
        Ok(())
    }

    fn handler_log(&self, node: &str) -> PathBuf {
        self.logs.join(format!("pod-nmstate-handler-{node}.log"))
    }

    /// The NetworkManager checkpoints held on `node`.
    fn checkpoints(&self, node: &str) -> anyhow::Result<Vec<String>> {
        let reply = self.exec.run(
            node,
            &[
                "dbus-send",
                "--system",
                "--print-reply",
                &format!("--dest={NM}"),
                "/org/freedesktop/NetworkManager",
                "org.freedesktop.DBus.Properties.Get",
                &format!("string:{NM}"),
                "string:Checkpoints",
            ],
        )?;
        Ok(reply
            .lines()
            .filter_map(|l| l.trim().strip_prefix("object path \""))
            .filter_map(|l| l.strip_suffix('"'))
            .map(str::to_owned)
            .collect())
    }

    /// Whether `node` is wholly old (no bridge, `eth2` on its own) or wholly new (the bridge
    /// up with its address and `eth2` its port); the `ip` lines otherwise.
    fn consistent(&self, node: &str) -> anyhow::Result<Result<(), String>> {
        let eth2 = self.exec.run(node, &["ip", "-o", "link", "show", "eth2"])?;
        let bridge = self.exec.run(node, &["ip", "-o", "-4", "addr", "show"])?;
        let enslaved = eth2.contains(&format!("master {BRIDGE}"));
        let addressed = bridge
            .lines()
            .any(|l| l.contains(BRIDGE) && l.contains(&format!("{ADDRESS}/24")));
        let exists = self
            .exec
            .run(node, &["ip", "-o", "link", "show", BRIDGE])
            .is_ok();
        let old = !exists && !eth2.contains("master ");
        let new = exists && enslaved && addressed;
        Ok(if old || new {
            Ok(())
        } else {
            Err(format!("{eth2}{bridge}"))
        })
    }
}

/// The first node `watch` saw go Progressing; looked at every 10 ms, to act while it applies.
async fn first_progressing(
    e2e: &E2e,
    watch: &EnactmentWatch,
    name: &str,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let log = watch.snapshot();
        if let Some((node, _)) = log
            .sequences
            .iter()
            .find(|(_, seq)| seq.iter().any(|s| s.starts_with("Progressing")))
        {
            return Ok(node.clone());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no node went Progressing for {name}:\n{}",
            e2e.describe(name).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Undo the bridge on every node.
async fn restore(e2e: &E2e, name: &str) -> anyhow::Result<()> {
    e2e.delete_policy(name).await?;
    e2e.restore(
        &format!("{name}-undo"),
        None,
        json!({"interfaces": (0..EXTRA_BRIDGES)
            .map(|i| absent(&extra_bridge(i)))
            .chain([absent(BRIDGE)])
            .collect::<Vec<_>>()}),
    )
    .await
}

/// The node that goes Progressing first is frozen (SIGSTOP): it neither renews its slot nor
/// answers. The other two wait (Pending) until its lease ran out, then apply one at a time; the
/// frozen node's enactment is Aborted with the ghost message and the policy has a
/// `SlotExpired` event. Then thawed (SIGCONT), its handler finds its slot lost (the slot fence)
/// and neither applies nor commits: the node is wholly old or wholly new with no checkpoint
/// left, its enactment still Aborted, never more than one node Progressing.
#[tokio::test]
async fn a_frozen_holder_frees_its_slot_at_its_lease_and_is_fenced_when_thawed()
-> anyhow::Result<()> {
    let Some(e2e) = connect("frozen slot holder").await else {
        return Ok(());
    };
    let Some(bx) = Box::from_env("frozen slot holder") else {
        return Ok(());
    };
    let _serial = SERIAL.lock().await;
    let (hold, renew_every) = bx.slot_expiry()?;
    let name = "e2e-fault-dead-node";
    e2e.delete_policy(name).await?;
    let watch = EnactmentWatch::start(&e2e, name);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pids: BTreeMap<String, i32> = e2e
        .handler_nodes()
        .await?
        .into_iter()
        .map(|n| Ok((n.clone(), bx.handler_pid(&n)?)))
        .collect::<anyhow::Result<_>>()?;
    let offsets: BTreeMap<&String, u64> = pids.keys().map(|n| (n, log_len(&bx, n))).collect();
    e2e.apply_policy(&policy(name, bridge_over_eth2())).await?;
    let ghost = first_progressing(&e2e, &watch, name).await?;
    let pid = pids[&ghost];
    Box::signal(pid, "STOP")?;
    let frozen_at = Instant::now();
    let committed = logged(&bx, &ghost, offsets[&ghost], name, "applied and committed")?;
    let outcome = if committed > 0 {
        Err(anyhow::anyhow!(
            "{ghost} was frozen after its apply committed"
        ))
    } else {
        Ok(())
    };
    let outcome = match outcome {
        Ok(()) => dead_node_rollout(&e2e, name, &ghost, frozen_at, hold, renew_every).await,
        Err(e) => Err(e),
    };
    // Thawed (SIGCONT), the handler runs on from where it was frozen, with what it knew then:
    // the slot fence stops it. It neither applies nor commits; NetworkManager rolled its
    // checkpoint back at the timeout meanwhile, so the node is wholly old, with no checkpoint.
    let thawed_at = log_len(&bx, &ghost);
    Box::signal(pid, "CONT")?;
    // The thawed handler first ends the step it was frozen in: an nmstate apply whose
    // checkpoint is gone (nmstate tries once more), a probe run (each probe up to the probe
    // timeout) and the probe run after the rollback, a fence read (up to 10 s).
    let fenced = e2e
        .wait_until(
            &format!("{ghost}'s thawed handler to find its slot lost"),
            Duration::from_mins(3),
            || async {
                let fenced = logged_any(
                    &bx,
                    &ghost,
                    thawed_at,
                    "lost its maxUnavailable slot while it was stalled",
                )?;
                Ok(fenced.then_some(()))
            },
        )
        .await;
    // Time for a thawed handler without a fence to finish its stale apply, or apply again.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let log = watch.stop();
    let committed_after_thaw = logged(&bx, &ghost, thawed_at, name, "applied and committed")?;
    let left = bx.checkpoints(&ghost);
    let last_state = bx.consistent(&ghost);
    let same_process = bx.handler_pid(&ghost).is_ok_and(|p| p == pid);
    let still_aborted = e2e
        .enactments(name)
        .await?
        .get(&ghost)
        .is_some_and(|e| is_true(e, "Aborted"));
    let cleanup = restore(&e2e, name).await;
    outcome?;
    fenced.map_err(|e| {
        e.context(format!(
            "{ghost}: {last_state:?}; the same process: {same_process}; its log since the thaw:\n{}",
            log_tail(&bx, &ghost, thawed_at, 40)
        ))
    })?;
    cleanup?;
    assert!(same_process, "{ghost}'s handler was thawed, not restarted");
    assert_eq!(
        committed_after_thaw, 0,
        "{ghost}'s thawed handler committed an apply it no longer held a slot for"
    );
    assert!(
        still_aborted,
        "{ghost}'s enactment is no longer Aborted after the thaw"
    );
    assert!(
        matches!(left, Ok(ref l) if l.is_empty()),
        "{ghost} holds a checkpoint after the thaw: {left:?}"
    );
    assert!(
        matches!(last_state, Ok(Ok(()))),
        "{ghost} after the thaw: {last_state:?}"
    );
    assert!(
        log.peak.get("Progressing").copied().unwrap_or(0) <= 1,
        "more than one node progressing at once: {log:?}"
    );
    Ok(())
}

/// The rollout around the frozen `ghost`: the others wait for its lease, then complete.
async fn dead_node_rollout(
    e2e: &E2e,
    name: &str,
    ghost: &str,
    frozen_at: Instant,
    hold: Duration,
    renew_every: Duration,
) -> anyhow::Result<()> {
    // Frozen while it applied: it holds the only slot.
    let es = e2e.enactments(name).await?;
    anyhow::ensure!(
        es.get(ghost).is_some_and(|e| is_true(e, "Progressing")),
        "{ghost} was frozen after its apply ended:\n{}",
        e2e.describe(name).await
    );
    let others: Vec<String> = e2e
        .handler_nodes()
        .await?
        .into_iter()
        .filter(|n| n != ghost)
        .collect();
    // The lease ran from its last renewal, at most `renew_every` before the freeze; 10 s for
    // the clocks and the API.
    let earliest = hold.saturating_sub(renew_every + Duration::from_secs(10));
    let first_other_progress = std::cell::Cell::new(None::<Duration>);
    let done = e2e
        .wait_until(
            "the rollout to complete on the live nodes",
            hold + Duration::from_mins(2),
            || async {
                let es = e2e.enactments(name).await?;
                if first_other_progress.get().is_none()
                    && others.iter().any(|n| {
                        es.get(n)
                            .is_some_and(|e| is_true(e, "Progressing") || is_true(e, "Available"))
                    })
                {
                    first_other_progress.set(Some(frozen_at.elapsed()));
                }
                let live_done = others
                    .iter()
                    .all(|n| es.get(n).is_some_and(|e| is_true(e, "Available")));
                let aborted = es.get(ghost).is_some_and(|e| is_true(e, "Aborted"));
                Ok((live_done && aborted).then_some(es))
            },
        )
        .await;
    let es = match done {
        Ok(es) => es,
        Err(e) => return Err(e.context(e2e.describe(name).await)),
    };
    let started = first_other_progress.get().unwrap_or_default();
    anyhow::ensure!(
        started >= earliest,
        "another node applied {started:?} after the freeze, before the frozen holder's lease \
         ({hold:?} from its last renewal) could have run out"
    );
    let aborted = condition(&es[ghost], "Aborted").unwrap_or_default();
    let message = aborted["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("its handler did not renew the maxUnavailable slot since")
            && message.contains("the slot was freed"),
        "{message}"
    );
    let gvk = GroupVersionKind::gvk("events.k8s.io", "v1", "Event");
    let events: kube::Api<DynamicObject> =
        kube::Api::all_with(e2e.client.clone(), &ApiResource::from_gvk(&gvk));
    let expired = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|ev| ev.data["reason"] == "SlotExpired" && ev.data["regarding"]["name"] == name)
        .count();
    assert!(expired > 0, "no SlotExpired event on {name}");
    Ok(())
}

/// The handler's log lines of `node` written after byte `from` by its apply step
/// (`knmstate_handler::policy::apply`, text log format) with message `message` about `policy`.
fn logged(bx: &Box, node: &str, from: u64, policy: &str, message: &str) -> anyhow::Result<usize> {
    let log = std::fs::read(bx.handler_log(node))?;
    let tail = String::from_utf8_lossy(log.get(usize::try_from(from)?..).unwrap_or_default());
    let text = format!("knmstate_handler::policy::apply: {message} policy={policy}");
    Ok(tail
        .lines()
        .filter(|l| {
            l.split_once(&text)
                .is_some_and(|(_, rest)| rest.is_empty() || rest.starts_with(' '))
        })
        .count())
}

/// Whether `node`'s handler logged a line containing `text` after byte `from`.
fn logged_any(bx: &Box, node: &str, from: u64, text: &str) -> anyhow::Result<bool> {
    let log = std::fs::read(bx.handler_log(node))?;
    let tail = String::from_utf8_lossy(log.get(usize::try_from(from)?..).unwrap_or_default());
    Ok(tail.contains(text))
}

/// The last `lines` lines of `node`'s handler log after byte `from`, without DEBUG lines and
/// the netlink and D-Bus chatter of every state read (a failure's context).
fn log_tail(bx: &Box, node: &str, from: u64, lines: usize) -> String {
    let Ok(log) = std::fs::read(bx.handler_log(node)) else {
        return format!("({} unreadable)", bx.handler_log(node).display());
    };
    let start = usize::try_from(from).unwrap_or(usize::MAX);
    let tail = String::from_utf8_lossy(log.get(start..).unwrap_or_default());
    let kept: Vec<&str> = tail
        .lines()
        .filter(|l| {
            !l.contains(" DEBUG ")
                && !l.contains("WIFI information")
                && !l.contains("proxy caching")
        })
        .collect();
    kept[kept.len().saturating_sub(lines)..].join("\n")
}

fn log_len(bx: &Box, node: &str) -> u64 {
    std::fs::metadata(bx.handler_log(node)).map_or(0, |m| m.len())
}

/// While the first node applies, the API stand-in is stopped and started again from its
/// persisted store on the same address: the rollout completes one node at a time with exactly
/// one apply per node (the handlers' "applying" log lines, and no retry used), the policy
/// Available, nothing Pending.
#[tokio::test]
async fn the_api_server_restarted_mid_rollout_leaves_one_apply_per_node() -> anyhow::Result<()> {
    let Some(e2e) = connect("API server restart").await else {
        return Ok(());
    };
    let Some(bx) = Box::from_env("API server restart") else {
        return Ok(());
    };
    let _serial = SERIAL.lock().await;
    let name = "e2e-fault-api-restart";
    e2e.delete_policy(name).await?;
    let nodes = e2e.handler_nodes().await?;
    let offsets: BTreeMap<String, u64> =
        nodes.iter().map(|n| (n.clone(), log_len(&bx, n))).collect();
    let watch = EnactmentWatch::start(&e2e, name);
    tokio::time::sleep(Duration::from_millis(300)).await;
    e2e.apply_policy(&policy(name, bridge_over_eth2())).await?;
    let applying = first_progressing(&e2e, &watch, name).await?;
    let restart = std::process::Command::new(&bx.restart_apiserver[0])
        .args(&bx.restart_apiserver[1..])
        .output()?;
    let outcome = if restart.status.success() {
        e2e.wait_policy(name, "Available", Duration::from_mins(3))
            .await
            .map(drop)
    } else {
        Err(anyhow::anyhow!(
            "restarting the API server failed: {}",
            String::from_utf8_lossy(&restart.stderr)
        ))
    };
    let es = e2e.enactments(name).await;
    let log = watch.stop();
    let applies: anyhow::Result<BTreeMap<&String, usize>> = offsets
        .iter()
        .map(|(n, from)| Ok((n, logged(&bx, n, *from, name, "applying")?)))
        .collect();
    let cleanup = restore(&e2e, name).await;
    outcome?;
    let es = es?;
    let applies = applies?;
    cleanup?;
    for node in &nodes {
        assert_eq!(
            applies.get(node),
            Some(&1),
            "{node} (the first: {applying}): {applies:?}"
        );
        let e = es
            .get(node)
            .ok_or_else(|| anyhow::anyhow!("no enactment on {node}"))?;
        assert!(
            is_true(e, "Available"),
            "{node}: {:?}",
            condition(e, "Available")
        );
        assert!(!is_true(e, "Pending"), "{node} still Pending");
        let retries = &e.data["status"]["retryCount"];
        assert!(
            retries
                .as_object()
                .is_none_or(|r| r.values().all(|v| *v == 0)),
            "{node} retried: {retries}"
        );
    }
    assert!(
        log.peak.get("Progressing").copied().unwrap_or(0) <= 1,
        "more than one node progressing at once: {log:?}"
    );
    Ok(())
}
