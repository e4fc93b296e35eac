//! Connectivity probes run while a checkpoint is held: a failed probe means "roll back".
//!
//! The handler runs a list of [`Probe`]s after [`Backend::apply`](crate::Backend::apply) and
//! before [`Backend::commit`](crate::Backend::commit). Built in: [`DefaultGatewayProbe`] (ICMP
//! echo through the `ping` binary, with a TCP-connect fallback for gateways that drop ICMP) and
//! [`DnsProbe`] (a DNS query to each running name server). A probe only demands what the node
//! had before the apply: no default gateway before → the gateway probe is skipped.

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    time::{Duration, Instant},
};

use futures::{StreamExt, stream::FuturesUnordered};
/// DNS record types, for [`DnsProbe::record_type`].
pub use hickory_proto::rr::RecordType;
use hickory_proto::{
    op::{Message, Query, ResponseCode},
    rr::Name,
};
use serde_json::Value;

use crate::error::{BackendError, Result};

/// Where probes read the node's current state while the checkpoint is held.
///
/// Probes re-read it on every attempt: right after an apply, DHCP or router advertisements may
/// not have delivered the default route yet.
pub trait StateSource: Send + Sync {
    /// The current nmstate state.
    fn network_state(&self) -> Pin<Box<dyn Future<Output = Result<Value>> + Send + '_>>;
}

impl<B: crate::Backend> StateSource for B {
    fn network_state(&self) -> Pin<Box<dyn Future<Output = Result<Value>> + Send + '_>> {
        Box::pin(async move { Ok(self.current_state().await?.state) })
    }
}

/// A state that never changes, for probing a given state.
#[derive(Debug, Clone)]
pub struct FixedState(pub Value);

impl StateSource for FixedState {
    fn network_state(&self) -> Pin<Box<dyn Future<Output = Result<Value>> + Send + '_>> {
        Box::pin(std::future::ready(Ok(self.0.clone())))
    }
}

/// What a probe sees: the node's state before the apply, and its state now.
#[derive(Clone, Copy)]
pub struct ProbeContext<'a> {
    /// nmstate state retrieved before the apply: a probe demands only what the node had then.
    pub before: &'a Value,
    /// The node's state now (re-read by the probes).
    pub current: &'a dyn StateSource,
}

/// A probe's verdict when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The probe ran and passed; the text says what answered.
    Passed(String),
    /// The probe did not apply to this node; the text says why.
    Skipped(String),
}

/// Boxed future returned by [`Probe::run`].
pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = Result<ProbeOutcome>> + Send + 'a>>;

/// A check of the node's connectivity; `Err` means the applied state must be rolled back.
pub trait Probe: Send + Sync {
    /// Stable name, used in conditions and metrics.
    fn name(&self) -> &str;
    /// Run the probe.
    fn run<'a>(&'a self, ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a>;
}

/// One probe's run, as the transaction reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRecord {
    /// The probe's name.
    pub name: String,
    /// How long it ran.
    pub duration: Duration,
    /// Passed or skipped, or the failure's message.
    pub outcome: std::result::Result<ProbeOutcome, String>,
}

