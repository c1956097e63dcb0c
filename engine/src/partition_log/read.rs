//! Reads: the bytes from the batch that holds an offset up to a bound, and the timestamp
//! lookups of ListOffsets.
//!
//! Owns: [`LogRead`], and turning an offset into byte ranges of one segment — from the file,
//! the write-behind or the tail cache — through a [`SegmentReadView`] copied out of the log
//! state. Must never: return bytes past the bound it was asked for (HW for consumers, LEO for
//! followers), hand out a `sendfile` handle on a file other than the segment's own, hold a
//! `RefCell` borrow across an await, or run a blocking syscall on the shard thread.

use std::ops::Bound;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use glommio::io::DmaFile;

use crate::clock::now_ms;
use crate::compressed_batch;
use crate::segment::{BatchLocation, ReadChunk, Segment, SharedTailCache};
use crate::segment_file::SegmentFile;
use crate::segment_writer::SegmentWriter;

use super::{io, LogError, LogState, PartitionLog, ReadBound, TailCacheFill, COMPRESSION_SCRATCH};

/// A read: byte ranges starting at the batch that contains the requested offset.
#[derive(Debug, Clone)]
pub struct LogRead {
    pub chunks: Vec<ReadChunk>,
    /// Base offset of the first batch returned (≤ the requested offset), or -1 when empty.
    pub first_batch_offset: i64,
    pub high_watermark: i64,
    /// The last stable offset when the read was made.
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

impl LogRead {
    pub fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The read as a single range of the segment file with a buffered handle, if that is what
    /// it is (the `sendfile` path).
    pub fn file_range(&self) -> Option<(std::sync::Arc<std::fs::File>, u64, usize)> {
        match self.chunks.as_slice() {
            [ReadChunk::File { reader: Some(reader), position, len, .. }] => Some((reader.clone(), *position, *len)),
            _ => None,
        }
    }

    /// For a [`LogRead::file_range`] read: the end of the bytes of its file that are final
    /// (never rewritten), up to which reading ahead through the page cache is safe. 0 for
    /// any other read.
    pub fn stable_file_end(&self) -> u64 {
        match self.chunks.as_slice() {
            [ReadChunk::File { stable_end, .. }] => *stable_end,
            _ => 0,
        }
    }

    /// The read as one `Bytes`: zero-copy when it is a single in-memory slice (a tailing read
    /// from the tail cache), otherwise read and copied into one buffer.
    pub async fn into_bytes(self) -> std::io::Result<bytes::Bytes> {
        if let [ReadChunk::Memory(b)] = self.chunks.as_slice() {
            return Ok(b.clone());
        }
        Ok(bytes::Bytes::from(self.to_vec().await?))
    }

    /// Copies the whole read into one buffer (tests, and the non-zero-copy path).
    pub async fn to_vec(&self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len());
        for chunk in &self.chunks {
            match chunk {
                ReadChunk::Memory(b) => out.extend_from_slice(b),
                ReadChunk::File { file, position, len, .. } => {
                    let data = file.read_at(*position, *len).await.map_err(std::io::Error::from)?;
                    if data.len() != *len {
                        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short read"));
                    }
                    out.extend_from_slice(&data);
                }
            }
        }
        Ok(out)
    }
}

/// What a read needs of the segment that holds its offset, copied out of the log state so that
/// no borrow of it lives across the read's awaits. Built by [`LogState::segment_read_view`].
struct SegmentReadView {
    /// Opened by [`PartitionLog::read`] for the read's I/O (a sealed one may be closed now).
    file: Rc<SegmentFile>,
    /// Present while the segment is the active one.
    writer: Option<SegmentWriter>,
    tail_cache: Option<SharedTailCache>,
    log_path: PathBuf,
    size_bytes: u64,
    next_offset: i64,
    /// Position of the index entry at or before the batch holding the read offset.
    start_index_position: u64,
    /// `None` when the whole segment is below the read's bound (the bound is the segment's
    /// end); otherwise the position of the index entry at or before the bound offset.
    bound_index_position: Option<u64>,
}

impl LogState {
    /// The view of the segment that holds `offset`, or of the next one when `offset` falls in a
    /// gap between segments; `None` when no segment holds `offset` or anything after it.
    fn segment_read_view(&self, offset: i64, bound_offset: i64) -> Option<SegmentReadView> {
        let floor = self.segments.range((Bound::Unbounded, Bound::Included(offset))).next_back();
        let segment = match floor {
            Some((_, segment)) if segment.next_offset > offset => segment,
            _ => self.segments.range((Bound::Excluded(offset), Bound::Unbounded)).next()?.1,
        };
        Some(SegmentReadView {
            file: segment.file.clone(),
            writer: segment.writer.clone(),
            tail_cache: segment.tail_cache.clone(),
            log_path: segment.log_path.clone(),
            size_bytes: segment.size_bytes,
            next_offset: segment.next_offset,
            start_index_position: segment.offset_index.lookup(offset).position as u64,
            bound_index_position: (bound_offset < segment.next_offset)
                .then(|| segment.offset_index.lookup(bound_offset).position as u64),
        })
    }
}

