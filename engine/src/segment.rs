//! One log segment: a `.log` file of record batches plus its sparse offset and time indexes.
//!
//! Owns: the segment's file handle, its logical size, its in-memory indexes and, for the
//! active segment only, the [`SegmentWriter`] that appends to it. Finds the batch that
//! *contains* an offset (index lookup, then a header walk) and hands out byte ranges.
//!
//! Index convention: an offset-index entry is (base offset of a batch, file position of that
//! batch), added when more than `index.interval.bytes` were appended since the last entry;
//! a time-index entry is (max timestamp so far, base offset of the batch holding it).
//!
//! Must never: validate CRCs on the read path (recovery does that), copy record bytes except
//! the unwritten tail it must serve from memory, or hold a `RefCell` borrow across an await
//! (callers take what they need — the file `Rc`, a writer clone — and drop the borrow).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use glommio::io::{DmaFile, OpenOptions};

use crate::batch::{BatchHeader, BatchInfo, BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};
use crate::offset_index::{log_file_name, offset_index_file_name, time_index_file_name, OffsetIndex};
use crate::segment_file::SegmentFile;
use crate::segment_writer::{SegmentWriter, WriterOptions, PAGE_BYTES};
use crate::tail_cache::TailCache;
use crate::time_index::TimeIndex;

/// A segment's tail cache, shared with in-flight reads.
pub type SharedTailCache = Rc<RefCell<TailCache>>;

/// Bytes read per step when walking batch headers on disk.
const HEADER_SCAN_READ_BYTES: usize = 64 * 1024;

/// A contiguous piece of a read result.
#[derive(Clone)]
pub enum ReadChunk {
    /// Bytes that are in the segment file: serve with sendfile/splice or read them. `reader`
    /// is a buffered (non-`O_DIRECT`) handle on the same file for `sendfile`, `Send` so the
    /// range can be handed to the connection's shard. `stable_end`: the file's bytes below it
    /// are final (never rewritten: whole pages below the written end of the active segment,
    /// everything of a sealed one), so the page cache may read them ahead.
    File { file: Rc<DmaFile>, position: u64, len: usize, reader: Option<Arc<std::fs::File>>, stable_end: u64 },
    /// Bytes not on disk yet (the write-behind tail), already copied out.
    Memory(Bytes),
}

impl std::fmt::Debug for ReadChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadChunk::File { position, len, .. } => write!(f, "File{{position: {position}, len: {len}}}"),
            ReadChunk::Memory(b) => write!(f, "Memory({} bytes)", b.len()),
        }
    }
}

