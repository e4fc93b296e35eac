//! From a pod template to the processes the box starts, as a kubelet reads it: the image's
//! binary for `command`, `args`, the environment with `fieldRef`, `secretKeyRef` and
//! `configMapKeyRef` resolved and `$(VAR)` expanded, and each volume mount with what backs it.
//! Pure: `Secret`s and `ConfigMap`s come through a lookup.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, Probe};

/// The pod a container belongs to, as the kubelet knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    /// Namespace of the workload.
    pub namespace: String,
    /// The pod's name (`<daemonset>-<node>`, `<deployment>-<template hash>-<i>`).
    pub name: String,
    /// The node it is scheduled on.
    pub node: String,
    /// That node's `InternalIP` (`status.hostIP`).
    pub node_ip: String,
    /// The pod's address (`status.podIP`): the node's with host network, else 127.0.0.1.
    pub pod_ip: String,
}

/// What backs a volume mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A Secret's keys as files (all keys, or the `items` listed as key → path).
    Secret {
        /// The Secret.
        name: String,
        /// `key → relative path`; empty for every key under its own name.
        items: Vec<(String, String)>,
    },
    /// A directory of the pod's own (`emptyDir`), named after the volume.
    EmptyDir(String),
    /// A path on the node.
    HostPath(String),
}

/// One volume mount of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The volume's name.
    pub volume: String,
    /// What backs it.
    pub source: Source,
    /// Where the container sees it.
    pub target: String,
    /// `readOnly`.
    pub read_only: bool,
}

/// One container, ready to start.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerPlan {
    /// The container's name.
    pub name: String,
    /// The program (the box's copy of the image's binary) and its arguments.
    pub argv: Vec<String>,
    /// The environment, in the template's order (duplicates: the last wins, as in the kubelet).
    pub env: Vec<(String, String)>,
    /// Volume mounts.
    pub mounts: Vec<Mount>,
    /// Container ports: (name, number).
    pub ports: Vec<(String, i32)>,
    /// Readiness probe.
    pub readiness: Option<Probe>,
    /// Liveness probe.
    pub liveness: Option<Probe>,
}

/// Why a pod cannot start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// The container's image is not one the box has binaries for.
    #[error("failed to find image {image} in the box (known: {known})")]
    FindImage {
        /// The image.
        image: String,
        /// The images the box maps.
        known: String,
    },
    /// A container without `command`: the box does not know the image's entrypoint.
    #[error("failed to start container {container}: it has no command")]
    FindCommand {
        /// The container.
        container: String,
    },
    /// An env entry the box cannot resolve.
    #[error("failed to resolve env {name}: {why}")]
    ResolveEnv {
        /// The variable.
        name: String,
        /// What is missing or unsupported.
        why: String,
    },
    /// A volume mount names no volume, or a volume kind the box does not provide.
    #[error("failed to mount volume {volume}: {why}")]
    MountVolume {
        /// The volume.
        volume: String,
        /// What is missing or unsupported.
        why: String,
    },
}

impl PlanError {
    /// A stable, kebab-case category.
    pub fn category(&self) -> &'static str {
        match self {
            Self::FindImage { .. } => "find-image-failed",
            Self::FindCommand { .. } => "find-command-failed",
            Self::ResolveEnv { .. } => "resolve-env-failed",
            Self::MountVolume { .. } => "mount-volume-failed",
        }
    }
}

/// Reads a key of a Secret (`"secret"`) or ConfigMap (`"configmap"`) in the pod's namespace.
pub type Lookup<'a> = &'a dyn Fn(&str, &str, &str) -> Option<String>;

