//! Pieces of pod templates: containers with the image, env entries, probes and volumes.

use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ExecAction, HTTPGetAction, ObjectFieldSelector, Probe,
    ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::InstallSettings;

/// Where the image keeps the binaries (see the `Containerfile`).
pub const BIN_DIR: &str = "/usr/bin";

/// A container running `binary` from the image.
pub fn container(name: &str, binary: &str, s: &InstallSettings) -> Container {
    Container {
        name: name.to_owned(),
        image: Some(s.image.clone()),
        image_pull_policy: Some(s.image_pull_policy.clone()),
        command: Some(vec![format!("{BIN_DIR}/{binary}")]),
        ..Container::default()
    }
}

/// `name=value`.
pub fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// `name` from the downward API field `path` (e.g. `spec.nodeName`).
pub fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: path.to_owned(),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// Requests and limits of CPU and memory.
pub fn resources(
    cpu: &str,
    memory: &str,
    cpu_limit: &str,
    memory_limit: &str,
) -> ResourceRequirements {
    let q = |cpu: &str, mem: &str| {
        Some(
            [
                ("cpu".to_owned(), Quantity(cpu.to_owned())),
                ("memory".to_owned(), Quantity(mem.to_owned())),
            ]
            .into(),
        )
    };
    ResourceRequirements {
        requests: q(cpu, memory),
        limits: q(cpu_limit, memory_limit),
        ..ResourceRequirements::default()
    }
}

/// An HTTP(S) GET probe of `path` on the named port.
pub fn http_probe(path: &str, port: &str, https: bool, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(port.to_owned()),
            scheme: Some(if https { "HTTPS" } else { "HTTP" }.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    }
}

/// A probe running `command` in the container.
pub fn exec_probe(command: &[&str], period: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(command.iter().map(|c| (*c).to_owned()).collect()),
        }),
        period_seconds: Some(period),
        ..Probe::default()
    }
}