impl SegmentReadView {
    /// Finds the batch containing `target`, starting at an index position; falls back to a
    /// walk from the segment start if the index pointed at something that is not a batch.
    /// `None`: no batch of the segment holds `target` or anything after it.
    async fn locate(
        &self,
        file: &Rc<DmaFile>,
        index_position: u64,
        target: i64,
    ) -> Result<Option<BatchLocation>, LogError> {
        let (writer, cache) = (self.writer.as_ref(), self.tail_cache.as_ref());
        match Segment::find_batch(file, writer, cache, index_position, self.size_bytes, target, false)
            .await
            .map_err(io)?
        {
            Ok(found) => Ok(found),
            Err(at) if index_position > 0 => {
                crate::warn_limited!(position = at, "index entry does not point at a batch; walking the segment");
                match Segment::find_batch(file, writer, cache, 0, self.size_bytes, target, false).await.map_err(io)? {
                    Ok(found) => Ok(found),
                    Err(at) => Err(LogError::Corrupt(format!("no batch header at position {at}"))),
                }
            }
            Err(at) => Err(LogError::Corrupt(format!("no batch header at position {at}"))),
        }
    }

    /// File position where the read's bound (`bound_offset`) ends within this segment.
    async fn bound_position(&self, file: &Rc<DmaFile>, bound_offset: i64) -> Result<u64, LogError> {
        let Some(index_position) = self.bound_index_position else { return Ok(self.size_bytes) };
        Ok(self.locate(file, index_position, bound_offset).await?.map_or(self.size_bytes, |l| l.position))
    }
}

