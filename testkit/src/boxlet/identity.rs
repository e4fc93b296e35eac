//! The identity a kubelet gives a pod: the Pod object in the API (what a bound token is bound
//! to, with its node), and a service-account token of the pod's `serviceAccountName` bound to
//! that Pod — it carries the `authentication.kubernetes.io/node-name` extra — which the pod's
//! processes use through their kubeconfig (`KUBECONFIG`, the box's one way of reaching the API:
//! the base kubeconfig of the pod's network with the pod's token in place of the box's).
//!
//! A real kubelet rotates the projected token; the box mints one valid [`TOKEN_SECONDS`] and
//! mints a new one only when the pod is started again.

use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::Kubeconfig;
use kube::{Client, ResourceExt};

use super::workloads::DesiredPod;

/// How long a pod's token is valid (a day: longer than any box run between pod restarts).
pub const TOKEN_SECONDS: i64 = 86_400;

/// Giving a pod its identity failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Creating (or replacing a stale) Pod object failed.
    #[error("failed to create the Pod object {name}")]
    CreatePod {
        /// The pod.
        name: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// The `TokenRequest` for the pod's ServiceAccount failed.
    #[error("failed to request a token of ServiceAccount {account} bound to pod {pod}")]
    RequestToken {
        /// The ServiceAccount.
        account: String,
        /// The pod.
        pod: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// Reading the base kubeconfig failed.
    #[error("failed to read the kubeconfig {path}")]
    ReadKubeconfig {
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// Writing the pod's kubeconfig failed.
    #[error("failed to write the pod's kubeconfig {path}")]
    WriteKubeconfig {
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl IdentityError {
    /// A stable, kebab-case category.
    pub fn category(&self) -> &'static str {
        match self {
            Self::CreatePod { .. } => "create-pod-failed",
            Self::RequestToken { .. } => "request-token-failed",
            Self::ReadKubeconfig { .. } => "read-kubeconfig-failed",
            Self::WriteKubeconfig { .. } => "write-kubeconfig-failed",
        }
    }
}

/// The ServiceAccount a pod runs as (`default` when its spec names none).
pub fn service_account(d: &DesiredPod) -> String {
    d.spec
        .service_account_name
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_owned())
}

/// The Pod object of `d` as the scheduler would have bound it: its template's spec and labels,
/// on its node.
pub fn pod_object(d: &DesiredPod) -> Pod {
    let mut spec = d.spec.clone();
    spec.node_name = Some(d.node.clone());
    spec.service_account_name = Some(service_account(d));
    Pod {
        metadata: ObjectMeta {
            name: Some(d.name.clone()),
            namespace: Some(d.owner.namespace.clone()),
            labels: Some(d.labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// `base` (a kubeconfig) with every user's credentials replaced by `token`.
pub fn with_token(mut base: Kubeconfig, token: &str) -> Kubeconfig {
    for named in &mut base.auth_infos {
        named.auth_info = Some(kube::config::AuthInfo {
            token: Some(token.to_owned().into()),
            ..kube::config::AuthInfo::default()
        });
    }
    base
}

/// Create the Pod object of `d` (replacing a stale one of an earlier run), request a token of
/// its ServiceAccount bound to it, and write `base` with that token to `out` (mode 0600).
pub async fn provision(
    client: &Client,
    d: &DesiredPod,
    base: &Path,
    out: &Path,
) -> Result<(), IdentityError> {
    let ns = &d.owner.namespace;
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let create_pod = |source| IdentityError::CreatePod {
        name: d.name.clone(),
        source,
    };
    if pods.get_opt(&d.name).await.map_err(create_pod)?.is_some() {
        pods.delete(&d.name, &DeleteParams::default())
            .await
            .map_err(create_pod)?;
    }
    let pod = pods
        .create(&PostParams::default(), &pod_object(d))
        .await
        .map_err(create_pod)?;
    let account = service_account(d);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: None,
            expiration_seconds: Some(TOKEN_SECONDS),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(d.name.clone()),
                uid: pod.uid(),
            }),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let token = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .map_err(|source| IdentityError::RequestToken {
            account: account.clone(),
            pod: d.name.clone(),
            source,
        })?
        .status
        .and_then(|s| s.token)
        .unwrap_or_default();
    let kubeconfig =
        Kubeconfig::read_from(base).map_err(|source| IdentityError::ReadKubeconfig {
            path: base.to_owned(),
            source,
        })?;
    write_private(out, &with_token(kubeconfig, &token)).map_err(|source| {
        IdentityError::WriteKubeconfig {
            path: out.to_owned(),
            source,
        }
    })
}

/// Write `kubeconfig` as JSON (which kubeconfig readers take as YAML) readable by its owner only.
fn write_private(out: &Path, kubeconfig: &Kubeconfig) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let body = serde_json::to_vec_pretty(kubeconfig).map_err(std::io::Error::other)?;
    let tmp = out.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&body)?;
    std::fs::rename(&tmp, out)
}

/// Delete the Pod object of a stopped pod (its token stops authenticating with it).
pub async fn release(client: &Client, d: &DesiredPod) -> kube::Result<()> {
    let pods = Api::<Pod>::namespaced(client.clone(), &d.owner.namespace);
    match pods.delete(&d.name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boxlet::workloads::Owner;
    use k8s_openapi::api::core::v1::PodSpec;

    fn desired(account: Option<&str>) -> DesiredPod {
        DesiredPod {
            name: "nmstate-handler-node2".into(),
            owner: Owner {
                kind: "DaemonSet",
                namespace: "nmstate".into(),
                name: "nmstate-handler".into(),
            },
            node: "node2".into(),
            spec: PodSpec {
                service_account_name: account.map(str::to_owned),
                ..PodSpec::default()
            },
            labels: [("app".to_owned(), "h".to_owned())].into(),
            hash: "0".into(),
        }
    }

    #[test]
    fn the_pod_object_is_bound_to_its_node_and_account() {
        let p = pod_object(&desired(Some("nmstate-handler")));
        let spec = p.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("node2"));
        assert_eq!(
            spec.service_account_name.as_deref(),
            Some("nmstate-handler")
        );
        assert_eq!(p.metadata.namespace.as_deref(), Some("nmstate"));
        assert_eq!(p.metadata.labels.unwrap()["app"], "h");
        assert_eq!(service_account(&desired(None)), "default");
    }

    #[test]
    fn the_token_replaces_every_credential() {
        let base: Kubeconfig = serde_yaml_free(
            r#"{"apiVersion":"v1","kind":"Config","clusters":[{"name":"c","cluster":{"server":"https://127.0.0.1:6443"}}],
            "users":[{"name":"admin","user":{"token":"admin-token","client-certificate-data":"eA=="}}],
            "contexts":[{"name":"c","context":{"cluster":"c","user":"admin"}}],"current-context":"c"}"#,
        );
        let k = with_token(base, "pod-token");
        let json = serde_json::to_string(&k).unwrap();
        assert!(json.contains("pod-token"), "{json}");
        assert!(!json.contains("admin-token"), "{json}");
        assert!(!json.contains("client-certificate-data"), "{json}");
        assert!(json.contains("https://127.0.0.1:6443"), "{json}");
    }

    fn serde_yaml_free(s: &str) -> Kubeconfig {
        serde_json::from_str(s).unwrap()
    }
}
