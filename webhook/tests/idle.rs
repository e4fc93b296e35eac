//! The webhook under 1,000 idle connections (opened, never a byte sent: each holds a pending
//! TLS handshake): an AdmissionReview is still answered within 2 s, an undecodable one with
//! its uid, and the process's resident memory grows by less than 64 MiB.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use knmstate_webhook::admission::{Admission, VALIDATE_PATH};
use knmstate_webhook::server::{ServerCert, serve_until};
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const IDLE: usize = 1000;
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
const RSS_GROWTH_BOUND_KIB: u64 = 64 * 1024;

/// This process's resident set in KiB (`VmRSS` of /proc/self/status).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// POSTs `body` to the validating path over TLS trusting `root`; status and JSON answer.
async fn review(
    addr: SocketAddr,
    root: CertificateDer<'static>,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
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
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method("POST")
        .uri(VALIDATE_PATH)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_is_answered_in_time_beside_1000_idle_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("tls.crt"), ck.cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), ck.signing_key.serialize_pem()).unwrap();
    let root = ck.cert.der().clone();
    let certs = ServerCert::new(dir.path().join("tls.crt"), dir.path().join("tls.key")).unwrap();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let addr_tx = std::sync::Mutex::new(Some(addr_tx));
    tokio::spawn(serve_until(
        "127.0.0.1:0".parse().unwrap(),
        certs,
        Arc::new(Admission::default()),
        move |a| {
            if let Some(tx) = addr_tx.lock().unwrap().take() {
                let _ = tx.send(a);
            }
        },
        std::future::pending(),
    ));
    let addr = addr_rx.await.unwrap();
    let fixture = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fail/update-capture.json"),
    )
    .unwrap();
    // Warm up (the first review loads what admission needs), then measure.
    assert_eq!(review(addr, root.clone(), fixture.clone()).await.0, 200);
    let before = rss_kib();

    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let (status, answer) = tokio::time::timeout(ANSWER_WITHIN, review(addr, root.clone(), fixture))
        .await
        .expect("a review is answered within 2 s beside 1,000 idle connections");
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], false);
    let took = started.elapsed();

    let garbage = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-123","object":7}}"#;
    let (status, answer) =
        tokio::time::timeout(ANSWER_WITHIN, review(addr, root, garbage.to_vec()))
            .await
            .expect("an undecodable review is answered in time");
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["uid"], "u-123", "{answer}");
    assert_eq!(answer["response"]["allowed"], false);

    let grown = rss_kib().saturating_sub(before);
    eprintln!("review beside {IDLE} idle connections: {took:?}; resident memory +{grown} KiB");
    assert!(
        grown < RSS_GROWTH_BOUND_KIB,
        "resident memory grew by {grown} KiB with {IDLE} idle connections"
    );
    drop(idle);
}
