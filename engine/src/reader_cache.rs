//! The shard's cache of buffered (page-cache) read handles on segment files, used to serve
//! fetches of on-disk data with `sendfile`. Bounded, least recently used closed first: one
//! handle per segment ever read used to stay open for the segment's life, and a consumer that
//! read each of 10,000 partitions once left the broker with 19,999 of its 20,000 descriptors.
//!
//! Owns: the handles (`Arc<std::fs::File>`, keyed by path) and their recency. A handle an
//! in-flight `sendfile` still uses stays open until that read drops its `Arc`, even if evicted.
//! Must never: open or close a file on the shard thread (opens go to the blocking pool; a
//! close is the drop of the last `Arc`, which for an evicted handle may run here — `close(2)`
//! of a regular file does not block), or hand out a handle of a segment that was deleted
//! (deleting paths call [`forget`] / [`forget_dir`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Handles a shard keeps open when nothing else sets it.
pub const DEFAULT_CAPACITY: usize = 1024;

/// A read handle and the inode it was opened on: a path can be given to a new file (a
/// compaction replaces segments), so callers check the inode against their segment's.
pub type Reader = (Arc<std::fs::File>, u64);

struct ReaderCache {
    capacity: usize,
    tick: u64,
    /// Path → (handle, the file's inode when opened, last use).
    handles: HashMap<PathBuf, (Reader, u64)>,
}

thread_local! {
    static CACHE: RefCell<ReaderCache> =
        RefCell::new(ReaderCache { capacity: DEFAULT_CAPACITY, tick: 0, handles: HashMap::new() });
}

/// Sets how many handles this shard thread keeps open (the broker derives it from the
/// open-files limit). At least 1.
pub fn set_capacity(capacity: usize) {
    CACHE.with(|c| {
        let mut cache = c.borrow_mut();
        cache.capacity = capacity.max(1);
        cache.evict_to_capacity();
    });
}

/// Handles open now in this shard's cache.
pub fn open_count() -> usize {
    CACHE.with(|c| c.borrow().handles.len())
}

impl ReaderCache {
    fn evict_to_capacity(&mut self) {
        while self.handles.len() > self.capacity {
            // O(capacity) per eviction; evictions happen on a miss, which costs an open anyway.
            let oldest = self.handles.iter().min_by_key(|(_, (_, used))| *used).map(|(p, _)| p.clone());
            match oldest {
                Some(path) => {
                    self.handles.remove(&path);
                }
                None => break,
            }
        }
    }
}

/// The read handle of `log_path` and its inode, opened on the blocking pool on a miss.
pub async fn get(log_path: &Path) -> std::io::Result<Reader> {
    let hit = CACHE.with(|c| {
        let mut cache = c.borrow_mut();
        cache.tick += 1;
        let tick = cache.tick;
        cache.handles.get_mut(log_path).map(|(file, used)| {
            *used = tick;
            file.clone()
        })
    });
    if let Some(file) = hit {
        return Ok(file);
    }
    let path = log_path.to_path_buf();
    let file = crate::checkpoint_file::blocking(move || {
        use std::os::unix::fs::MetadataExt;
        let file = std::fs::File::open(&path)?;
        let inode = file.metadata()?.ino();
        Ok((Arc::new(file), inode))
    })
    .await?;
    CACHE.with(|c| {
        let mut cache = c.borrow_mut();
        cache.tick += 1;
        let tick = cache.tick;
        cache.handles.insert(log_path.to_path_buf(), (file.clone(), tick));
        cache.evict_to_capacity();
    });
    Ok(file)
}

/// Drops the handle of a segment file being deleted (so its disk space is freed).
pub fn forget(log_path: &Path) {
    CACHE.with(|c| {
        c.borrow_mut().handles.remove(log_path);
    });
}

/// Drops every handle of files under `dir` (a partition being deleted).
pub fn forget_dir(dir: &Path) {
    CACHE.with(|c| c.borrow_mut().handles.retain(|path, _| !path.starts_with(dir)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_capacity_handles_and_closes_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..5).map(|i| dir.path().join(format!("{i}.log"))).collect();
        for p in &paths {
            std::fs::write(p, b"x").unwrap();
        }
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).io_memory(512 << 10).make().unwrap().run(
            async move {
                set_capacity(3);
                for p in &paths[..3] {
                    get(p).await.unwrap();
                }
                get(&paths[0]).await.unwrap(); // 0 is now the most recent; 1 the least
                let (held, _inode) = get(&paths[3]).await.unwrap();
                assert_eq!(open_count(), 3);
                let has = |p: &Path| CACHE.with(|c| c.borrow().handles.contains_key(p));
                assert!(!has(&paths[1]), "least recently used closed");
                assert!(has(&paths[0]) && has(&paths[2]) && has(&paths[3]));
                forget(&paths[3]);
                assert_eq!(open_count(), 2);
                assert_eq!(Arc::strong_count(&held), 1, "a forgotten handle lives on only in its reader");
                forget_dir(dir_of(&paths[0]));
                assert_eq!(open_count(), 0);
            },
        );
    }

    fn dir_of(p: &Path) -> &Path {
        p.parent().unwrap()
    }
}
