//! The recovery record: what an apply in flight needs for its recovery if its process dies,
//! kept durably in a host directory (beside the handler's node lock) so that the next process
//! restores exactly that.
//!
//! It says which attempt was running ([`Attempt`], recorded before the network is touched),
//! which NetworkManager checkpoint this backend created (its exact D-Bus path, once known),
//! whether the commit had begun, and the global DNS saved before the apply (checkpoints do not
//! cover it). Attempts found interrupted at start-up stay listed until the caller counted them
//! ([`Backend::forget_interrupted`](crate::Backend::forget_interrupted)), so a second death
//! before that loses nothing.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The attempt an apply belongs to, as its caller names it: stored in the recovery record
/// before the network is touched and handed back by start-up recovery when its process died.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// The policy being applied.
    pub policy: String,
    /// Its `metadata.generation`.
    pub generation: i64,
    /// Which attempt of that generation (1 for the first).
    pub number: u32,
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "attempt {} of {} generation {}",
            self.number, self.policy, self.generation
        )
    }
}

/// An apply that started and did not finish (as far as the record knows).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InFlight {
    /// The caller's attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<Attempt>,
    /// The checkpoint this backend created, once known (a death inside nmstate's apply leaves
    /// it unknown: then it is the oldest checkpoint not in `foreign`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// Checkpoints NetworkManager held before the apply: never ours.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign: Vec<String>,
    /// The commit had begun: with the checkpoint gone, the apply was committed.
    #[serde(default)]
    pub committing: bool,
    /// NetworkManager's global DNS before the apply, D-Bus encoded (absent when the property
    /// does not exist; never written by the in-memory backend, whose checkpoints cover DNS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_dns: Option<Vec<u8>>,
}

/// The whole record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Record {
    /// The apply in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply: Option<InFlight>,
    /// Attempts whose process died, not yet counted by the caller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interrupted: Vec<Attempt>,
}

/// At most this many interrupted attempts are kept (those of deleted policies are never
/// counted).
const MAX_INTERRUPTED: usize = 16;

impl Record {
    /// Whether there is nothing to keep.
    pub fn is_empty(&self) -> bool {
        self.apply.is_none() && self.interrupted.is_empty()
    }

    /// Remember `attempt` as interrupted (once).
    pub fn push_interrupted(&mut self, attempt: Attempt) {
        if !self.interrupted.contains(&attempt) {
            self.interrupted.push(attempt);
        }
        let extra = self.interrupted.len().saturating_sub(MAX_INTERRUPTED);
        self.interrupted.drain(..extra);
    }
}

/// The record's file, or none (a backend without a state directory keeps nothing).
#[derive(Debug, Clone, Default)]
pub(crate) struct RecordFile {
    path: Option<PathBuf>,
}

impl RecordFile {
    /// The record `pending-apply` in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            path: Some(dir.join("pending-apply")),
        }
    }

    /// The record on disk (empty when there is none or it cannot be read, which is logged).
    pub fn read(&self) -> Record {
        let Some(path) = &self.path else {
            return Record::default();
        };
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "failed to read the recovery record: ignoring it");
                Record::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Record::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "failed to read the recovery record");
                Record::default()
            }
        }
    }

    /// Replace the record durably (removed when empty): written aside, synced, renamed over,
    /// directory synced — a death at any point leaves the previous record or the new one
    /// whole.
    pub fn write(&self, record: &Record) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        if record.is_empty() {
            return match std::fs::remove_file(path) {
                Ok(()) => sync_dir(dir),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            };
        }
        std::fs::create_dir_all(dir)?;
        let bytes = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        let partial = path.with_extension("partial");
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&partial, path)?;
        sync_dir(dir)
    }

    /// [`write`](Self::write), a failure logged (the apply goes on: only its recovery after a
    /// death would be lost).
    pub fn write_logged(&self, record: &Record) {
        if let Err(e) = self.write(record) {
            let path = self.path.as_deref().unwrap_or_else(|| Path::new(""));
            tracing::warn!(path = %path.display(), error = %e, "failed to write the recovery record");
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// NetworkManager numbers its checkpoints (`…/Checkpoint/N`) in creation order.
fn checkpoint_number(path: &str) -> u64 {
    path.rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Of the checkpoints held `now`, the one an apply created: the oldest that was not held
/// before it (`foreign`). nmstate creates one checkpoint per apply, first thing.
pub(crate) fn created_by_apply<'a>(now: &'a [String], foreign: &[String]) -> Option<&'a String> {
    now.iter()
        .filter(|cp| !foreign.contains(cp))
        .min_by_key(|cp| checkpoint_number(cp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(n: u32) -> Attempt {
        Attempt {
            policy: "p".into(),
            generation: 3,
            number: n,
        }
    }

    #[test]
    fn round_trips_and_an_empty_record_is_removed() {
        let dir = tempdir();
        let file = RecordFile::in_dir(&dir);
        assert_eq!(file.read(), Record::default());
        let record = Record {
            apply: Some(InFlight {
                attempt: Some(attempt(2)),
                checkpoint: Some("/org/freedesktop/NetworkManager/Checkpoint/7".into()),
                foreign: vec!["/org/freedesktop/NetworkManager/Checkpoint/3".into()],
                committing: false,
                global_dns: Some(vec![1, 2, 3]),
            }),
            interrupted: vec![attempt(1)],
        };
        file.write(&record).expect("write");
        assert_eq!(file.read(), record);
        assert!(!dir.join("pending-apply.partial").exists());
        file.write(&Record::default()).expect("write empty");
        assert!(!dir.join("pending-apply").exists());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn an_unreadable_record_reads_as_empty() {
        let dir = tempdir();
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("pending-apply"), b"{truncated").expect("write");
        assert_eq!(RecordFile::in_dir(&dir).read(), Record::default());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_apply_created_the_oldest_checkpoint_not_held_before() {
        let cp = |n: u32| format!("/org/freedesktop/NetworkManager/Checkpoint/{n}");
        let now = [cp(12), cp(4), cp(10)];
        assert_eq!(created_by_apply(&now, &[cp(4)]), Some(&cp(10)));
        assert_eq!(created_by_apply(&now, &[cp(4), cp(10), cp(12)]), None);
        assert_eq!(created_by_apply(&[], &[]), None);
    }

    #[test]
    fn interrupted_attempts_are_kept_once_and_bounded() {
        let mut r = Record::default();
        r.push_interrupted(attempt(1));
        r.push_interrupted(attempt(1));
        assert_eq!(r.interrupted, vec![attempt(1)]);
        for n in 2..40 {
            r.push_interrupted(attempt(n));
        }
        assert_eq!(r.interrupted.len(), MAX_INTERRUPTED);
        assert_eq!(r.interrupted.last(), Some(&attempt(39)));
    }

    fn tempdir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        std::env::temp_dir().join(format!(
            "knmstate-record-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }
}
