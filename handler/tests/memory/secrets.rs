//! Secrets never leak: a policy carrying an 802.1x password whose probes fail quoting the
//! node's state (as JSON, as `Debug`, as plain text) leaves no trace of the password in the
//! enactment, the events or the handler's log.

use std::io::Write;

use knmstate_nm_backend::BackendError;
use knmstate_state_engine::secrets::secret_forms;

use super::*;

/// A password with a quote, a backslash and non-ASCII characters: its JSON and `Debug` forms
/// differ from it.
const PASSWORD: &str = r#"Hunt3r"2\sécret-ß"#;

/// Probes that pass before the apply, and fail after it quoting the state they read.
struct Quoting;

struct QuotingProbe {
    name: &'static str,
}

impl Probe for QuotingProbe {
    fn name(&self) -> &str {
        self.name
    }

    fn run<'a>(&'a self, ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a> {
        Box::pin(async move {
            let now = ctx.current.network_state().await?;
            if !now.to_string().contains("802.1x") {
                return Ok(ProbeOutcome::Passed("no 802.1x yet".to_owned()));
            }
            Err(BackendError::Probe {
                probe: self.name.to_owned(),
                message: format!(
                    "state {now} rejected; debug {now:?}; password {PASSWORD} refused"
                ),
            })
        })
    }
}

impl ProbeFactory for Quoting {
    fn build(&self, spec: &ProbeSpec, _env: &ProbeEnv) -> Box<dyn Probe> {
        Box::new(QuotingProbe {
            name: spec.kind.name(),
        })
    }
}

/// Log lines written on this thread while it is held.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(
            &self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_owned()
    }
}

/// The password, any of its escaped forms, or a piece of its head left in `text`.
fn leak(text: &str) -> Option<String> {
    let mut parts = secret_forms(PASSWORD);
    parts.push("Hunt3r".to_owned());
    parts.into_iter().find(|p| text.contains(p.as_str()))
}

// A current-thread runtime: the handler's tasks run on this thread, under the capturing
// subscriber.
#[tokio::test]
async fn an_802_1x_password_never_reaches_the_status_events_or_logs() -> Result<()> {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let c = Cluster::start().await?;
    c.add_node("n1", &[]).await?;
    let b = MemoryBackend::harness_like("198.18.0.101");
    let h = c.start_handler_with(c.config("n1"), b.clone(), Arc::new(Quoting));
    c.create_policy(json!({
        "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": "dot1x"},
        "spec": {"desiredState": {"interfaces": [{"name": "eth1", "type": "ethernet", "state": "up",
            "802.1x": {"identity": "node", "eap-methods": ["peap"], "password": PASSWORD}}]}}
    }))
    .await?;
    let e = eventually("retries exhausted", T, || {
        let api = c.enactments();
        async move {
            let e = api.get("n1.dot1x").await.ok()?;
            let s = e.status.as_ref()?;
            (s.conditions.is_true("Failing") && !s.conditions.is_true("Progressing")).then_some(e)
        }
    })
    .await?;
    h.stop().await?;

    let status = e.status.as_ref().expect("status");
    let failing = status.conditions.find("Failing").expect("Failing");
    assert!(
        failing.message.contains("<_password_hid_by_nmstate>"),
        "the probe's quote is in the message, scrubbed: {}",
        failing.message
    );
    let report = status.last_apply.as_ref().expect("lastApply");
    assert!(
        report
            .probes
            .iter()
            .any(|p| !p.succeeded && !p.message.is_empty())
    );
    let text = serde_json::to_string(&e)?;
    assert_eq!(leak(&text), None, "enactment: {text}");

    let events: Api<Event> = Api::all(c.client.clone());
    let list = events.list(&ListParams::default()).await?;
    assert!(!list.items.is_empty(), "a ReconcileFailed event");
    let text = serde_json::to_string(&list.items)?;
    assert_eq!(leak(&text), None, "events: {text}");

    let text = logs.text();
    assert!(
        text.contains("failed to apply"),
        "the failure is logged: {text}"
    );
    let leaking: Vec<&str> = text.lines().filter(|l| leak(l).is_some()).collect();
    assert!(leaking.is_empty(), "logs: {leaking:#?}");
    Ok(())
}