impl ProbeRecord {
    /// Whether the probe passed or was skipped.
    pub fn succeeded(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// What the probe step of a transaction found: every probe that ran, in order, and the failure
/// that stopped them (none: the applied state may be committed).
#[derive(Debug, Default)]
pub struct ProbeRun {
    /// The probes that ran.
    pub records: Vec<ProbeRecord>,
    /// The failure that stopped them.
    pub failure: Option<BackendError>,
}

/// Run `probes` together and record each run, with the result of running them one after
/// another and stopping at the first failure, only sooner.
///
/// Every probe starts at once (they share the reads of the node's state, see [`SharedReads`]),
/// and the verdicts are settled in the order of `probes`: the records are those of the probes
/// up to the first one in that order that failed, and its failure stops the run; the probes
/// after it are stopped and not recorded. So a failure waits only for the verdicts of the
/// probes before it, a pass for all of them, and the report (which probes, in which order,
/// which failure) is what the sequential run gave. Each record's duration counts from the
/// common start to that probe's verdict.
pub async fn run_recorded(probes: &[Box<dyn Probe>], ctx: &ProbeContext<'_>) -> ProbeRun {
    let shared = SharedReads::new(ctx.current);
    let ctx = ProbeContext {
        before: ctx.before,
        current: &shared,
    };
    let started = tokio::time::Instant::now();
    let mut running: FuturesUnordered<_> = probes
        .iter()
        .enumerate()
        .map(|(index, probe)| {
            let ctx = &ctx;
            async move {
                let result = probe.run(ctx).await;
                let duration = started.elapsed();
                tracing::info!(probe = probe.name(), outcome = ?result, elapsed = ?duration, "probe");
                (index, duration, result)
            }
        })
        .collect();
    let mut verdicts: Vec<Option<(Duration, Result<ProbeOutcome>)>> =
        std::iter::repeat_with(|| None).take(probes.len()).collect();
    let mut run = ProbeRun::default();
    let mut next = 0;
    while let Some(probe) = probes.get(next) {
        let Some((duration, result)) = verdicts[next].take() else {
            match running.next().await {
                Some((index, duration, result)) => verdicts[index] = Some((duration, result)),
                // Every probe gave its verdict, so the one awaited is there.
                None => break,
            }
            continue;
        };
        run.records.push(ProbeRecord {
            name: probe.name().to_string(),
            duration,
            outcome: result
                .as_ref()
                .map(Clone::clone)
                .map_err(ToString::to_string),
        });
        if let Err(e) = result {
            run.failure = Some(e);
            break;
        }
        crate::fault::point(&format!("probed-{}", probe.name()), None).await;
        next += 1;
    }
    run
}

/// A [`StateSource`] shared by probes that run together: a probe that asks for the node's
/// state while another probe's read of it is under way gets that read's state instead of
/// starting its own (reading the whole state is the slow part of a probe's attempt). A read
/// that ended before the probe asked is never reused, so each attempt of a probe still sees
/// the node as it is at that attempt.
pub struct SharedReads<'a> {
    source: &'a dyn StateSource,
    /// How many reads ended (successful or not).
    ended: std::sync::atomic::AtomicU64,
    /// The state of the last read, if it succeeded; locked during each read.
    last: tokio::sync::Mutex<Option<Value>>,
}

impl<'a> SharedReads<'a> {
    /// Share the reads of `source`.
    pub fn new(source: &'a dyn StateSource) -> Self {
        Self {
            source,
            ended: std::sync::atomic::AtomicU64::new(0),
            last: tokio::sync::Mutex::new(None),
        }
    }
}

impl StateSource for SharedReads<'_> {
    fn network_state(&self) -> Pin<Box<dyn Future<Output = Result<Value>> + Send + '_>> {
        use std::sync::atomic::Ordering;
        Box::pin(async move {
            let asked = self.ended.load(Ordering::SeqCst);
            // Held during the read: whoever asks meanwhile waits for it, then takes it.
            let mut last = self.last.lock().await;
            if self.ended.load(Ordering::SeqCst) > asked
                && let Some(state) = last.as_ref()
            {
                return Ok(state.clone());
            }
            let read = self.source.network_state().await;
            *last = read.as_ref().ok().cloned();
            self.ended.fetch_add(1, Ordering::SeqCst);
            read
        })
    }
}

/// Run `probes` in order, stopping at the first failure.
pub async fn run_probes(
    probes: &[Box<dyn Probe>],
    ctx: &ProbeContext<'_>,
) -> Result<Vec<(String, ProbeOutcome)>> {
    let run = run_recorded(probes, ctx).await;
    if let Some(e) = run.failure {
        return Err(e);
    }
    Ok(run
        .records
        .into_iter()
        .filter_map(|r| Some((r.name, r.outcome.ok()?)))
        .collect())
}

