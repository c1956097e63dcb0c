//! Small files that must survive a crash, written through one durable-write protocol: write a
//! temp file, `fdatasync` it, rename it over the old one, `fsync` the directory (without the
//! last step a crash can lose the rename itself: the old file, or none, comes back). Used for
//! `metadata.json`, recovery points, log start offsets, the leader-epoch checkpoint, producer
//! snapshots, segment indexes and the clean-shutdown marker.
//!
//! Owns: nothing but the write/read protocol. Must never: leave a half-written file under the
//! final name, or run a blocking syscall on a shard thread (shards use [`write_atomic`]:
//! glommio's io_uring-backed files and rename, the directory sync on the blocking pool;
//! [`write_atomic_blocking`] is for the main thread).
//!
//! Crash tests stop the process between the protocol's steps through one seam,
//! [`set_write_step_hook`]: the binary installs a plain `fn` at start-up (its fault point
//! `SLUICE_FAULT_ABORT_IN_ATOMIC_WRITE`); unset, each step costs one atomic load.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use glommio::io::BufferedFile;

/// Largest checkpoint file we are willing to read (they hold a few numbers).
pub const MAX_CHECKPOINT_BYTES: u64 = 1 << 20;

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// The points of the durable-write protocol a crash can fall between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteStep {
    /// The temp file exists, still empty; the old file is untouched.
    TempCreated,
    /// The temp file holds the new contents, synced; the old file is still in place.
    TempWritten,
    /// The new contents are in place under the final name; the directory is not synced yet.
    Renamed,
}

/// Called at each [`WriteStep`] with the final path (not the temp file's).
pub type WriteStepHook = fn(&Path, WriteStep);

static WRITE_STEP_HOOK: OnceLock<WriteStepHook> = OnceLock::new();

/// Installs the hook every durable write calls at each of its steps: once per process, before
/// any shard starts (the binary's crash fault point). False if one was installed already.
pub fn set_write_step_hook(hook: WriteStepHook) -> bool {
    WRITE_STEP_HOOK.set(hook).is_ok()
}

#[inline]
fn reached(path: &Path, step: WriteStep) {
    if let Some(hook) = WRITE_STEP_HOOK.get() {
        hook(path, step);
    }
}

/// Replaces `path` with `contents` atomically and durably.
pub async fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_atomic_without_dir_sync(path, contents).await?;
    let dir = parent_dir(path);
    blocking(move || sync_dir(&dir)).await
}

/// [`write_atomic`] without the directory fsync: the caller makes the rename durable later with
/// one [`sync_dir`] for several files (a partition's close writes four or five; the directory
/// fsyncs, on the blocking pool, were most of a 10,000-partition shutdown).
pub async fn write_atomic_without_dir_sync(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_path(path);
    let file = BufferedFile::create(&tmp).await.map_err(std::io::Error::from)?;
    reached(path, WriteStep::TempCreated);
    if !contents.is_empty() {
        let written = file.write_at(contents.to_vec(), 0).await.map_err(std::io::Error::from)?;
        if written != contents.len() {
            return Err(std::io::Error::other(format!("short write to {}", tmp.display())));
        }
    }
    file.fdatasync().await.map_err(std::io::Error::from)?;
    file.close().await.map_err(std::io::Error::from)?;
    reached(path, WriteStep::TempWritten);
    glommio::io::rename(&tmp, path).await.map_err(std::io::Error::from)?;
    reached(path, WriteStep::Renamed);
    Ok(())
}

/// [`write_atomic`] for a thread that may block (the main thread at start-up and shutdown).
pub fn write_atomic_blocking(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = tmp_path(path);
    let mut file = std::fs::File::create(&tmp)?;
    reached(path, WriteStep::TempCreated);
    file.write_all(contents)?;
    file.sync_data()?;
    drop(file);
    reached(path, WriteStep::TempWritten);
    std::fs::rename(&tmp, path)?;
    reached(path, WriteStep::Renamed);
    sync_dir(&parent_dir(path))
}

