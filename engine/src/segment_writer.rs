//! Aligned write-behind for one segment file opened with `O_DIRECT`.
//!
//! Owns: the in-memory chunk being filled, the partial page before it, the writes in flight
//! (with the shared memory of direct writes), and the `written` watermark (how many logical
//! bytes of the file are on disk, contiguously).
//!
//! How it writes: appends are copied into a chunk of `chunk_bytes` (a multiple of the 4 KiB
//! page). A full chunk is submitted as one aligned write; several writes may be in flight at
//! once (at most `max_in_flight`). When nothing is in flight and bytes are waiting, they are
//! submitted *eagerly*: a chunk that ends inside a page is written with that page padded with
//! zeros, and the partial page moves to a page buffer of its own, where later appends complete
//! it; the next chunk starts at the following page. The page is then rewritten, alone, when
//! it has more bytes (the "partial tail page" of Redpanda's segment_appender). Under load,
//! bytes accumulate while a write is in flight, so writes grow by themselves (group write) up
//! to whole chunks.
//!
//! Why the partial page is written on its own: a chunk write then always starts on a page
//! no write has touched, so each write covers blocks of one kind. On ext4 a direct write
//! spanning a written block and preallocated (unwritten) ones is not an "overwrite", cannot
//! be done without the exclusive inode lock, and io_uring hands it to a kernel worker thread;
//! with the page rewritten inside the next chunk, most writes of a produce stream went that
//! way.
//!
//! Ordering contract: a write that ends inside a page is always completed before the next
//! write of that page (a page write) is submitted; other writes never overlap, so they may
//! complete in any order. `written` only advances over a contiguous prefix of completed writes.
//!
//! Direct writes from shared memory ([`SegmentWriter::append_shared`]): a produce request's
//! records arrive in a frame placed so that their memory pages line up with their file pages
//! (see `sluice_net::produce_placement`). Their whole pages are then written straight from the
//! frame, as one more write in flight that holds the frame until it completes; only the bytes
//! before the first whole page (completing the page being filled) and after the last one are
//! copied (and everything, below [`MIN_DIRECT_WRITE_BYTES`] of whole pages). This removed the
//! copy into the write-behind, 17% of the broker's produce CPU. The frame's memory is not
//! counted in [`WriterOptions::max_memory_bytes`]: it is bounded by the requests a connection
//! may have in flight and by `max_in_flight`.
//!
//! Reads of bytes not yet on disk are served from the in-flight writes, the page buffer and the
//! current chunk ([`SegmentWriter::copy_unwritten`]).
//!
//! Preallocation: the file is extended ahead of the writes with `fallocate` (through io_uring),
//! in steps that grow with the segment (from [`PREALLOCATE_MIN_STEP_BYTES`] up to
//! `preallocate_max_step_bytes`). A direct write that extends a file cannot be done inline on
//! ext4 either; one into preallocated blocks can. The file is therefore longer than its logical
//! size, with zeros after the last batch; whoever seals the segment truncates it after
//! [`SegmentWriter::sync`] or [`SegmentWriter::drain`] (which also wait for a preallocation in
//! flight), and recovery reads the zeros as the end of the log.
//!
//! Must never: issue a blocking syscall (all I/O goes through glommio's io_uring), let stale
//! buffer bytes reach the disk (padding is zeroed), or advance `written` past a gap.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::{FutureExt, Shared};
use glommio::io::{DmaBuffer, DmaFile};

use crate::watermark::Watermark;

/// Page size every direct-I/O write is aligned to.
pub const PAGE_BYTES: u64 = 4096;

/// Smallest preallocation step, and the unit preallocation targets are rounded up to. A
/// segment preallocates about as much as it already holds (within the limits), so the step
/// follows the partition's write rate: a quiet partition holds at most two minimum steps of
/// unused disk (32 KiB; with 1 MiB it was 2 MiB per partition, 20 GB for 10,000 partitions of
/// one record each), and a busy one reaches the maximum step after a handful of doublings.
pub const PREALLOCATE_MIN_STEP_BYTES: u64 = 16 << 10;

/// How much writing time a preallocation step covers at the recent write rate.
pub const PREALLOCATE_AHEAD_MS: u64 = 1_000;