/// A default gateway found in a state: address and outgoing interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// Next-hop address.
    pub address: IpAddr,
    /// Next-hop interface, when the route names one.
    pub interface: Option<String>,
}

/// The default gateways of the running routes of an nmstate state, IPv4 first.
pub fn default_gateways(state: &Value) -> Vec<Gateway> {
    let mut out: Vec<Gateway> = state
        .pointer("/routes/running")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| {
            matches!(
                r.get("destination").and_then(Value::as_str),
                Some("0.0.0.0/0" | "::/0")
            )
        })
        .filter(|r| {
            r.get("table-id")
                .and_then(Value::as_u64)
                .is_none_or(|t| t == 254 || t == 0)
        })
        .filter_map(|r| {
            let address = r
                .get("next-hop-address")?
                .as_str()?
                .parse::<IpAddr>()
                .ok()?;
            (!address.is_unspecified()).then(|| Gateway {
                address,
                interface: r
                    .get("next-hop-interface")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            })
        })
        .collect();
    out.sort_by_key(|g| g.address.is_ipv6());
    out.dedup();
    out
}

/// The running name servers of an nmstate state.
pub fn name_servers(state: &Value) -> Vec<IpAddr> {
    state
        .pointer("/dns-resolver/running/server")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        // A scoped IPv6 server (`fe80::1%eth0`) cannot be a plain socket address; skip it.
        .filter_map(|s| s.parse::<IpAddr>().ok())
        .collect()
}

fn probe_failed(probe: &str, message: String) -> BackendError {
    BackendError::Probe {
        probe: probe.to_string(),
        message,
    }
}

/// Default-gateway reachability: ICMP echo, else a TCP connect (a refusal proves reachability).
#[derive(Debug, Clone)]
pub struct DefaultGatewayProbe {
    /// How long to keep trying.
    pub timeout: Duration,
    /// TCP port for the fallback connect.
    pub tcp_port: u16,
    /// Try ICMP echo (the `ping` binary) before the TCP connect.
    pub use_icmp: bool,
}

impl Default for DefaultGatewayProbe {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            tcp_port: 53,
            use_icmp: true,
        }
    }
}

impl DefaultGatewayProbe {
    async fn ping(&self, gw: &Gateway) -> bool {
        let target = match (&gw.address, &gw.interface) {
            (IpAddr::V6(v6), Some(iface)) if v6.is_unicast_link_local() => format!("{v6}%{iface}"),
            (addr, _) => addr.to_string(),
        };
        tokio::process::Command::new("ping")
            .args(["-n", "-c", "1", "-W", "1", &target])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .status()
            .await
            .is_ok_and(|s| s.success())
    }

    async fn tcp(&self, gw: &Gateway) -> bool {
        if matches!(gw.address, IpAddr::V6(v6) if v6.is_unicast_link_local()) {
            return false;
        }
        let addr = SocketAddr::new(gw.address, self.tcp_port);
        match tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
            .await
        {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
            Err(_) => false,
        }
    }
}

impl DefaultGatewayProbe {
    /// The first gateway among `gateways` that answers, with how it answered.
    async fn first_reachable(&self, gateways: &[&Gateway]) -> Option<String> {
        for gw in gateways {
            if self.use_icmp && self.ping(gw).await {
                return Some(format!("{} answers ICMP", gw.address));
            }
            if self.tcp(gw).await {
                return Some(format!("{} answers TCP port {}", gw.address, self.tcp_port));
            }
        }
        None
    }
}

fn family(address: &IpAddr) -> &'static str {
    if address.is_ipv4() { "IPv4" } else { "IPv6" }
}

