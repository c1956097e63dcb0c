//! The exclusive lock on a data directory (Kafka's `<log.dir>/.lock`): one broker process per
//! data dir. Two brokers on one directory would append to the same segment files from two
//! processes and corrupt them.
//!
//! Owns: the `.lock` file's descriptor and its `flock(LOCK_EX | LOCK_NB)`, held for the life of
//! the value (the kernel drops it when the process dies, so a crash never leaves a stale lock).
//! Must never: block waiting for the lock (a second broker fails at once), or delete anything in
//! the directory.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Name of the lock file in the data directory (Kafka's).
pub const LOCK_FILE: &str = ".lock";

/// Why the lock could not be taken.
#[derive(Debug)]
pub enum DataDirLockError {
    /// Another process holds it: a broker is running on this data dir.
    InUse(PathBuf),
    Io(PathBuf, std::io::Error),
}

impl std::fmt::Display for DataDirLockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataDirLockError::InUse(path) => {
                write!(
                    f,
                    "{} is locked by another process: is a broker already running on this data dir?",
                    path.display()
                )
            }
            DataDirLockError::Io(path, e) => write!(f, "cannot lock {}: {e}", path.display()),
        }
    }
}

impl std::error::Error for DataDirLockError {}

/// A held data-dir lock; released when dropped (or when the process exits).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Creates the directory if needed and takes its lock without waiting. Blocking syscalls:
    /// for the main thread at start-up.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, DataDirLockError> {
        let path = data_dir.join(LOCK_FILE);
        std::fs::create_dir_all(data_dir).map_err(|e| DataDirLockError::Io(path.clone(), e))?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| DataDirLockError::Io(path.clone(), e))?;
        // SAFETY: flock on a descriptor this function owns; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                DataDirLockError::InUse(path)
            } else {
                DataDirLockError::Io(path, e)
            });
        }
        Ok(DataDirLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).expect("first lock");
        // flock locks belong to the open file description: a second open in this process
        // conflicts just as another process's would.
        assert!(matches!(DataDirLock::acquire(dir.path()), Err(DataDirLockError::InUse(_))));
        drop(first);
        DataDirLock::acquire(dir.path()).expect("lock after release");
    }
}
