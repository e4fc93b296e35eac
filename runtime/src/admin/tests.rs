//! The endpoint served for real on 127.0.0.1 and asked with plain HTTP/1.1 requests.

use super::*;
use prometheus_client::metrics::counter::Counter;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Status, content type and body of one `GET path`.
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// Serves `admin` on a free port until the returned sender fires (or is dropped).
async fn start(
    admin: Admin,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    JoinHandle<Result<(), Error>>,
) {
    let listener = Admin::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(admin.serve(listener, async {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}

#[tokio::test]
async fn health_and_liveness_answer_ok() {
    let (addr, _stop, _task) = start(Admin::new()).await;
    for path in ["/healthz", "/livez", "/readyz"] {
        let (status, _, body) = get(addr, path).await;
        assert_eq!((status, body.as_str()), (200, "ok"), "{path}");
    }
}

#[tokio::test]
async fn readiness_follows_the_check() {
    let ready = Arc::new(AtomicBool::new(false));
    let flag = ready.clone();
    let admin = Admin::new()
        .ready_when(move || flag.load(Ordering::SeqCst))
        .not_ready_message("caches are not synced yet");
    let (addr, _stop, _task) = start(admin).await;

    let (status, _, body) = get(addr, "/readyz").await;
    assert_eq!((status, body.as_str()), (503, "caches are not synced yet"));
    // Liveness does not depend on readiness.
    assert_eq!(get(addr, "/healthz").await.0, 200);

    ready.store(true, Ordering::SeqCst);
    let (status, _, body) = get(addr, "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));

    ready.store(false, Ordering::SeqCst);
    assert_eq!(get(addr, "/readyz").await.0, 503);
}

#[tokio::test]
async fn readiness_from_a_watch_channel() {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let (addr, _stop, _task) = start(Admin::new().ready_when(move || *rx.borrow())).await;
    let (status, _, body) = get(addr, "/readyz").await;
    assert_eq!((status, body.as_str()), (503, "not ready"));
    tx.send(true).unwrap();
    assert_eq!(get(addr, "/readyz").await.0, 200);
}

#[tokio::test]
async fn metrics_render_the_registry_as_openmetrics() {
    let mut registry = Registry::default();
    let served = Counter::<u64>::default();
    registry.register("knmstate_test_requests", "Requests seen", served.clone());
    let (addr, _stop, _task) = start(Admin::new().registry(Arc::new(registry))).await;

    served.inc();
    served.inc();
    let (status, content_type, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, OPENMETRICS_CONTENT_TYPE);
    assert!(
        body.lines()
            .any(|l| l == "# TYPE knmstate_test_requests counter"),
        "{body}"
    );
    assert!(
        body.lines().any(|l| l == "knmstate_test_requests_total 2"),
        "{body}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");

    // Each scrape reads the current values.
    served.inc();
    let (_, _, body) = get(addr, "/metrics").await;
    assert!(
        body.lines().any(|l| l == "knmstate_test_requests_total 3"),
        "{body}"
    );
}

#[tokio::test]
async fn a_custom_renderer_runs_on_every_scrape() {
    let scrapes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = scrapes.clone();
    let admin = Admin::new().metrics_with(move || {
        let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
        format!("scrapes {n}\n# EOF\n")
    });
    let (addr, _stop, _task) = start(admin).await;
    assert_eq!(get(addr, "/metrics").await.2, "scrapes 1\n# EOF\n");
    assert_eq!(get(addr, "/metrics").await.2, "scrapes 2\n# EOF\n");
}

#[tokio::test]
async fn unknown_paths_and_absent_metrics_are_not_found() {
    let (addr, _stop, _task) = start(Admin::new()).await;
    for path in ["/metrics", "/", "/nope"] {
        let (status, _, body) = get(addr, path).await;
        assert_eq!((status, body.as_str()), (404, "not found"), "{path}");
    }
}

#[tokio::test]
async fn shutdown_ends_the_server() {
    let (addr, stop, task) = start(Admin::new()).await;
    assert_eq!(get(addr, "/healthz").await.0, 200);
    stop.send(()).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the server stops within 5 s of the shutdown signal");
    ended.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn an_occupied_address_fails_to_bind_with_its_address() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let err = Admin::bind(addr).await.unwrap_err();
    assert_eq!(err.category(), "listen");
    assert_eq!(err.to_string(), format!("failed to listen on {addr}"));
}
