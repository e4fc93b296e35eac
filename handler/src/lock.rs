//! The per-node exclusive lock: two handlers never run on one node (e.g. from two operator
//! installs). An advisory `flock` on a file of the node's filesystem, taken through the
//! standard library; a second handler waits, polling, until the first one exits.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// A held node lock; dropping it releases the lock.
#[derive(Debug)]
pub struct NodeLock {
    path: PathBuf,
    _file: File,
}

impl NodeLock {
    /// Try once: `Ok(None)` when another process holds the lock.
    pub fn try_acquire(path: &Path) -> Result<Option<Self>> {
        let err = |source| Error::AcquireLock {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(err)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self {
                path: path.to_owned(),
                _file: file,
            })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(err(e)),
        }
    }

    /// Wait for the lock, trying every `poll` (upstream: 5 s, forever).
    pub async fn acquire(path: &Path, poll: Duration) -> Result<Self> {
        let mut logged = false;
        loop {
            if let Some(lock) = Self::try_acquire(path)? {
                return Ok(lock);
            }
            if !logged {
                tracing::warn!(path = %path.display(), "another handler holds the node lock; waiting");
                logged = true;
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_holder_waits_until_the_first_releases() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/handler_lock");
        let first = NodeLock::try_acquire(&path).expect("lock").expect("free");
        assert!(NodeLock::try_acquire(&path).expect("lock").is_none());
        let waiter = tokio::spawn({
            let path = path.clone();
            async move { NodeLock::acquire(&path, Duration::from_millis(20)).await }
        });
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(!waiter.is_finished(), "must wait while the lock is held");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("acquired after release")
            .expect("join")
            .expect("lock");
        assert_eq!(second.path(), path);
    }
}
