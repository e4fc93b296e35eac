//! Authentication and authorization of the API stand-in, against Kubernetes' behaviour: bearer
//! tokens (401 without one), RBAC rule forms (403 with Kubernetes' Forbidden message),
//! `TokenReview`, `SubjectAccessReview`, `TokenRequest`; through kube-rs and the real `kubectl`
//! (on `PATH` or at `$KUBECTL`).

mod kubectl;
mod rbac;
mod reviews;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use knmstate_testkit::apiserver::auth::Subject;
use knmstate_testkit::apiserver::{ApiServer, Config};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

/// The namespace and ServiceAccount most tests act as.
pub const NS: &str = "nmstate";
/// The ServiceAccount.
pub const SA: &str = "nmstate-handler";
/// Its user name.
pub const SA_USER: &str = "system:serviceaccount:nmstate:nmstate-handler";

/// A server that enforces authentication and authorization, with the namespace `nmstate`
/// (`default` exists already), the ServiceAccount, nodes `node2` and `node3`, and the pod `handler-node2`.
pub async fn server() -> ApiServer {
    serve(false).await
}

/// The same over HTTPS: kubectl sends credentials only over TLS.
pub async fn tls_server() -> ApiServer {
    serve(true).await
}

async fn serve(tls: bool) -> ApiServer {
    let server = ApiServer::start(Config {
        enforce_auth: true,
        tls,
        ..Config::default()
    })
    .await
    .unwrap();
    let admin = server.client().unwrap();
    create::<Namespace>(&admin, json!({"metadata": {"name": NS}})).await;
    create_in::<ServiceAccount>(&admin, NS, json!({"metadata": {"name": SA}})).await;
    for node in ["node2", "node3"] {
        create::<Node>(&admin, json!({"metadata": {"name": node}})).await;
    }
    create_in::<Pod>(&admin, NS,
        json!({"metadata": {"name": "handler-node2"}, "spec": {"nodeName": "node2", "serviceAccountName": SA, "containers": [{"name": "h", "image": "x"}]}}),
    )
    .await;
    server
}

/// Creates a cluster-scoped object from JSON as `client`.
pub async fn create<K>(client: &kube::Client, obj: Value) -> K
where
    K: kube::Resource<DynamicType = (), Scope = ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    Api::<K>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(obj).unwrap(),
        )
        .await
        .unwrap()
}

/// Creates an object from JSON in namespace `ns` as `client`.
pub async fn create_in<K>(client: &kube::Client, ns: &str, obj: Value) -> K
where
    K: kube::Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(obj).unwrap(),
        )
        .await
        .unwrap()
}

/// A client of the ServiceAccount `nmstate/nmstate-handler` (unbound token).
pub fn service_account_client(server: &ApiServer) -> kube::Client {
    let token = server.token_for(Subject::ServiceAccount {
        namespace: NS.into(),
        name: SA.into(),
    });
    server.client_with_token(&token).unwrap()
}

/// The Kubernetes API error of a failed call (panics on success or another error).
pub fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> kube::core::Status {
    match r {
        Err(kube::Error::Api(e)) => *e,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A raw HTTP/1.1 request without credentials: status code and JSON body.
pub async fn raw(server: &ApiServer, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_owned())
}
