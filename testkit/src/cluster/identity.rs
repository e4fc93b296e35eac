//! Identities of the cluster for the suites: tokens of ServiceAccounts (bound to a Pod, as a
//! kubelet requests them for the pod, or unbound) through the `TokenRequest` API, and clients
//! that use them instead of the administrator's credentials.

use anyhow::{Result, anyhow};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};

/// A token of ServiceAccount `account` in `namespace`, valid ten minutes, bound to `pod` when
/// given (then the API server adds the pod's node to the user's extra).
pub async fn token(
    admin: &Client,
    namespace: &str,
    account: &str,
    pod: Option<&Pod>,
) -> Result<String> {
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(600),
            bound_object_ref: pod.map(|p| BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(p.name_any()),
                uid: p.uid(),
            }),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    Api::<ServiceAccount>::namespaced(admin.clone(), namespace)
        .create_token_request(account, &PostParams::default(), &request)
        .await?
        .status
        .and_then(|s| s.token)
        .ok_or_else(|| anyhow!("the TokenRequest for {namespace}/{account} has no token"))
}

/// The Pod of ServiceAccount `account` in `namespace` running on `node`.
pub async fn pod_on(admin: &Client, namespace: &str, account: &str, node: &str) -> Result<Pod> {
    Api::<Pod>::namespaced(admin.clone(), namespace)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .find(|p| {
            p.spec.as_ref().is_some_and(|s| {
                s.node_name.as_deref() == Some(node)
                    && s.service_account_name.as_deref() == Some(account)
            })
        })
        .ok_or_else(|| anyhow!("no Pod of {namespace}/{account} on {node}"))
}

/// A client of the cluster of `KUBECONFIG` that authenticates with `token` only.
pub async fn client_with_token(token: String) -> Result<Client> {
    let mut config = kube::Config::infer().await?;
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..kube::config::AuthInfo::default()
    };
    Ok(Client::try_from(config)?)
}
