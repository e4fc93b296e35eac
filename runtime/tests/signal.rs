//! `shutdown_signal` resolves when the process receives SIGTERM or SIGINT. Own test binary: it
//! signals its own process.

use std::pin::pin;
use std::time::Duration;

use knmstate_runtime::shutdown_signal;

/// Starts watching, sends `signal` to this process with kill(1), and waits for the future.
async fn resolves_on(signal: &str) {
    let mut shutdown = pin!(shutdown_signal());
    // One poll installs the handlers, so the signal below cannot kill the test process.
    tokio::select! {
        biased;
        () = &mut shutdown => panic!("resolved before any signal"),
        () = async {} => {}
    }
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(std::process::id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .unwrap_or_else(|_| panic!("no shutdown within 5 s of SIG{signal}"));
}

// One test: signals reach every waiter in the process, so the cases must not run in parallel.
#[tokio::test]
async fn sigterm_and_sigint_end_the_wait_and_nothing_else_does() {
    let waited = tokio::time::timeout(Duration::from_millis(200), shutdown_signal()).await;
    assert!(waited.is_err(), "resolved without a signal");
    resolves_on("TERM").await;
    resolves_on("INT").await;
}
