//! Small metadata files written atomically: write a temp file, `fdatasync` it, rename it over
//! the old one. Used for recovery points, log start offsets, the leader-epoch checkpoint and
//! the clean-shutdown marker.
//!
//! Owns: nothing but the write/read protocol. Must never: leave a half-written file under the
//! final name, or run a blocking syscall on a shard thread (it uses glommio's buffered,
//! io_uring-backed files and rename).

use std::path::{Path, PathBuf};

use glommio::io::BufferedFile;

/// Largest checkpoint file we are willing to read (they hold a few numbers).
pub const MAX_CHECKPOINT_BYTES: u64 = 1 << 20;

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replaces `path` with `contents` atomically and durably.
pub async fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_path(path);
    let file = BufferedFile::create(&tmp).await.map_err(std::io::Error::from)?;
    if !contents.is_empty() {
        let written = file.write_at(contents.to_vec(), 0).await.map_err(std::io::Error::from)?;
        if written != contents.len() {
            return Err(std::io::Error::other(format!("short write to {}", tmp.display())));
        }
    }
    file.fdatasync().await.map_err(std::io::Error::from)?;
    file.close().await.map_err(std::io::Error::from)?;
    glommio::io::rename(&tmp, path).await.map_err(std::io::Error::from)?;
    Ok(())
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
