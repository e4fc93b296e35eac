//! Configuration by flags and environment, with upstream's variable names where upstream has
//! one (`NODE_NAME`, `NMSTATE_INSTANCE_NODE_LOCK_FILE`, `PROBE_DNS_HOST`, `NNCP_MAX_RETRIES`,
//! `NNCP_INITIAL_BACKOFF_SECONDS`, `NNCP_MAX_BACKOFF_SECONDS`, `POD_NAMESPACE`, `COMPONENT`,
//! `PART_OF`, `VERSION`, `MANAGED_BY`).

use std::path::PathBuf;
use std::time::Duration;

use knmstate_runtime::LogArgs;
pub use knmstate_runtime::LogFormat;
use knmstate_state_engine::rollback::{HandlerDefaults, RetryPolicy};

use crate::error::{Error, Result};

/// When to inject upstream's default VLAN trunk on linux-bridge ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BridgeVlanMode {
    /// When the node's kernel supports bridge VLAN filtering (without it, a bridge with the
    /// injected trunk cannot come up at all).
    #[default]
    Auto,
    /// Always, as upstream.
    Always,
    /// Never (upstream #1429).
    Never,
}

/// Command line and environment of the `handler` binary.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "handler", version, about = "knmstate per-node handler")]
pub struct Cli {
    /// Name of the node this handler runs on (mandatory).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// Per-node exclusive lock file: a second handler on the node waits for it.
    #[arg(
        long,
        env = "NMSTATE_INSTANCE_NODE_LOCK_FILE",
        default_value = "/var/k8s_nmstate/handler_lock"
    )]
    pub lock_file: PathBuf,
    /// How often a waiting handler tries the lock again, in seconds.
    #[arg(long, env = "LOCK_POLL_SECONDS", default_value_t = 5)]
    pub lock_poll_seconds: u64,
    /// Name the DNS probe resolves.
    #[arg(long, env = "PROBE_DNS_HOST", default_value = "root-servers.net")]
    pub probe_dns_host: String,
    /// Apply attempts per policy generation.
    #[arg(long, env = "NNCP_MAX_RETRIES", default_value_t = knmstate_state_engine::rollback::DEFAULT_MAX_RETRIES)]
    pub max_retries: u32,
    /// First backoff between attempts, in seconds.
    #[arg(
        long,
        env = "NNCP_INITIAL_BACKOFF_SECONDS",
        default_value_t = knmstate_state_engine::rollback::DEFAULT_INITIAL_BACKOFF.as_secs()
    )]
    pub initial_backoff_seconds: u64,
    /// Backoff cap, in seconds.
    #[arg(
        long,
        env = "NNCP_MAX_BACKOFF_SECONDS",
        default_value_t = knmstate_state_engine::rollback::DEFAULT_MAX_BACKOFF.as_secs()
    )]
    pub max_backoff_seconds: u64,
    /// Budget of each connectivity probe, in seconds.
    #[arg(long, env = "PROBE_TIMEOUT_SECONDS", default_value_t = 120)]
    pub probe_timeout_seconds: u64,
    /// How long NetworkManager holds a checkpoint before rolling back by itself, in seconds
    /// (raised to cover the probes' budget).
    #[arg(long, env = "CHECKPOINT_TIMEOUT_SECONDS", default_value_t = 480)]
    pub checkpoint_timeout_seconds: u64,
    /// Slow safety re-read of the node's state for its NodeNetworkState, in seconds.
    #[arg(long, env = "NNS_RESYNC_SECONDS", default_value_t = 300)]
    pub nns_resync_seconds: u64,
    /// Quiet time after a burst of NetworkManager signals before the state is re-read, in
    /// milliseconds.
    #[arg(long, env = "NNS_DEBOUNCE_MILLISECONDS", default_value_t = 300)]
    pub nns_debounce_milliseconds: u64,
    /// Size cap of the reported currentState, in bytes of JSON.
    #[arg(long, env = "NNS_MAX_BYTES", default_value_t = knmstate_state_engine::filter::DEFAULT_MAX_BYTES)]
    pub nns_max_bytes: usize,
    /// Namespace of the per-policy slot ledgers (Leases).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// File touched once the handler is ready (upstream's readiness probe reads `/tmp/healthy`).
    #[arg(long, env = "READINESS_FILE", default_value = "/tmp/healthy")]
    pub readiness_file: PathBuf,
    /// Log format (`--log-format`/`LOG_FORMAT`, or `--log-json`/`LOG_JSON`).
    #[command(flatten)]
    pub log: LogArgs,
    /// When to inject the default VLAN trunk (`2-4094`) on linux-bridge ports without `vlan`.
    #[arg(long, env = "DEFAULT_BRIDGE_VLAN", value_enum, default_value_t = BridgeVlanMode::Auto)]
    pub default_bridge_vlan: BridgeVlanMode,
    /// `app.kubernetes.io/component` label on created objects.
    #[arg(long, env = "COMPONENT")]
    pub component: Option<String>,
    /// `app.kubernetes.io/part-of` label on created objects.
    #[arg(long, env = "PART_OF")]
    pub part_of: Option<String>,
    /// `app.kubernetes.io/version` label on created objects.
    #[arg(long = "label-version", env = "VERSION")]
    pub label_version: Option<String>,
    /// `app.kubernetes.io/managed-by` label on created objects.
    #[arg(long, env = "MANAGED_BY")]
    pub managed_by: Option<String>,
}

