//! Request counters per verb and resource, served on `/metrics` and readable in process.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// `plural.group` (`pods` for core), with `/subresource` when one was addressed.
    pub resource: String,
}

/// The stand-in's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let mut registry = Registry::default();
        registry.register(
            "apiserver_request",
            "API requests served, per verb and resource",
            requests.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
        }
    }
}

impl Metrics {
    /// Counts one request.
    pub fn inc(&self, verb: &str, resource: &str) {
        self.requests
            .get_or_create(&RequestLabels {
                verb: verb.to_owned(),
                resource: resource.to_owned(),
            })
            .inc();
    }

    /// Requests counted so far for a verb and resource (`plural.group`, or `plural` for core).
    pub fn count(&self, verb: &str, resource: &str) -> u64 {
        self.requests
            .get_or_create(&RequestLabels {
                verb: verb.to_owned(),
                resource: resource.to_owned(),
            })
            .get()
    }

    /// Requests counted so far for a verb over every resource.
    pub fn count_verb(&self, verb: &str) -> u64 {
        self.encode()
            .lines()
            .filter(|l| {
                l.starts_with("apiserver_request_total{") && l.contains(&format!("verb=\"{verb}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}
