//! One running pod: its sandbox and containers, restarted when they exit (`restartPolicy:
//! Always`, with back-off), probed for readiness and liveness (a live container failing its
//! liveness probe `failureThreshold` times in a row is restarted), stopped with its grace
//! period.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Probe;
use tokio::process::Child;

use super::launch::{self, Runtime, Sandbox};
use super::pod::ContainerPlan;
use super::workloads::DesiredPod;

/// A container of a running pod.
#[derive(Debug)]
pub struct Container {
    /// What it runs.
    pub plan: ContainerPlan,
    child: Option<Child>,
    /// Whether its readiness probe (if any) last passed.
    pub ready: bool,
    restarts: u32,
    next_start: Instant,
    started: Instant,
    last_probe: Instant,
    live_failures: i32,
}

/// A pod the box runs.
#[derive(Debug)]
pub struct RunningPod {
    /// What it was started from.
    pub pod: DesiredPod,
    /// Its sandbox.
    pub sandbox: Sandbox,
    /// Its containers.
    pub containers: Vec<Container>,
    /// Log file of its processes.
    pub log: PathBuf,
}

fn period(p: &Probe) -> Duration {
    Duration::from_secs(u64::try_from(p.period_seconds.unwrap_or(10).max(1)).unwrap_or(10))
}

fn initial_delay(p: &Probe) -> Duration {
    Duration::from_secs(u64::try_from(p.initial_delay_seconds.unwrap_or(0).max(0)).unwrap_or(0))
}

impl RunningPod {
    /// A pod with its sandbox made and no container started yet.
    pub fn new(pod: DesiredPod, sandbox: Sandbox, plans: Vec<ContainerPlan>, log: PathBuf) -> Self {
        let now = Instant::now();
        let containers = plans
            .into_iter()
            .map(|plan| Container {
                plan,
                child: None,
                ready: false,
                restarts: 0,
                next_start: now,
                started: now,
                last_probe: now,
                live_failures: 0,
            })
            .collect();
        Self {
            pod,
            sandbox,
            containers,
            log,
        }
    }

    /// Whether every container runs and is ready.
    pub fn ready(&self) -> bool {
        self.containers.iter().all(|c| c.child.is_some() && c.ready)
    }

    /// The process id of a running container (for `ps` and probes).
    pub fn pids(&self) -> Vec<u32> {
        self.containers
            .iter()
            .filter_map(|c| c.child.as_ref()?.id())
            .collect()
    }

    /// Start what is not running (when its back-off allows), notice exits, run due probes.
    pub async fn sync(&mut self, rt: &Runtime) {
        let now = Instant::now();
        let name = self.pod.name.clone();
        for c in &mut self.containers {
            if let Some(child) = &mut c.child
                && let Ok(Some(status)) = child.try_wait()
            {
                tracing::warn!(pod = %name, container = %c.plan.name, %status, restarts = c.restarts, "container exited; restarting after back-off");
                c.child = None;
                c.ready = false;
                c.next_start = now + Duration::from_secs(1 << c.restarts.min(4));
                c.restarts += 1;
            }
            if c.child.is_none() {
                if now < c.next_start {
                    continue;
                }
                match rt.start(&self.sandbox, &c.plan, &self.pod.node, &self.log) {
                    Ok(child) => {
                        tracing::info!(pod = %name, container = %c.plan.name, node = %self.pod.node,
                            pid = child.id(), argv = ?c.plan.argv, "container started");
                        c.child = Some(child);
                        c.started = now;
                        c.last_probe = now;
                        c.live_failures = 0;
                        c.ready = c.plan.readiness.is_none();
                    }
                    Err(e) => {
                        tracing::warn!(pod = %name, container = %c.plan.name, "failed to start the container: {e}");
                        c.next_start = now + Duration::from_secs(5);
                    }
                }
                continue;
            }
            let Some(pid) = c.child.as_ref().and_then(Child::id) else {
                continue;
            };
            if let Some(p) = c.plan.readiness.clone()
                && now >= c.started + initial_delay(&p)
            {
                let ready = launch::probe(&p, pid, &c.plan.ports).await;
                if ready != c.ready {
                    tracing::info!(pod = %name, container = %c.plan.name, ready, "readiness changed");
                }
                c.ready = ready;
            }
            if let Some(p) = c.plan.liveness.clone()
                && now >= c.started + initial_delay(&p)
                && now >= c.last_probe + period(&p)
            {
                c.last_probe = now;
                if launch::probe(&p, pid, &c.plan.ports).await {
                    c.live_failures = 0;
                } else {
                    c.live_failures += 1;
                    if c.live_failures >= p.failure_threshold.unwrap_or(3) {
                        tracing::warn!(pod = %name, container = %c.plan.name, "liveness probe failed; restarting");
                        if let Some(mut child) = c.child.take() {
                            launch::stop(&mut child, self.pod.grace()).await;
                        }
                        c.ready = false;
                    }
                }
            }
        }
    }

    /// Stop every container (SIGTERM, SIGKILL after the grace period) and remove the sandbox.
    pub async fn stop(mut self, rt: &Runtime) {
        let grace = self.pod.grace();
        let stops = self
            .containers
            .iter_mut()
            .filter_map(|c| c.child.as_mut())
            .map(|child| launch::stop(child, grace));
        futures::future::join_all(stops).await;
        rt.remove(self.sandbox).await;
    }
}
