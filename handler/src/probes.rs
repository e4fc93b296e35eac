//! The probes that guard an apply: nm-backend's default-gateway and DNS probes, plus this
//! binary's API-server reachability and node-readiness probes, built from the probe plan
//! state-engine chose ([`ProbeSpec`]s) by a [`ProbeFactory`].
//!
//! [`RealProbes`] talks to the node's network. [`ModelProbes`] judges the gateway and DNS from
//! the node's state alone (for the in-memory backend, whose addresses do not exist).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node};
use knmstate_nm_backend::BackendError;
use knmstate_nm_backend::probe::{
    DefaultGatewayProbe, DnsProbe, Probe, ProbeContext, ProbeFuture, ProbeOutcome, RecordType,
    default_gateways, name_servers,
};
use knmstate_state_engine::rollback::{DEFAULT_DNS_HOST, ProbeKind, ProbeSpec};
use kube::Api;

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
        Box::pin(async move {
            poll(self.name(), self.timeout, Duration::from_secs(1), |wait| {
                let mut cfg = self.kube_config.clone();
                cfg.connect_timeout = Some(wait);
                cfg.read_timeout = Some(wait);
                async move {
                    let client = kube::Client::try_from(cfg).map_err(|e| e.to_string())?;
                    let ns: Api<Namespace> = Api::all(client);
                    match tokio::time::timeout(wait, ns.get("default")).await {
                        Ok(Ok(_)) => Ok("namespace default read".to_owned()),
                        Ok(Err(e)) => Err(format!("reading namespace default: {e}")),
                        Err(_) => Err(format!("no answer from the API server within {wait:?}")),
                    }
                }
            })
            .await
        })
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
        Box::pin(async move {
            poll(self.name(), self.timeout, Duration::from_secs(1), |wait| {
                let mut cfg = self.kube_config.clone();
                cfg.connect_timeout = Some(wait);
                cfg.read_timeout = Some(wait);
                let name = self.node_name.clone();
                async move {
                    let client = kube::Client::try_from(cfg).map_err(|e| e.to_string())?;
                    let nodes: Api<Node> = Api::all(client);
                    match tokio::time::timeout(wait, nodes.get(&name)).await {
                        Ok(Ok(n)) if knmstate_state_engine::node::is_ready(&n) => {
                            Ok(format!("node {name} is Ready"))
                        }
                        Ok(Ok(_)) => Err(format!("node {name} is not Ready")),
                        Ok(Err(e)) => Err(format!("reading node {name}: {e}")),
                        Err(_) => Err(format!("no answer from the API server within {wait:?}")),
                    }
                }
            })
            .await
        })
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

/// Probes for a modelled node (the in-memory backend): the gateway passes when the current
/// state still has a main-table default gateway (if the node had one before), DNS when it still
/// has a running name server; the API-server and readiness probes are the real ones. `hold`
/// makes the readiness probe (which runs only after the apply, with the checkpoint held) take
/// that long, so that applies last (e.g. to observe maxUnavailable or a kill mid-apply).
#[derive(Debug, Clone, Copy, Default)]
pub struct ModelProbes {
    /// How long the readiness probe takes.
    pub hold: Duration,
}

/// A probe that waits, then runs another.
pub struct Delayed {
    /// The wait.
    pub delay: Duration,
    /// The probe run after it.
    pub inner: Box<dyn Probe>,
}

impl Probe for Delayed {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn run<'a>(&'a self, ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.inner.run(ctx).await
        })
    }
}

/// The modelled gateway probe.
#[derive(Debug, Clone, Copy)]
pub struct ModelGatewayProbe;

impl Probe for ModelGatewayProbe {
    fn name(&self) -> &str {
        ProbeKind::DefaultGateway.name()
    }

    fn run<'a>(&'a self, ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a> {
        Box::pin(async move {
            if default_gateways(ctx.before).is_empty() {
                return Ok(ProbeOutcome::Skipped(
                    "no default gateway before the apply".into(),
                ));
            }
            let now = ctx.current.network_state().await?;
            match default_gateways(&now).first() {
                Some(gw) => Ok(ProbeOutcome::Passed(format!(
                    "default gateway {} present",
                    gw.address
                ))),
                None => Err(probe_failed(
                    self.name(),
                    "no default gateway after the apply".into(),
                )),
            }
        })
    }
}

/// The modelled DNS probe.
#[derive(Debug, Clone, Copy)]
pub struct ModelDnsProbe;

impl Probe for ModelDnsProbe {
    fn name(&self) -> &str {
        ProbeKind::Dns.name()
    }

    fn run<'a>(&'a self, ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a> {
        Box::pin(async move {
            if name_servers(ctx.before).is_empty() {
                return Ok(ProbeOutcome::Skipped(
                    "no name server before the apply".into(),
                ));
            }
            let now = ctx.current.network_state().await?;
            match name_servers(&now).first() {
                Some(s) => Ok(ProbeOutcome::Passed(format!("name server {s} present"))),
                None => Err(probe_failed(
                    self.name(),
                    "no name server is configured".into(),
                )),
            }
        })
    }
}

impl ProbeFactory for ModelProbes {
    fn build(&self, spec: &ProbeSpec, env: &ProbeEnv) -> Box<dyn Probe> {
        match spec.kind {
            ProbeKind::DefaultGateway => Box::new(ModelGatewayProbe),
            ProbeKind::Dns => Box::new(ModelDnsProbe),
            ProbeKind::NodeReadiness if !self.hold.is_zero() => Box::new(Delayed {
                delay: self.hold,
                inner: RealProbes.build(spec, env),
            }),
            _ => RealProbes.build(spec, env),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use knmstate_nm_backend::probe::FixedState;
    use serde_json::json;

    #[tokio::test]
    async fn model_gateway_fails_when_the_default_route_is_gone() {
        let before = json!({"routes": {"running": [{"destination": "0.0.0.0/0",
            "next-hop-address": "198.18.0.1", "next-hop-interface": "eth0", "table-id": 254}]}});
        let same = FixedState(before.clone());
        let ok = ProbeContext {
            before: &before,
            current: &same,
        };
        let p = ModelGatewayProbe;
        assert!(matches!(p.run(&ok).await, Ok(ProbeOutcome::Passed(_))));
        let gone = FixedState(json!({"routes": {"running": []}}));
        let lost = ProbeContext {
            before: &before,
            current: &gone,
        };
        let err = p.run(&lost).await.expect_err("fails");
        assert_eq!(err.category(), "ProbeFailed");
    }

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
        assert_eq!(err.category(), "ProbeFailed");
        assert!(started.elapsed() < Duration::from_secs(8));
    }
}
