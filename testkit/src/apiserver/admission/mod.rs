//! Admission: `ValidatingAdmissionPolicies` (CEL, in `policy`) and webhooks — Mutating- and
//! ValidatingWebhookConfiguration objects, called over HTTPS with AdmissionReview v1 when their
//! rules, selectors and `matchConditions` (CEL, evaluated with `kube-cel`) match. Order:
//! mutating webhooks, then policies, then validating webhooks.
//!
//! A webhook's `clientConfig.url` is called as given. A `clientConfig.service` reference is
//! resolved through the Service object of that name: the connection goes to its
//! `spec.clusterIP` (127.0.0.1 when unset or `None`) on the numeric `targetPort` of the
//! Service port equal to `clientConfig.service.port` (443 by default), or on that port itself,
//! and the TLS server name is `<name>.<namespace>.svc`. When the Service has an Endpoints
//! object with a ready address, that address and the endpoint port named like the Service
//! port are dialled instead (the API server's endpoint routing; the box's stand-in kubelet
//! writes Endpoints for the pods it runs).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

use super::auth::UserInfo;
use super::error::{ApiError, ApiResult};
use super::object;
use super::resources::ResourceType;
use super::storage::Store;

mod cel;
mod policy;
mod rules;
pub mod warnings;

use rules::should_call;

const GROUP: &str = "admissionregistration.k8s.io";

/// What is being admitted.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    /// The kind.
    pub rt: &'a ResourceType,
    /// The version the request was made at.
    pub version: &'a str,
    /// `""` or a subresource such as `status`.
    pub subresource: &'a str,
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub operation: &'a str,
    /// Object name.
    pub name: &'a str,
    /// Object namespace.
    pub namespace: &'a str,
    /// The old object (update, delete).
    pub old: Option<&'a Value>,
    /// Who is asking (`request.userInfo`).
    pub user: &'a UserInfo,
}

fn hooks(store: &Store, plural: &str) -> Vec<Value> {
    let (mut configs, _) = store.list(GROUP, plural, None);
    configs.sort_by(|a, b| object::name(a).cmp(object::name(b)));
    configs
        .iter()
        .flat_map(|c| c["webhooks"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn review(a: &Attributes<'_>, obj: Option<&Value>) -> Value {
    let gvk = json!({"group": a.rt.group, "version": a.version, "kind": a.rt.kind});
    let gvr = json!({"group": a.rt.group, "version": a.version, "resource": a.rt.plural});
    let mut req = json!({
        "uid": uuid::Uuid::new_v4().to_string(),
        "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
        "name": a.name,
        "operation": a.operation,
        "userInfo": a.user,
        "object": obj.cloned().unwrap_or(Value::Null),
        "oldObject": a.old.cloned().unwrap_or(Value::Null),
        "dryRun": false,
    });
    if !a.namespace.is_empty() {
        req["namespace"] = json!(a.namespace);
    }
    if !a.subresource.is_empty() {
        req["subResource"] = json!(a.subresource);
        req["requestSubResource"] = json!(a.subresource);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
}

/// Where and how to reach a webhook.
struct Target {
    addr: String,
    server_name: String,
    host_header: String,
    path: String,
    ca: Vec<u8>,
}

fn target(store: &Store, hook: &Value) -> Result<Target, String> {
    let cc = &hook["clientConfig"];
    let ca = match cc["caBundle"].as_str() {
        Some(b) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| format!("invalid caBundle: {e}"))?,
        None => Vec::new(),
    };
    if let Some(url) = cc["url"].as_str() {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("webhook URL {url} is not https"))?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, addr) = if hostport.starts_with('[') {
            let end = hostport.find(']').unwrap_or(hostport.len());
            let host = &hostport[1..end];
            let port = hostport[end..].strip_prefix("]:").unwrap_or("443");
            (host.to_owned(), format!("[{host}]:{port}"))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), format!("{h}:{p}")),
                None => (hostport.to_owned(), format!("{hostport}:443")),
            }
        };
        return Ok(Target {
            addr,
            server_name: host,
            host_header: hostport.to_owned(),
            path: path.to_owned(),
            ca,
        });
    }
    let svc = &cc["service"];
    let name = svc["name"]
        .as_str()
        .ok_or("clientConfig has neither url nor service")?;
    let ns = svc["namespace"].as_str().unwrap_or("default");
    let port = svc["port"].as_u64().unwrap_or(443);
    let path = svc["path"].as_str().unwrap_or("/").to_owned();
    let service = store.get("", "services", ns, name);
    let server_name = format!("{name}.{ns}.svc");
    let service_port = service.as_ref().and_then(|s| {
        s["spec"]["ports"]
            .as_array()?
            .iter()
            .find(|p| p["port"].as_u64() == Some(port))
            .cloned()
    });
    if let Some(addr) = endpoint(store, ns, name, service_port.as_ref()) {
        return Ok(Target {
            addr,
            host_header: server_name.clone(),
            server_name,
            path,
            ca,
        });
    }
    let ip = service
        .as_ref()
        .and_then(|s| s["spec"]["clusterIP"].as_str().map(str::to_owned))
        .filter(|ip| !ip.is_empty() && ip != "None")
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    // The Service port's numeric targetPort, when it has one, is where the webhook listens.
    let port = service
        .as_ref()
        .and_then(|s| {
            s["spec"]["ports"]
                .as_array()?
                .iter()
                .find(|p| p["port"].as_u64() == Some(port))?["targetPort"]
                .as_u64()
        })
        .unwrap_or(port);
    let addr = if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    };
    Ok(Target {
        addr,
        host_header: server_name.clone(),
        server_name,
        path,
        ca,
    })
}

