//! The box's container runtime: a pod sandbox (the node's namespaces for a host-network pod,
//! else a network namespace of its own with the API and each container port bridged over Unix
//! sockets), its volumes as directories of the state dir, and each container a process in a
//! private mount namespace where those directories are mounted at the container's mount paths.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::Probe;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::process::{Child, Command};

use super::pod::{ContainerPlan, Mount, Source};

/// What the runtime needs to know about the box.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The box's state dir.
    pub state: PathBuf,
    /// `hack/nodes.sh` (runs a command inside a node).
    pub nodes_script: PathBuf,
    /// The node harness prefix.
    pub prefix: String,
    /// Unix socket of the API (bridged into each pod network namespace at 127.0.0.1:6443).
    pub api_socket: PathBuf,
}

/// Where a pod's processes run.
#[derive(Debug)]
pub struct Sandbox {
    /// The pod's directory (volumes, sockets, scripts).
    pub dir: PathBuf,
    /// The node (host network) or the pod's own network namespace.
    pub netns: Netns,
    helpers: Vec<Child>,
}

/// A sandbox's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Netns {
    /// The node's namespaces (`hostNetwork: true`).
    Node(String),
    /// A network namespace of the pod's own.
    Own(String),
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

async fn run(program: &str, args: &[&str]) -> std::io::Result<()> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl Runtime {
    /// `argv` run inside the sandbox's network (and, for a node, mount and UTS) namespaces.
    fn enter(&self, netns: &Netns, argv: &[String]) -> Command {
        let mut c = match netns {
            Netns::Node(node) => {
                let mut c = Command::new("bash");
                c.arg(&self.nodes_script)
                    .args(["--prefix", &self.prefix, "exec", node]);
                c
            }
            Netns::Own(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]);
                c
            }
        };
        c.args(argv)
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        c
    }

    fn helper(&self, netns: &Netns, argv: &[String], log: &Path) -> std::io::Result<Child> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        self.enter(netns, argv)
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
    }

    /// Create the pod's sandbox: its directory, and for a pod of its own network the namespace
    /// with loopback up, the API at 127.0.0.1:6443 and a Unix socket `ports/<port>.sock` per
    /// container port (the box's pod network: what Services and probes connect to).
    pub async fn sandbox(
        &self,
        dir: &Path,
        netns: Netns,
        ports: &[i32],
        log: &Path,
    ) -> std::io::Result<Sandbox> {
        std::fs::create_dir_all(dir.join("ports"))?;
        let mut helpers = Vec::new();
        let sock = |p: i32| dir.join("ports").join(format!("{p}.sock"));
        if let Netns::Own(ns) = &netns {
            let _ = run("ip", &["netns", "del", ns]).await;
            run("ip", &["netns", "add", ns]).await?;
            run("ip", &["-n", ns, "link", "set", "lo", "up"]).await?;
            helpers.push(self.helper(
                &netns,
                &[
                    "socat".into(),
                    "TCP-LISTEN:6443,bind=127.0.0.1,reuseaddr,fork".into(),
                    format!("UNIX-CONNECT:{}", self.api_socket.display()),
                ],
                log,
            )?);
        }
        for p in ports {
            helpers.push(self.helper(
                &netns,
                &[
                    "socat".into(),
                    format!(
                        "UNIX-LISTEN:{},fork,unlink-early,mode=600",
                        sock(*p).display()
                    ),
                    format!("TCP:127.0.0.1:{p}"),
                ],
                log,
            )?);
        }
        Ok(Sandbox {
            dir: dir.to_owned(),
            netns,
            helpers,
        })
    }

    /// Stop the sandbox's helpers and remove its network namespace and directory.
    pub async fn remove(&self, mut sandbox: Sandbox) {
        for h in &mut sandbox.helpers {
            if let Some(pid) = h.id() {
                signal(pid, "KILL").await;
            }
            let _ = h.wait().await;
        }
        if let Netns::Own(ns) = &sandbox.netns {
            let _ = run("ip", &["netns", "del", ns]).await;
        }
        let _ = std::fs::remove_dir_all(&sandbox.dir);
    }

    /// The directory backing a volume (Secrets are written by the caller).
    pub fn volume_dir(&self, sandbox: &Sandbox, m: &Mount, node: &str) -> PathBuf {
        match &m.source {
            Source::Secret { .. } | Source::EmptyDir(_) => {
                sandbox.dir.join("volumes").join(&m.volume)
            }
            Source::HostPath(p) => super::pod::host_path(
                p,
                node,
                matches!(sandbox.netns, Netns::Node(_)),
                &self.state,
            ),
        }
    }

    /// Start one container: a script that mounts each volume at its path (an overlay in the
    /// process' own mount namespace makes a missing mount point, so the machine's own
    /// directories are never written) and runs the binary with exactly the planned env.
    pub fn start(
        &self,
        sandbox: &Sandbox,
        c: &ContainerPlan,
        node: &str,
        log: &Path,
    ) -> std::io::Result<Child> {
        let overlay = sandbox.dir.join("overlay").join(&c.name);
        std::fs::create_dir_all(&overlay)?;
        let mut script = format!(
            "set -eu\nOV={}\n{}",
            quote(&overlay.display().to_string()),
            r#"ensure_dir() {
    [ -d "$1" ] && return 0
    a="$1"
    while [ ! -e "$a" ]; do a="$(dirname "$a")"; done
    [ "$a" != / ] || { echo "box: cannot make mount point $1" >&2; exit 1; }
    k="$(echo "$a" | tr / _)"
    mkdir -p "$OV/$k/u" "$OV/$k/w"
    mount -n -t overlay overlay -o "lowerdir=$a,upperdir=$OV/$k/u,workdir=$OV/$k/w" "$a"
    mkdir -p "$1"
}
"#
        );
        let mounts: Vec<(&Mount, PathBuf)> = c
            .mounts
            .iter()
            .map(|m| (m, self.volume_dir(sandbox, m, node)))
            .collect();
        // A volume over an ancestor of the state dir (an emptyDir at /tmp, the box under /tmp)
        // would hide the box's own files (binaries, kubeconfig): keep a view of the state dir
        // aside (in an overlay of /mnt, nothing written to the machine) and put it back after.
        let state = quote(&self.state.display().to_string());
        let hidden = mounts
            .iter()
            .any(|(m, _)| self.state.starts_with(&m.target));
        if hidden {
            let _ = writeln!(script, "ensure_dir {KEEP}\nmount -n --bind {state} {KEEP}");
        }
        for m in mount_order(&mounts, &overlay) {
            let (m, src) = (m.0, &m.1);
            std::fs::create_dir_all(src)?;
            let (s, t) = (quote(&src.display().to_string()), quote(&m.target));
            let _ = writeln!(script, "ensure_dir {t}\nmount -n --bind {s} {t}");
            if m.read_only {
                let _ = writeln!(script, "mount -n -o remount,bind,ro {t}");
            }
        }
        if hidden {
            let _ = writeln!(script, "mkdir -p {state}\nmount -n --bind {KEEP} {state}");
        }
        let env: Vec<String> = c
            .env
            .iter()
            .map(|(k, v)| quote(&format!("{k}={v}")))
            .collect();
        let argv: Vec<String> = c.argv.iter().map(|a| quote(a)).collect();
        let _ = writeln!(
            script,
            "cd /\nexec env -i {} {}",
            env.join(" "),
            argv.join(" ")
        );
        let path = sandbox.dir.join(format!("{}.sh", c.name));
        std::fs::write(&path, script)?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let argv = [
            "unshare".to_owned(),
            "-m".into(),
            "--propagation".into(),
            "private".into(),
            "sh".into(),
            path.display().to_string(),
        ];
        let mut cmd = self.enter(&sandbox.netns, &argv);
        cmd.current_dir(&sandbox.dir)
            .stdout(f.try_clone()?)
            .stderr(f);
        cmd.spawn()
    }
}

