//! Killed (SIGKILL) at 20 points spread over an apply of a policy that changes an interface
//! (eth2's MTU and address), a route and the global DNS: ten named fault points (the test build
//! pauses there, see `knmstate_nm_backend::fault`) and ten timed kills spread over the
//! measured length of an apply. Each time, the handler's start-up recovery (run on the node
//! before any handler starts again) leaves nmstate's own view of the node (DNS included)
//! wholly the state before or wholly the desired one, with no checkpoint; then a restarted
//! handler counts the interrupted attempt and makes the enactment converge (Available,
//! nothing Pending or Progressing). An out-of-band default route
//! in table 200 survives all of it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use super::{Cluster, HandlerProcess, HarnessNodes, T, eventually, has_checkpoint};

pub(crate) const POLICY: &str = "faults";
pub(crate) const NODE: &str = "node1";

/// The named points, in the order an apply passes them.
const POINTS: [&str; 10] = [
    "before-apply",
    "attempt-recorded",
    "applied",
    "probing",
    "probed-default-gateway",
    "probed-dns",
    "probes-passed",
    "committing",
    "committed",
    "committed-before-status",
];
/// Timed kills, spread over the measured apply.
const TIMED: u32 = 10;

/// The two desired states the runs alternate between.
fn desired(a: bool) -> Value {
    let (mtu, keep, drop, search) = if a {
        (
            1400,
            "198.19.120.0/24",
            "198.19.121.0/24",
            "a.knmstate.test",
        )
    } else {
        (
            1450,
            "198.19.121.0/24",
            "198.19.120.0/24",
            "b.knmstate.test",
        )
    };
    json!({
        "interfaces": [{"name": "eth2", "type": "ethernet", "state": "up", "mtu": mtu,
            "ipv4": {"enabled": true, "dhcp": false,
                     "address": [{"ip": "198.19.20.2", "prefix-length": 24}]}}],
        "routes": {"config": [
            {"destination": drop, "state": "absent"},
            {"destination": keep, "next-hop-address": "198.19.20.254",
             "next-hop-interface": "eth2"}]},
        "dns-resolver": {"config": {"server": ["198.18.0.1"], "search": [search]}}
    })
}

/// What the policy changes, in nmstate's view: eth2's MTU and IPv4 addresses, the routes to
/// 198.19.120-121.0/24, the DNS configuration.
fn view(state: &Value) -> Value {
    let eth2 = super::iface(state, "eth2").cloned().unwrap_or_default();
    let routes: Vec<Value> = state
        .pointer("/routes/config")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| {
            r["destination"]
                .as_str()
                .is_some_and(|d| d.starts_with("198.19.12"))
        })
        .map(|r| json!([r["destination"], r["next-hop-address"], r["table-id"]]))
        .collect();
    json!({
        "mtu": eth2["mtu"],
        "ipv4": eth2.pointer("/ipv4/address").cloned().unwrap_or_default(),
        "routes": routes,
        "dns": state.pointer("/dns-resolver/config").cloned().unwrap_or_default(),
    })
}

/// The handler log of `NODE`, ANSI colours stripped.
fn log(dir: &Path) -> String {
    let raw = std::fs::read_to_string(dir.join(format!("{NODE}.log"))).unwrap_or_default();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip to the end of the escape sequence (a letter).
            for e in chars.by_ref() {
                if e.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Wait until a line of the log passes `matches`.
async fn wait_log(dir: &Path, what: &str, matches: impl Fn(&str) -> bool) -> Result<()> {
    let matches = &matches;
    eventually(what, T, || async move {
        log(dir).lines().any(matches).then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", log(dir)))
}

/// Patch the policy to one of the two states.
pub(crate) async fn set_desired(c: &Cluster, a: bool) -> Result<()> {
    c.policies()
        .patch(
            POLICY,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"desiredState": desired(a)}})),
        )
        .await?;
    Ok(())
}

/// The enactment of `generation` Available, not Progressing, not Pending.
pub(crate) async fn converged(c: &Cluster, generation: i64) -> Result<()> {
    let name = format!("{NODE}.{POLICY}");
    let done = eventually(
        &format!("{name} generation {generation} converged"),
        T,
        || {
            let api = c.enactments();
            let name = name.clone();
            async move {
                let e = api.get(&name).await.ok()?;
                let s = e.status.as_ref()?;
                if s.policy_generation != Some(generation) {
                    return None;
                }
                let c = &s.conditions;
                if c.is_true("Failing") && !c.is_true("Progressing") {
                    return Some(Err(format!("{:?}", c.find("Failing"))));
                }
                (c.is_true("Available") && !c.is_true("Progressing") && !c.is_true("Pending"))
                    .then_some(Ok(()))
            }
        },
    )
    .await?;
    done.map_err(|failing| anyhow::anyhow!("{name} failed: {failing}"))
}

