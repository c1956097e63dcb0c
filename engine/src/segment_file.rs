//! A segment's `.log` file as a handle that may be closed while the segment is idle, and the
//! shard's bounded, least-recently-used set of open sealed segment files.
//!
//! Every segment used to keep its `DmaFile` open for its whole life: a partition with 5,000
//! segments held 5,000 descriptors, and 10,000 partitions with a sealed segment each held
//! 20,000 — the process's whole limit. Now the active segment's file stays open (its writer
//! needs it: one descriptor per partition) and sealed segments' files are opened on demand,
//! at most [`set_capacity`] of them per shard, the least recently used closed first (Kafka
//! keeps every segment open; Redpanda bounds its open segment readers the same way).
//!
//! Owns: the open handle (`Rc<DmaFile>`) of one segment file, whether it is pinned (the active
//! segment), and the shard's recency order of the open unpinned ones. A file someone still
//! reads through (an `Rc<DmaFile>` handed out by [`SegmentFile::get`]) stays open until that
//! read drops it, even if evicted.
//!
//! Must never: close a pinned file; hold the shard's registry borrowed while a handle is
//! dropped (a drop can run [`SegmentFile`]'s `Drop`, which takes the registry again); open a
//! file that its segment no longer owns (a deleted segment's handle is dropped with it, and a
//! reopen of a path deleted meanwhile fails with `NotFound`, which readers treat as "moved").

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use glommio::io::DmaFile;

/// Sealed segment files a shard keeps open when nothing else sets it.
pub const DEFAULT_CAPACITY: usize = 1024;

/// One segment's log file. See the module docs.
pub struct SegmentFile {
    path: PathBuf,
    direct_io: bool,
    /// Registry key (unique per shard thread).
    id: u64,
    /// The inode the segment's file has: a reopen that finds another file under the path (a
    /// compaction gave the name to the segment's replacement) fails instead of reading it.
    inode: u64,
    open: RefCell<Option<Rc<DmaFile>>>,
    pinned: Cell<bool>,
}

impl std::fmt::Debug for SegmentFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentFile")
            .field("path", &self.path)
            .field("open", &self.open.borrow().is_some())
            .field("pinned", &self.pinned.get())
            .finish()
    }
}

impl SegmentFile {
    /// The handle of a file just opened or created: `pinned` for the active segment (never
    /// closed until [`SegmentFile::unpin`]), otherwise it joins the shard's recency order and
    /// may close the least recently used sealed file.
    pub fn from_open(path: PathBuf, direct_io: bool, file: Rc<DmaFile>, pinned: bool) -> Rc<SegmentFile> {
        let segment_file = Rc::new(SegmentFile {
            path,
            direct_io,
            id: REGISTRY.with(|r| r.borrow_mut().next_id()),
            inode: file.inode(),
            open: RefCell::new(Some(file)),
            pinned: Cell::new(pinned),
        });
        if !pinned {
            touch(&segment_file);
            evict_over_capacity();
        }
        segment_file
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's inode (to match handles opened by path, e.g. [`crate::reader_cache`]).
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// Whether the file is open now (tests, gauges).
    pub fn is_open(&self) -> bool {
        self.open.borrow().is_some()
    }

    /// The open file, opened again if it was closed. Counts as a use for the recency order.
    pub async fn get(self: &Rc<Self>) -> std::io::Result<Rc<DmaFile>> {
        let open = self.open.borrow().clone();
        if let Some(file) = open {
            if !self.pinned.get() {
                touch(self);
            }
            return Ok(file);
        }
        assert!(!self.pinned.get(), "a pinned segment file is never closed: {}", self.path.display());
        let file = crate::segment::Segment::open_file(&self.path, self.direct_io).await?;
        if file.inode() != self.inode {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} is another file now (the segment was replaced)", self.path.display()),
            ));
        }
        // Another task may have opened it during the await: keep one handle (ours is closed
        // when it drops).
        let file = self.open.borrow_mut().get_or_insert(file).clone();
        if !self.pinned.get() {
            touch(self);
            evict_over_capacity();
        }
        Ok(file)
    }

    /// The segment becomes the active one (opening a log, or a truncation making a sealed
    /// segment the last): its file is opened if needed and stays open until [`Self::unpin`].
    pub async fn pin(self: &Rc<Self>) -> std::io::Result<Rc<DmaFile>> {
        let file = self.get().await?;
        // No await since `get`: nothing closed it, but keep the handle `get` returned.
        *self.open.borrow_mut() = Some(file.clone());
        self.pinned.set(true);
        let id = self.id;
        REGISTRY.with(|r| r.borrow_mut().remove(id));
        Ok(file)
    }

    /// The segment stopped being the active one: its file may be closed from now on.
    pub fn unpin(self: &Rc<Self>) {
        if self.pinned.replace(false) && self.is_open() {
            touch(self);
            evict_over_capacity();
        }
    }
}

impl Drop for SegmentFile {
    fn drop(&mut self) {
        let id = self.id;
        // `try_with`: the registry may already be gone when a thread's last files drop at exit.
        let _ = REGISTRY.try_with(|r| {
            // The registry is never borrowed while a handle drops (see "Must never").
            r.borrow_mut().remove(id);
        });
    }
}

/// The shard's open unpinned files in recency order.
struct Registry {
    capacity: usize,
    tick: u64,
    last_id: u64,
    /// id → (handle, last use).
    entries: HashMap<u64, (Weak<SegmentFile>, u64)>,
    /// last use → id, oldest first.
    by_use: BTreeMap<u64, u64>,
}

impl Registry {
    fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    fn remove(&mut self, id: u64) {
        if let Some((_, used)) = self.entries.remove(&id) {
            self.by_use.remove(&used);
        }
    }

    /// Removes the least recently used file when over capacity; the caller closes it.
    fn pop_over_capacity(&mut self) -> Option<Weak<SegmentFile>> {
        if self.entries.len() <= self.capacity {
            return None;
        }
        let (_, id) = self.by_use.pop_first()?;
        self.entries.remove(&id).map(|(handle, _)| handle)
    }
}

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry {
        capacity: DEFAULT_CAPACITY,
        tick: 0,
        last_id: 0,
        entries: HashMap::new(),
        by_use: BTreeMap::new(),
    });
}

fn touch(file: &Rc<SegmentFile>) {
    REGISTRY.with(|r| {
        let mut registry = r.borrow_mut();
        registry.tick += 1;
        let tick = registry.tick;
        if let Some((_, used)) = registry.entries.get_mut(&file.id) {
            let old = std::mem::replace(used, tick);
            registry.by_use.remove(&old);
        } else {
            registry.entries.insert(file.id, (Rc::downgrade(file), tick));
        }
        registry.by_use.insert(tick, file.id);
    });
}

/// Closes least recently used files until the shard is within its capacity. Each handle is
/// dropped with the registry released.
fn evict_over_capacity() {
    loop {
        let Some(victim) = REGISTRY.with(|r| r.borrow_mut().pop_over_capacity()) else { return };
        if let Some(file) = victim.upgrade() {
            debug_assert!(!file.pinned.get(), "pinned files are not in the registry");
            let closed = file.open.borrow_mut().take();
            drop(closed);
        }
    }
}

/// Sets how many sealed segment files this shard thread keeps open (the broker derives it from
/// the open-files limit). At least 1.
pub fn set_capacity(capacity: usize) {
    REGISTRY.with(|r| r.borrow_mut().capacity = capacity.max(1));
    evict_over_capacity();
}

/// Sealed segment files open now in this shard (pinned active files not counted).
pub fn open_count() -> usize {
    REGISTRY.with(|r| r.borrow().entries.len())
}