/// `$(NAME)` replaced by the value of an earlier variable (unknown names stay as written,
/// `$$` escapes), as the kubelet expands `command`, `args` and env values.
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$$") {
            out.push('$');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("$(")
            && let Some(end) = t.find(')')
        {
            let name = &t[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&tail[..end + 3]),
            }
            rest = &t[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

fn field(path: &str, pod: &PodIdentity, spec: &PodSpec) -> Option<String> {
    Some(match path {
        "metadata.name" => pod.name.clone(),
        "metadata.namespace" => pod.namespace.clone(),
        "spec.nodeName" => pod.node.clone(),
        "spec.serviceAccountName" => spec.service_account_name.clone().unwrap_or_default(),
        "status.hostIP" => pod.node_ip.clone(),
        "status.podIP" => pod.pod_ip.clone(),
        _ => return None,
    })
}

fn resolve(
    e: &EnvVar,
    pod: &PodIdentity,
    spec: &PodSpec,
    lookup: Lookup<'_>,
    env: &[(String, String)],
) -> Result<String, PlanError> {
    let err = |why: String| PlanError::ResolveEnv {
        name: e.name.clone(),
        why,
    };
    let Some(from) = &e.value_from else {
        return Ok(expand(e.value.as_deref().unwrap_or_default(), env));
    };
    if let Some(f) = &from.field_ref {
        return field(&f.field_path, pod, spec).ok_or_else(|| {
            err(format!(
                "fieldRef {} is not provided by the box",
                f.field_path
            ))
        });
    }
    let (kind, name, key, optional) = if let Some(s) = &from.secret_key_ref {
        ("secret", s.name.clone(), s.key.clone(), s.optional)
    } else if let Some(c) = &from.config_map_key_ref {
        ("configmap", c.name.clone(), c.key.clone(), c.optional)
    } else {
        return Err(err(
            "only fieldRef, secretKeyRef and configMapKeyRef are provided".into(),
        ));
    };
    match lookup(kind, &name, &key) {
        Some(v) => Ok(v),
        None if optional == Some(true) => Ok(String::new()),
        None => Err(err(format!("{kind} {name} has no key {key}"))),
    }
}

fn mounts(c: &Container, spec: &PodSpec) -> Result<Vec<Mount>, PlanError> {
    let volumes = spec.volumes.clone().unwrap_or_default();
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            let err = |why: &str| PlanError::MountVolume {
                volume: m.name.clone(),
                why: why.to_owned(),
            };
            let v = volumes
                .iter()
                .find(|v| v.name == m.name)
                .ok_or_else(|| err("no such volume"))?;
            let source = if let Some(s) = &v.secret {
                Source::Secret {
                    name: s.secret_name.clone().unwrap_or_default(),
                    items: s
                        .items
                        .iter()
                        .flatten()
                        .map(|i| (i.key.clone(), i.path.clone()))
                        .collect(),
                }
            } else if v.empty_dir.is_some() {
                Source::EmptyDir(v.name.clone())
            } else if let Some(h) = &v.host_path {
                Source::HostPath(h.path.clone())
            } else {
                return Err(err(
                    "the box provides secret, emptyDir and hostPath volumes only",
                ));
            };
            Ok(Mount {
                volume: m.name.clone(),
                source,
                target: m.mount_path.clone(),
                read_only: m.read_only.unwrap_or(false),
            })
        })
        .collect()
}

/// Where a `hostPath` of `node` is in the box: paths under `/run` are the node's own (the node
/// harness gives each node a private `/run`, where its D-Bus socket is) when the pod runs in
/// the node's namespaces; every other path is kept under `<state>/hostpath/<node>/`, so that
/// nothing on the machine's own filesystem is touched.
pub fn host_path(path: &str, node: &str, host_network: bool, state: &Path) -> PathBuf {
    if host_network && (path == "/run" || path.starts_with("/run/")) {
        return PathBuf::from(path);
    }
    state
        .join("hostpath")
        .join(node)
        .join(path.trim_start_matches('/'))
}