/// The handler's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerConfig {
    /// This node.
    pub node_name: String,
    /// Per-node lock file.
    pub lock_file: PathBuf,
    /// Lock retry interval.
    pub lock_poll: Duration,
    /// Probe, checkpoint and retry defaults.
    pub defaults: HandlerDefaults,
    /// NNS safety re-read interval.
    pub nns_resync: Duration,
    /// NNS change debounce.
    pub nns_debounce: Duration,
    /// NNS size cap.
    pub nns_max_bytes: usize,
    /// Namespace of slot ledgers.
    pub namespace: String,
    /// Readiness file.
    pub readiness_file: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
    /// Labels put on created NNS and NNCE.
    pub extra_labels: std::collections::BTreeMap<String, String>,
    /// When to inject the default linux-bridge VLAN trunk.
    pub bridge_vlan: BridgeVlanMode,
    /// Whether the kernel supports bridge VLAN filtering; `None` probes it once, when first
    /// needed (a test may state it).
    pub bridge_vlan_filtering: Option<bool>,
}

impl HandlerConfig {
    /// Settings for `node` with upstream's defaults (the bridge VLAN trunk always injected).
    pub fn for_node(node: &str) -> Self {
        Self {
            node_name: node.to_owned(),
            lock_file: PathBuf::from("/var/k8s_nmstate/handler_lock"),
            lock_poll: Duration::from_secs(5),
            defaults: HandlerDefaults::default(),
            nns_resync: Duration::from_mins(5),
            nns_debounce: Duration::from_millis(300),
            nns_max_bytes: knmstate_state_engine::filter::DEFAULT_MAX_BYTES,
            namespace: "default".into(),
            readiness_file: PathBuf::from("/tmp/healthy"),
            log_format: LogFormat::Text,
            extra_labels: Default::default(),
            bridge_vlan: BridgeVlanMode::Always,
            bridge_vlan_filtering: None,
        }
    }

    /// Where the backend keeps what a crashed apply needs for its recovery (the global DNS
    /// saved before the apply): `knmstate-handler-state/` beside the node lock, on the host,
    /// so that it outlives the handler's process and pod.
    pub fn backend_state_dir(&self) -> PathBuf {
        self.lock_file
            .parent()
            .unwrap_or_else(|| std::path::Path::new("/"))
            .join(BACKEND_STATE_DIR)
    }
}