/// The order to mount `mounts` (each with its source) in: parents before their children, and
/// last those whose target would hide a source or the overlay dir still needed (an emptyDir at
/// `/tmp` hides a box whose state dir is under `/tmp`).
fn mount_order<'a>(
    mounts: &'a [(&'a Mount, PathBuf)],
    overlay: &Path,
) -> Vec<&'a (&'a Mount, PathBuf)> {
    let hides = |target: &str| {
        mounts
            .iter()
            .map(|(_, src)| src.as_path())
            .chain(std::iter::once(overlay))
            .any(|p| p.starts_with(target))
    };
    let mut order: Vec<_> = mounts.iter().collect();
    order.sort_by_key(|(m, _)| (hides(&m.target), m.target.len()));
    order
}

/// Where a container's script keeps a view of the box's state dir while a volume hides it.
const KEEP: &str = "/mnt/.knmstate-box-state";

/// `kill -SIG -PID`: the process group the container (or helper) leads.
pub async fn signal(pid: u32, sig: &str) {
    let _ = run("kill", &[&format!("-{sig}"), "--", &format!("-{pid}")]).await;
}

/// Stop a container: SIGTERM, then SIGKILL after `grace`.
pub async fn stop(child: &mut Child, grace: Duration) {
    let Some(pid) = child.id() else { return };
    signal(pid, "TERM").await;
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        signal(pid, "KILL").await;
        let _ = child.wait().await;
    }
}

