//! The handler DaemonSet: one privileged, host-network pod per selected node, talking to the
//! host's NetworkManager over the host D-Bus socket and holding the per-node lock.

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, EnvVar, HostPathVolumeSource, PodSpec, PodTemplateSpec, SecurityContext,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use knmstate_api::shared::LogLevel;

use crate::meta::{self, HANDLER_COMPONENT, name};
use crate::pod::{container, env, env_field, exec_probe, resources};
use crate::{InstallSettings, Knobs};

/// Host directory of the per-node lock (upstream's path, so an upstream handler and this one
/// on the same node exclude each other).
pub const LOCK_DIR: &str = "/var/k8s_nmstate";
/// The lock file inside it (`NMSTATE_INSTANCE_NODE_LOCK_FILE`).
pub const LOCK_FILE: &str = "/var/k8s_nmstate/handler_lock";
/// Host directory of the system D-Bus socket.
pub const DBUS_DIR: &str = "/run/dbus";
/// The file the handler touches once it holds the lock and its caches are synced.
pub const READINESS_FILE: &str = "/tmp/healthy";

/// `RUST_LOG` for a log level: `debug` turns on the handler's and the NetworkManager
/// backend's debug lines (upstream: `--v debug` and `nmstatectl -vv`); the client libraries
/// stay at `info`.
pub fn rust_log(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Info => "info",
        LogLevel::Debug => "info,knmstate_handler=debug,knmstate_nm_backend=debug,nmstate=debug",
    }
}

/// The handler's environment: names the `handler` binary reads (handler/src/config.rs).
pub fn handler_env(knobs: &Knobs, s: &InstallSettings) -> Vec<EnvVar> {
    let timeouts = [
        ("PROBE_TIMEOUT_SECONDS", s.probe_timeout_seconds),
        ("CHECKPOINT_TIMEOUT_SECONDS", s.checkpoint_timeout_seconds),
    ];
    let mut out = vec![
        env_field("NODE_NAME", "spec.nodeName"),
        env_field("POD_NAMESPACE", "metadata.namespace"),
        env("NMSTATE_INSTANCE_NODE_LOCK_FILE", LOCK_FILE),
        env("READINESS_FILE", READINESS_FILE),
        env("PROBE_DNS_HOST", knobs.dns_probe_host.clone()),
        env("NNCP_MAX_RETRIES", s.max_retries.to_string()),
        env(
            "NNCP_INITIAL_BACKOFF_SECONDS",
            s.initial_backoff_seconds.to_string(),
        ),
        env(
            "NNCP_MAX_BACKOFF_SECONDS",
            s.max_backoff_seconds.to_string(),
        ),
        env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            format!("unix:path={DBUS_DIR}/system_bus_socket"),
        ),
        env("RUST_LOG", rust_log(knobs.log_level)),
        env("COMPONENT", HANDLER_COMPONENT),
        env("PART_OF", meta::APP),
    ];
    out.extend(
        timeouts
            .into_iter()
            .filter_map(|(name, v)| Some(env(name, v?.to_string()))),
    );
    out
}

fn host_dir(name: &str, path: &str, type_: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        host_path: Some(HostPathVolumeSource {
            path: path.to_owned(),
            type_: Some(type_.to_owned()),
        }),
        ..Volume::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        ..VolumeMount::default()
    }
}

/// The handler DaemonSet (upstream's `nmstate-handler`).
pub fn daemon_set(knobs: &Knobs, s: &InstallSettings) -> DaemonSet {
    let name = s.prefixed(name::HANDLER);
    let mut c = container("nmstate-handler", "handler", s);
    c.env = Some(handler_env(knobs, s));
    c.security_context = Some(SecurityContext {
        privileged: Some(true),
        ..SecurityContext::default()
    });
    c.resources = Some(resources("100m", "100Mi", "500m", "1Gi"));
    // Ready once the node lock is held and the caches are synced: the handler writes the file
    // then, and removes it on shutdown. A second handler on the node stays unready.
    c.readiness_probe = Some(exec_probe(&["/usr/bin/cat", READINESS_FILE], 5));
    // Alive once it got there: the handler serves no port (host network), and the readiness
    // file is the one thing it keeps. A handler that has not reached readiness 60 s + 3 × 20 s
    // after its start (lock never taken, caches never synced) is restarted; one waiting for
    // another handler's lock (upstream's, during a migration) just waits again.
    let mut liveness = exec_probe(&["/usr/bin/cat", READINESS_FILE], 20);
    liveness.initial_delay_seconds = Some(60);
    liveness.failure_threshold = Some(3);
    c.liveness_probe = Some(liveness);
    c.volume_mounts = Some(vec![
        mount("dbus-socket", DBUS_DIR),
        mount("nmstate-lock", LOCK_DIR),
        mount("tmp", "/tmp"),
    ]);
    let labels = meta::labels(Some(HANDLER_COMPONENT));
    DaemonSet {
        metadata: meta::meta(&name, Some(&s.namespace), Some(HANDLER_COMPONENT)),
        spec: DaemonSetSpec {
            selector: meta::select(HANDLER_COMPONENT),
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString::String("10%".into())),
                    max_surge: None,
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(name.clone()),
                    host_network: Some(true),
                    dns_policy: Some("Default".into()),
                    priority_class_name: Some("system-node-critical".into()),
                    node_selector: Some(knobs.node_selector.clone()),
                    tolerations: Some(knobs.tolerations.clone()),
                    affinity: knobs.affinity.clone(),
                    termination_grace_period_seconds: Some(30),
                    containers: vec![c],
                    volumes: Some(vec![
                        host_dir("dbus-socket", DBUS_DIR, "Directory"),
                        host_dir("nmstate-lock", LOCK_DIR, "DirectoryOrCreate"),
                        Volume {
                            name: "tmp".into(),
                            empty_dir: Some(EmptyDirVolumeSource::default()),
                            ..Volume::default()
                        },
                    ]),
                    ..PodSpec::default()
                }),
            },
            ..DaemonSetSpec::default()
        },
        ..DaemonSet::default()
    }
}
