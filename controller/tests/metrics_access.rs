//! `/metrics` only for those allowed: the controller runs under its own ServiceAccount token
//! against the API stand-in with authentication and RBAC enforced and the deploy bundle's
//! roles, serving its endpoint over TLS (self-signed); a real HTTPS client scrapes without a
//! token (401), with an unprivileged ServiceAccount's token (403) and with the bundle's
//! Prometheus ServiceAccount's token (200). Health stays open to token-less probes.

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use knmstate_controller::endpoint::MetricsServing;
use knmstate_controller::leader::LeaseConfig;
use knmstate_deploy::InstallSettings;
use knmstate_deploy::meta::name;
use knmstate_testkit::apiserver::Config;
use knmstate_testkit::apiserver::auth::Subject;
use knmstate_testkit::apiserver::nmstate::start_with_crds;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};

/// `GET path` over HTTPS with an optional bearer token: status and body. The scraper of the
/// test kit accepts any certificate, as the bundle's ServiceMonitor does
/// (`insecureSkipVerify`): the controller's is self-signed; the scraper proves itself with its
/// token.
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    knmstate_testkit::cluster::get(&format!("https://{addr}{path}"), token)
        .await
        .unwrap()
}

async fn create_json<K>(api: Api<K>, value: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(
        &PostParams::default(),
        &serde_json::from_value(value).unwrap(),
    )
    .await
    .unwrap();
}

fn service_account(namespace: &str, name: &str) -> Subject {
    Subject::ServiceAccount {
        namespace: namespace.into(),
        name: name.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_need_a_token_allowed_to_get_metrics() {
    let (server, admin) = start_with_crds(Config {
        enforce_auth: true,
        ..Config::default()
    })
    .await
    .unwrap();
    let s = InstallSettings::default();
    for ns in [&s.namespace, &s.monitoring_namespace] {
        create_json(
            Api::<Namespace>::all(admin.clone()),
            serde_json::json!({"metadata": {"name": ns}}),
        )
        .await;
    }
    // Prometheus' ServiceAccount and one without any role, beside the monitoring stack.
    for name in [s.prometheus_service_account.as_str(), "intruder"] {
        let api = Api::<ServiceAccount>::namespaced(admin.clone(), &s.monitoring_namespace);
        create_json(api, serde_json::json!({"metadata": {"name": name}})).await;
    }
    // The bundle's ServiceAccounts, roles and bindings, as the operator installs them.
    for object in knmstate_deploy::rbac::objects(&s) {
        let dynamic: DynamicObject = object.to_dynamic().unwrap();
        let ar = object.api_resource();
        let api = match object.namespace() {
            Some(ns) => Api::<DynamicObject>::namespaced_with(admin.clone(), &ns, &ar),
            None => Api::<DynamicObject>::all_with(admin.clone(), &ar),
        };
        api.create(&PostParams::default(), &dynamic).await.unwrap();
    }

    // The controller, under its own identity.
    let controller = server
        .client_with_token(&server.token_for(service_account(&s.namespace, "nmstate-controller")))
        .unwrap();
    let mut config = knmstate_controller::Config::new(LeaseConfig::new(
        &s.namespace,
        "nmstate-controller",
        "metrics-test",
    ));
    config.metrics_serving = MetricsServing::Secure { files: None };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let run = tokio::spawn(knmstate_controller::run(
        controller,
        config,
        Some(listener),
        std::future::pending(),
    ));

    let (status, body) = get(addr, "/healthz", None).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "ok"),
        "health needs no token"
    );
    let (status, _) = get(addr, "/metrics", None).await;
    assert_eq!(status, 401, "no token");
    let garbage = get(addr, "/metrics", Some("not-a-token")).await;
    assert_eq!(garbage.0, 401, "an unknown token");
    let intruder = server.token_for(service_account(&s.monitoring_namespace, "intruder"));
    let (status, body) = get(addr, "/metrics", Some(&intruder)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body,
        "forbidden: User \"system:serviceaccount:monitoring:intruder\" cannot get path \"/metrics\""
    );
    let prometheus = server.token_for(service_account(
        &s.monitoring_namespace,
        &s.prometheus_service_account,
    ));
    let (status, body) = get(addr, "/metrics", Some(&prometheus)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    // Reviews are cached: with the binding gone, the token allowed a moment ago is still
    // served (for MetricsAccess::ALLOWED_TTL), a token not seen before is refused.
    Api::<ClusterRoleBinding>::all(admin.clone())
        .delete(name::METRICS_READER, &DeleteParams::default())
        .await
        .unwrap();
    let again = tokio::time::timeout(
        Duration::from_secs(2),
        get(addr, "/metrics", Some(&prometheus)),
    );
    assert_eq!(again.await.unwrap().0, 200, "answered from the cache");
    // Another token naming the same user, not seen before.
    let fresh = server.token_for(Subject::User {
        name: format!(
            "system:serviceaccount:{}:{}",
            s.monitoring_namespace, s.prometheus_service_account
        ),
        groups: vec![],
    });
    assert_eq!(
        get(addr, "/metrics", Some(&fresh)).await.0,
        403,
        "reviewed afresh"
    );
    run.abort();
}