/// Tuning knobs for one writer.
#[derive(Clone, Copy, Debug)]
pub struct WriterOptions {
    /// Size of one write-behind chunk (a multiple of [`PAGE_BYTES`]).
    pub chunk_bytes: usize,
    /// How many chunk writes may be in flight at once.
    pub max_in_flight: usize,
    /// Largest step the file is preallocated ahead of the writes (`sluice.segment.preallocate.
    /// max.step.bytes`; 0 = never preallocate). See the module docs.
    pub preallocate_max_step_bytes: u64,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions { chunk_bytes: 1 << 20, max_in_flight: 4, preallocate_max_step_bytes: 32 << 20 }
    }
}

impl WriterOptions {
    /// Most memory one writer holds: every in-flight chunk plus the one being filled.
    pub fn max_memory_bytes(&self) -> usize {
        self.chunk_bytes * (self.max_in_flight + 1)
    }
}

/// A write failure; the writer is unusable afterwards (the log replaces it, see
/// `PartitionLog::recover_from_write_failure`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteError {
    pub message: String,
    /// The file system is out of space (ENOSPC, EDQUOT): the cause that clears by itself when
    /// an operator frees space.
    pub storage_full: bool,
}

impl WriteError {
    fn new(message: String, cause: Option<&std::io::Error>) -> WriteError {
        let storage_full = cause.is_some_and(crate::checkpoint_file::is_storage_full);
        WriteError { message, storage_full }
    }
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "segment write failed: {}", self.message)
    }
}

type DoneSignal = Shared<oneshot::Receiver<()>>;

struct InFlight {
    seq: u64,
    file_pos: u64,
    logical_len: usize,
    buf: Rc<DmaBuffer>,
    done: bool,
}

/// The file page a partial write ended in, being completed by later appends.
struct PartialPage {
    /// [`PAGE_BYTES`] long; byte 0 is file position `file_pos`.
    buf: DmaBuffer,
    file_pos: u64,
    /// Logical bytes in the page.
    len: usize,
    /// Bytes of it already covered by a submitted write.
    submitted_len: usize,
}

struct WriterCore {
    file: Rc<DmaFile>,
    options: WriterOptions,
    /// The partial page just below the chunk, if the last chunk write ended inside a page.
    /// While it is not full, the chunk is empty: appends complete the page first.
    page: Option<PartialPage>,
    /// Chunk being filled; its byte 0 is file position `current_file_pos` (page aligned, a
    /// page no write has touched).
    current: Option<DmaBuffer>,
    current_file_pos: u64,
    current_len: usize,
    in_flight: VecDeque<InFlight>,
    next_seq: u64,
    /// Completion of the last submitted write if it ended inside a page.
    unaligned_tail_done: Option<DoneSignal>,
    free: Vec<DmaBuffer>,
    free_pages: Vec<DmaBuffer>,
    error: Option<WriteError>,
    written: Rc<Watermark>,
    /// File size the last preallocation asked for (the file is at least this long once it
    /// completes).
    preallocated_to: u64,
    /// Completion of the preallocation in flight, if any (at most one at a time).
    preallocating: Option<DoneSignal>,
    /// When the last preallocation was planned and where the writes ended then (the write
    /// rate since decides the next step).
    last_preallocation: Option<(std::time::Instant, u64)>,
    /// Writes and preallocations handed to the kernel, and how many of them have finished
    /// (succeeded or failed): see [`SegmentWriter::quiesce`].
    io_issued: u64,
    io_finished: Rc<Watermark>,
    /// Writes handed to the kernel (each one device write request or more).
    writes_issued: u64,
}

/// Write-behind appender for one segment file. See the module docs.
#[derive(Clone)]
pub struct SegmentWriter {
    core: Rc<RefCell<WriterCore>>,
    written: Rc<Watermark>,
}

impl SegmentWriter {
    /// A writer whose file already holds `existing_len` valid bytes. `tail_page` must hold the
    /// file's bytes from `align_down(existing_len)` to `existing_len` (empty when aligned).
    pub fn new(file: Rc<DmaFile>, existing_len: u64, tail_page: &[u8], options: WriterOptions) -> SegmentWriter {
        assert!(options.chunk_bytes >= PAGE_BYTES as usize);
        assert_eq!(options.chunk_bytes as u64 % PAGE_BYTES, 0, "chunk_bytes must be page aligned");
        assert!(options.max_in_flight >= 1);
        let tail_start = align_down(existing_len);
        assert_eq!(tail_page.len() as u64, existing_len - tail_start, "tail page must cover the partial page");
        let page = (!tail_page.is_empty()).then(|| {
            let mut buf = file.alloc_dma_buffer(PAGE_BYTES as usize);
            buf.as_bytes_mut()[..tail_page.len()].copy_from_slice(tail_page);
            PartialPage { buf, file_pos: tail_start, len: tail_page.len(), submitted_len: tail_page.len() }
        });
        let current_file_pos = if page.is_some() { tail_start + PAGE_BYTES } else { existing_len };
        let written = Watermark::new(existing_len);
        let core = WriterCore {
            file,
            options,
            page,
            current: None,
            current_file_pos,
            current_len: 0,
            in_flight: VecDeque::new(),
            next_seq: 0,
            unaligned_tail_done: None,
            free: Vec::new(),
            free_pages: Vec::new(),
            error: None,
            written: written.clone(),
            preallocated_to: existing_len,
            preallocating: None,
            last_preallocation: None,
            io_issued: 0,
            writes_issued: 0,
            io_finished: Watermark::new(0),
        };
        SegmentWriter { core: Rc::new(RefCell::new(core)), written }
    }

