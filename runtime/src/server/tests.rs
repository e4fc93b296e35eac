//! The limits, exercised on a real socket with raw HTTP/1.1: an oversized body, a body that
//! never ends, headers that never end, the connection cap, and a gate on `/metrics`.

use super::*;
use crate::admin::{Admin, Gate, Verdict};
use axum::routing::post;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn short() -> Limits {
    Limits {
        handshake_timeout: Duration::from_millis(300),
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        max_body: 1024,
        max_connections: 4,
        accept_error_pause: Duration::from_millis(10),
    }
}

/// Serves an echo of the body's length on `/echo` with `limits`; stopped when the sender
/// fires or is dropped.
async fn start(limits: Limits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let router = Router::new().route(
        "/echo",
        post(|body: axum::body::Bytes| async move { body.len().to_string() }),
    );
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, None, router, limits, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// Writes `request` and reads the answer until the server closes or 2 s pass.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

fn post_head(length: usize) -> String {
    format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {length}\r\n\r\n"
    )
}

#[tokio::test]
async fn a_body_within_the_limit_is_served_and_a_larger_one_refused() {
    let (addr, _stop) = start(short()).await;
    let ok = exchange(
        addr,
        format!("{}{}", post_head(10), "x".repeat(10)).as_bytes(),
    )
    .await;
    assert!(
        ok.starts_with("HTTP/1.1 200") && ok.ends_with("\r\n\r\n10"),
        "{ok}"
    );
    let big = exchange(
        addr,
        format!("{}{}", post_head(2048), "x".repeat(2048)).as_bytes(),
    )
    .await;
    assert!(big.starts_with("HTTP/1.1 413"), "{big}");
}

#[tokio::test]
async fn a_body_that_never_ends_times_out() {
    let (addr, _stop) = start(short()).await;
    let started = Instant::now();
    let answer = exchange(
        addr,
        format!("{}{}", post_head(100), "x".repeat(5)).as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn headers_that_never_end_close_the_connection() {
    let (addr, _stop) = start(short()).await;
    let started = Instant::now();
    let answer = exchange(addr, b"GET /echo HTTP/1.1\r\nHost: x\r\n").await;
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "closed after the header timeout, not the client's 2 s: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let limits = Limits {
        header_timeout: Duration::from_secs(30),
        ..short()
    };
    let (addr, _stop) = start(limits).await;
    let mut idle = Vec::new();
    for _ in 0..limits.max_connections {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let request = format!("{}{}", post_head(3), "abc");
    let waiting = tokio::spawn(async move { exchange(addr, request.as_bytes()).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "no slot is free: the request waits");
    idle.pop();
    let answer = waiting.await.unwrap();
    assert!(answer.ends_with("\r\n\r\n3"), "{answer}");
}

#[tokio::test]
async fn a_gate_on_metrics_answers_401_403_and_200() {
    let gate: Gate = Arc::new(|token: Option<String>| {
        Box::pin(async move {
            match token.as_deref() {
                None => Verdict::Unauthenticated,
                Some("reader") => Verdict::Allowed,
                Some(_) => {
                    Verdict::Forbidden("forbidden: User \"u\" cannot get path \"/metrics\"".into())
                }
            }
        })
    });
    let admin = Admin::new()
        .metrics_with(|| "# EOF\n".to_owned())
        .metrics_access(gate);
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(admin.serve(listener, std::future::pending()));
    let scrape = |token: &str| {
        let auth = if token.is_empty() {
            String::new()
        } else {
            format!("Authorization: Bearer {token}\r\n")
        };
        format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")
    };
    assert!(
        exchange(addr, scrape("").as_bytes())
            .await
            .starts_with("HTTP/1.1 401")
    );
    let refused = exchange(addr, scrape("other").as_bytes()).await;
    assert!(
        refused.starts_with("HTTP/1.1 403") && refused.contains("cannot get path"),
        "{refused}"
    );
    let served = exchange(addr, scrape("reader").as_bytes()).await;
    assert!(
        served.starts_with("HTTP/1.1 200") && served.ends_with("# EOF\n"),
        "{served}"
    );
    // Health stays open to the kubelet's token-less probes.
    let health = exchange(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
}
