//! Where the scale harness runs the API stand-in and the controller: in the harness's own
//! process (the tests), or each as a process of its own (`knmstate-scale`). Apart, their CPU
//! time and peak memory are read from `/proc/<pid>` and not mixed with the handlers', and each
//! process holds only its own end of the handlers' connections: about 10 per handler, so
//! 1,000 handlers stay under a 20,000 file-descriptor limit.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::PostParams;
use tokio::io::AsyncBufReadExt;
use tokio::sync::oneshot;

use super::figures::Requests;
use crate::apiserver::nmstate::start_with_crds;
use crate::apiserver::{ApiServer, Config};

/// Where the stand-in and the controller run.
#[derive(Debug, Clone, Default)]
pub enum Layout {
    /// In the harness's process, beside the handlers.
    #[default]
    InProcess,
    /// Each as a process of its own, from these binaries.
    Processes {
        /// `knmstate-apiserver`.
        apiserver: PathBuf,
        /// `knmstate-controller`.
        controller: PathBuf,
    },
}

impl Layout {
    /// Processes from the binaries beside the running executable (one cargo target
    /// directory), when both are there.
    pub fn beside_this_binary() -> Option<Self> {
        let dir = std::env::current_exe().ok()?.parent()?.to_path_buf();
        let apiserver = dir.join("knmstate-apiserver");
        let controller = dir.join("knmstate-controller");
        (apiserver.is_file() && controller.is_file()).then_some(Self::Processes {
            apiserver,
            controller,
        })
    }
}

/// CPU time (user + system) and peak resident memory (`VmHWM`, MiB) of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// CPU time so far.
    pub cpu: Duration,
    /// Peak resident memory so far, MiB.
    pub peak_mib: f64,
}

impl Usage {
    /// Of process `pid` (`"self"` for this one); zero for what `/proc` does not tell.
    pub fn of(pid: &str) -> Self {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at the state, field 3.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // utime and stime are fields 14 and 15 (indexes 11 and 12 from the state); 100 ticks/s.
        let cpu = Duration::from_millis((ticks(11) + ticks(12)) * 10);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let peak_mib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0);
        Self { cpu, peak_mib }
    }

    /// The CPU time from `before` to `self`, and the peak of `self`.
    #[must_use]
    pub fn since(self, before: Self) -> Self {
        Self {
            cpu: self.cpu.saturating_sub(before.cpu),
            peak_mib: self.peak_mib,
        }
    }
}

/// A child process, killed when dropped.
#[derive(Debug)]
pub struct Child {
    child: tokio::process::Child,
    pid: u32,
}

impl Child {
    fn usage(&self) -> Usage {
        Usage::of(&self.pid.to_string())
    }

    async fn stop(mut self) {
        // Nothing of theirs outlives the run: no data file, no cleanup to wait for.
        let _ = self.child.kill().await;
    }
}

/// The API stand-in, wherever it runs.
#[allow(clippy::large_enum_variant, reason = "one per run, never moved around")]
pub enum StandIn {
    /// In this process.
    InProcess(ApiServer),
    /// A `knmstate-apiserver` process.
    Process {
        /// The process.
        child: Child,
        /// Its URL.
        url: String,
        /// A kubeconfig pointing at it.
        kubeconfig: PathBuf,
        /// The administrator's client.
        client: kube::Client,
    },
}