/// The containers of a pod of `spec`, with `images` mapping each image to the directory of
/// the box's binaries (a command `/usr/bin/X` runs `<dir>/X`) and `injected` added to every
/// environment first (what the kubelet and the pod network provide: how to reach the API).
pub fn plan(
    spec: &PodSpec,
    pod: &PodIdentity,
    images: &BTreeMap<String, PathBuf>,
    injected: &[(String, String)],
    lookup: Lookup<'_>,
) -> Result<Vec<ContainerPlan>, PlanError> {
    spec.containers
        .iter()
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            let dir = images.get(&image).ok_or_else(|| PlanError::FindImage {
                image: image.clone(),
                known: images.keys().cloned().collect::<Vec<_>>().join(", "),
            })?;
            let command = c.command.clone().filter(|c| !c.is_empty()).ok_or_else(|| {
                PlanError::FindCommand {
                    container: c.name.clone(),
                }
            })?;
            let mut env: Vec<(String, String)> = injected.to_vec();
            for e in c.env.iter().flatten() {
                let v = resolve(e, pod, spec, lookup, &env)?;
                env.push((e.name.clone(), v));
            }
            let binary = Path::new(&command[0])
                .file_name()
                .map(|f| dir.join(f))
                .unwrap_or_default();
            let argv = std::iter::once(binary.display().to_string())
                .chain(
                    command[1..]
                        .iter()
                        .chain(c.args.iter().flatten())
                        .map(|a| expand(a, &env)),
                )
                .collect();
            Ok(ContainerPlan {
                name: c.name.clone(),
                argv,
                env,
                mounts: mounts(c, spec)?,
                ports: c
                    .ports
                    .iter()
                    .flatten()
                    .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
                    .collect(),
                readiness: c.readiness_probe.clone(),
                liveness: c.liveness_probe.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> PodIdentity {
        PodIdentity {
            namespace: "nmstate".into(),
            name: "nmstate-handler-node2".into(),
            node: "node2".into(),
            node_ip: "198.18.0.12".into(),
            pod_ip: "198.18.0.12".into(),
        }
    }

    fn images() -> BTreeMap<String, PathBuf> {
        [("img:1".to_owned(), PathBuf::from("/box/bin"))].into()
    }

    #[test]
    fn expansion_follows_the_kubelet() {
        let env = vec![("A".to_owned(), "x".to_owned())];
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &env), "x-$(B)-$(A)-$");
    }

    #[test]
    fn a_template_becomes_the_box_binary_with_its_env_and_mounts() {
        let spec: PodSpec = serde_json::from_value(json!({
            "serviceAccountName": "sa",
            "containers": [{"name": "c", "image": "img:1", "command": ["/usr/bin/handler"],
                "args": ["--node", "$(NODE_NAME)"],
                "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                        {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}}],
                "volumeMounts": [{"name": "certs", "mountPath": "/etc/certs", "readOnly": true}],
                "ports": [{"name": "metrics", "containerPort": 8089}]}],
            "volumes": [{"name": "certs", "secret": {"secretName": "tls", "items": [{"key": "tls.crt", "path": "cert.pem"}]}}]
        }))
        .unwrap();
        let lookup = |kind: &str, name: &str, key: &str| {
            (kind == "secret" && name == "s" && key == "k").then(|| "t0k".to_owned())
        };
        let injected = [("KUBECONFIG".to_owned(), "/box/kc".to_owned())];
        let c = &plan(&spec, &pod(), &images(), &injected, &lookup).unwrap()[0];
        assert_eq!(c.argv, ["/box/bin/handler", "--node", "node2"]);
        let env: BTreeMap<_, _> = c.env.iter().cloned().collect();
        assert_eq!(env["NODE_NAME"], "node2");
        assert_eq!(env["NS"], "nmstate");
        assert_eq!(env["TOKEN"], "t0k");
        assert_eq!(env["SA"], "sa");
        assert_eq!(env["KUBECONFIG"], "/box/kc");
        assert_eq!(c.ports, [("metrics".to_owned(), 8089)]);
        assert_eq!(
            c.mounts,
            [Mount {
                volume: "certs".into(),
                source: Source::Secret {
                    name: "tls".into(),
                    items: vec![("tls.crt".into(), "cert.pem".into())]
                },
                target: "/etc/certs".into(),
                read_only: true,
            }]
        );
    }

    #[test]
    fn what_the_box_cannot_provide_is_an_error() {
        let spec = |c: serde_json::Value| -> PodSpec {
            serde_json::from_value(json!({"containers": [c]})).unwrap()
        };
        let none = |_: &str, _: &str, _: &str| None;
        let e = plan(
            &spec(json!({"name": "c", "image": "other", "command": ["/x"]})),
            &pod(),
            &images(),
            &[],
            &none,
        );
        assert_eq!(e.unwrap_err().category(), "find-image-failed");
        let e = plan(
            &spec(json!({"name": "c", "image": "img:1"})),
            &pod(),
            &images(),
            &[],
            &none,
        );
        assert_eq!(e.unwrap_err().category(), "find-command-failed");
        let e = plan(
            &spec(json!({"name": "c", "image": "img:1", "command": ["/x"],
                "env": [{"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]})),
            &pod(),
            &images(),
            &[],
            &none,
        );
        assert_eq!(e.unwrap_err().category(), "resolve-env-failed");
    }

    #[test]
    fn host_paths_stay_in_the_state_dir_except_the_node_run() {
        let state = Path::new("/box");
        assert_eq!(
            host_path("/run/dbus", "node1", true, state),
            PathBuf::from("/run/dbus")
        );
        assert_eq!(
            host_path("/run/dbus", "node1", false, state),
            PathBuf::from("/box/hostpath/node1/run/dbus")
        );
        assert_eq!(
            host_path("/var/k8s_nmstate", "node1", true, state),
            PathBuf::from("/box/hostpath/node1/var/k8s_nmstate")
        );
    }
}
