//! What every metric family shares: its documented description ([`MetricInfo`]), the
//! registration under that description, and [`GaugeSet`], a gauge family set from a complete
//! map of series.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

/// One metric family as documented: name (as exposed), type, labels and help text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricInfo {
    /// Name as scraped (counters carry `_total`).
    pub name: &'static str,
    /// `gauge`, `counter` or `histogram`.
    pub kind: &'static str,
    /// Label names.
    pub labels: &'static [&'static str],
    /// Help text.
    pub help: &'static str,
}

impl MetricInfo {
    /// A family named `name` (as scraped: counters carry `_total`) of type `kind`.
    pub const fn new(
        name: &'static str,
        kind: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        Self {
            name,
            kind,
            labels,
            help,
        }
    }

    /// Registered name: prometheus-client appends `_total` to counters itself.
    pub fn registered_name(&self) -> &'static str {
        self.name.strip_suffix("_total").unwrap_or(self.name)
    }

    /// Register `metric` under this name and help text; returns it (a shared handle).
    pub fn register<M: Metric + Clone>(&self, registry: &mut Registry, metric: M) -> M {
        registry.register(self.registered_name(), self.help, metric.clone());
        metric
    }

    /// This family's row of the `--print-metrics` table.
    pub fn row(&self) -> String {
        let labels = self
            .labels
            .iter()
            .map(|l| format!("`{l}`"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "| `{}` | {} | {labels} | {} |\n",
            self.name, self.kind, self.help
        )
    }
}

/// A histogram family whose histograms all have the same buckets.
pub type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// A gauge family whose series are set from a complete desired map: series not in the map
/// are removed.
#[derive(Debug)]
pub struct GaugeSet<L: Clone + Hash + Eq> {
    family: Family<L, Gauge>,
    known: Mutex<HashSet<L>>,
}

impl<L> GaugeSet<L>
where
    L: Clone + Hash + Eq + std::fmt::Debug + EncodeLabelSet + Send + Sync + 'static,
{
    /// An empty gauge family registered as `info`.
    pub fn register(info: &MetricInfo, registry: &mut Registry) -> Self {
        Self {
            family: info.register(registry, Family::default()),
            known: Mutex::new(HashSet::new()),
        }
    }

    /// Set exactly the series of `desired`; every other series is removed.
    pub fn sync(&self, desired: impl IntoIterator<Item = (L, i64)>) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = HashSet::new();
        for (l, v) in desired {
            self.family.get_or_create(&l).set(v);
            next.insert(l);
        }
        for old in known.difference(&next) {
            self.family.remove(old);
        }
        *known = next;
    }

    /// Remove every series.
    pub fn clear(&self) {
        self.sync([]);
    }
}
