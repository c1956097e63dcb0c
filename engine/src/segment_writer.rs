//! Aligned write-behind for one segment file opened with `O_DIRECT`.
//!
//! Owns: the in-memory chunk being filled, the chunks whose DMA writes are in flight, and the
//! `written` watermark (how many logical bytes of the file are on disk, contiguously).
//!
//! How it writes: appends are copied into a chunk of `chunk_bytes` (a multiple of the 4 KiB
//! page). A full chunk is submitted as one aligned write; several full chunks may be in flight
//! at once (at most `max_in_flight`). When nothing is in flight and the chunk holds unwritten
//! bytes, it is submitted *eagerly* as a partial write: its last, partial page is padded with
//! zeros, and a fresh chunk is seeded with a copy of that partial page, so the next write
//! rewrites the page with more data (the "partial tail page" of Redpanda's segment_appender).
//! Under load, bytes accumulate while one write is in flight, so writes grow by themselves
//! (group write) up to whole chunks.
//!
//! Ordering contract: a write that ends inside a page is always completed before the next
//! write (which rewrites that page) is submitted; writes that end on a page boundary never
//! overlap a later write, so they may complete in any order. `written` only advances over a
//! contiguous prefix of completed writes.
//!
//! Reads of bytes not yet on disk are served from the in-flight chunks and the current chunk
//! ([`SegmentWriter::copy_unwritten`]).
//!
//! Must never: issue a blocking syscall (all I/O goes through glommio's io_uring), let stale
//! buffer bytes reach the disk (padding is zeroed), or advance `written` past a gap.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use futures::channel::oneshot;
use futures::future::{FutureExt, Shared};
use glommio::io::{DmaBuffer, DmaFile};

use crate::watermark::Watermark;

/// Page size every direct-I/O write is aligned to.
pub const PAGE_BYTES: u64 = 4096;

/// Tuning knobs for one writer.
#[derive(Clone, Copy, Debug)]
pub struct WriterOptions {
    /// Size of one write-behind chunk (a multiple of [`PAGE_BYTES`]).
    pub chunk_bytes: usize,
    /// How many chunk writes may be in flight at once.
    pub max_in_flight: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions { chunk_bytes: 1 << 20, max_in_flight: 4 }
    }
}

impl WriterOptions {
    /// Most memory one writer holds: every in-flight chunk plus the one being filled.
    pub fn max_memory_bytes(&self) -> usize {
        self.chunk_bytes * (self.max_in_flight + 1)
    }
}

/// A write failure; the writer is unusable afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteError(pub String);

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "segment write failed: {}", self.0)
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

struct WriterCore {
    file: Rc<DmaFile>,
    options: WriterOptions,
    /// Chunk being filled; its byte 0 is file position `current_file_pos` (page aligned).
    current: Option<DmaBuffer>,
    current_file_pos: u64,
    current_len: usize,
    /// Bytes of `current` already covered by a submitted write (the seeded tail page).
    submitted_len: usize,
    in_flight: VecDeque<InFlight>,
    next_seq: u64,
    /// Completion of the last submitted write if it ended inside a page.
    unaligned_tail_done: Option<DoneSignal>,
    free: Vec<DmaBuffer>,
    error: Option<WriteError>,
    written: Rc<Watermark>,
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
        let mut current = file.alloc_dma_buffer(options.chunk_bytes);
        current.as_bytes_mut()[..tail_page.len()].copy_from_slice(tail_page);
        let written = Watermark::new(existing_len);
        let core = WriterCore {
            file,
            options,
            current: Some(current),
            current_file_pos: tail_start,
            current_len: tail_page.len(),
            submitted_len: tail_page.len(),
            in_flight: VecDeque::new(),
            next_seq: 0,
            unaligned_tail_done: None,
            free: Vec::new(),
            error: None,
            written: written.clone(),
        };
        SegmentWriter { core: Rc::new(RefCell::new(core)), written }
    }

    /// Logical end of the file: every byte appended so far.
    pub fn logical_len(&self) -> u64 {
        let core = self.core.borrow();
        core.current_file_pos + core.current_len as u64
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
    pub async fn append(&self, mut data: &[u8]) -> Result<(), WriteError> {
        while !data.is_empty() {
            let copied = {
                let mut core = self.core.borrow_mut();
                if let Some(error) = &core.error {
                    return Err(error.clone());
                }
                let space = core.options.chunk_bytes - core.current_len;
                let n = space.min(data.len());
                if n > 0 {
                    let start = core.current_len;
                    core.current.as_mut().expect("current chunk").as_bytes_mut()[start..start + n]
                        .copy_from_slice(&data[..n]);
                    core.current_len += n;
                }
                n
            };
            data = &data[copied..];
            if self.core.borrow().current_len == self.core.borrow().options.chunk_bytes {
                self.submit_full_chunk().await?;
            }
        }
        WriterCore::kick_if_idle(&self.core);
        Ok(())
    }

    /// Submits every appended byte and waits until all of it is written (not synced).
    pub async fn write_out(&self) -> Result<(), WriteError> {
        let target = self.logical_len();
        WriterCore::submit_partial(&self.core);
        self.wait_written(target).await
    }

    /// Waits until `len` logical bytes are written to the file.
    pub async fn wait_written(&self, len: u64) -> Result<(), WriteError> {
        loop {
            if let Some(error) = self.error() {
                return Err(error);
            }
            if self.written.get() >= len {
                return Ok(());
            }
            // Make sure something is in flight that will move `written`.
            WriterCore::kick_if_idle(&self.core);
            if self.written.wait_for(len).await.is_err() {
                return Err(self.error().unwrap_or_else(|| WriteError("writer failed".into())));
            }
        }
    }

    /// Writes out everything appended so far and `fdatasync`s the file (through io_uring).
    pub async fn sync(&self) -> Result<(), WriteError> {
        self.write_out().await?;
        let file = self.core.borrow().file.clone();
        file.fdatasync().await.map_err(|e| self.fail(format!("fdatasync: {e}")))
    }

    fn fail(&self, message: String) -> WriteError {
        WriterCore::fail(&self.core, message)
    }

    /// Copies the logical bytes `[pos, pos + out.len())` that are not on disk yet from memory.
    /// Returns false if part of the range is neither in memory nor beyond `written` (callers
    /// then read it from the file).
    pub fn copy_unwritten(&self, pos: u64, out: &mut [u8]) -> bool {
        let core = self.core.borrow();
        let end = pos + out.len() as u64;
        let logical_end = core.current_file_pos + core.current_len as u64;
        if end > logical_end {
            return false;
        }
        let mut covered_from = end; // lowest position copied so far, working down from `end`
        let mut sources: Vec<(u64, &[u8])> =
            core.in_flight.iter().map(|w| (w.file_pos, &w.buf.as_bytes()[..w.logical_len])).collect();
        sources.push((core.current_file_pos, &core.current.as_ref().expect("chunk").as_bytes()[..core.current_len]));
        // Newest first: later chunks hold a superset of the shared tail page.
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
        loop {
            {
                let core = self.core.borrow();
                if let Some(error) = &core.error {
                    return Err(error.clone());
                }
                // A completion may already have submitted the full chunk (kick_if_idle): then
                // there is room to copy into and nothing to wait for.
                if core.current_len < core.options.chunk_bytes {
                    return Ok(());
                }
                if core.in_flight.len() < core.options.max_in_flight {
                    break;
                }
            }
            // Back-pressure: wait for the oldest write to finish.
            let next = self.written.get() + 1;
            let _ = self.written.wait_for(next).await;
        }
        WriterCore::submit_partial(&self.core);
        Ok(())
    }

    /// Waits for every in-flight write (used before truncating or closing the file).
    pub async fn drain(&self) -> Result<(), WriteError> {
        let target = self.logical_len();
        WriterCore::submit_partial(&self.core);
        self.wait_written(target).await
    }
}