    /// How many writes this writer has handed to the kernel.
    pub fn writes_issued(&self) -> u64 {
        self.core.borrow().writes_issued
    }

    /// Logical end of the file: every byte appended so far.
    pub fn logical_len(&self) -> u64 {
        self.core.borrow().logical_len()
    }

    /// Bytes durably handed to the device (write completed), contiguous from 0.
    pub fn written_len(&self) -> u64 {
        self.written.get()
    }

    pub fn written_watermark(&self) -> Rc<Watermark> {
        self.written.clone()
    }

    pub fn error(&self) -> Option<WriteError> {
        self.core.borrow().error.clone()
    }

    /// Copies `data` into the write-behind chunk(s). Completes when every byte is in memory
    /// (waits only when `max_in_flight` chunks are already being written). Submits writes as
    /// chunks fill, and eagerly when the disk is idle.
    pub async fn append(&self, data: &[u8]) -> Result<(), WriteError> {
        self.append_held(data).await?;
        WriterCore::kick_if_idle(&self.core);
        Ok(())
    }

    /// Copies `data` like [`SegmentWriter::append`] but submits no eager write: for a caller
    /// that appends the rest of the same batch right after (a batch's header, then its
    /// records), so that an idle disk gets one write for both instead of a write of the first
    /// part and, once it completes, a rewrite of its page with the rest (at small produce
    /// requests that doubled the device writes per request).
    pub async fn append_held(&self, mut data: &[u8]) -> Result<(), WriteError> {
        while !data.is_empty() {
            let copied = {
                let mut core = self.core.borrow_mut();
                if let Some(error) = &core.error {
                    return Err(error.clone());
                }
                if let Some(page) = core.page.as_mut().filter(|p| p.len < PAGE_BYTES as usize) {
                    // Complete the partial page first; the chunk starts after it.
                    let n = (PAGE_BYTES as usize - page.len).min(data.len());
                    page.buf.as_bytes_mut()[page.len..page.len + n].copy_from_slice(&data[..n]);
                    page.len += n;
                    n
                } else {
                    let space = core.options.chunk_bytes - core.current_len;
                    let n = space.min(data.len());
                    if n > 0 {
                        let start = core.current_len;
                        core.current_chunk().as_bytes_mut()[start..start + n].copy_from_slice(&data[..n]);
                        core.current_len += n;
                    }
                    n
                }
            };
            data = &data[copied..];
            if self.core.borrow().current_len == self.core.borrow().options.chunk_bytes {
                self.submit_full_chunk().await?;
            }
        }
        Ok(())
    }

    /// Appends `data` like [`SegmentWriter::append`], but writes the whole pages it covers
    /// straight from `data`'s memory, without copying them into the write-behind, when that
    /// memory can be a direct-I/O source: `data` must sit at the same offset within a memory
    /// page as its first byte will within a file page, and cover at least
    /// [`MIN_DIRECT_WRITE_BYTES`] of whole pages. Otherwise it is copied. The bytes before the
    /// first whole page complete the page being filled and are written with it (as one page
    /// write); the bytes after the last one start the next chunk. `data` is kept until its
    /// write completes.
    pub async fn append_shared(&self, data: Bytes) -> Result<(), WriteError> {
        let pos = self.logical_len();
        let head = (align_up(pos) - pos) as usize;
        let body = align_down(data.len().saturating_sub(head) as u64) as usize;
        if !is_direct_source(&data, pos) || (body as u64) < MIN_DIRECT_WRITE_BYTES {
            return self.append(&data).await;
        }
        self.append(&data[..head]).await?;
        // The bytes before the body end on a page boundary: they are written as they are.
        WriterCore::submit_partial(&self.core);
        self.wait_for_room(|_| true).await?;
        let (write, preallocation, file) = {
            let mut core = self.core.borrow_mut();
            let body_pos = pos + head as u64;
            assert_eq!(core.logical_len(), body_pos, "appends are serialized by the caller");
            assert!(core.page.is_none() && core.current_len == 0, "everything before the body is submitted");
            assert_eq!(core.current_file_pos, body_pos);
            crate::shard_metrics::note_written_from_frame(body as u64);
            let buf = DmaBuffer::from_owner(data.slice(head..head + body));
            let write = core.plan_write(buf, body_pos, body, None, false);
            core.current_file_pos = body_pos + body as u64;
            let write_end = core.current_file_pos;
            let preallocation = core.plan_preallocation(write_end);
            (write, preallocation, core.file.clone())
        };
        WriterCore::spawn_planned(&self.core, file, preallocation, [write]);
        self.append(&data[head + body..]).await
    }