impl StandIn {
    /// Start the stand-in with `event_window` watch events kept, and install the `nmstate.io`
    /// CRDs; `dir` holds its kubeconfig.
    pub async fn start(layout: &Layout, event_window: usize, dir: &Path) -> Result<Self> {
        match layout {
            Layout::InProcess => {
                let (server, _) = start_with_crds(Config {
                    event_window,
                    ..Config::default()
                })
                .await?;
                Ok(Self::InProcess(server))
            }
            Layout::Processes { apiserver, .. } => {
                let kubeconfig = dir.join("kubeconfig");
                let mut child = tokio::process::Command::new(apiserver)
                    .args(["--listen", "127.0.0.1:0", "--event-window"])
                    .arg(event_window.to_string())
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .env(
                        "RUST_LOG",
                        std::env::var("RUST_LOG").unwrap_or_else(|_| "error".to_owned()),
                    )
                    .stdout(Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .with_context(|| format!("failed to start {}", apiserver.display()))?;
                let pid = child.id().context("the stand-in exited at once")?;
                let stdout = child.stdout.take().context("no stdout")?;
                // It prints its URL once it listens.
                let mut lines = tokio::io::BufReader::new(stdout).lines();
                let url = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                    .await
                    .context("the stand-in printed no URL within 30 s")??
                    .context("the stand-in exited before printing its URL")?;
                let client = kube::Client::try_from(kube::Config::new(url.parse()?))?;
                let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
                for (_, crd) in knmstate_api::crd::all()? {
                    crds.create(&PostParams::default(), &crd).await?;
                }
                Ok(Self::Process {
                    child: Child { child, pid },
                    url,
                    kubeconfig,
                    client,
                })
            }
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        match self {
            Self::InProcess(s) => s.url(),
            Self::Process { url, .. } => url.clone(),
        }
    }

    /// A new administrator's client.
    pub fn client(&self) -> Result<kube::Client> {
        Ok(match self {
            Self::InProcess(s) => s.client()?,
            Self::Process { client, .. } => client.clone(),
        })
    }

    /// Its request counters now.
    pub async fn requests(&self) -> Result<Requests> {
        match self {
            Self::InProcess(s) => Ok(Requests::parse(&s.metrics().encode())),
            Self::Process { client, .. } => {
                let req = http::Request::get("/metrics").body(Vec::new())?;
                Ok(Requests::parse(&client.request_text(req).await?))
            }
        }
    }

    /// Its CPU time and peak memory, when it runs apart.
    pub fn usage(&self) -> Option<Usage> {
        match self {
            Self::InProcess(_) => None,
            Self::Process { child, .. } => Some(child.usage()),
        }
    }

    /// Stop it.
    pub async fn shutdown(self) {
        match self {
            Self::InProcess(s) => s.shutdown().await,
            Self::Process { child, .. } => child.stop().await,
        }
    }
}

/// Start the controller binary against the API server of `kubeconfig`, production settings,
/// plain-HTTP metrics on a free port, its log at `RUST_LOG` (`log` when unset); killed when
/// dropped.
pub fn spawn_controller(
    binary: &Path,
    kubeconfig: &Path,
    log: &str,
) -> Result<tokio::process::Child> {
    tokio::process::Command::new(binary)
        .env("KUBECONFIG", kubeconfig)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| log.to_owned()),
        )
        .args([
            "--metrics-bind-address",
            "127.0.0.1:0",
            "--metrics-secure",
            "false",
            "--lease-namespace",
            "default",
        ])
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("failed to start {}", binary.display()))
}

/// The controller, wherever it runs (production election timings either way).
pub enum Controller {
    /// A task of this process.
    InProcess {
        /// Stops it.
        stop: oneshot::Sender<()>,
        /// The task.
        task: tokio::task::JoinHandle<()>,
    },
    /// A `knmstate-controller` process.
    Process(Child),
}

impl Controller {
    /// Start it against `stand_in`.
    pub fn start(layout: &Layout, stand_in: &StandIn) -> Result<Self> {
        if let (Layout::Processes { controller, .. }, StandIn::Process { kubeconfig, .. }) =
            (layout, stand_in)
        {
            let mut child = spawn_controller(controller, kubeconfig, "error")?;
            let pid = child.id().context("the controller exited at once")?;
            if let Ok(Some(status)) = child.try_wait() {
                bail!("the controller exited at once: {status}");
            }
            return Ok(Self::Process(Child { child, pid }));
        }
        let (stop, rx) = oneshot::channel::<()>();
        let lease = knmstate_controller::leader::LeaseConfig::new(
            "default",
            "knmstate-controller",
            "scale-controller",
        );
        let config = knmstate_controller::Config::new(lease);
        let task = tokio::spawn(knmstate_controller::run(
            stand_in.client()?,
            config,
            None,
            async move {
                let _ = rx.await;
            },
        ));
        Ok(Self::InProcess { stop, task })
    }

    /// Its CPU time and peak memory, when it runs apart.
    pub fn usage(&self) -> Option<Usage> {
        match self {
            Self::InProcess { .. } => None,
            Self::Process(child) => Some(child.usage()),
        }
    }

    /// Stop it.
    pub async fn stop(self) {
        match self {
            Self::InProcess { stop, task } => {
                let _ = stop.send(());
                let _ = task.await;
            }
            Self::Process(child) => child.stop().await,
        }
    }
}