/// Name of the backend's state directory beside the node lock.
const BACKEND_STATE_DIR: &str = "knmstate-handler-state";

impl TryFrom<Cli> for HandlerConfig {
    type Error = Error;

    /// Validate: `NODE_NAME` must be set and not empty; backoffs must be ordered.
    fn try_from(c: Cli) -> Result<Self> {
        let node_name = c
            .node_name
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| {
                Error::InvalidConfig(
                    "NODE_NAME is not set: the handler must know which node it runs on \
                 (set the NODE_NAME environment variable or --node-name)"
                        .into(),
                )
            })?;
        if c.max_retries == 0 {
            return Err(Error::InvalidConfig(
                "NNCP_MAX_RETRIES must be at least 1".into(),
            ));
        }
        if c.initial_backoff_seconds > c.max_backoff_seconds {
            return Err(Error::InvalidConfig(
                "NNCP_INITIAL_BACKOFF_SECONDS must not exceed NNCP_MAX_BACKOFF_SECONDS".into(),
            ));
        }
        Ok(Self {
            node_name,
            lock_file: c.lock_file,
            lock_poll: Duration::from_secs(c.lock_poll_seconds.max(1)),
            defaults: HandlerDefaults {
                probe_timeout: Duration::from_secs(c.probe_timeout_seconds.max(1)),
                checkpoint_timeout: Duration::from_secs(c.checkpoint_timeout_seconds.max(1)),
                dns_host: c.probe_dns_host,
                retry: RetryPolicy {
                    max_retries: c.max_retries,
                    initial_backoff: Duration::from_secs(c.initial_backoff_seconds),
                    max_backoff: Duration::from_secs(c.max_backoff_seconds),
                },
            },
            nns_resync: Duration::from_secs(c.nns_resync_seconds.max(1)),
            nns_debounce: Duration::from_millis(c.nns_debounce_milliseconds),
            nns_max_bytes: c.nns_max_bytes,
            namespace: c.namespace,
            readiness_file: c.readiness_file,
            log_format: c.log.format(),
            extra_labels: knmstate_api::names::relationship_labels(
                c.component.as_deref(),
                c.part_of.as_deref(),
                c.label_version.as_deref(),
                c.managed_by.as_deref(),
            ),
            bridge_vlan: c.default_bridge_vlan,
            bridge_vlan_filtering: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn node_name_is_mandatory_with_a_clear_message() {
        let cli = Cli::try_parse_from(["handler"]).expect("parses");
        let err = HandlerConfig::try_from(cli).expect_err("no node");
        assert!(err.to_string().contains("NODE_NAME is not set"), "{err}");
        assert_eq!(err.category(), "invalid-config");
    }

    #[test]
    fn flags_map_to_settings() {
        let cli = Cli::try_parse_from([
            "handler",
            "--node-name",
            "n1",
            "--max-retries",
            "2",
            "--initial-backoff-seconds",
            "2",
            "--max-backoff-seconds",
            "5",
            "--probe-timeout-seconds",
            "7",
        ])
        .expect("parses");
        let c = HandlerConfig::try_from(cli).expect("valid");
        assert_eq!(c.node_name, "n1");
        assert_eq!(c.defaults.retry.max_retries, 2);
        assert_eq!(c.defaults.retry.max_backoff, Duration::from_secs(5));
        assert_eq!(c.defaults.probe_timeout, Duration::from_secs(7));
        assert_eq!(c.defaults.dns_host, "root-servers.net");
        assert_eq!(
            c.backend_state_dir(),
            PathBuf::from("/var/k8s_nmstate/knmstate-handler-state")
        );
    }

    #[test]
    fn backoffs_must_be_ordered() {
        let cli = Cli::try_parse_from([
            "handler",
            "--node-name",
            "n1",
            "--initial-backoff-seconds",
            "9",
            "--max-backoff-seconds",
            "5",
        ])
        .expect("parses");
        assert!(HandlerConfig::try_from(cli).is_err());
    }
}