    /// Submits every appended byte and waits until all of it is written (not synced).
    pub async fn write_out(&self) -> Result<(), WriteError> {
        let target = self.logical_len();
        WriterCore::submit_partial(&self.core);
        self.wait_written(target).await
    }

    /// Waits until `len` logical bytes are written to the file. Bytes written before a later
    /// write failed are still written: that is checked first.
    pub async fn wait_written(&self, len: u64) -> Result<(), WriteError> {
        loop {
            if self.written.get() >= len {
                return Ok(());
            }
            if let Some(error) = self.error() {
                return Err(error);
            }
            // Make sure something is in flight that will move `written`.
            WriterCore::kick_if_idle(&self.core);
            if self.written.wait_for(len).await.is_err() {
                return Err(self.error().unwrap_or_else(|| WriteError::new("writer failed".into(), None)));
            }
        }
    }

    /// Writes out everything appended so far and `fdatasync`s the file (through io_uring).
    /// Also waits for a preallocation in flight, so the caller may truncate the file after.
    pub async fn sync(&self) -> Result<(), WriteError> {
        self.write_out().await?;
        self.wait_preallocated().await;
        let file = self.core.borrow().file.clone();
        let synced = file.fdatasync().await.map_err(std::io::Error::from);
        synced.map_err(|e| self.fail(format!("fdatasync: {e}"), Some(&e)))
    }

    fn fail(&self, message: String, cause: Option<&std::io::Error>) -> WriteError {
        WriterCore::fail(&self.core, message, cause)
    }

    /// Waits until no write or preallocation this writer issued is still running in the kernel,
    /// whether it succeeds or fails; after that nothing of this writer can land in the file, so
    /// the file may be truncated and given to a new writer. Unlike [`SegmentWriter::drain`] it
    /// submits nothing and ignores a failure.
    pub async fn quiesce(&self) {
        let (issued, finished) = {
            let core = self.core.borrow();
            (core.io_issued, core.io_finished.clone())
        };
        let _ = finished.wait_for(issued).await;
    }

    /// Copies the logical bytes `[pos, pos + out.len())` that are not on disk yet from memory.
    /// Returns false if part of the range is neither in memory nor beyond `written` (callers
    /// then read it from the file).
    pub fn copy_unwritten(&self, pos: u64, out: &mut [u8]) -> bool {
        let core = self.core.borrow();
        let end = pos + out.len() as u64;
        if end > core.logical_len() {
            return false;
        }
        let mut covered_from = end; // lowest position copied so far, working down from `end`
        let mut sources: Vec<(u64, &[u8])> =
            core.in_flight.iter().map(|w| (w.file_pos, &w.buf.as_bytes()[..w.logical_len])).collect();
        if let Some(page) = &core.page {
            sources.push((page.file_pos, &page.buf.as_bytes()[..page.len]));
        }
        if let Some(current) = core.current.as_ref().filter(|_| core.current_len > 0) {
            sources.push((core.current_file_pos, &current.as_bytes()[..core.current_len]));
        }
        // Newest first: each source starts at or after the older ones, and a newer copy of a
        // shared partial page holds a superset of the older one's bytes.
        for (file_pos, bytes) in sources.into_iter().rev() {
            let src_end = file_pos + bytes.len() as u64;
            let lo = pos.max(file_pos);
            let hi = end.min(src_end).min(covered_from);
            if lo < hi {
                out[(lo - pos) as usize..(hi - pos) as usize]
                    .copy_from_slice(&bytes[(lo - file_pos) as usize..(hi - file_pos) as usize]);
                covered_from = covered_from.min(lo);
            }
            if covered_from <= pos {
                return true;
            }
        }
        covered_from <= pos
    }

