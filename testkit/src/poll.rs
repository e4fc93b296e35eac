//! The one way tests wait: poll a check until it succeeds or a timeout passes.
//!
//! A check returns `bool`, `Option<T>` or `anyhow::Result<Option<T>>` (see [`Outcome`]): `true`,
//! `Some(v)` or `Ok(Some(v))` ends the wait with the value; anything else polls again, and the
//! last error is kept to explain a timeout.
//!
//! ```
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! let mut n = 0;
//! let v = knmstate_testkit::poll::eventually("the third try", Duration::from_secs(1), || {
//!     n += 1;
//!     let seen = n;
//!     async move { (seen == 3).then_some(seen) }
//! })
//! .await?;
//! assert_eq!(v, 3);
//! # Ok(()) }
//! ```

use std::future::Future;
use std::time::Duration;

/// How often [`eventually`] polls.
pub const INTERVAL: Duration = Duration::from_millis(50);

/// A wait that timed out.
#[derive(Debug, thiserror::Error)]
#[error("timed out after {timeout:?} waiting for {what}")]
pub struct TimedOut {
    /// What was awaited.
    pub what: String,
    /// How long.
    pub timeout: Duration,
    /// The check's last error, if its last answer was one.
    #[source]
    pub last: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl TimedOut {
    /// Stable name of the failure class.
    pub fn category(&self) -> &'static str {
        "timed-out"
    }
}

/// What a check answers: done with a value, not yet, or failed (and will be asked again).
pub trait Outcome<T> {
    /// `Ok(Some(v))` when done, `Ok(None)` when not yet, `Err` when the check failed.
    fn into_outcome(self) -> Result<Option<T>, Box<dyn std::error::Error + Send + Sync>>;
}

impl Outcome<()> for bool {
    fn into_outcome(self) -> Result<Option<()>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.then_some(()))
    }
}

impl<T> Outcome<T> for Option<T> {
    fn into_outcome(self) -> Result<Option<T>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self)
    }
}

/// The one error type a check may fail with, so that `?` and `Ok(..)` in a check's `async`
/// block need no annotation.
impl<T> Outcome<T> for anyhow::Result<Option<T>> {
    fn into_outcome(self) -> Result<Option<T>, Box<dyn std::error::Error + Send + Sync>> {
        self.map_err(Into::into)
    }
}

/// Poll `check` every [`INTERVAL`] until it is done, or fail after `timeout` naming `what`.
pub async fn eventually<T, O, F, Fut>(
    what: &str,
    timeout: Duration,
    check: F,
) -> Result<T, TimedOut>
where
    O: Outcome<T>,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    eventually_every(what, timeout, INTERVAL, check).await
}

/// Like [`eventually`], polling every `interval` (a real cluster wants a gentler pace).
pub async fn eventually_every<T, O, F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> Result<T, TimedOut>
where
    O: Outcome<T>,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    loop {
        match check().await.into_outcome() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = Some(e),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(TimedOut {
                what: what.to_owned(),
                timeout,
                last,
            });
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_once_the_check_is_done() {
        let mut tries = 0;
        let got = eventually("three tries", Duration::from_secs(5), || {
            tries += 1;
            let n = tries;
            async move {
                let parsed: u32 = "3".parse()?;
                Ok((n >= parsed).then_some(n))
            }
        })
        .await
        .expect("done");
        assert_eq!(got, 3);
    }

    #[tokio::test]
    async fn a_timeout_names_what_was_awaited_and_the_last_error() {
        let err = eventually("the moon", Duration::from_millis(120), || async {
            Err::<Option<()>, _>(anyhow::anyhow!("still night"))
        })
        .await
        .expect_err("never done");
        assert_eq!(err.what, "the moon");
        assert!(err.to_string().contains("waiting for the moon"), "{err}");
        assert_eq!(
            err.last.as_ref().map(ToString::to_string).as_deref(),
            Some("still night")
        );
        assert_eq!(err.category(), "timed-out");
    }

    #[tokio::test]
    async fn a_bool_check_times_out_without_a_last_error() {
        let err = eventually("false to turn true", Duration::from_millis(60), || async {
            false
        })
        .await
        .expect_err("never true");
        assert!(err.last.is_none());
    }
}
