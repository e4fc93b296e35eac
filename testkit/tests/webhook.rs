//! Admission webhooks over HTTPS: a tiny in-test webhook server with a self-signed certificate.

mod common;

use std::convert::Infallible;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use common::{Widget, install_widget_crd, widget};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

/// Starts an HTTPS webhook server; returns its port and the CA bundle (PEM) to trust.
async fn webhook_server() -> (u16, String) {
    let key = rcgen::generate_simple_self_signed(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "hook.default.svc".to_owned(),
    ])
    .unwrap();
    let pem = key.cert.pem();
    let cert = key.cert.der().clone();
    let pk = rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], pk)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let path = req.uri().path().to_owned();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let review: Value = serde_json::from_slice(&body).unwrap();
                        let resp = answer(&path, &review["request"]);
                        let out = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp});
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(
                            out.to_string(),
                        ))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (port, pem)
}

/// The webhook's decisions.
fn answer(path: &str, req: &Value) -> Value {
    let uid = req["uid"].clone();
    let obj = &req["object"];
    match path {
        "/validate" if obj["spec"]["size"].as_i64().unwrap_or(0) > 100 => json!({
            "uid": uid, "allowed": false, "status": {"code": 403, "reason": "Forbidden", "message": "size too big"}
        }),
        "/validate-status" if obj["status"]["observedGeneration"] == 13 => json!({
            "uid": uid, "allowed": false, "status": {"message": "unlucky status"}
        }),
        "/mutate" => {
            let op = if obj["metadata"]["labels"].is_object() {
                json!({"op": "add", "path": "/metadata/labels/mutated", "value": req["operation"]})
            } else {
                json!({"op": "add", "path": "/metadata/labels", "value": {"mutated": req["operation"]}})
            };
            let patch = base64::engine::general_purpose::STANDARD.encode(json!([op]).to_string());
            json!({"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": patch})
        }
        _ => json!({"uid": uid, "allowed": true}),
    }
}

fn hook(name: &str, client_config: Value, resources: Value, ops: Value, policy: &str) -> Value {
    let mut h = json!({
        "name": name,
        "rules": [{"apiGroups": ["example.com"], "apiVersions": ["v1"], "scope": "Namespaced"}],
        "failurePolicy": policy,
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": 2,
    });
    h["clientConfig"] = client_config;
    h["rules"][0]["operations"] = ops;
    h["rules"][0]["resources"] = resources;
    h
}

async fn create_config(client: &kube::Client, kind: &str, name: &str, hooks: Vec<Value>) {
    let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk));
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
        "metadata": {"name": name}, "webhooks": hooks,
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

fn api_error(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_mutate_deny_and_honour_failure_policy() {
    let server = common::server().await;
    let client = server.client().unwrap();
    install_widget_crd(&client).await;
    let (port, pem) = webhook_server().await;
    let ca = base64::engine::general_purpose::STANDARD.encode(&pem);
    let url = |p: &str| json!({"url": format!("https://127.0.0.1:{port}{p}"), "caBundle": ca});
    create_config(
        &client,
        "MutatingWebhookConfiguration",
        "mutate",
        vec![hook(
            "mutate.example.com",
            url("/mutate"),
            json!(["widgets"]),
            json!(["CREATE"]),
            "Fail",
        )],
    )
    .await;
    create_config(
        &client,
        "ValidatingWebhookConfiguration",
        "validate",
        vec![
            hook(
                "deny.example.com",
                url("/validate"),
                json!(["widgets"]),
                json!(["CREATE", "UPDATE"]),
                "Fail",
            ),
            hook(
                "status.example.com",
                url("/validate-status"),
                json!(["widgets/status"]),
                json!(["UPDATE"]),
                "Fail",
            ),
        ],
    )
    .await;
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");

    // Mutation applied.
    let w = api
        .create(&PostParams::default(), &widget("small", 1))
        .await
        .unwrap();
    assert_eq!(
        w.labels().get("mutated").map(String::as_str),
        Some("CREATE")
    );

    // Denial with the webhook's message and code.
    let (code, msg) = api_error(
        api.create(&PostParams::default(), &widget("big", 500))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 403);
    assert_eq!(
        msg,
        "admission webhook \"deny.example.com\" denied the request: size too big"
    );
    let (_, msg) = api_error(
        api.patch(
            "small",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 101}})),
        )
        .await
        .unwrap_err(),
    );
    assert!(msg.contains("size too big"), "{msg}");

    // Subresource rules: the status webhook sees status writes only.
    api.patch(
        "small",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 13}})),
    )
    .await
    .unwrap();
    let (code, msg) = api_error(
        api.patch_status(
            "small",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 13}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(code, 400);
    assert!(msg.contains("unlucky status"), "{msg}");
    api.patch_status(
        "small",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"observedGeneration": 2}})),
    )
    .await
    .unwrap();

    // kubectl prints the denial.
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kc).unwrap();
    let file = dir.path().join("big.yaml");
    std::fs::write(
        &file,
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: big\nspec:\n  size: 999\n",
    )
    .unwrap();
    let out =
        tokio::process::Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()))
            .args(["create", "-f"])
            .arg(&file)
            .env("KUBECONFIG", &kc)
            .env("KUBECACHEDIR", dir.path().join("kube-cache"))
            .output()
            .await
            .expect("run kubectl");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("admission webhook \"deny.example.com\" denied the request: size too big"),
        "{stderr}"
    );

    // failurePolicy: an unreachable webhook is skipped with Ignore, fatal with Fail.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead = json!({"url": format!("https://127.0.0.1:{closed}/x"), "caBundle": ca});
    create_config(
        &client,
        "ValidatingWebhookConfiguration",
        "ignore",
        vec![hook(
            "ignore.example.com",
            dead.clone(),
            json!(["*"]),
            json!(["*"]),
            "Ignore",
        )],
    )
    .await;
    api.create(&PostParams::default(), &widget("ignored", 2))
        .await
        .unwrap();
    create_config(
        &client,
        "ValidatingWebhookConfiguration",
        "fail",
        vec![hook(
            "fail.example.com",
            dead,
            json!(["*"]),
            json!(["CREATE"]),
            "Fail",
        )],
    )
    .await;
    let (code, msg) = api_error(
        api.create(&PostParams::default(), &widget("failed", 2))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 500);
    assert!(
        msg.contains("failed calling webhook \"fail.example.com\""),
        "{msg}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_through_a_service_reference() {
    let server = common::server().await;
    let client = server.client().unwrap();
    install_widget_crd(&client).await;
    let (port, pem) = webhook_server().await;
    let svc: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "default");
    svc.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "hook"},
            "spec": {"clusterIP": "127.0.0.1", "ports": [{"port": 443, "targetPort": port}]}}))
        .unwrap(),
    )
    .await
    .unwrap();
    let msg = refusal_through_service_hook(&client, &pem).await;
    assert!(msg.contains("svc.example.com"), "{msg}");
    server.shutdown().await;
}