    async fn submit_full_chunk(&self) -> Result<(), WriteError> {
        // A completion may submit the full chunk meanwhile (kick_if_idle): then there is room
        // to copy into and nothing to wait for.
        if self.wait_for_room(|core| core.current_len == core.options.chunk_bytes).await? {
            WriterCore::submit_partial(&self.core);
        }
        Ok(())
    }

    /// Back-pressure: waits until fewer than `max_in_flight` writes are in flight, and returns
    /// true. Returns false as soon as `still_needed` says the caller no longer needs to submit.
    async fn wait_for_room(&self, still_needed: impl Fn(&WriterCore) -> bool) -> Result<bool, WriteError> {
        loop {
            {
                let core = self.core.borrow();
                if let Some(error) = &core.error {
                    return Err(error.clone());
                }
                if !still_needed(&core) {
                    return Ok(false);
                }
                if core.in_flight.len() < core.options.max_in_flight {
                    return Ok(true);
                }
            }
            // Wait for the oldest write to finish.
            let next = self.written.get() + 1;
            let _ = self.written.wait_for(next).await;
        }
    }

    /// Waits for every in-flight write and preallocation (used before truncating or closing
    /// the file).
    pub async fn drain(&self) -> Result<(), WriteError> {
        let target = self.logical_len();
        WriterCore::submit_partial(&self.core);
        let written = self.wait_written(target).await;
        self.wait_preallocated().await;
        written
    }

    /// Waits until no preallocation is in flight. Called only once every append has been
    /// written, so no new one can start.
    async fn wait_preallocated(&self) {
        let pending = self.core.borrow().preallocating.clone();
        if let Some(done) = pending {
            let _ = done.await;
        }
    }

    /// The file size the writer has preallocated up to (asked for; see the module docs).
    pub fn preallocated_len(&self) -> u64 {
        self.core.borrow().preallocated_to
    }

    /// Records that the file is already allocated up to `len` (Kafka's `preallocate`), so
    /// stepping starts there.
    pub fn note_preallocated(&self, len: u64) {
        let mut core = self.core.borrow_mut();
        core.preallocated_to = core.preallocated_to.max(len);
    }
}

/// A write recorded in `in_flight`, not yet handed to a task.
struct PlannedWrite {
    seq: u64,
    buf: Rc<DmaBuffer>,
    file_pos: u64,
    padded_len: usize,
    wait_for_previous: Option<DoneSignal>,
    done_tx: oneshot::Sender<()>,
}

/// A preallocation recorded in `preallocating`, not yet handed to a task.
struct PlannedPreallocation {
    target: u64,
    done_tx: oneshot::Sender<()>,
}

impl WriterCore {
    /// Records a write of `buf` at `file_pos` in `in_flight`. `ends_inside_page`: the next
    /// write of its last page must wait for it.
    fn plan_write(
        &mut self,
        buf: DmaBuffer,
        file_pos: u64,
        logical_len: usize,
        wait_for_previous: Option<DoneSignal>,
        ends_inside_page: bool,
    ) -> PlannedWrite {
        let padded_len = buf.len();
        assert_eq!(padded_len as u64, align_up(logical_len as u64), "a write covers whole pages");
        assert_eq!(file_pos % PAGE_BYTES, 0, "a write starts on a page");
        let buf = Rc::new(buf);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.push_back(InFlight { seq, file_pos, logical_len, buf: buf.clone(), done: false });
        let (done_tx, done_rx) = oneshot::channel();
        if ends_inside_page {
            self.unaligned_tail_done = Some(done_rx.shared());
        }
        PlannedWrite { seq, buf, file_pos, padded_len, wait_for_previous, done_tx }
    }

