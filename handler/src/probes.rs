//! The probes that guard an apply: nm-backend's default-gateway and DNS probes, plus this
//! binary's API-server reachability and node-readiness probes, built from the probe plan
//! state-engine chose ([`ProbeSpec`]s) by a [`ProbeFactory`].
//!
//! [`RealProbes`] talks to the node's network. The model probes (`ModelProbes`, tests and the
//! `testing` feature only) judge the gateway and DNS from the node's state alone, for the
//! in-memory backend.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node};
use knmstate_nm_backend::BackendError;
use knmstate_nm_backend::probe::{
    DefaultGatewayProbe, DnsProbe, Probe, ProbeContext, ProbeFuture, ProbeOutcome, RecordType,
};
use knmstate_state_engine::rollback::{DEFAULT_DNS_HOST, ProbeKind, ProbeSpec};
use knmstate_state_engine::secrets;
use kube::Api;
use serde_json::Value;

#[cfg(any(test, feature = "testing"))]
mod model;
#[cfg(any(test, feature = "testing"))]
pub use model::{Delayed, ModelDnsProbe, ModelGatewayProbe, ModelProbes};

/// What probes may need from the handler.
#[derive(Clone)]
pub struct ProbeEnv {
    /// How to reach the API server (a fresh client is made from it for every attempt).
    pub kube_config: kube::Config,
    /// This node.
    pub node_name: String,
}

/// Builds the probe for one [`ProbeSpec`].
pub trait ProbeFactory: Send + Sync {
    /// A probe for `spec`.
    fn build(&self, spec: &ProbeSpec, env: &ProbeEnv) -> Box<dyn Probe>;
}

/// A probe whose messages hold no secret of the desired state being applied: a probe may
/// quote the state it read, and its messages reach the log (nm-backend's probe runner), the
/// enactment (`status.lastApply`, the Failing message) and events.
pub struct Scrubbed {
    /// The probe.
    pub inner: Box<dyn Probe>,
    /// The desired state being applied (secrets in clear).
    pub desired: Value,
}

impl Probe for Scrubbed {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn run<'a>(&'a self, ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a> {
        Box::pin(async move {
            let scrub = |text: String| secrets::scrub(&text, &self.desired);
            match self.inner.run(ctx).await {
                Ok(ProbeOutcome::Passed(m)) => Ok(ProbeOutcome::Passed(scrub(m))),
                Ok(ProbeOutcome::Skipped(m)) => Ok(ProbeOutcome::Skipped(scrub(m))),
                Err(BackendError::Probe { probe, message }) => {
                    Err(probe_failed(&probe, scrub(message)))
                }
                Err(e) => Err(e),
            }
        })
    }
}

fn probe_failed(probe: &str, message: String) -> BackendError {
    BackendError::Probe {
        probe: probe.to_owned(),
        message,
    }
}

/// Poll `check` every `interval` until it passes or `timeout` is over.
async fn poll<F, Fut>(name: &str, timeout: Duration, interval: Duration, mut check: F) -> ProbeRun
where
    F: FnMut(Duration) -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match check(left.clamp(Duration::from_millis(200), Duration::from_secs(5))).await {
            Ok(msg) => return Ok(ProbeOutcome::Passed(msg)),
            Err(e) if Instant::now() + interval >= deadline => {
                return Err(probe_failed(name, format!("{e} (for {timeout:?})")));
            }
            Err(_) => tokio::time::sleep(interval).await,
        }
    }
}

type ProbeRun = Result<ProbeOutcome, BackendError>;

/// Poll `check` with a fresh API client per attempt (a cached connection may have died with
/// the network change), each attempt bounded by the time left.
async fn poll_api<F, Fut>(
    name: &str,
    kube_config: &kube::Config,
    timeout: Duration,
    check: F,
) -> ProbeRun
where
    F: Fn(kube::Client) -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    poll(name, timeout, Duration::from_secs(1), |wait| {
        let mut cfg = kube_config.clone();
        cfg.connect_timeout = Some(wait);
        cfg.read_timeout = Some(wait);
        let attempt = kube::Client::try_from(cfg).map(&check);
        async move {
            let attempt = attempt.map_err(|e| e.to_string())?;
            tokio::time::timeout(wait, attempt)
                .await
                .unwrap_or_else(|_| Err(format!("no answer from the API server within {wait:?}")))
        }
    })
    .await
}

/// GET namespace `default` with a fresh client and a per-request timeout, polled.
#[derive(Clone)]
pub struct ApiServerProbe {
    /// How to reach the API server.
    pub kube_config: kube::Config,
    /// Budget.
    pub timeout: Duration,
}