impl ReadChunk {
    pub fn len(&self) -> usize {
        match self {
            ReadChunk::File { len, .. } => *len,
            ReadChunk::Memory(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The fields of a batch header the read path needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLocation {
    pub position: u64,
    pub base_offset: i64,
    pub last_offset: i64,
    pub total_len: u64,
    pub max_timestamp_ms: i64,
}

/// Result of walking batch headers in a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderScan {
    /// A batch whose last offset is `>= target` starts at this location.
    Found(BatchLocation),
    /// No match in the buffer; continue at this absolute position.
    Continue(u64),
    /// The bytes at this absolute position are not a batch header.
    Corrupt(u64),
}

/// Walks headers in `buf` (file bytes starting at `buf_pos`) from `start` looking for the first
/// batch whose last offset is `>= target`, or (with `by_timestamp`) whose max timestamp is
/// `>= target`. `segment_end` bounds the walk. Pure: unit-testable without a runtime.
pub fn scan_headers(
    buf: &[u8],
    buf_pos: u64,
    start: u64,
    segment_end: u64,
    target: i64,
    by_timestamp: bool,
) -> HeaderScan {
    let mut pos = start;
    loop {
        if pos >= segment_end {
            return HeaderScan::Continue(pos);
        }
        let rel = (pos - buf_pos) as usize;
        if rel + BATCH_HEADER_LEN > buf.len() {
            return HeaderScan::Continue(pos);
        }
        let header = match BatchHeader::parse(&buf[rel..]) {
            Ok(h) => h,
            Err(_) => return HeaderScan::Corrupt(pos),
        };
        let batch_length = header.batch_length();
        if header.magic() != MAGIC_V2
            || batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32
            || header.last_offset_delta() < 0
        {
            return HeaderScan::Corrupt(pos);
        }
        let total_len = batch_length as u64 + LOG_OVERHEAD as u64;
        if pos + total_len > segment_end {
            return HeaderScan::Corrupt(pos);
        }
        let location = BatchLocation {
            position: pos,
            base_offset: header.base_offset(),
            last_offset: header.base_offset() + header.last_offset_delta() as i64,
            total_len,
            max_timestamp_ms: header.max_timestamp(),
        };
        let hit = if by_timestamp { location.max_timestamp_ms >= target } else { location.last_offset >= target };
        if hit {
            return HeaderScan::Found(location);
        }
        pos += total_len;
    }
}

/// Per-segment settings taken from the topic config at creation/append time.
#[derive(Clone, Copy, Debug)]
pub struct SegmentSettings {
    pub index_interval_bytes: u64,
    pub max_index_bytes: usize,
    /// Kafka's `preallocate`: a new segment's file is allocated to this size up front
    /// (`segment.bytes` when set, 0 otherwise). The writer preallocates in steps regardless.
    pub preallocate_bytes: u64,
}

/// One segment. See the module docs.
pub struct Segment {
    pub base_offset: i64,
    pub log_path: PathBuf,
    /// The `.log` file: open while this is the active segment, opened on demand and closed
    /// by the shard's LRU once sealed ([`crate::segment_file`]).
    pub file: Rc<SegmentFile>,
    /// Logical size: bytes of whole batches in the file.
    pub size_bytes: u64,
    /// Offset after the last batch; `base_offset` when empty.
    pub next_offset: i64,
    pub offset_index: OffsetIndex,
    pub time_index: TimeIndex,
    pub bytes_since_index_entry: u64,
    /// Largest batch max-timestamp seen, and the base offset of that batch (-1 when none).
    pub max_timestamp_ms: i64,
    pub offset_of_max_timestamp: i64,
    /// Max timestamp of the first batch (Kafka's `rollingBasedTimestamp`).
    pub first_batch_timestamp_ms: Option<i64>,
    /// Wall-clock time the segment was created or opened (for `segment.ms` when empty).
    pub created_at_ms: i64,
    /// Present only while this is the active segment.
    pub writer: Option<SegmentWriter>,
    /// Recent bytes in memory; present only while this is the active segment.
    pub tail_cache: Option<SharedTailCache>,
    /// True when the on-disk index files may not match the in-memory ones.
    pub indexes_dirty: bool,
    /// Transactions aborted by a marker in this segment (`.txnindex`, [`crate::txn_index`]).
    pub txn_index: crate::txn_index::TxnIndex,
}

/// Clears `O_DIRECT` on a segment file (`sluice.segment.io=buffered`): the same aligned
/// writes and reads then go through the page cache, as Kafka's do. For experiments comparing
/// the two (tuning/); direct I/O stays the default. `fcntl(F_SETFL)` does not block.
pub fn use_page_cache(file: &DmaFile) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a file descriptor this DmaFile owns and keeps open; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Segment {
    pub fn paths(dir: &Path, base_offset: i64) -> (PathBuf, PathBuf, PathBuf) {
        (
            dir.join(log_file_name(base_offset)),
            dir.join(offset_index_file_name(base_offset)),
            dir.join(time_index_file_name(base_offset)),
        )
    }

    /// Creates a new, empty, active segment. `direct_io = false` puts the file in page-cache
    /// mode (see [`use_page_cache`]).
    pub async fn create(
        dir: &Path,
        base_offset: i64,
        settings: SegmentSettings,
        writer_options: WriterOptions,
        direct_io: bool,
        now_ms: i64,
    ) -> std::io::Result<Segment> {
        let (log_path, _, _) = Self::paths(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(&log_path)
            .await
            .map_err(std::io::Error::from)?;
        if !direct_io {
            use_page_cache(&file)?;
        }
        let file = Rc::new(file);
        let writer = SegmentWriter::new(file.clone(), 0, &[], writer_options);
        let segment_file = SegmentFile::from_open(log_path.clone(), direct_io, file.clone(), true);
        if settings.preallocate_bytes > 0 {
            // io_uring fallocate: a kernel worker does it, the shard does not block. A file
            // system without fallocate only loses the speed-up, as in Kafka.
            match file.pre_allocate(settings.preallocate_bytes, false).await {
                Ok(()) => writer.note_preallocated(settings.preallocate_bytes),
                Err(e) => {
                    crate::warn_limited!(path = %log_path.display(), error = %e, "could not preallocate the segment")
                }
            }
        }
        Ok(Segment::from_parts(base_offset, log_path, segment_file, 0, settings, Some(writer), now_ms))
    }

    /// Opens an existing `.log` file read+write (for recovery or as a sealed segment).
    pub async fn open_file(log_path: &Path, direct_io: bool) -> std::io::Result<Rc<DmaFile>> {
        let file = OpenOptions::new().read(true).write(true).dma_open(log_path).await.map_err(std::io::Error::from)?;
        if !direct_io {
            use_page_cache(&file)?;
        }
        Ok(Rc::new(file))
    }

    pub fn from_parts(
        base_offset: i64,
        log_path: PathBuf,
        file: Rc<SegmentFile>,
        size_bytes: u64,
        settings: SegmentSettings,
        writer: Option<SegmentWriter>,
        now_ms: i64,
    ) -> Segment {
        Segment {
            base_offset,
            log_path,
            file,
            size_bytes,
            next_offset: base_offset,
            offset_index: OffsetIndex::new(base_offset, settings.max_index_bytes),
            time_index: TimeIndex::new(base_offset, settings.max_index_bytes),
            bytes_since_index_entry: 0,
            max_timestamp_ms: -1,
            offset_of_max_timestamp: -1,
            first_batch_timestamp_ms: None,
            created_at_ms: now_ms,
            writer,
            tail_cache: None,
            indexes_dirty: true,
            txn_index: Default::default(),
        }
    }

    /// Records a batch that now sits at `position` (bytes already handed to the writer or
    /// found on disk by recovery): size, next offset, timestamps, sparse index entries.
    pub fn note_batch(&mut self, position: u64, info: &BatchInfo, index_interval_bytes: u64) {
        assert_eq!(position, self.size_bytes, "batches are recorded in file order");
        assert!(
            info.base_offset >= self.next_offset,
            "offsets must strictly increase: batch at {} recorded after offset {}",
            info.base_offset,
            self.next_offset - 1
        );
        if self.bytes_since_index_entry > index_interval_bytes {
            if position <= u32::MAX as u64 && self.offset_index.append(info.base_offset, position as u32) {
                self.time_index.maybe_append(self.max_timestamp_ms, self.offset_of_max_timestamp);
            }
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += info.total_len as u64;
        self.size_bytes = position + info.total_len as u64;
        self.next_offset = info.base_offset + info.last_offset_delta as i64 + 1;
        if info.max_timestamp > self.max_timestamp_ms {
            self.max_timestamp_ms = info.max_timestamp;
            self.offset_of_max_timestamp = info.base_offset;
        }
        if self.first_batch_timestamp_ms.is_none() {
            self.first_batch_timestamp_ms = Some(info.max_timestamp);
        }
        self.indexes_dirty = true;
    }

    pub fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }

    pub fn is_index_full(&self) -> bool {
        self.offset_index.is_full() || self.time_index.is_full()
    }

    /// Whether appending a batch of `batch_bytes` with max timestamp `batch_max_timestamp_ms`
    /// and last offset `last_offset` requires a new segment first (Kafka's `shouldRoll`).
    pub fn should_roll(
        &self,
        batch_bytes: u64,
        batch_max_timestamp_ms: i64,
        last_offset: i64,
        segment_bytes: u64,
        segment_ms: i64,
        now_ms: i64,
    ) -> bool {
        if self.is_empty() {
            return false;
        }
        let time_waited_ms = match self.first_batch_timestamp_ms {
            Some(first) if first >= 0 => batch_max_timestamp_ms.saturating_sub(first),
            _ => now_ms.saturating_sub(self.created_at_ms),
        };
        self.size_bytes + batch_bytes > segment_bytes
            || time_waited_ms > segment_ms
            || self.is_index_full()
            || !self.offset_index.can_append_offset(last_offset)
    }

    /// Reads the logical bytes `[pos, pos + len)`: from the writer's memory for the part not
    /// written yet, from the file for the rest.
    pub async fn read_bytes(
        file: &Rc<DmaFile>,
        writer: Option<&SegmentWriter>,
        cache: Option<&SharedTailCache>,
        pos: u64,
        len: usize,
    ) -> std::io::Result<Vec<u8>> {
        if let Some(slices) = cache.and_then(|c| c.borrow_mut().slices(pos, len)) {
            return Ok(slices.concat());
        }
        let mut out = vec![0u8; len];
        let end = pos + len as u64;
        let mut file_end = end;
        if let Some(writer) = writer {
            let written = writer.written_len();
            if end > written {
                let mem_from = pos.max(written);
                let rel = (mem_from - pos) as usize;
                if !writer.copy_unwritten(mem_from, &mut out[rel..]) {
                    return Err(std::io::Error::other(format!(
                        "bytes {mem_from}..{end} are neither written nor buffered"
                    )));
                }
                file_end = mem_from;
            }
        }
        if file_end > pos {
            let want = (file_end - pos) as usize;
            let got = file.read_at(pos, want).await.map_err(std::io::Error::from)?;
            if got.len() < want {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("short read at {pos}: {} of {want}", got.len()),
                ));
            }
            out[..want].copy_from_slice(&got[..want]);
        }
        Ok(out)
    }

    /// Turns a byte range of this segment into read chunks (file part + unwritten tail).
    pub fn chunks(
        file: &Rc<DmaFile>,
        writer: Option<&SegmentWriter>,
        cache: Option<&SharedTailCache>,
        reader: Option<&Arc<std::fs::File>>,
        pos: u64,
        len: usize,
    ) -> std::io::Result<Vec<ReadChunk>> {
        if let Some(slices) = cache.and_then(|c| c.borrow_mut().slices(pos, len)) {
            crate::shard_metrics::note_tail_cache_read(true);
            return Ok(slices.into_iter().map(ReadChunk::Memory).collect());
        }
        crate::shard_metrics::note_tail_cache_read(false);
        let end = pos + len as u64;
        let mut chunks = Vec::with_capacity(2);
        let written = writer.map_or(u64::MAX, |w| w.written_len());
        let file_end = end.min(written.max(pos));
        if file_end > pos {
            // The active segment's partial last page is rewritten when it fills up: not stable.
            let stable_end = writer.map_or(u64::MAX, |_| written / PAGE_BYTES * PAGE_BYTES);
            chunks.push(ReadChunk::File {
                file: file.clone(),
                position: pos,
                len: (file_end - pos) as usize,
                reader: reader.cloned(),
                stable_end,
            });
        }
        if end > file_end {
            let mut mem = vec![0u8; (end - file_end) as usize];
            let writer = writer.expect("only the active segment has unwritten bytes");
            if !writer.copy_unwritten(file_end, &mut mem) {
                return Err(std::io::Error::other(format!("bytes {file_end}..{end} are neither written nor buffered")));
            }
            chunks.push(ReadChunk::Memory(Bytes::from(mem)));
        }
        Ok(chunks)
    }

    /// Finds the first batch at or after `start` (a batch boundary) whose last offset (or max
    /// timestamp) is `>= target`, reading headers from file/memory. `Ok(None)`: not in segment.
    pub async fn find_batch(
        file: &Rc<DmaFile>,
        writer: Option<&SegmentWriter>,
        cache: Option<&SharedTailCache>,
        start: u64,
        segment_end: u64,
        target: i64,
        by_timestamp: bool,
    ) -> std::io::Result<Result<Option<BatchLocation>, u64>> {
        let mut pos = start;
        while pos < segment_end {
            let want = HEADER_SCAN_READ_BYTES.min((segment_end - pos) as usize);
            let buf = Self::read_bytes(file, writer, cache, pos, want).await?;
            match scan_headers(&buf, pos, pos, segment_end, target, by_timestamp) {
                HeaderScan::Found(location) => return Ok(Ok(Some(location))),
                HeaderScan::Corrupt(at) => return Ok(Err(at)),
                HeaderScan::Continue(next) => {
                    if next == pos {
                        // Header straddles the buffer end: only possible when fewer than a
                        // header's bytes remain, which means the segment is torn.
                        return Ok(Err(pos));
                    }
                    pos = next;
                }
            }
        }
        Ok(Ok(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::build_batch_of_size;

    fn log_of(batches: &[(i64, usize)]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(base, count) in batches {
            out.extend_from_slice(&build_batch_of_size(base, count, 10, 1000 + base));
        }
        out
    }

    #[test]
    fn scan_finds_batch_containing_offset() {
        let log = log_of(&[(0, 3), (3, 2), (5, 5)]);
        let end = log.len() as u64;
        let first_len = build_batch_of_size(0, 3, 10, 0).len() as u64;
        match scan_headers(&log, 0, 0, end, 4, false) {
            HeaderScan::Found(l) => {
                assert_eq!((l.base_offset, l.last_offset, l.position), (3, 4, first_len));
            }
            other => panic!("{other:?}"),
        }
        // Exactly at a base offset, at the start, and inside the last batch.
        assert!(matches!(scan_headers(&log, 0, 0, end, 0, false), HeaderScan::Found(l) if l.base_offset == 0));
        assert!(matches!(scan_headers(&log, 0, 0, end, 5, false), HeaderScan::Found(l) if l.base_offset == 5));
        assert!(matches!(scan_headers(&log, 0, 0, end, 9, false), HeaderScan::Found(l) if l.base_offset == 5));
        // Past the end: continue at the end.
        assert_eq!(scan_headers(&log, 0, 0, end, 10, false), HeaderScan::Continue(end));
    }

    #[test]
    fn scan_by_timestamp() {
        let log = log_of(&[(0, 1), (1, 1), (2, 1)]); // max timestamps 1000, 1001, 1002
        let end = log.len() as u64;
        assert!(matches!(scan_headers(&log, 0, 0, end, 1001, true), HeaderScan::Found(l) if l.base_offset == 1));
        assert!(matches!(scan_headers(&log, 0, 0, end, 0, true), HeaderScan::Found(l) if l.base_offset == 0));
        assert_eq!(scan_headers(&log, 0, 0, end, 5000, true), HeaderScan::Continue(end));
    }

    #[test]
    fn scan_reports_corruption_and_partial_headers() {
        let mut log = log_of(&[(0, 2), (2, 2)]);
        let end = log.len() as u64;
        let second = build_batch_of_size(0, 2, 10, 0).len();
        log[second + 16] = 7; // magic of the second batch
        assert_eq!(scan_headers(&log, 0, 0, end, 3, false), HeaderScan::Corrupt(second as u64));
        // A buffer holding only part of the next header asks to continue there.
        let log = log_of(&[(0, 2), (2, 2)]);
        assert_eq!(scan_headers(&log[..second + 10], 0, 0, end, 3, false), HeaderScan::Continue(second as u64));
        // A batch that runs past the segment end is corrupt.
        assert_eq!(scan_headers(&log, 0, 0, end - 1, 3, false), HeaderScan::Corrupt(second as u64));
    }
}
