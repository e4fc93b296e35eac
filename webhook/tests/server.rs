//! The HTTPS server end to end: TLS with the configured certificate, `/readyz`, an admission
//! round trip, and a rotated certificate served without a restart.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use knmstate_webhook::admission::{Admission, VALIDATE_PATH};
use knmstate_webhook::server::{ServerCert, serve, serve_until};
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn write_cert(dir: &Path) -> CertificateDer<'static> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.join("tls.crt"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), ck.signing_key.serialize_pem()).unwrap();
    ck.cert.der().clone()
}

/// One HTTPS request trusting only `root`; returns status, body and the certificate served.
async fn request(
    addr: SocketAddr,
    root: CertificateDer<'static>,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (u16, Vec<u8>, CertificateDer<'static>) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let served = tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, bytes, served)
}

#[tokio::test]
async fn serves_reviews_over_tls_and_reloads_a_rotated_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_cert(dir.path());
    let certs = ServerCert::new(dir.path().join("tls.crt"), dir.path().join("tls.key")).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    tokio::spawn(serve(
        "127.0.0.1:0".parse().unwrap(),
        certs,
        Arc::new(Admission::default()),
        move |a| {
            if let Some(tx) = tx.lock().unwrap().take() {
                let _ = tx.send(a);
            }
        },
    ));
    let addr = rx.await.unwrap();

    let (status, body, served) = request(addr, first.clone(), "GET", "/readyz", vec![]).await;
    assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));
    assert_eq!(served, first);

    let review = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fail/update-capture.json"),
    )
    .unwrap();
    let (status, body, _) = request(addr, first.clone(), "POST", VALIDATE_PATH, review).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["response"]["allowed"], false);
    assert_eq!(
        v["response"]["status"]["message"],
        "invalid policy operation: capture field cannot be modified"
    );

    let (status, body, _) = request(
        addr,
        first.clone(),
        "POST",
        VALIDATE_PATH,
        b"garbage".to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["response"]["status"]["reason"], "InvalidRequest");

    // rotate: the new certificate is served within the reload period, no restart
    tokio::time::sleep(Duration::from_millis(1100)).await; // distinct mtime
    let second = write_cert(dir.path());
    let mut served_now = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        // until the server has reloaded, the handshake fails against the new root: the
        // spawned request panics and the join error says so
        let attempt = tokio::spawn(request(addr, second.clone(), "GET", "/readyz", vec![]));
        if let Ok((200, _, served)) = attempt.await {
            served_now = Some(served);
            break;
        }
    }
    assert_eq!(served_now, Some(second));
}

#[tokio::test]
async fn stops_on_shutdown_and_answers_unknown_paths() {
    let dir = tempfile::tempdir().unwrap();
    let root = write_cert(dir.path());
    let certs = ServerCert::new(dir.path().join("tls.crt"), dir.path().join("tls.key")).unwrap();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let addr_tx = std::sync::Mutex::new(Some(addr_tx));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_until(
        "127.0.0.1:0".parse().unwrap(),
        certs,
        Arc::new(Admission::default()),
        move |a| {
            if let Some(tx) = addr_tx.lock().unwrap().take() {
                let _ = tx.send(a);
            }
        },
        async {
            let _ = stopped.await;
        },
    ));
    let addr = addr_rx.await.unwrap();

    let (status, body, _) = request(addr, root.clone(), "GET", "/healthz", vec![]).await;
    assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));
    let (status, body, _) = request(addr, root.clone(), "GET", "/nope", vec![]).await;
    assert_eq!((status, body.as_slice()), (404, &b"not found"[..]));
    // A POST to a path no hook is served at gets a review that says so.
    let review = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fail/update-capture.json"),
    )
    .unwrap();
    let (status, body, _) = request(addr, root, "POST", "/elsewhere", review).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["response"]["status"]["message"],
        "no admission hook is served at /elsewhere"
    );

    stop.send(()).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops within 5 s of shutdown");
    ended.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