    /// Plans a preallocation if writes ending at `write_end` come within half a step of the
    /// preallocated size. The step follows the partition's write rate — about
    /// [`PREALLOCATE_AHEAD_MS`] of writes at the rate since the last preallocation — and is at
    /// least what the segment holds but at most four times that (a burst on a quiet partition
    /// does not reserve a whole step of disk), within [`PREALLOCATE_MIN_STEP_BYTES`] and
    /// `preallocate_max_step_bytes`. Writes do not wait for it: one that gets ahead of it
    /// extends the file the slow way, which is still correct (but slow: steps that only doubled
    /// from 16 KiB let a 50 MB/s stream outrun them often enough to raise its p99 ack latency
    /// from ~10 to ~70 ms).
    fn plan_preallocation(&mut self, write_end: u64) -> Option<PlannedPreallocation> {
        let max_step = self.options.preallocate_max_step_bytes;
        if max_step == 0 || self.preallocating.is_some() {
            return None;
        }
        let since_last = self.last_preallocation.map(|(at, end)| (write_end.saturating_sub(end), at.elapsed()));
        let step = preallocation_step_bytes(write_end, since_last, max_step);
        if write_end + step / 2 <= self.preallocated_to {
            return None;
        }
        let target = (write_end + step).next_multiple_of(PREALLOCATE_MIN_STEP_BYTES);
        self.preallocated_to = target;
        self.last_preallocation = Some((std::time::Instant::now(), write_end));
        let (done_tx, done_rx) = oneshot::channel::<()>();
        self.preallocating = Some(done_rx.shared());
        Some(PlannedPreallocation { target, done_tx })
    }

    /// The chunk appends are copied into, taken from the free list or allocated on first need:
    /// an idle writer holds no chunk (10,000 idle partitions would otherwise pin 10 GiB of
    /// address space and every touched page of it).
    fn current_chunk(&mut self) -> &mut DmaBuffer {
        if self.current.is_none() {
            let chunk = self.free.pop().unwrap_or_else(|| self.file.alloc_dma_buffer(self.options.chunk_bytes));
            self.current = Some(chunk);
        }
        self.current.as_mut().expect("just set")
    }

    /// A page buffer for file page `file_pos` holding `bytes` (already written: the next write
    /// of the page rewrites them with more).
    fn new_partial_page(&mut self, file_pos: u64, bytes: &[u8]) -> PartialPage {
        let mut buf = self.free_pages.pop().unwrap_or_else(|| self.file.alloc_dma_buffer(PAGE_BYTES as usize));
        buf.as_bytes_mut()[..bytes.len()].copy_from_slice(bytes);
        PartialPage { buf, file_pos, len: bytes.len(), submitted_len: bytes.len() }
    }

    /// Logical end of the file: every byte appended so far.
    fn logical_len(&self) -> u64 {
        match &self.page {
            Some(page) if self.current_len == 0 => page.file_pos + page.len as u64,
            _ => self.current_file_pos + self.current_len as u64,
        }
    }

    /// True when some appended bytes are not covered by a submitted write.
    fn has_unsubmitted(&self) -> bool {
        self.current_len > 0 || self.page.as_ref().is_some_and(|p| p.len > p.submitted_len)
    }

    fn fail(core: &Rc<RefCell<WriterCore>>, message: String, cause: Option<&std::io::Error>) -> WriteError {
        let error = WriteError::new(message, cause);
        let written = {
            let mut core = core.borrow_mut();
            if core.error.is_none() {
                FAILED_WRITERS.with(|n| n.set(n.get() + 1));
                crate::error_limited!(error = %error, "segment writer failed; appends fail until the log recovers");
                core.error = Some(error.clone());
            }
            core.written.clone()
        };
        written.fail();
        error
    }

    /// Submits the current chunk if the disk is idle and there is unwritten data.
    fn kick_if_idle(core: &Rc<RefCell<WriterCore>>) {
        let idle = {
            let c = core.borrow();
            c.error.is_none() && c.in_flight.is_empty() && c.has_unsubmitted()
        };
        if idle {
            Self::submit_partial(core);
        }
    }

