//! What a scale run measured, and how it reads: request counts by verb and resource from the
//! stand-in's counters, CPU time and peak memory of the harness's process and, when they run
//! apart, of the stand-in's and the controller's.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::processes::Usage;

/// Request counts by `(verb, resource)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requests(pub BTreeMap<(String, String), u64>);

/// Verbs that change objects.
pub const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

impl Requests {
    /// The counters in the stand-in's `/metrics` text.
    pub fn parse(text: &str) -> Self {
        let mut counts = BTreeMap::new();
        for line in text.lines() {
            let Some(labels) = line.strip_prefix("apiserver_request_total{") else {
                continue;
            };
            let Some((labels, value)) = labels.rsplit_once("} ") else {
                continue;
            };
            let label = |key: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                    .map(|v| v.trim_end_matches('"').to_owned())
            };
            if let (Some(verb), Some(resource), Ok(n)) =
                (label("verb"), label("resource"), value.parse::<u64>())
            {
                counts.insert((verb, resource), n);
            }
        }
        Self(counts)
    }

    /// What was counted from `before` to `self`.
    #[must_use]
    pub fn since(&self, before: &Self) -> Self {
        Self(
            self.0
                .iter()
                .filter_map(|(k, v)| {
                    let d = v - before.0.get(k).copied().unwrap_or(0);
                    (d > 0).then(|| (k.clone(), d))
                })
                .collect(),
        )
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Requests of `verb` (every resource).
    pub fn verb(&self, verb: &str) -> u64 {
        self.0
            .iter()
            .filter(|((v, _), _)| v == verb)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests of `verb` on `resource`.
    pub fn of(&self, verb: &str, resource: &str) -> u64 {
        self.0
            .get(&(verb.to_owned(), resource.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Requests that change objects.
    pub fn writes(&self) -> u64 {
        WRITE_VERBS.iter().map(|v| self.verb(v)).sum()
    }
}

impl fmt::Display for Requests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|((verb, resource), n)| format!("{verb} {resource} {n}"))
            .collect();
        write!(f, "{}", parts.join(", "))
    }
}

/// The figures of one scenario.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Nodes.
    pub nodes: usize,
    /// maxUnavailable as written in the policy.
    pub max_unavailable: String,
    /// Slots it gives (M).
    pub slots: usize,
    /// Set apply time (t).
    pub apply_time: Duration,
    /// Nodes whose apply fails.
    pub failing: usize,
    /// From the policy's creation to its Available (or Degraded) status.
    pub rollout: Duration,
    /// `ceil(N/M)·t`.
    pub ideal: Duration,
    /// Most nodes applying at once (sampled).
    pub max_applying: usize,
    /// Requests during the rollout.
    pub rollout_requests: Requests,
    /// Requests during the idle window.
    pub idle_requests: Requests,
    /// The idle window.
    pub idle_window: Duration,
    /// Handler objects (enactments, node states, slot ledgers) changed during the idle window.
    pub idle_handler_writes: usize,
    /// The harness's process (the handlers, and the stand-in and controller when they run
    /// in it): CPU time during the rollout, peak memory so far.
    pub harness: Usage,
    /// The harness's CPU time during the idle window.
    pub idle_cpu: Duration,
    /// The stand-in's CPU time during the rollout and its peak memory, when it runs apart.
    pub stand_in: Option<Usage>,
    /// The controller's, when it runs apart.
    pub controller: Option<Usage>,
}

impl Figures {
    /// Rollout time over the ideal.
    pub fn ratio(&self) -> f64 {
        self.rollout.as_secs_f64() / self.ideal.as_secs_f64().max(f64::EPSILON)
    }

    /// A count of the idle window scaled to a minute.
    pub fn per_idle_minute(&self, n: u64) -> f64 {
        // Counts are small; f64 holds them exactly.
        #[allow(clippy::cast_precision_loss)]
        let n = n as f64;
        n * 60.0 / self.idle_window.as_secs_f64().max(f64::EPSILON)
    }

    /// The Markdown table header matching [`Figures::row`].
    pub fn header() -> &'static str {
        "| N | maxUnavailable (M) | t | failing | rollout | ideal ceil(N/M)·t | ratio | max applying | requests/rollout (per node) | lists/rollout | idle writes/min (handler objects changed) | idle requests/min | CPU s rollout | CPU s idle window | peak RSS MiB | stand-in CPU s rollout, peak MiB | controller CPU s rollout, peak MiB |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    }

    /// One Markdown table row.
    pub fn row(&self) -> String {
        #[allow(clippy::cast_precision_loss)]
        let per_node = self.rollout_requests.total() as f64 / self.nodes.max(1) as f64;
        let apart = |u: Option<Usage>| {
            u.map_or_else(
                || "in the harness".to_owned(),
                |u| format!("{:.1}, {:.0}", u.cpu.as_secs_f64(), u.peak_mib),
            )
        };
        format!(
            "| {} | {} ({}) | {:.1} s | {} | {:.1} s | {:.1} s | {:.2} | {} | {} ({per_node:.1}) | {} | {:.1} ({}) | {:.1} | {:.1} | {:.1} | {:.0} | {} | {} |",
            self.nodes,
            self.max_unavailable,
            self.slots,
            self.apply_time.as_secs_f64(),
            self.failing,
            self.rollout.as_secs_f64(),
            self.ideal.as_secs_f64(),
            self.ratio(),
            self.max_applying,
            self.rollout_requests.total(),
            self.rollout_requests.verb("list"),
            self.per_idle_minute(self.idle_requests.writes()),
            self.idle_handler_writes,
            self.per_idle_minute(self.idle_requests.total()),
            self.harness.cpu.as_secs_f64(),
            self.idle_cpu.as_secs_f64(),
            self.harness.peak_mib,
            apart(self.stand_in),
            apart(self.controller),
        )
    }
}