impl WriterCore {
    fn fail(core: &Rc<RefCell<WriterCore>>, message: String) -> WriteError {
        let error = WriteError(message);
        let written = {
            let mut core = core.borrow_mut();
            if core.error.is_none() {
                tracing::error!(error = %error, "segment writer failed; log is now read-only");
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
            c.error.is_none() && c.in_flight.is_empty() && c.current_len > c.submitted_len
        };
        if idle {
            Self::submit_partial(core);
        }
    }

    /// Hands the current chunk to a write task (full or partial) and starts a fresh chunk,
    /// seeded with the partial tail page if the chunk ended inside a page.
    fn submit_partial(core_rc: &Rc<RefCell<WriterCore>>) {
        let mut core = core_rc.borrow_mut();
        if core.error.is_some() || core.current_len == core.submitted_len {
            return;
        }
        let chunk_bytes = core.options.chunk_bytes;
        let logical_len = core.current_len;
        let file_pos = core.current_file_pos;
        let padded_len = align_up(logical_len as u64) as usize;
        let tail_start = align_down(logical_len as u64) as usize;
        let mut buf = core.current.take().expect("current chunk");
        // Zero the padding so stale bytes of a recycled buffer never reach the disk.
        buf.as_bytes_mut()[logical_len..padded_len].fill(0);
        let mut next = core.free.pop().unwrap_or_else(|| core.file.alloc_dma_buffer(chunk_bytes));
        let tail_len = logical_len - tail_start;
        next.as_bytes_mut()[..tail_len].copy_from_slice(&buf.as_bytes()[tail_start..logical_len]);
        core.current = Some(next);
        core.current_file_pos = file_pos + tail_start as u64;
        core.current_len = tail_len;
        core.submitted_len = tail_len;

        buf.trim_to_size(padded_len);
        let buf = Rc::new(buf);
        let seq = core.next_seq;
        core.next_seq += 1;
        core.in_flight.push_back(InFlight { seq, file_pos, logical_len, buf: buf.clone(), done: false });
        let wait_for_previous = core.unaligned_tail_done.take();
        let (done_tx, done_rx) = oneshot::channel();
        if tail_len > 0 {
            core.unaligned_tail_done = Some(done_rx.shared());
        }
        let file = core.file.clone();
        drop(core);
        let core_rc = core_rc.clone();
        glommio::spawn_local(async move {
            if let Some(previous) = wait_for_previous {
                let _ = previous.await;
            }
            let failed = core_rc.borrow().error.is_some();
            let result = if failed { Ok(padded_len) } else { file.write_rc_at(buf, file_pos).await };
            let _ = done_tx.send(());
            match result {
                Ok(n) if n == padded_len => Self::complete(&core_rc, seq),
                Ok(n) => {
                    Self::fail(&core_rc, format!("short write at {file_pos}: {n} of {padded_len} bytes"));
                }
                Err(e) => {
                    Self::fail(&core_rc, format!("write at {file_pos}: {e}"));
                }
            }
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
                // Only full chunks keep their whole capacity (trimmed ones can't grow back).
                if let Ok(buf) = Rc::try_unwrap(w.buf) {
                    if buf.len() == core.options.chunk_bytes && core.free.len() < core.options.max_in_flight {
                        core.free.push(buf);
                    }
                }
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

/// Rounds `v` down to a page boundary.
pub fn align_down(v: u64) -> u64 {
    v & !(PAGE_BYTES - 1)
}

/// Rounds `v` up to a page boundary.
pub fn align_up(v: u64) -> u64 {
    (v + PAGE_BYTES - 1) & !(PAGE_BYTES - 1)
}
