//! Flags and environment of `knmstate-controller operator` (upstream's operator env names).

use knmstate_deploy::InstallSettings;

/// The NMState operator: installs and maintains knmstate for the `NMState` resource named
/// `nmstate`.
#[derive(Debug, Clone, clap::Args)]
pub struct OperatorArgs {
    /// Namespace of the installation.
    #[arg(long, env = "HANDLER_NAMESPACE", default_value = "nmstate")]
    pub namespace: String,
    /// Prefix of the workload names (`<prefix>-nmstate-handler`).
    #[arg(long, env = "HANDLER_PREFIX", default_value = "")]
    pub prefix: String,
    /// Image of the handler, controller and webhook.
    #[arg(
        long,
        env = "RELATED_IMAGE_HANDLER_IMAGE",
        default_value = "quay.io/knmstate/knmstate:latest"
    )]
    pub image: String,
    /// `imagePullPolicy` of the workloads.
    #[arg(
        long,
        env = "HANDLER_IMAGE_PULL_POLICY",
        default_value = "IfNotPresent"
    )]
    pub image_pull_policy: String,
    /// Namespace of the Prometheus allowed to scrape the metrics.
    #[arg(long, env = "MONITORING_NAMESPACE", default_value = "monitoring")]
    pub monitoring_namespace: String,
    /// `NNCP_MAX_RETRIES` of the handlers.
    #[arg(long, env = "NNCP_MAX_RETRIES", default_value_t = knmstate_state_engine::rollback::DEFAULT_MAX_RETRIES)]
    pub max_retries: u32,
    /// `NNCP_INITIAL_BACKOFF_SECONDS` of the handlers.
    #[arg(
        long,
        env = "NNCP_INITIAL_BACKOFF_SECONDS",
        default_value_t = knmstate_state_engine::rollback::DEFAULT_INITIAL_BACKOFF.as_secs()
    )]
    pub initial_backoff_seconds: u64,
    /// `NNCP_MAX_BACKOFF_SECONDS` of the handlers.
    #[arg(
        long,
        env = "NNCP_MAX_BACKOFF_SECONDS",
        default_value_t = knmstate_state_engine::rollback::DEFAULT_MAX_BACKOFF.as_secs()
    )]
    pub max_backoff_seconds: u64,
    /// `PROBE_TIMEOUT_SECONDS` of the handlers (unset: the handler's default).
    #[arg(long, env = "PROBE_TIMEOUT_SECONDS")]
    pub probe_timeout_seconds: Option<u64>,
    /// `CHECKPOINT_TIMEOUT_SECONDS` of the handlers (unset: the handler's default).
    #[arg(long, env = "CHECKPOINT_TIMEOUT_SECONDS")]
    pub checkpoint_timeout_seconds: Option<u64>,
    /// Whether the controller it installs serves `/metrics` over HTTPS to authorized
    /// scrapers only (false: plain HTTP to anyone, for local and development clusters).
    #[arg(long, env = "METRICS_SECURE", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics_secure: bool,
    /// Address of `/healthz` and `/readyz` (`:port` means every interface).
    #[arg(long, env = "HEALTH_BIND_ADDRESS", default_value = ":8081")]
    pub health_bind_address: String,
}

impl OperatorArgs {
    /// The install settings these flags describe (topology and CA bundle are filled in by
    /// each reconcile).
    pub fn settings(&self) -> InstallSettings {
        InstallSettings {
            namespace: self.namespace.clone(),
            image: self.image.clone(),
            image_pull_policy: self.image_pull_policy.clone(),
            prefix: self.prefix.clone(),
            monitoring_namespace: self.monitoring_namespace.clone(),
            max_retries: self.max_retries,
            initial_backoff_seconds: self.initial_backoff_seconds,
            max_backoff_seconds: self.max_backoff_seconds,
            probe_timeout_seconds: self.probe_timeout_seconds,
            checkpoint_timeout_seconds: self.checkpoint_timeout_seconds,
            metrics_secure: self.metrics_secure,
            ..InstallSettings::default()
        }
    }
}
