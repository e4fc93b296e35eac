//! Probes for a modelled node (the in-memory backend, whose addresses do not exist): the
//! gateway and DNS are judged from the node's state alone. Test doubles: compiled for tests and
//! with the `testing` feature only.

use std::time::Duration;

use knmstate_nm_backend::probe::{
    Probe, ProbeContext, ProbeFuture, ProbeOutcome, default_gateways, name_servers,
};
use knmstate_state_engine::rollback::{ProbeKind, ProbeSpec};

use super::{ProbeEnv, ProbeFactory, RealProbes, probe_failed};

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
        assert_eq!(err.category(), "probe-failed");
    }
}