    /// Submits every appended byte not yet covered by a write: first the partial page (if it
    /// gained bytes), then the chunk. A chunk that ends inside a page leaves that page in a
    /// fresh page buffer, and the next chunk starts at the page after it.
    fn submit_partial(core_rc: &Rc<RefCell<WriterCore>>) {
        let mut core = core_rc.borrow_mut();
        if core.error.is_some() || !core.has_unsubmitted() {
            return;
        }
        // glommio polls a spawned task once inside `spawn_local`: tasks are spawned only after
        // the borrow is released.
        let mut writes: Vec<PlannedWrite> = Vec::with_capacity(2);
        if core.page.as_ref().is_some_and(|p| p.len > p.submitted_len) {
            let mut page = core.page.take().expect("page");
            let (file_pos, len) = (page.file_pos, page.len);
            page.buf.as_bytes_mut()[len..].fill(0);
            let ends_inside_page = len < PAGE_BYTES as usize;
            if ends_inside_page {
                // Still partial: keep completing a copy; the chunk is empty meanwhile.
                debug_assert_eq!(core.current_len, 0);
                core.page = Some(core.new_partial_page(file_pos, &page.buf.as_bytes()[..len]));
            }
            // The page's previous write ended inside it: it must land first.
            let wait_for_previous = core.unaligned_tail_done.take();
            writes.push(core.plan_write(page.buf, file_pos, len, wait_for_previous, ends_inside_page));
        }
        if core.current_len > 0 {
            debug_assert!(core.page.is_none(), "a partial page is completed before the chunk grows");
            let logical_len = core.current_len;
            let file_pos = core.current_file_pos;
            let padded_len = align_up(logical_len as u64) as usize;
            let tail_start = align_down(logical_len as u64) as usize;
            let mut buf = core.current.take().expect("current chunk");
            // Zero the padding so stale bytes of a recycled buffer never reach the disk.
            buf.as_bytes_mut()[logical_len..padded_len].fill(0);
            let tail_len = logical_len - tail_start;
            if tail_len > 0 {
                let page_pos = file_pos + tail_start as u64;
                core.page = Some(core.new_partial_page(page_pos, &buf.as_bytes()[tail_start..logical_len]));
                core.current_file_pos = page_pos + PAGE_BYTES;
            } else {
                core.current_file_pos = file_pos + logical_len as u64;
            }
            // The next chunk is taken when the next append needs it (see `current_chunk`).
            core.current_len = 0;
            buf.trim_to_size(padded_len);
            // A chunk starts on an untouched page: it overlaps no earlier write.
            writes.push(core.plan_write(buf, file_pos, logical_len, None, tail_len > 0));
        }
        let write_end = core.current_file_pos + core.current_len as u64;
        let preallocation = core.plan_preallocation(align_up(write_end));
        let file = core.file.clone();
        drop(core);
        Self::spawn_planned(core_rc, file, preallocation, writes);
    }

    /// Spawns a planned preallocation (first, so the writes find the space) and writes. Called
    /// with the core not borrowed: glommio polls a spawned task once inside `spawn_local`.
    fn spawn_planned(
        core_rc: &Rc<RefCell<WriterCore>>,
        file: Rc<DmaFile>,
        preallocation: Option<PlannedPreallocation>,
        writes: impl IntoIterator<Item = PlannedWrite>,
    ) {
        if let Some(p) = preallocation {
            Self::spawn_preallocation(core_rc, file.clone(), p);
        }
        for w in writes {
            Self::spawn_write(core_rc, file.clone(), w);
        }
    }

    /// Spawns the task that performs a planned write (after the write it must wait for).
    fn spawn_write(core_rc: &Rc<RefCell<WriterCore>>, file: Rc<DmaFile>, w: PlannedWrite) {
        let core_rc = core_rc.clone();
        {
            let mut core = core_rc.borrow_mut();
            core.io_issued += 1;
            core.writes_issued += 1;
        }
        glommio::spawn_local(async move {
            let PlannedWrite { seq, buf, file_pos, padded_len, wait_for_previous, done_tx } = w;
            if let Some(previous) = wait_for_previous {
                let _ = previous.await;
            }
            let failed = core_rc.borrow().error.is_some();
            // After a failure nothing more is written; the skipped write stays behind the failed
            // one in `in_flight`, so `written` never passes the failure.
            let result = if failed { Ok(padded_len) } else { file.write_rc_at(buf, file_pos).await };
            let _ = done_tx.send(());
            match result {
                Ok(n) if n == padded_len => Self::complete(&core_rc, seq),
                Ok(n) => {
                    Self::fail(&core_rc, format!("short write at {file_pos}: {n} of {padded_len} bytes"), None);
                }
                Err(e) => {
                    let e = std::io::Error::from(e);
                    Self::fail(&core_rc, format!("write at {file_pos}: {e}"), Some(&e));
                }
            }
            Self::note_io_finished(&core_rc);
        })
        .detach();
    }

    fn note_io_finished(core_rc: &Rc<RefCell<WriterCore>>) {
        let (finished, count) = {
            let core = core_rc.borrow();
            (core.io_finished.clone(), core.io_finished.get() + 1)
        };
        finished.advance(count);
    }