impl Probe for DefaultGatewayProbe {
    fn name(&self) -> &'static str {
        "default-gateway"
    }

    /// Every address family that had a default gateway before the apply must still have one
    /// that answers.
    fn run<'a>(&'a self, ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a> {
        Box::pin(async move {
            let mut families: Vec<&'static str> = default_gateways(ctx.before)
                .iter()
                .map(|g| family(&g.address))
                .collect();
            families.dedup();
            if families.is_empty() {
                return Ok(ProbeOutcome::Skipped(
                    "no default gateway before the apply".into(),
                ));
            }
            let deadline = Instant::now() + self.timeout;
            let mut passed: Vec<(&'static str, String)> = Vec::new();
            loop {
                let gateways = match ctx.current.network_state().await {
                    Ok(state) => default_gateways(&state),
                    Err(e) => {
                        tracing::debug!(error = %e, "probe could not read the state");
                        Vec::new()
                    }
                };
                let mut missing = Vec::new();
                for fam in &families {
                    if passed.iter().any(|(f, _)| f == fam) {
                        continue;
                    }
                    let candidates: Vec<&Gateway> = gateways
                        .iter()
                        .filter(|g| family(&g.address) == *fam)
                        .collect();
                    match self.first_reachable(&candidates).await {
                        Some(how) => passed.push((fam, how)),
                        None if candidates.is_empty() => {
                            missing.push(format!("no {fam} default gateway"));
                        }
                        None => {
                            let list: Vec<String> =
                                candidates.iter().map(|g| g.address.to_string()).collect();
                            missing.push(format!(
                                "{fam} default gateway {} unreachable",
                                list.join(", ")
                            ));
                        }
                    }
                }
                if missing.is_empty() {
                    let how: Vec<String> = passed.into_iter().map(|(_, how)| how).collect();
                    return Ok(ProbeOutcome::Passed(how.join("; ")));
                }
                if Instant::now() >= deadline {
                    return Err(probe_failed(
                        self.name(),
                        format!("{} for {:?}", missing.join(", "), self.timeout),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }
}

/// DNS resolution through the node's running name servers.
#[derive(Debug, Clone)]
pub struct DnsProbe {
    /// How long to keep trying.
    pub timeout: Duration,
    /// Name to look up.
    pub name: String,
    /// Record type to ask for.
    pub record_type: RecordType,
    /// UDP port of the name servers.
    pub port: u16,
}

impl Default for DnsProbe {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            name: "root-servers.net.".into(),
            record_type: RecordType::NS,
            port: 53,
        }
    }
}

impl DnsProbe {
    /// One UDP query to `server`; `Ok` with the answer count when it answered NOERROR.
    async fn query(&self, server: IpAddr, wait: Duration) -> std::result::Result<usize, String> {
        let name = Name::from_ascii(&self.name).map_err(|e| e.to_string())?;
        let id = u16::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(4242, |d| d.subsec_nanos() & 0xffff),
        )
        .unwrap_or(4242);
        let mut msg = Message::new();
        msg.set_id(id).set_recursion_desired(true);
        msg.add_query(Query::query(name, self.record_type));
        let bytes = msg.to_vec().map_err(|e| e.to_string())?;
        let bind: SocketAddr = if server.is_ipv6() {
            "[::]:0"
                .parse()
                .map_err(|e: std::net::AddrParseError| e.to_string())?
        } else {
            "0.0.0.0:0"
                .parse()
                .map_err(|e: std::net::AddrParseError| e.to_string())?
        };
        let socket = tokio::net::UdpSocket::bind(bind)
            .await
            .map_err(|e| e.to_string())?;
        socket
            .send_to(&bytes, SocketAddr::new(server, self.port))
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 4096];
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let (len, from) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf))
                .await
                .map_err(|_| format!("no answer from {server} within {wait:?}"))?
                .map_err(|e| e.to_string())?;
            if from.ip() != server {
                continue;
            }
            let Ok(reply) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            if reply.id() != id {
                continue;
            }
            return match reply.response_code() {
                ResponseCode::NoError => Ok(reply.answers().len()),
                code => Err(format!("{server} answered {code:?}")),
            };
        }
    }
}

