//! Command-line flags and environment variables of the `knmstate-controller` binary.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use knmstate_runtime::LogArgs;

use crate::endpoint::MetricsServing;
use crate::leader::{LeaseConfig, identity};
use crate::operator::cli::OperatorArgs;
use crate::run::Config;

/// Leader-elected controller: NodeNetworkConfigurationPolicy status, orphan cleanup, metrics.
/// The cluster is found as kube-rs does (`KUBECONFIG`, `~/.kube/config`, in-cluster).
#[derive(Parser, Debug)]
#[command(name = "knmstate-controller", version)]
pub struct Args {
    /// Address of `/metrics`, `/healthz` and `/readyz` (`:port` means every interface).
    #[arg(long, env = "METRICS_BIND_ADDRESS", default_value = ":8089")]
    pub metrics_bind_address: String,
    /// Serve `/metrics` over HTTPS, only to bearer tokens whose user may `get` the
    /// non-resource URL `/metrics` (`TokenReview` and `SubjectAccessReview`); `false` serves plain
    /// HTTP to anyone (local and development use only).
    #[arg(long, env = "METRICS_SECURE", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics_secure: bool,
    /// PEM certificate of the secure metrics endpoint (with `--metrics-key-file`; re-read
    /// when it changes). Without both, a self-signed certificate is generated at start.
    #[arg(long, env = "METRICS_TLS_CERT_FILE", requires = "metrics_key_file")]
    pub metrics_cert_file: Option<PathBuf>,
    /// PEM private key of the secure metrics endpoint.
    #[arg(long, env = "METRICS_TLS_KEY_FILE", requires = "metrics_cert_file")]
    pub metrics_key_file: Option<PathBuf>,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "LEASE_NAMESPACE", default_value = "nmstate")]
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "knmstate-controller")]
    pub lease_name: String,
    /// Base of this replica's identity (a random suffix is added); default: the host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a leader's claim lasts without renewal.
    #[arg(long, default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// Seconds a leader keeps leading while renewals fail (below the lease duration).
    #[arg(long, default_value_t = 10)]
    pub renew_deadline_seconds: u64,
    /// Seconds between acquire or renew attempts.
    #[arg(long, default_value_t = 2)]
    pub retry_period_seconds: u64,
    /// Seconds between orphan sweeps (they also run on node, policy and leader changes).
    #[arg(long, default_value_t = 60)]
    pub sweep_interval_seconds: u64,
    /// Orphans younger than this many seconds are left alone.
    #[arg(long, default_value_t = 30)]
    pub orphan_grace_seconds: u64,
    /// Seconds between re-aggregations of every policy without any change.
    #[arg(long, default_value_t = 300)]
    pub resync_seconds: u64,
    /// Log format (`--log-format text|json`, or `--log-json`).
    #[command(flatten)]
    pub log: LogArgs,
    /// Print every metric with its type, labels and help text (Markdown) and exit.
    #[arg(long)]
    pub print_metrics: bool,
    /// Run another mode than the controller.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The binary's other modes.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// The NMState operator: install knmstate for the `NMState` resource named `nmstate`.
    Operator(OperatorArgs),
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "knmstate-controller".to_owned())
}

impl Args {
    /// The run configuration these flags describe.
    pub fn config(&self) -> Config {
        let base = self.identity.clone().unwrap_or_else(host_name);
        let mut lease = LeaseConfig::new(&self.lease_namespace, &self.lease_name, &identity(&base));
        lease.lease_duration = Duration::from_secs(self.lease_duration_seconds.max(1));
        lease.renew_deadline = Duration::from_secs(self.renew_deadline_seconds.max(1));
        lease.retry_period = Duration::from_secs(self.retry_period_seconds.max(1));
        let mut config = Config::new(lease);
        config.sweep_interval = Duration::from_secs(self.sweep_interval_seconds.max(1));
        config.orphan_grace = Duration::from_secs(self.orphan_grace_seconds);
        config.resync = Duration::from_secs(self.resync_seconds.max(1));
        config.metrics_serving = self.metrics_serving();
        config
    }

    /// How these flags say `/metrics` is served.
    pub fn metrics_serving(&self) -> MetricsServing {
        if !self.metrics_secure {
            return MetricsServing::Plain;
        }
        let files = self
            .metrics_cert_file
            .clone()
            .zip(self.metrics_key_file.clone());
        MetricsServing::Secure { files }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_build_the_configuration() {
        let a = Args::parse_from([
            "knmstate-controller",
            "--lease-namespace",
            "ns",
            "--identity",
            "pod-1",
            "--lease-duration-seconds",
            "7",
        ]);
        let c = a.config();
        assert_eq!(c.lease.namespace, "ns");
        assert_eq!(c.lease.name, "knmstate-controller");
        assert!(c.lease.identity.starts_with("pod-1-"));
        assert_eq!(c.lease.lease_duration, Duration::from_secs(7));
        assert_eq!(a.metrics_bind_address, ":8089");
        assert_eq!(c.metrics_serving, MetricsServing::Secure { files: None });
    }

    #[test]
    fn metrics_can_be_served_plain_or_from_certificate_files() {
        let plain = Args::parse_from(["knmstate-controller", "--metrics-secure", "false"]);
        assert_eq!(plain.config().metrics_serving, MetricsServing::Plain);
        let files = Args::parse_from([
            "knmstate-controller",
            "--metrics-cert-file",
            "/c/tls.crt",
            "--metrics-key-file",
            "/c/tls.key",
        ]);
        assert_eq!(
            files.metrics_serving(),
            MetricsServing::Secure {
                files: Some(("/c/tls.crt".into(), "/c/tls.key".into()))
            }
        );
        let half = Args::try_parse_from(["knmstate-controller", "--metrics-cert-file", "/c/x"]);
        assert!(half.is_err(), "a certificate without its key is refused");
    }
}