    /// Spawns a planned preallocation.
    fn spawn_preallocation(core_rc: &Rc<RefCell<WriterCore>>, file: Rc<DmaFile>, p: PlannedPreallocation) {
        let core_rc = core_rc.clone();
        core_rc.borrow_mut().io_issued += 1;
        glommio::spawn_local(async move {
            // keep_size = false: the file's size becomes `target`, so writes below it are not
            // "extending" and ext4 can do them inline.
            let result = file.pre_allocate(p.target, false).await;
            {
                let mut core = core_rc.borrow_mut();
                core.preallocating = None;
                if let Err(e) = result {
                    // Not fatal: the writes extend the file themselves, as without preallocation.
                    crate::warn_limited!(error = %e, target = p.target, "segment preallocation failed; not preallocating this segment");
                    core.options.preallocate_max_step_bytes = 0;
                }
            }
            let _ = p.done_tx.send(());
            Self::note_io_finished(&core_rc);
        })
        .detach();
    }

    fn complete(core_rc: &Rc<RefCell<WriterCore>>, seq: u64) {
        let (advance_to, written) = {
            let mut core = core_rc.borrow_mut();
            if let Some(w) = core.in_flight.iter_mut().find(|w| w.seq == seq) {
                w.done = true;
            }
            let mut advance_to = None;
            while core.in_flight.front().is_some_and(|w| w.done) {
                let w = core.in_flight.pop_front().expect("front");
                advance_to = Some(w.file_pos + w.logical_len as u64);
                // Only untrimmed buffers keep their whole capacity (trimmed ones can't grow back);
                // foreign ones go back to their owner.
                if let Some(buf) = Rc::try_unwrap(w.buf).ok().filter(|b| !b.is_foreign()) {
                    if buf.len() == core.options.chunk_bytes && core.free.len() < core.options.max_in_flight {
                        core.free.push(buf);
                    } else if buf.len() == PAGE_BYTES as usize && core.free_pages.len() < 2 {
                        core.free_pages.push(buf);
                    }
                }
            }
            if core.in_flight.is_empty() && core.current_len == 0 {
                // Idle: give the chunk memory back (the partial page stays: 4 KiB).
                core.free.clear();
                core.current = None;
            }
            (advance_to, core.written.clone())
        };
        if let Some(len) = advance_to {
            written.advance(len);
        }
        // More data may have arrived while this write was in flight.
        Self::kick_if_idle(core_rc);
    }
}

/// The next preallocation step for a segment whose writes end at `write_end`, given the bytes
/// written and the time passed since the last preallocation was planned (`None`: the first).
/// Pure; see `WriterCore::plan_preallocation` for the rule.
pub fn preallocation_step_bytes(write_end: u64, since_last: Option<(u64, std::time::Duration)>, max_step: u64) -> u64 {
    let rate_step = since_last.map_or(0, |(written, elapsed)| {
        let elapsed_us = (elapsed.as_micros() as u64).max(1);
        written.saturating_mul(PREALLOCATE_AHEAD_MS * 1000) / elapsed_us
    });
    rate_step
        .max(write_end)
        .min(write_end.saturating_mul(4))
        .clamp(PREALLOCATE_MIN_STEP_BYTES, max_step.max(PREALLOCATE_MIN_STEP_BYTES))
}

thread_local! {
    /// Writers of this shard that have failed, ever (see [`failed_writer_count`]).
    static FAILED_WRITERS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many writers of the calling shard have failed since it started: the shard looks for
/// partitions to recover only when this moved (or recoveries are still settling), instead of
/// asking every partition every few milliseconds.
pub fn failed_writer_count() -> u64 {
    FAILED_WRITERS.with(|n| n.get())
}

/// Smallest run of whole pages [`SegmentWriter::append_shared`] writes straight from the
/// caller's memory; below it, copying is cheaper than another write. A batch written from its
/// request takes a write more than a copied one (its first page, its whole pages, its last
/// bytes, against the page and one chunk): at 1,000 partitions each sent ~100 KB batches and
/// writing them in place (at 64 KiB) cost 13% more broker CPU than copying them
/// (`tuning/results/partitions-spread`).
pub const MIN_DIRECT_WRITE_BYTES: u64 = 256 * 1024;

/// Whether `data`, appended at file position `file_pos`, sits in memory so that its whole
/// file pages are whole memory pages (the alignment direct I/O needs).
pub fn is_direct_source(data: &[u8], file_pos: u64) -> bool {
    (data.as_ptr() as u64).wrapping_sub(file_pos).is_multiple_of(PAGE_BYTES)
}

/// Rounds `v` down to a page boundary.
pub fn align_down(v: u64) -> u64 {
    v & !(PAGE_BYTES - 1)
}

/// Rounds `v` up to a page boundary.
pub fn align_up(v: u64) -> u64 {
    (v + PAGE_BYTES - 1) & !(PAGE_BYTES - 1)
}