impl Probe for DnsProbe {
    fn name(&self) -> &'static str {
        "dns"
    }

    fn run<'a>(&'a self, ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a> {
        Box::pin(async move {
            if name_servers(ctx.before).is_empty() {
                return Ok(ProbeOutcome::Skipped(
                    "no name server before the apply".into(),
                ));
            }
            let deadline = Instant::now() + self.timeout;
            let mut last = String::new();
            loop {
                let servers = match ctx.current.network_state().await {
                    Ok(state) => name_servers(&state),
                    Err(e) => {
                        last = format!("reading the state: {e}");
                        Vec::new()
                    }
                };
                if servers.is_empty() && !last.starts_with("reading") {
                    last = "no name server is configured".into();
                }
                for server in &servers {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match self
                        .query(
                            *server,
                            left.clamp(Duration::from_millis(100), Duration::from_secs(1)),
                        )
                        .await
                    {
                        Ok(n) => {
                            return Ok(ProbeOutcome::Passed(format!(
                                "{server} resolved {} {} ({n} answers)",
                                self.name, self.record_type
                            )));
                        }
                        Err(e) => last = e,
                    }
                }
                if Instant::now() >= deadline {
                    return Err(probe_failed(
                        self.name(),
                        format!(
                            "resolving {} failed for {:?}: {last}",
                            self.name, self.timeout
                        ),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn state() -> Value {
        json!({
            "routes": {"running": [
                {"destination": "::/0", "next-hop-address": "fe80::1", "next-hop-interface": "eth0", "table-id": 254},
                {"destination": "0.0.0.0/0", "next-hop-address": "198.18.0.1", "next-hop-interface": "eth0", "table-id": 254},
                {"destination": "0.0.0.0/0", "next-hop-address": "198.18.9.1", "next-hop-interface": "eth0", "table-id": 100},
                {"destination": "198.19.0.0/24", "next-hop-address": "198.18.0.1", "next-hop-interface": "eth0"}
            ]},
            "dns-resolver": {"running": {"server": ["198.18.0.1", "2001:db8::1", "fe80::1%eth0"]}}
        })
    }

    #[test]
    fn finds_main_table_default_gateways_ipv4_first() {
        let gws = default_gateways(&state());
        let addrs: Vec<String> = gws.iter().map(|g| g.address.to_string()).collect();
        assert_eq!(addrs, vec!["198.18.0.1", "fe80::1"]);
        assert_eq!(gws[1].interface.as_deref(), Some("eth0"));
    }

    #[test]
    fn finds_plain_name_servers() {
        let servers: Vec<String> = name_servers(&state())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(servers, vec!["198.18.0.1", "2001:db8::1"]);
    }

    fn local(address: &str) -> Value {
        json!({
            "routes": {"running": [{"destination": "0.0.0.0/0", "next-hop-address": address,
                                    "next-hop-interface": "lo", "table-id": 254}]},
            "dns-resolver": {"running": {"server": [address]}}
        })
    }

    #[tokio::test]
    async fn gateway_tcp_fallback_counts_accept_and_refusal() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let open = listener.local_addr().expect("addr").port();
        let probe = DefaultGatewayProbe {
            timeout: Duration::from_secs(2),
            tcp_port: open,
            use_icmp: false,
        };
        let state = local("127.0.0.1");
        let source = FixedState(state.clone());
        let ctx = ProbeContext {
            before: &state,
            current: &source,
        };
        let outcome = probe.run(&ctx).await.expect("listener answers");
        assert_eq!(
            outcome,
            ProbeOutcome::Passed(format!("127.0.0.1 answers TCP port {open}"))
        );
        drop(listener);
        // Nothing listens now: the refusal still proves the gateway is there.
        assert!(matches!(probe.run(&ctx).await, Ok(ProbeOutcome::Passed(_))));
    }

    #[tokio::test]
    async fn every_family_that_had_a_gateway_needs_one_that_answers() {
        let both = json!({"routes": {"running": [
            {"destination": "0.0.0.0/0", "next-hop-address": "127.0.0.1", "next-hop-interface": "lo"},
            {"destination": "::/0", "next-hop-address": "::1", "next-hop-interface": "lo"}
        ]}});
        let only_v6 = FixedState(json!({"routes": {"running": [
            {"destination": "::/0", "next-hop-address": "::1", "next-hop-interface": "lo"}
        ]}}));
        let probe = DefaultGatewayProbe {
            timeout: Duration::from_millis(300),
            tcp_port: 9,
            use_icmp: false,
        };
        let ctx = ProbeContext {
            before: &both,
            current: &only_v6,
        };
        let err = probe.run(&ctx).await.err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("probe default-gateway failed: no IPv4 default gateway for 300ms")
        );
        let ctx = ProbeContext {
            before: &both,
            current: &FixedState(both.clone()),
        };
        assert_eq!(
            probe.run(&ctx).await.ok(),
            Some(ProbeOutcome::Passed(
                "127.0.0.1 answers TCP port 9; ::1 answers TCP port 9".into()
            ))
        );
    }

    #[tokio::test]
    async fn dns_probe_accepts_noerror_and_rejects_refused() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = server.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            // The first query succeeds; every later one is refused.
            let mut code = ResponseCode::NoError;
            loop {
                let Ok((len, from)) = server.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..len]) else {
                    return;
                };
                let mut reply = Message::new();
                reply
                    .set_id(query.id())
                    .set_message_type(hickory_proto::op::MessageType::Response);
                reply.set_response_code(code);
                reply.add_queries(query.queries().to_vec());
                if let Ok(bytes) = reply.to_vec() {
                    let _ = server.send_to(&bytes, from).await;
                }
                code = ResponseCode::Refused;
            }
        });
        let probe = DnsProbe {
            timeout: Duration::from_millis(600),
            port,
            ..DnsProbe::default()
        };
        let state = local("127.0.0.1");
        let source = FixedState(state.clone());
        let ctx = ProbeContext {
            before: &state,
            current: &source,
        };
        assert!(matches!(probe.run(&ctx).await, Ok(ProbeOutcome::Passed(_))));
        let err = probe
            .run(&ctx)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("127.0.0.1 answered Refused"), "{err}");
    }

    #[tokio::test]
    async fn probes_skip_what_the_node_never_had_and_fail_on_loss() {
        let nothing = json!({});
        let empty = ProbeContext {
            before: &nothing,
            current: &FixedState(json!({})),
        };
        let gw = DefaultGatewayProbe {
            timeout: Duration::from_millis(300),
            ..DefaultGatewayProbe::default()
        };
        assert!(matches!(gw.run(&empty).await, Ok(ProbeOutcome::Skipped(_))));
        let dns = DnsProbe {
            timeout: Duration::from_millis(300),
            ..DnsProbe::default()
        };
        assert!(matches!(
            dns.run(&empty).await,
            Ok(ProbeOutcome::Skipped(_))
        ));

        let before = state();
        let gone = FixedState(json!({"routes": {"running": []}, "dns-resolver": {"running": {}}}));
        let lost = ProbeContext {
            before: &before,
            current: &gone,
        };
        let err = gw.run(&lost).await.err().map(|e| e.category());
        assert_eq!(err, Some("probe-failed"));
        let err = dns.run(&lost).await.err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "probe dns failed: resolving root-servers.net. failed for 300ms: no name server is configured"
            )
        );
    }

    /// A probe that answers `verdict` after `after`, reading the state once first.
    struct Timed {
        name: &'static str,
        after: Duration,
        fails: bool,
    }

    impl Probe for Timed {
        fn name(&self) -> &str {
            self.name
        }

        fn run<'a>(&'a self, ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a> {
            Box::pin(async move {
                ctx.current.network_state().await?;
                tokio::time::sleep(self.after).await;
                if self.fails {
                    Err(probe_failed(self.name, format!("{} broke", self.name)))
                } else {
                    Ok(ProbeOutcome::Passed(format!("{} answered", self.name)))
                }
            })
        }
    }

    fn timed(name: &'static str, millis: u64, fails: bool) -> Box<dyn Probe> {
        Box::new(Timed {
            name,
            after: Duration::from_millis(millis),
            fails,
        })
    }

    /// Counts the reads of the state; each read takes 100 ms.
    struct CountedReads(std::sync::atomic::AtomicUsize);

    impl StateSource for CountedReads {
        fn network_state(&self) -> Pin<Box<dyn Future<Output = Result<Value>> + Send + '_>> {
            Box::pin(async move {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(json!({}))
            })
        }
    }

    fn summary(run: &ProbeRun) -> (Vec<(String, u128, bool)>, Option<String>) {
        (
            run.records
                .iter()
                .map(|r| (r.name.clone(), r.duration.as_millis(), r.succeeded()))
                .collect(),
            run.failure.as_ref().map(ToString::to_string),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn probes_run_together_and_report_as_in_order() {
        let before = json!({});
        let reads = CountedReads(std::sync::atomic::AtomicUsize::new(0));
        let ctx = ProbeContext {
            before: &before,
            current: &reads,
        };
        let owned = |s: &str, ms: u128, ok: bool| (s.to_owned(), ms, ok);

        // All pass: every record in order, the run as long as the slowest probe (one shared
        // read of 100 ms, then each probe's own wait), not their sum.
        let all = [
            timed("gw", 250, false),
            timed("dns", 50, false),
            timed("api", 10, false),
        ];
        let started = tokio::time::Instant::now();
        let run = run_recorded(&all, &ctx).await;
        assert_eq!(
            summary(&run),
            (
                vec![
                    owned("gw", 350, true),
                    owned("dns", 150, true),
                    owned("api", 110, true)
                ],
                None
            )
        );
        assert_eq!(started.elapsed(), Duration::from_millis(350));
        assert_eq!(reads.0.load(std::sync::atomic::Ordering::SeqCst), 1);

        // A later probe fails first: the earlier ones' verdicts are still awaited, and the
        // report stops at the failing one.
        let later_fails = [
            timed("gw", 250, false),
            timed("dns", 50, true),
            timed("api", 10, false),
        ];
        let run = run_recorded(&later_fails, &ctx).await;
        assert_eq!(
            summary(&run),
            (
                vec![owned("gw", 350, true), owned("dns", 150, false)],
                Some("probe dns failed: dns broke".to_owned())
            )
        );

        // Two fail: the first in order is the reason, even though the other failed sooner;
        // the run ends at its verdict without waiting for the slow probe after it.
        let two_fail = [
            timed("gw", 200, true),
            timed("dns", 50, true),
            timed("api", 5_000, false),
        ];
        let started = tokio::time::Instant::now();
        let run = run_recorded(&two_fail, &ctx).await;
        assert_eq!(
            summary(&run),
            (
                vec![owned("gw", 300, false)],
                Some("probe gw failed: gw broke".to_owned())
            )
        );
        assert_eq!(started.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn shared_reads_join_a_read_under_way_but_never_reuse_an_old_one() {
        let reads = CountedReads(std::sync::atomic::AtomicUsize::new(0));
        let shared = SharedReads::new(&reads);
        let (a, b) = tokio::join!(shared.network_state(), shared.network_state());
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(reads.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        shared.network_state().await.expect("read");
        assert_eq!(reads.0.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
