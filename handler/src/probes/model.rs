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
        Box::pin(still_present(
            self.name(),
            ctx,
            |state| default_gateways(state).first().map(|gw| gw.address),
            Wording {
                thing: "default gateway",
                lost: "no default gateway after the apply",
            },
        ))
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
        Box::pin(still_present(
            self.name(),
            ctx,
            |state| name_servers(state).first().copied(),
            Wording {
                thing: "name server",
                lost: "no name server is configured",
            },
        ))
    }
}

/// How a modelled probe speaks of what it checks.
struct Wording {
    /// What is looked for (`default gateway`).
    thing: &'static str,
    /// The failure when it is gone.
    lost: &'static str,
}

/// Skipped when the node had no such thing before the apply; passed while the current state
/// still has one; failed when it is gone.
async fn still_present<T: std::fmt::Display>(
    name: &str,
    ctx: &ProbeContext<'_>,
    first: impl Fn(&serde_json::Value) -> Option<T>,
    wording: Wording,
) -> Result<ProbeOutcome, knmstate_nm_backend::BackendError> {
    let Wording { thing, lost } = wording;
    if first(ctx.before).is_none() {
        return Ok(ProbeOutcome::Skipped(format!(
            "no {thing} before the apply"
        )));
    }
    let now = ctx.current.network_state().await?;
    match first(&now) {
        Some(found) => Ok(ProbeOutcome::Passed(format!("{thing} {found} present"))),
        None => Err(probe_failed(name, lost.into())),
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
