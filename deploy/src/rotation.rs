//! The webhook certificates' rotation rule, from `selfSignConfiguration`: a CA (or serving
//! certificate) is issued for `rotate + overlap`, replaced once `rotate` has passed, and the
//! replaced CA stays in the bundle until it expires, so clients trusting either keep working.

use std::time::Duration;

/// A Go duration (`8760h0m0s`, `90m`, `1h30m`, `45s`, `250ms`) as upstream's knobs write it.
///
/// ```
/// use std::time::Duration;
/// use knmstate_deploy::rotation::parse_go_duration;
/// assert_eq!(parse_go_duration("8760h0m0s"), Some(Duration::from_secs(8760 * 3600)));
/// assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
/// assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
/// assert_eq!(parse_go_duration("soon"), None);
/// assert_eq!(parse_go_duration(""), None);
/// ```
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(value * seconds).ok()?;
    }
    Some(total)
}

/// Lifetime and renewal point of one certificate kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Replace it this long after it was issued.
    pub rotate: Duration,
    /// Keep it valid (and trusted) this much longer.
    pub overlap: Duration,
}

impl Lifetime {
    /// From the two Go durations of `selfSignConfiguration`; `None` when one does not parse.
    pub fn parse(rotate: &str, overlap: &str) -> Option<Self> {
        Some(Self {
            rotate: parse_go_duration(rotate)?,
            overlap: parse_go_duration(overlap)?,
        })
    }

    /// How long a new certificate is valid.
    pub fn validity(&self) -> Duration {
        self.rotate + self.overlap
    }

    /// Seconds from now until a certificate issued at `issued` (Unix seconds) is due; zero
    /// when it is due already.
    ///
    /// ```
    /// use std::time::Duration;
    /// use knmstate_deploy::rotation::Lifetime;
    /// let l = Lifetime { rotate: Duration::from_secs(100), overlap: Duration::from_secs(10) };
    /// assert_eq!(l.due_in(1_000, 1_050), Duration::from_secs(50));
    /// assert_eq!(l.due_in(1_000, 1_200), Duration::ZERO);
    /// ```
    pub fn due_in(&self, issued: i64, now: i64) -> Duration {
        let due = issued.saturating_add(i64::try_from(self.rotate.as_secs()).unwrap_or(i64::MAX));
        Duration::from_secs(u64::try_from(due.saturating_sub(now)).unwrap_or(0))
    }
}