/// Removes the temp file a crash inside a durable write of `path` left behind (the final name
/// holds the old or the new contents whole; the temp file is neither). Blocks: the main thread
/// at start-up. True if there was one.
pub fn remove_leftover_temp_blocking(path: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(tmp_path(path)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes a directory's entries (a rename, a new or removed file) durable. Blocks.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// ENOSPC or EDQUOT, however it was wrapped (glommio keeps the kind, not always the errno).
pub fn is_storage_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Reads a whole small file; `Ok(None)` when it does not exist.
pub async fn read_small(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let file = match BufferedFile::open(path).await {
        Ok(f) => f,
        Err(glommio::GlommioError::IoError(e)) | Err(glommio::GlommioError::EnhancedIoError { source: e, .. })
            if e.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(None)
        }
        Err(e) => return Err(std::io::Error::from(e)),
    };
    let size = file.file_size().await.map_err(std::io::Error::from)?;
    if size > MAX_CHECKPOINT_BYTES {
        return Err(std::io::Error::other(format!("{} is {size} bytes, more than a checkpoint holds", path.display())));
    }
    if size == 0 {
        // glommio cannot read zero bytes: it asks its registered-buffer pool for an empty buffer,
        // which "succeeds" while the pool has room and panics the reactor ("Buffer allocation
        // failed") once the pool is taken, as it is by the writers of ~4 partitions. An empty
        // index file (a segment without index entries) is common.
        file.close().await.map_err(std::io::Error::from)?;
        return Ok(Some(Vec::new()));
    }
    let data = file.read_at(0, size as usize).await.map_err(std::io::Error::from)?;
    let out = data.to_vec();
    file.close().await.map_err(std::io::Error::from)?;
    Ok(Some(out))
}

/// Removes a file if present.
pub async fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    let path = path.to_path_buf();
    glommio::executor()
        .spawn_blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        })
        .await
}

/// Runs a blocking filesystem closure on glommio's blocking thread pool (directory listing,
/// mkdir, rmdir), never on the shard thread itself.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    glommio::executor().spawn_blocking(f).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// What the hook saw at each step: (step, final file's contents, temp file's contents).
    type Seen = Vec<(WriteStep, Option<Vec<u8>>, Option<Vec<u8>>)>;
    static SEEN: Mutex<Seen> = Mutex::new(Vec::new());
    const WATCHED: &str = "hook-watched.checkpoint";

    fn record(path: &Path, step: WriteStep) {
        if path.file_name().is_some_and(|n| n == WATCHED) {
            let final_contents = std::fs::read(path).ok();
            let temp_contents = std::fs::read(tmp_path(path)).ok();
            SEEN.lock().unwrap().push((step, final_contents, temp_contents));
        }
    }

    /// The steps come in order, and at each one the final name holds the old or the new
    /// contents whole: a crash there leaves a whole file and, at most, a temp file beside it.
    #[test]
    fn each_write_step_leaves_old_or_new_contents_whole() {
        assert!(set_write_step_hook(record));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(WATCHED);
        write_atomic_blocking(&path, b"old").unwrap();
        SEEN.lock().unwrap().clear();
        write_atomic_blocking(&path, b"new").unwrap();
        let seen = std::mem::take(&mut *SEEN.lock().unwrap());
        let old = Some(b"old".to_vec());
        let new = Some(b"new".to_vec());
        assert_eq!(
            seen,
            vec![
                (WriteStep::TempCreated, old.clone(), Some(Vec::new())),
                (WriteStep::TempWritten, old, new.clone()),
                (WriteStep::Renamed, new, None),
            ]
        );
        assert!(!remove_leftover_temp_blocking(&path).unwrap(), "a finished write leaves no temp file");
        std::fs::write(tmp_path(&path), b"half").unwrap();
        assert!(remove_leftover_temp_blocking(&path).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }
}