/// `matchConditions` (CEL) decide whether a webhook is called: here label edits skip a dead
/// webhook that spec changes still need (failurePolicy Fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_conditions_select_requests() {
    let server = common::server().await;
    let client = server.client().unwrap();
    install_widget_crd(&client).await;
    let (_, pem) = webhook_server().await;
    let ca = base64::engine::general_purpose::STANDARD.encode(&pem);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead = json!({"url": format!("https://127.0.0.1:{closed}/x"), "caBundle": ca});
    let mut spec_only = hook(
        "spec.example.com",
        dead.clone(),
        json!(["widgets"]),
        json!(["UPDATE"]),
        "Fail",
    );
    spec_only["matchConditions"] =
        json!([{"name": "spec-change", "expression": "oldObject.spec != object.spec"}]);
    let mut broken = hook(
        "broken.example.com",
        dead,
        json!(["widgets"]),
        json!(["UPDATE"]),
        "Ignore",
    );
    broken["matchConditions"] = json!([{"name": "bad", "expression": "object.no.such.field == 1"}]);
    create_config(
        &client,
        "ValidatingWebhookConfiguration",
        "conds",
        vec![spec_only, broken],
    )
    .await;
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &widget("w", 1))
        .await
        .unwrap();
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
    )
    .await
    .unwrap();
    let (code, msg) = api_error(
        api.patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(code, 500);
    assert!(msg.contains("spec.example.com"), "{msg}");
    server.shutdown().await;
}

/// A Service with a named targetPort and Endpoints (as the box's kubelet writes them): the
/// webhook is dialled at the Endpoints' address and the port named like the Service port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_through_a_service_and_its_endpoints() {
    let server = common::server().await;
    let client = server.client().unwrap();
    install_widget_crd(&client).await;
    let (port, pem) = webhook_server().await;
    let svc: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "default");
    svc.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "hook"},
            "spec": {"ports": [{"name": "webhook", "port": 443, "targetPort": "webhook"}]}}))
        .unwrap(),
    )
    .await
    .unwrap();
    let eps: Api<k8s_openapi::api::core::v1::Endpoints> =
        Api::namespaced(client.clone(), "default");
    eps.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "hook"},
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}],
                "ports": [{"name": "other", "port": 1}, {"name": "webhook", "port": port}]}]}))
        .unwrap(),
    )
    .await
    .unwrap();
    let msg = refusal_through_service_hook(&client, &pem).await;
    assert!(msg.contains("size too big"), "{msg}");
    server.shutdown().await;
}

/// Register a Fail webhook reached through the Service `default/hook` (CA `pem`), create a
/// small widget (allowed) and a big one: the refusal's message.
async fn refusal_through_service_hook(client: &kube::Client, pem: &impl AsRef<[u8]>) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(pem);
    let cc = json!({"service": {"name": "hook", "namespace": "default", "path": "/validate"}, "caBundle": ca});
    create_config(
        client,
        "ValidatingWebhookConfiguration",
        "svc",
        vec![hook(
            "svc.example.com",
            cc,
            json!(["widgets"]),
            json!(["CREATE"]),
            "Fail",
        )],
    )
    .await;
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &widget("ok", 1))
        .await
        .unwrap();
    let (_, msg) = api_error(
        api.create(&PostParams::default(), &widget("big", 1000))
            .await
            .unwrap_err(),
    );
    msg
}