/// Run a probe against the container whose process is `pid` (inside its namespaces, as the
/// kubelet runs exec probes in the container and HTTP probes on the pod's address):
/// `exec` runs the command, `httpGet` fetches with curl (HTTPS unverified, as the kubelet),
/// `tcpSocket` connects.
pub async fn probe(p: &Probe, pid: u32, ports: &[(String, i32)]) -> bool {
    let port = |p: &IntOrString| match p {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(s) => ports.iter().find(|(n, _)| n == s).map(|(_, n)| *n),
    };
    let timeout = u64::try_from(p.timeout_seconds.unwrap_or(1).max(1)).unwrap_or(1);
    let mut argv: Vec<String> = vec!["nsenter".into(), "-t".into(), pid.to_string()];
    if let Some(e) = &p.exec {
        argv.extend(["-n", "-m", "-u", "--"].map(String::from));
        argv.extend(e.command.clone().unwrap_or_default());
    } else if let Some(h) = &p.http_get {
        let Some(n) = port(&h.port) else { return false };
        let scheme = h.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
        let host = h.host.clone().unwrap_or_else(|| "127.0.0.1".into());
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        argv.extend(
            ["-n", "--", "curl", "-ksf", "-o", "/dev/null", "--max-time"].map(String::from),
        );
        argv.push(timeout.to_string());
        argv.push(format!("{scheme}://{host}:{n}{path}"));
    } else if let Some(t) = &p.tcp_socket {
        let Some(n) = port(&t.port) else { return false };
        argv.extend(["-n", "--", "bash", "-c"].map(String::from));
        argv.push(format!("exec 3<>/dev/tcp/127.0.0.1/{n}"));
    } else {
        return true;
    }
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    matches!(tokio::time::timeout(Duration::from_secs(timeout + 2), out).await, Ok(Ok(s)) if s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(target: &str) -> Mount {
        Mount {
            volume: target.trim_start_matches('/').replace('/', "-"),
            source: Source::EmptyDir(String::new()),
            target: target.to_owned(),
            read_only: false,
        }
    }

    #[test]
    fn a_target_that_hides_a_source_is_mounted_last() {
        let (tmp, lock, dbus, certs) = (
            mount("/tmp"),
            mount("/var/k8s_nmstate"),
            mount("/run/dbus"),
            mount("/etc/webhook"),
        );
        let mounts = vec![
            (&tmp, PathBuf::from("/tmp/box/volumes/tmp")),
            (
                &lock,
                PathBuf::from("/tmp/box/hostpath/node1/var/k8s_nmstate"),
            ),
            (&dbus, PathBuf::from("/tmp/box/hostpath/node1/run/dbus")),
            (&certs, PathBuf::from("/srv/box/volumes/certs")),
        ];
        let order: Vec<&str> = mount_order(&mounts, Path::new("/tmp/box/overlay/c"))
            .iter()
            .map(|(m, _)| m.target.as_str())
            .collect();
        assert_eq!(
            order,
            ["/run/dbus", "/etc/webhook", "/var/k8s_nmstate", "/tmp"]
        );
        // A box outside /tmp keeps parents-first order by length.
        let mounts: Vec<_> = mounts
            .iter()
            .map(|(m, p)| {
                (
                    *m,
                    Path::new("/srv").join(p.strip_prefix("/tmp").unwrap_or(p)),
                )
            })
            .collect();
        let order: Vec<&str> = mount_order(&mounts, Path::new("/srv/box/overlay/c"))
            .iter()
            .map(|(m, _)| m.target.as_str())
            .collect();
        assert_eq!(
            order,
            ["/tmp", "/run/dbus", "/etc/webhook", "/var/k8s_nmstate"]
        );
    }
}
