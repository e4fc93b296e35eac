//! Fault points for crash tests: named steps of an apply where a test build can stop the
//! process cold, so that a test kills it (SIGKILL) at exactly that step.
//!
//! With the `testing` feature, a process whose `KNMSTATE_PAUSE_AT` names a point logs
//! `paused at fault point` there and never goes past it; `KNMSTATE_PAUSE_POLICY`, when set,
//! restricts that to the attempts of one policy (points that do not know their policy pause
//! whatever it says). Without the feature every point is a no-op.
//!
//! The points, in the order an apply passes them: `before-apply` (handler: Progressing
//! written, nothing recorded), `attempt-recorded` (the attempt on disk, the network untouched),
//! `applied` (nmstate applied, the checkpoint recorded), `probing`, `probed-<probe>` (after each
//! probe that passed), `probes-passed`, `committing` (the commit recorded as begun),
//! `committed` (NetworkManager committed, the record not yet cleared),
//! `committed-before-status` (handler: before it writes Success).

/// The environment variable naming the point to pause at.
pub const PAUSE_AT_ENV: &str = "KNMSTATE_PAUSE_AT";
/// The environment variable restricting the pause to one policy's attempts.
pub const PAUSE_POLICY_ENV: &str = "KNMSTATE_PAUSE_POLICY";

/// Pass the fault point `name` of an attempt of `policy` (when known).
#[cfg(any(test, feature = "testing"))]
pub async fn point(name: &str, policy: Option<&str>) {
    let at = std::env::var(PAUSE_AT_ENV).ok();
    let only = std::env::var(PAUSE_POLICY_ENV).ok();
    let policy_matches = only.is_none() || policy.is_none() || only.as_deref() == policy;
    if at.as_deref() == Some(name) && policy_matches {
        tracing::warn!(point = name, policy, "paused at fault point");
        std::future::pending::<()>().await;
    }
}

/// Pass the fault point `name` (a no-op: this build has no fault points).
#[cfg(not(any(test, feature = "testing")))]
#[allow(clippy::unused_async)]
pub async fn point(_name: &str, _policy: Option<&str>) {}