impl PartitionLog {
    /// Reads from the batch that contains `offset`, at most `max_bytes` (but a whole first
    /// batch if `min_one_batch`), never past `bound`. Reads stay within one segment, like Kafka.
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        bound: ReadBound,
        min_one_batch: bool,
    ) -> Result<LogRead, LogError> {
        let mut offset = offset;
        for _attempt in 0..1024 {
            let (log_start_offset, log_end_offset, high_watermark, last_stable_offset) =
                (self.log_start_offset(), self.log_end_offset(), self.high_watermark(), self.last_stable_offset());
            self.assert_watermarks_within_log_end();
            assert!(
                last_stable_offset <= high_watermark,
                "last stable offset {last_stable_offset} is past the high watermark {high_watermark}"
            );
            let bound_offset = match bound {
                ReadBound::HighWatermark => high_watermark,
                ReadBound::LogEnd => log_end_offset,
                ReadBound::LastStable => last_stable_offset,
            };
            let empty = |first| LogRead {
                chunks: Vec::new(),
                first_batch_offset: first,
                high_watermark,
                last_stable_offset,
                log_start_offset,
                log_end_offset,
            };
            if offset < log_start_offset || offset > log_end_offset {
                return Err(LogError::OffsetOutOfRange { offset, log_start_offset, log_end_offset });
            }
            if offset >= bound_offset {
                self.note_tail_read(); // caught up: waiting for the next append
                return Ok(empty(-1));
            }
            // Snapshot the segment holding `offset` (or the next one, across a gap).
            let view = self.state.borrow().segment_read_view(offset, bound_offset);
            let Some(view) = view else {
                return Ok(empty(-1));
            };
            let file = match view.file.get().await {
                Ok(file) => file,
                // A sealed segment's file, closed by the LRU, was deleted (retention) or
                // replaced (compaction) before this read reopened it: look again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(e)),
            };
            let Some(location) = view.locate(&file, view.start_index_position, offset).await? else {
                // Not in this segment (gap) — continue at its end.
                offset = view.next_offset.max(offset + 1);
                if offset >= bound_offset {
                    return Ok(empty(-1));
                }
                continue;
            };
            let end_pos = view.bound_position(&file, bound_offset).await?;
            if view.writer.is_some() && location.position + self.options.tail_cache_bytes as u64 >= view.size_bytes {
                self.note_tail_read(); // within the tail cache's reach of the active segment's end
            }
            if end_pos <= location.position {
                return Ok(empty(-1));
            }
            let available = (end_pos - location.position) as usize;
            let mut len = available.min(max_bytes);
            if min_one_batch {
                len = len.max((location.total_len as usize).min(available));
            }
            if len == 0 {
                return Ok(empty(location.base_offset));
            }
            assert!(
                len <= available && end_pos <= view.size_bytes,
                "read of {len} bytes at {} passes its bound at {end_pos} (segment of {} bytes)",
                location.position,
                view.size_bytes
            );
            let reader = self.segment_reader(&view).await;
            let chunks = Segment::chunks(
                &file,
                view.writer.as_ref(),
                view.tail_cache.as_ref(),
                reader.as_ref(),
                location.position,
                len,
            )
            .map_err(io)?;
            return Ok(LogRead {
                chunks,
                first_batch_offset: location.base_offset,
                high_watermark,
                last_stable_offset,
                log_start_offset,
                log_end_offset,
            });
        }
        Err(LogError::Corrupt(format!("could not locate offset {offset}")))
    }

    /// The segment's buffered `sendfile` handle, from the shard's bounded cache
    /// ([`crate::reader_cache`]); `None` sends the read through the DMA file instead. Handles are
    /// opened by path, so one is used only if it is the segment's own file (a replacement may
    /// have given the name to a new file): a stale cached handle is dropped and opened again.
    async fn segment_reader(&self, view: &SegmentReadView) -> Option<Arc<std::fs::File>> {
        let own_inode = view.file.inode();
        for _attempt in 0..2 {
            match crate::reader_cache::get(&view.log_path).await {
                Ok((reader, inode)) if inode == own_inode => return Some(reader),
                Ok(_) => crate::reader_cache::forget(&view.log_path),
                Err(e) => {
                    crate::warn_limited!(path = %view.log_path.display(), error = %e, "no buffered reader; sendfile disabled for this read");
                    return None;
                }
            }
        }
        tracing::debug!(path = %view.log_path.display(), "segment file replaced meanwhile; no sendfile for this read");
        None
    }

    /// Remembers that a reader tails the log now (see [`TailCacheFill::Tailing`]).
    fn note_tail_read(&self) {
        if self.options.tail_cache_fill == TailCacheFill::Tailing {
            self.last_tail_read_ms.set(now_ms());
        }
    }

    /// ListOffsets by timestamp: the first record whose timestamp is `>= timestamp_ms`, as
    /// (offset, timestamp), found through the time index, the batch headers, then the records of
    /// that batch (Kafka's `findOffsetByTimestamp`). For compressed batches the batch's base
    /// offset and max timestamp stand in until the codec issue can look inside them. `None`
    /// when no record qualifies.
    pub async fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>, LogError> {
        let candidates: Vec<_> = {
            let state = self.state.borrow();
            let hw = self.high_watermark();
            state
                .segments
                .values()
                .filter(|s| s.max_timestamp_ms >= timestamp_ms && s.base_offset < hw)
                .map(|s| {
                    let entry = s.time_index.lookup(timestamp_ms);
                    let start = s.offset_index.lookup(entry.offset).position as u64;
                    (s.file.clone(), s.writer.clone(), s.tail_cache.clone(), s.size_bytes, start)
                })
                .collect()
        };
        let lso = self.log_start_offset();
        for (file, writer, cache, size, start) in candidates {
            let file = match file.get().await {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // deleted meanwhile
                Err(e) => return Err(io(e)),
            };
            let found = Segment::find_batch(&file, writer.as_ref(), cache.as_ref(), start, size, timestamp_ms, true)
                .await
                .map_err(io)?;
            let Ok(Some(location)) = found else { continue };
            if location.base_offset >= self.high_watermark() {
                continue;
            }
            let bytes = Segment::read_bytes(
                &file,
                writer.as_ref(),
                cache.as_ref(),
                location.position,
                location.total_len as usize,
            )
            .await
            .map_err(io)?;
            let found = COMPRESSION_SCRATCH.with(|scratch| {
                compressed_batch::first_record_at_or_after(&bytes, timestamp_ms, &mut scratch.borrow_mut())
            });
            let (offset, timestamp) = found.unwrap_or((location.base_offset, location.max_timestamp_ms));
            return Ok(Some((offset.max(lso), timestamp)));
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP: (offset of the first record carrying the largest timestamp,
    /// that timestamp) — KIP-734 — or `None` for an empty log.
    pub async fn max_timestamp_offset(&self) -> Result<Option<(i64, i64)>, LogError> {
        let max = {
            let state = self.state.borrow();
            state
                .segments
                .values()
                .filter(|s| s.offset_of_max_timestamp >= 0)
                .max_by_key(|s| s.max_timestamp_ms)
                .map(|s| s.max_timestamp_ms)
        };
        let Some(max) = max else { return Ok(None) };
        Ok(self.offset_for_timestamp(max).await?.map(|(offset, _)| (offset, max)))
    }
}