/// The first ready address of the Service's Endpoints, on the endpoint port named like the
/// Service port (or the only one): the API server's endpoint routing.
fn endpoint(store: &Store, ns: &str, name: &str, service_port: Option<&Value>) -> Option<String> {
    let endpoints = store.get("", "endpoints", ns, name)?;
    let wanted = service_port
        .and_then(|p| p["name"].as_str())
        .unwrap_or_default();
    endpoints["subsets"].as_array()?.iter().find_map(|subset| {
        let ip = subset["addresses"].as_array()?.first()?["ip"].as_str()?;
        let ports = subset["ports"].as_array()?;
        let port = ports
            .iter()
            .find(|p| p["name"].as_str().unwrap_or_default() == wanted)
            .or_else(|| (ports.len() == 1).then(|| &ports[0]))?["port"]
            .as_u64()?;
        Some(if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        })
    })
}

async fn post(t: &Target, body: Vec<u8>) -> Result<Value, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&t.ca) {
        let cert = cert.map_err(|e| format!("invalid caBundle: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("invalid caBundle: {e}"))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(&t.addr)
        .await
        .map_err(|e| format!("dial {}: {e}", t.addr))?;
    let name = ServerName::try_from(t.server_name.clone()).map_err(|e| e.to_string())?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::post(&t.path)
        .header(http::header::HOST, &t.host_header)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "webhook answered HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("invalid AdmissionReview: {e}"))
}

async fn call(
    store: &Store,
    hook: &Value,
    a: &Attributes<'_>,
    obj: Option<&Value>,
) -> Result<Value, String> {
    let t = target(store, hook)?;
    let secs = hook["timeoutSeconds"].as_u64().unwrap_or(10);
    let body = serde_json::to_vec(&review(a, obj)).map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(secs), post(&t, body)).await {
        Ok(r) => r.map(|v| v["response"].clone()),
        Err(_) => Err(format!("context deadline exceeded after {secs}s")),
    }
}

fn denied(name: &str, resp: &Value) -> ApiError {
    let st = &resp["status"];
    // A code no HTTP status can carry counts as no code.
    let code = st["code"]
        .as_u64()
        .and_then(|c| u16::try_from(c.max(400)).ok())
        .unwrap_or(400);
    let msg = st["message"].as_str().unwrap_or_default();
    let text = if msg.is_empty() {
        format!("admission webhook \"{name}\" denied the request without explanation")
    } else {
        format!("admission webhook \"{name}\" denied the request: {msg}")
    };
    ApiError::new(code, st["reason"].as_str().unwrap_or_default(), text)
}

fn failed(name: &str, err: &str) -> ApiError {
    ApiError::new(
        500,
        "InternalError",
        format!(
            "Internal error occurred: failed calling webhook \"{name}\": failed to call webhook: {err}"
        ),
    )
}

/// Runs the matching mutating webhooks, in order, applying their JSON patches to `obj`.
pub async fn mutate(store: &Store, a: &Attributes<'_>, obj: &mut Value) -> ApiResult<()> {
    for hook in hooks(store, "mutatingwebhookconfigurations") {
        if !should_call(store, &hook, a, Some(obj))? {
            continue;
        }
        let name = hook["name"].as_str().unwrap_or_default().to_owned();
        let ignore = hook["failurePolicy"].as_str() == Some("Ignore");
        let resp = match call(store, &hook, a, Some(obj)).await {
            Ok(r) => r,
            Err(_) if ignore => continue,
            Err(e) => return Err(failed(&name, &e)),
        };
        if resp["allowed"] != json!(true) {
            return Err(denied(&name, &resp));
        }
        if let Some(p) = resp["patch"].as_str() {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(p)
                .map_err(|e| failed(&name, &format!("invalid patch: {e}")))?;
            let patch: json_patch::Patch = serde_json::from_slice(&raw)
                .map_err(|e| failed(&name, &format!("invalid patch: {e}")))?;
            json_patch::patch(obj, &patch).map_err(|e| failed(&name, &format!("patch: {e}")))?;
        }
    }
    Ok(())
}

/// Evaluates the `ValidatingAdmissionPolicies`, then runs the matching validating webhooks;
/// the first denial is returned.
pub async fn validate(store: &Store, a: &Attributes<'_>, obj: Option<&Value>) -> ApiResult<()> {
    policy::admit(store, a, obj)?;
    for hook in hooks(store, "validatingwebhookconfigurations") {
        if !should_call(store, &hook, a, obj)? {
            continue;
        }
        let name = hook["name"].as_str().unwrap_or_default().to_owned();
        let ignore = hook["failurePolicy"].as_str() == Some("Ignore");
        let resp = match call(store, &hook, a, obj).await {
            Ok(r) => r,
            Err(_) if ignore => continue,
            Err(e) => return Err(failed(&name, &e)),
        };
        if resp["allowed"] != json!(true) {
            return Err(denied(&name, &resp));
        }
    }
    Ok(())
}
