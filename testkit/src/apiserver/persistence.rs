//! Optional persistence: the whole store is written to a JSON file shortly after changes and
//! on shutdown (write to a temporary file, then rename), and read back on start. The
//! resourceVersion counter is saved with the objects, so it never goes backwards across a
//! restart; the watch event log is not saved, so watches resumed from an older version get
//! 410 Gone and relist.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::storage::{Snapshot, Store};

/// Errors of persistence.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Reading the data file failed.
    #[error("failed to read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The data file is not a snapshot.
    #[error("failed to decode {path}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// Writing the data file failed.
    #[error("failed to write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl PersistError {
    /// Stable name of the failure class.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Read { .. } => "read-data-file-failed",
            Self::Decode { .. } => "decode-data-file-failed",
            Self::Write { .. } => "write-data-file-failed",
        }
    }
}

/// Loads a snapshot; `None` when the file does not exist.
pub fn load(path: &Path) -> Result<Option<Snapshot>, PersistError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| PersistError::Decode {
                path: path.to_owned(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PersistError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes the store to the file.
pub fn save(store: &Store, path: &Path) -> Result<(), PersistError> {
    let snap = store.snapshot();
    let bytes = serde_json::to_vec(&snap).map_err(|e| PersistError::Write {
        path: path.to_owned(),
        source: std::io::Error::other(e),
    })?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| PersistError::Write {
            path: path.to_owned(),
            source,
        })
}

/// Saves after changes (at most every `delay`) until shutdown, then a last time.
pub async fn run(
    store: Arc<Store>,
    path: PathBuf,
    delay: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut saved = store.resource_version();
    loop {
        tokio::select! {
            () = store.changed.notified() => {}
            () = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => break,
        }
        tokio::time::sleep(delay).await;
        let rv = store.resource_version();
        if rv != saved {
            if let Err(e) = save(&store, &path) {
                tracing::warn!(error = &e as &dyn std::error::Error, "failed to persist");
            }
            saved = rv;
        }
    }
    if let Err(e) = save(&store, &path) {
        tracing::warn!(error = &e as &dyn std::error::Error, "failed to persist");
    }
}