impl Probe for ApiServerProbe {
    fn name(&self) -> &str {
        ProbeKind::ApiServer.name()
    }

    fn run<'a>(&'a self, _ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a> {
        Box::pin(poll_api(
            self.name(),
            &self.kube_config,
            self.timeout,
            |client| async move {
                let ns: Api<Namespace> = Api::all(client);
                ns.get("default")
                    .await
                    .map(|_| "namespace default read".to_owned())
                    .map_err(|e| format!("reading namespace default: {e}"))
            },
        ))
    }
}

/// This node's `Ready` condition is `True` (read from the API server, not a cache), polled.
#[derive(Clone)]
pub struct NodeReadinessProbe {
    /// How to reach the API server.
    pub kube_config: kube::Config,
    /// This node.
    pub node_name: String,
    /// Budget.
    pub timeout: Duration,
}

impl Probe for NodeReadinessProbe {
    fn name(&self) -> &str {
        ProbeKind::NodeReadiness.name()
    }

    fn run<'a>(&'a self, _ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a> {
        let name = self.node_name.as_str();
        Box::pin(poll_api(
            self.name(),
            &self.kube_config,
            self.timeout,
            move |client| async move {
                let nodes: Api<Node> = Api::all(client);
                match nodes.get(name).await {
                    Ok(n) if knmstate_state_engine::node::is_ready(&n) => {
                        Ok(format!("node {name} is Ready"))
                    }
                    Ok(_) => Err(format!("node {name} is not Ready")),
                    Err(e) => Err(format!("reading node {name}: {e}")),
                }
            },
        ))
    }
}

fn dns_probe(spec: &ProbeSpec) -> DnsProbe {
    let host = spec.host.clone().unwrap_or_else(|| DEFAULT_DNS_HOST.into());
    // Upstream: an NS lookup of the default host, a host (A) lookup of a custom one.
    let record_type = if host.trim_end_matches('.') == DEFAULT_DNS_HOST {
        RecordType::NS
    } else {
        RecordType::A
    };
    let name = if host.ends_with('.') {
        host
    } else {
        format!("{host}.")
    };
    DnsProbe {
        timeout: spec.timeout,
        name,
        record_type,
        ..Default::default()
    }
}

/// The probes of a real node: ICMP/TCP to the default gateway, DNS queries to the running name
/// servers, the API server and the node's readiness.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealProbes;

impl ProbeFactory for RealProbes {
    fn build(&self, spec: &ProbeSpec, env: &ProbeEnv) -> Box<dyn Probe> {
        match spec.kind {
            ProbeKind::DefaultGateway => Box::new(DefaultGatewayProbe {
                timeout: spec.timeout,
                ..Default::default()
            }),
            ProbeKind::Dns => Box::new(dns_probe(spec)),
            ProbeKind::ApiServer => Box::new(ApiServerProbe {
                kube_config: env.kube_config.clone(),
                timeout: spec.timeout,
            }),
            ProbeKind::NodeReadiness => Box::new(NodeReadinessProbe {
                kube_config: env.kube_config.clone(),
                node_name: env.node_name.clone(),
                timeout: spec.timeout,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use knmstate_nm_backend::probe::FixedState;
    use serde_json::json;

    #[test]
    fn dns_probe_follows_upstream_lookup_kinds() {
        let spec = |host: &str| ProbeSpec {
            kind: ProbeKind::Dns,
            timeout: Duration::from_secs(3),
            precheck: true,
            host: Some(host.into()),
        };
        let d = dns_probe(&spec("root-servers.net"));
        assert_eq!(
            (d.name.as_str(), d.record_type),
            ("root-servers.net.", RecordType::NS)
        );
        let d = dns_probe(&spec("gw.knmstate.test"));
        assert_eq!(
            (d.name.as_str(), d.record_type),
            ("gw.knmstate.test.", RecordType::A)
        );
    }

    #[tokio::test]
    async fn api_server_probe_fails_within_its_budget_when_unreachable() {
        let cfg = kube::Config::new("http://198.18.255.254:9".parse().expect("uri"));
        let p = ApiServerProbe {
            kube_config: cfg,
            timeout: Duration::from_millis(300),
        };
        let started = Instant::now();
        let empty = json!({});
        let fixed = FixedState(json!({}));
        let ctx = ProbeContext {
            before: &empty,
            current: &fixed,
        };
        let err = p.run(&ctx).await.expect_err("unreachable");
        assert_eq!(err.category(), "probe-failed");
        assert!(started.elapsed() < Duration::from_secs(8));
    }
}