/// Replace `NODE`'s handler (index 0) by one started with `env`; wait until it `reached`.
async fn restart(
    handlers: &mut Vec<HandlerProcess>,
    kubeconfig: &Path,
    dir: &Path,
    env: &[(&str, &str)],
    reached: &str,
) -> Result<()> {
    handlers.insert(0, HandlerProcess::start_with(NODE, kubeconfig, dir, env)?);
    wait_log(dir, reached, |l| l.contains(reached)).await
}

/// How one run kills the handler.
#[derive(Debug, Clone, Copy)]
enum Kill {
    At(&'static str),
    After(Duration),
}

pub(crate) async fn run(
    c: &Cluster,
    h: &HarnessNodes,
    kubeconfig: &Path,
    dir: &Path,
    handlers: &mut Vec<HandlerProcess>,
) -> Result<()> {
    let t = Instant::now();
    let node = h.get(NODE);
    node.exec(&[
        "ip",
        "route",
        "add",
        "default",
        "via",
        "198.18.0.1",
        "dev",
        "eth0",
        "table",
        "200",
    ])?;
    // The two states, applied without faults: their views, and how long an apply takes.
    c.create_policy(json!({
        "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": POLICY},
        "spec": {"nodeSelector": {"kubernetes.io/hostname": NODE}, "desiredState": desired(true)}
    }))
    .await?;
    converged(c, 1).await?;
    let view_a = view(&node.nmstate_view()?);
    set_desired(c, false).await?;
    wait_log(dir, "the apply of generation 2", applying(2)).await?;
    let started = Instant::now();
    converged(c, 2).await?;
    let apply_takes = started.elapsed();
    let view_b = view(&node.nmstate_view()?);
    if view_a == view_b || view_a["dns"] == json!({}) {
        bail!("the two states do not differ as meant: {view_a} / {view_b}");
    }
    println!("    an apply takes {:.2} s", apply_takes.as_secs_f64());

    let kills = POINTS
        .iter()
        .map(|p| Kill::At(p))
        .chain((0..TIMED).map(|k| Kill::After(apply_takes * k / TIMED)));
    let mut to_a = true;
    for (i, kill) in kills.enumerate() {
        let generation = i64::try_from(i).unwrap_or(0) + 3;
        let (before, want) = if to_a {
            (&view_b, &view_a)
        } else {
            (&view_a, &view_b)
        };
        let run = Instant::now();
        handlers.remove(0).kill()?;
        let label = match kill {
            Kill::At(point) => {
                let env = [
                    ("KNMSTATE_PAUSE_AT", point),
                    ("KNMSTATE_PAUSE_POLICY", POLICY),
                ];
                restart(handlers, kubeconfig, dir, &env, "handler started").await?;
                set_desired(c, to_a).await?;
                wait_log(dir, point, |l| l.contains("paused at fault point")).await?;
                format!("at {point}")
            }
            Kill::After(offset) => {
                restart(handlers, kubeconfig, dir, &[], "handler started").await?;
                set_desired(c, to_a).await?;
                wait_log(dir, "the apply", applying(generation)).await?;
                tokio::time::sleep(offset).await;
                format!("{} ms into the apply", offset.as_millis())
            }
        };
        handlers.remove(0).kill()?;
        // The handler's start-up recovery alone (run on the node by this test, before any
        // handler starts again): the node is wholly old or wholly new, nothing held.
        let (state, recovery) = node.recover_then_view(dir)?;
        let now = view(&state);
        let which = if &now == want {
            "new"
        } else if &now == before {
            "old"
        } else {
            bail!(
                "killed {label}: after recovery neither old nor new: {now}\nold {before}\nnew {want}\n{recovery}"
            );
        };
        if has_checkpoint(node)? {
            bail!(
                "killed {label}: a checkpoint is held after recovery: {}\n{recovery}",
                super::checkpoints(node)?
            );
        }
        restart(handlers, kubeconfig, dir, &[], "handler started").await?;
        converged(c, generation).await?;
        let recovered = log(dir);
        if &view(&node.nmstate_view()?) != want {
            bail!("killed {label}: converged but not to the desired state");
        }
        if has_checkpoint(node)? {
            bail!("killed {label}: a checkpoint was left");
        }
        let counted = if recovered.contains("counting an attempt during which the handler died") {
            ", attempt counted"
        } else {
            ""
        };
        println!(
            "    killed {label}: {which} after recovery{counted}, converged ({:.1} s)",
            run.elapsed().as_secs_f64()
        );
        to_a = !to_a;
    }
    let table200 = node.exec(&["ip", "route", "show", "table", "200"])?;
    if !table200.contains("default via 198.18.0.1 dev eth0") {
        bail!("the out-of-band table-200 default route is gone: {table200:?}");
    }
    super::scenarios::step(
        "killed -9 at 20 points of an interface + route + DNS apply: wholly old or new, converged",
        t,
    );
    Ok(())
}

/// A log line of the handler starting to apply `generation` of the policy.
fn applying(generation: i64) -> impl Fn(&str) -> bool {
    move |l: &str| {
        l.contains("applying")
            && !l.contains("not applying")
            && l.contains(&format!("policy={POLICY}"))
            && l.contains(&format!("generation={generation}"))
    }
}
