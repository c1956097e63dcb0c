//! The log of one topic-partition: its segments, offsets, durability and retention.
//!
//! Owns: the segments of `<data-dir>/<topic>-<partition>/`, the log start offset, log end
//! offset (LEO), high watermark (HW) and recovery point (fsynced offset) — four separate
//! numbers — the leader-epoch cache, the idempotent producers' state
//! ([`crate::producer_state`], checked and updated under `exclusive` with each append, snapshot
//! to `<offset>.snapshot` on roll and close, rebuilt after the newest snapshot on open and
//! truncation), and the per-partition checkpoint files (`recovery-point.checkpoint`,
//! `log-start-offset.checkpoint`, `leader-epoch-checkpoint`). Compressed batches are validated
//! and, per `compression.type`, rewritten here ([`crate::compressed_batch`]).
//!
//! Concurrency: one shard owns a `PartitionLog` (it is `!Send`). Appends, rolls, truncation,
//! retention and close run one at a time under `exclusive` (a local FIFO semaphore, not a
//! lock between threads); reads take a consistent snapshot synchronously and then do I/O
//! without blocking appends. Durability waits happen *outside* the exclusive section so
//! concurrent appends share one `fdatasync` (group commit).
//!
//! Durability contract: an append is *durable* once its bytes are written to the segment file
//! (the DMA write completed: it survives a crash of this process, like Kafka's page-cache
//! write), and — when the topic's `flush.messages` is reached — after an `fdatasync` covering
//! them. [`PartitionLog::append`] returns then. [`PartitionLog::append_buffered`] returns as
//! soon as the batch is in the write-behind buffer (so a connection can go on appending its
//! next request, in order) and [`PartitionLog::wait_durable`] waits for the rest. In
//! single-replica mode the high watermark follows the log end offset at once, as Kafka's does
//! (a request after an append on the same connection sees it); so for the span of one DMA
//! write a consumer can read a record that a process crash would still take back — the
//! producer, though, is never acknowledged before the record is on file. `flush.ms` syncs
//! happen from the shard's timer ([`PartitionLog::flush_if_due`]).
//!
//! Must never: write a batch that failed validation, serve bytes past the bound it was asked
//! for (HW for consumers, LEO for followers), hold a `RefCell` borrow across an await, or run a
//! blocking syscall on the shard thread.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::sync::Semaphore;

use crate::batch::{assign_offsets_split, batches, BatchError, BatchInfo, TimestampType, Validation, BATCH_HEADER_LEN};
use crate::checkpoint_file::{self, blocking, read_small, write_atomic};
use crate::clock::now_ms;
use crate::compressed_batch;
use crate::error_code::ErrorCode;
use crate::leader_epoch_cache::{decode_offset_checkpoint, encode_offset_checkpoint, LeaderEpochCache};
use crate::log_config::{LogConfig, TimestampType as TimestampTypeConfig};
use crate::log_recovery::{scan_segment, ScanEnd};
use crate::offset_index::{parse_segment_base_offset, OffsetIndex, SegmentFileKind};
use crate::producer_state::{ProducerError, ProducerStateTable, SequenceCheck, DEFAULT_PRODUCER_ID_EXPIRATION_MS};
use crate::retention::{deletable_segments, RetentionInputs, SegmentSummary};
use crate::segment::{ReadChunk, Segment, SegmentSettings};
use crate::segment_writer::{align_down, SegmentWriter, WriterOptions};
use crate::time_index::TimeIndex;
use crate::watermark::Watermark;

const RECOVERY_POINT_FILE: &str = "recovery-point.checkpoint";
const LOG_START_OFFSET_FILE: &str = "log-start-offset.checkpoint";
const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";

thread_local! {
    /// The shard's decompression scratch buffer (see [`compressed_batch::trim_scratch`]).
    static COMPRESSION_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}
/// Producer-state snapshots are named like Kafka's: `<20-digit offset>.snapshot`.
const PRODUCER_SNAPSHOT_SUFFIX: &str = ".snapshot";
/// Snapshots kept per partition (the newest, and the one before in case it is damaged).
const PRODUCER_SNAPSHOTS_KEPT: usize = 2;
/// Smallest cap on a single batch read during recovery (a corrupt length is not trusted).
const MIN_RECOVERY_BATCH_CAP_BYTES: usize = 16 << 20;

/// Engine-level options that are not Kafka topic configs.
#[derive(Clone, Copy, Debug)]
pub struct LogOptions {
    pub writer: WriterOptions,
    /// Single-replica mode: the high watermark follows the durable end of the log (every
    /// append once its bytes are written to the file), so a consumer never reads a record that
    /// a failed write (a full disk) or a crash can still take back. The replication layer turns
    /// this off and moves the HW itself.
    pub high_watermark_follows_durable_end: bool,
    /// Bytes of the active segment's tail kept in memory for tailing readers (0 = off).
    pub tail_cache_bytes: usize,
    /// `producer.id.expiration.ms`: idempotent producers idle this long are forgotten.
    pub producer_id_expiration_ms: i64,
    /// `sluice.segment.io`: direct I/O (true, the default) or through the page cache.
    pub direct_io: bool,
    /// `sluice.tail.cache.fill`: when appends go to the tail cache.
    pub tail_cache_fill: TailCacheFill,
}

/// When appends are put in the tail cache (`sluice.tail.cache.fill`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailCacheFill {
    /// On every append.
    Always,
    /// While a reader tails the log: some read within the last [`TAIL_READER_WINDOW_MS`]
    /// asked for the log end or for bytes within `tail_cache_bytes` of the active segment's
    /// end. A produce stream nobody reads then pays nothing for the cache: putting its bytes
    /// in memory cost about 0.1 broker-CPU-s/GB of 1 MB batches, a fifth of the whole append.
    Tailing,
}

impl TailCacheFill {
    pub fn parse(value: &str) -> Result<TailCacheFill, String> {
        match value {
            "always" => Ok(TailCacheFill::Always),
            "tailing" => Ok(TailCacheFill::Tailing),
            other => Err(format!("expected always or tailing, got {other:?}")),
        }
    }
}

/// How long after the last tailing read appends still fill the tail cache
/// ([`TailCacheFill::Tailing`]); a consumer that keeps up reads at least every
/// `fetch.max.wait.ms` (500 ms by default).
pub const TAIL_READER_WINDOW_MS: i64 = 30_000;

/// Size of one tail-cache piece.
pub const TAIL_CACHE_PIECE_BYTES: usize = 4 << 20;

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            writer: WriterOptions::default(),
            high_watermark_follows_durable_end: true,
            tail_cache_bytes: 32 << 20,
            producer_id_expiration_ms: DEFAULT_PRODUCER_ID_EXPIRATION_MS,
            direct_io: true,
            tail_cache_fill: TailCacheFill::Tailing,
        }
    }
}

impl LogOptions {
    fn new_tail_cache(&self, next_pos: u64) -> crate::segment::SharedTailCache {
        Rc::new(RefCell::new(crate::tail_cache::TailCache::new(
            next_pos,
            self.tail_cache_bytes,
            TAIL_CACHE_PIECE_BYTES,
        )))
    }
}

/// Errors of the log as a whole (open, I/O, closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogError {
    Io(String),
    /// The file system is out of space (ENOSPC/EDQUOT): retriable once space is freed.
    StorageFull(String),
    Closed,
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    Corrupt(String),
}

impl LogError {
    pub fn error_code(&self) -> ErrorCode {
        match self {
            LogError::Io(_) | LogError::StorageFull(_) | LogError::Corrupt(_) => ErrorCode::KAFKA_STORAGE_ERROR,
            LogError::Closed => ErrorCode::NOT_LEADER_OR_FOLLOWER,
            LogError::OffsetOutOfRange { .. } => ErrorCode::OFFSET_OUT_OF_RANGE,
        }
    }
}

impl std::fmt::Display for LogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogError::Io(e) => write!(f, "storage I/O error: {e}"),
            LogError::StorageFull(e) => write!(f, "storage full: {e}"),
            LogError::Closed => write!(f, "log is closed"),
            LogError::OffsetOutOfRange { offset, log_start_offset, log_end_offset } => {
                write!(f, "offset {offset} is outside [{log_start_offset}, {log_end_offset}]")
            }
            LogError::Corrupt(e) => write!(f, "log corrupt: {e}"),
        }
    }
}

impl std::error::Error for LogError {}

fn io(e: impl std::fmt::Display) -> LogError {
    LogError::Io(e.to_string())
}

/// An I/O error, keeping whether the disk is full.
fn io_error(e: std::io::Error) -> LogError {
    if checkpoint_file::is_storage_full(&e) {
        LogError::StorageFull(e.to_string())
    } else {
        LogError::Io(e.to_string())
    }
}

/// A segment writer's failure, keeping whether the disk is full.
fn write_error(e: crate::segment_writer::WriteError) -> LogError {
    if e.storage_full {
        LogError::StorageFull(e.to_string())
    } else {
        LogError::Io(e.to_string())
    }
}

impl LogError {
    pub fn is_storage_full(&self) -> bool {
        matches!(self, LogError::StorageFull(_))
    }
}

/// Why an append was refused. Nothing of a refused append is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendError {
    Batch(BatchError),
    /// A batch is larger than `max.message.bytes`.
    RecordTooLarge {
        size_bytes: usize,
        max_bytes: usize,
    },
    /// A CreateTime timestamp outside `message.timestamp.{before,after}.max.ms`.
    InvalidTimestamp {
        timestamp_ms: i64,
        now_ms: i64,
    },
    /// The request carried no batch at all.
    Empty,
    /// Not exactly one whole batch (Kafka's produce rule for v3+).
    InvalidRecordSet(&'static str),
    /// The idempotent producer's epoch or sequence is wrong.
    Producer(ProducerError),
    Log(LogError),
}

impl AppendError {
    pub fn error_code(&self) -> ErrorCode {
        match self {
            AppendError::Batch(e) => e.error_code(),
            AppendError::RecordTooLarge { .. } => ErrorCode::MESSAGE_TOO_LARGE,
            AppendError::InvalidTimestamp { .. } => ErrorCode::INVALID_TIMESTAMP,
            AppendError::Empty | AppendError::InvalidRecordSet(_) => ErrorCode::INVALID_RECORD,
            AppendError::Producer(e) => e.error_code(),
            AppendError::Log(e) => e.error_code(),
        }
    }
}

impl std::fmt::Display for AppendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppendError::Batch(e) => write!(f, "invalid batch: {e}"),
            AppendError::RecordTooLarge { size_bytes, max_bytes } => {
                write!(f, "batch of {size_bytes} bytes exceeds max.message.bytes {max_bytes}")
            }
            AppendError::InvalidTimestamp { timestamp_ms, now_ms } => {
                write!(f, "timestamp {timestamp_ms} too far from broker time {now_ms}")
            }
            AppendError::Empty => write!(f, "no record batch in request"),
            AppendError::InvalidRecordSet(why) => write!(f, "produce records {why}"),
            AppendError::Producer(e) => write!(f, "{e}"),
            AppendError::Log(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for AppendError {}

impl From<LogError> for AppendError {
    fn from(e: LogError) -> Self {
        AppendError::Log(e)
    }
}

/// What an append produced (the fields a ProduceResponse partition needs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker time stamped into the batches, or -1 for CreateTime topics.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    pub record_count: i64,
    /// Position in the active segment file after the append: where the next batch goes,
    /// unless something else is appended first or it rolls a segment.
    pub end_position: u64,
}

/// What [`PartitionLog::wait_durable`] waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurableTarget {
    /// The offset after the append.
    pub next_offset: i64,
    /// The topic's `flush.messages` was reached: fsync before acknowledging.
    pub needs_flush: bool,
}

/// How far a read may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadBound {
    /// Consumers: committed data only.
    HighWatermark,
    /// Followers: everything appended.
    LogEnd,
}

/// A read: byte ranges starting at the batch that contains the requested offset.
#[derive(Debug, Clone)]
pub struct LogRead {
    pub chunks: Vec<ReadChunk>,
    /// Base offset of the first batch returned (≤ the requested offset), or -1 when empty.
    pub first_batch_offset: i64,
    pub high_watermark: i64,
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

struct LogState {
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    epoch_cache: LeaderEpochCache,
    last_flush_ms: i64,
    /// Recovery point last written to disk.
    checkpointed_recovery_point: i64,
    /// Log start offset and leader-epoch checkpoint text on disk, when known: an unchanged
    /// checkpoint is not rewritten (each write is an fdatasync and a directory fsync; 10,000
    /// partitions rewrote four each on every start and stop).
    checkpointed_log_start_offset: Option<i64>,
    checkpointed_epochs: Option<String>,
    /// Offsets of the producer-state snapshot files on disk, ascending.
    producer_snapshots: Vec<i64>,
}

impl LogState {
    fn active(&self) -> &Segment {
        self.segments.values().next_back().expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments.values_mut().next_back().expect("a log always has an active segment")
    }

    fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size_bytes).sum()
    }
}

/// One partition's log. See the module docs.
pub struct PartitionLog {
    topic: String,
    partition: i32,
    dir: PathBuf,
    config: RefCell<LogConfig>,
    options: LogOptions,
    state: RefCell<LogState>,
    /// Idempotent producers' sequence state; changed only under `exclusive`.
    producers: RefCell<ProducerStateTable>,
    exclusive: Semaphore,
    log_end: Rc<Watermark>,
    high_watermark: Rc<Watermark>,
    flushed: Rc<Watermark>,
    /// Offset below which every appended byte is written to the file.
    durable: Rc<Watermark>,
    /// Bumped by truncation, so durability tasks of truncated appends do nothing.
    generation: Rc<Cell<u64>>,
    sync_running: Cell<bool>,
    /// fdatasyncs issued by `flush` (metrics, and the group-commit test).
    syncs: Cell<u64>,
    closed: Cell<bool>,
    /// When a read last tailed the log (see [`TailCacheFill::Tailing`]).
    last_tail_read_ms: Cell<i64>,
}

/// Directory name of a partition, Kafka style.
pub fn partition_dir_name(topic: &str, partition: i32) -> String {
    format!("{topic}-{partition}")
}

/// Splits `<topic>-<partition>` (the topic may itself contain '-').
pub fn parse_partition_dir_name(name: &str) -> Option<(String, i32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    if topic.is_empty() || partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((topic.to_string(), partition.parse().ok()?))
}

fn settings_of(config: &LogConfig) -> SegmentSettings {
    SegmentSettings {
        index_interval_bytes: config.index_interval_bytes.max(0) as u64,
        max_index_bytes: config.segment_index_bytes.max(8) as usize,
        preallocate_bytes: if config.preallocate { config.segment_bytes.max(0) as u64 } else { 0 },
    }
}

impl PartitionLog {
    /// Opens (or creates) the partition under `data_dir`, recovering it if the last stop was not
    /// clean. See [`crate::log_recovery`].
    pub async fn open(
        data_dir: &Path,
        topic: &str,
        partition: i32,
        config: LogConfig,
        options: LogOptions,
        clean_shutdown: bool,
    ) -> Result<Rc<PartitionLog>, LogError> {
        let dir = data_dir.join(partition_dir_name(topic, partition));
        crate::iopoll_probe::prime(data_dir).await.map_err(io)?;
        let listing_dir = dir.clone();
        let names: Vec<String> = blocking(move || {
            std::fs::create_dir_all(&listing_dir)?;
            let mut names = Vec::new();
            for entry in std::fs::read_dir(&listing_dir)? {
                names.push(entry?.file_name().to_string_lossy().into_owned());
            }
            Ok(names)
        })
        .await
        .map_err(io)?;

        let mut log_bases = Vec::new();
        let mut index_files = Vec::new();
        let mut producer_snapshots = Vec::new();
        for name in &names {
            if name.ends_with(".tmp") || name.ends_with(".deleted") {
                checkpoint_file::remove_if_exists(&dir.join(name)).await.map_err(io)?;
                continue;
            }
            if let Some(offset) = parse_producer_snapshot_name(name) {
                producer_snapshots.push(offset);
                continue;
            }
            match parse_segment_base_offset(name) {
                Some((base, SegmentFileKind::Log)) => log_bases.push(base),
                Some((base, _)) => index_files.push((base, name.clone())),
                None => {}
            }
        }
        log_bases.sort_unstable();
        // Index files without a log file are leftovers of a deleted segment.
        for (base, name) in index_files {
            if log_bases.binary_search(&base).is_err() {
                checkpoint_file::remove_if_exists(&dir.join(name)).await.map_err(io)?;
            }
        }

        let recovery_point = match read_small(&dir.join(RECOVERY_POINT_FILE)).await.map_err(io)? {
            Some(bytes) => decode_offset_checkpoint(&String::from_utf8_lossy(&bytes)).unwrap_or(0),
            None => 0,
        };
        let start_file = read_small(&dir.join(LOG_START_OFFSET_FILE)).await.map_err(io)?;
        let start_on_disk =
            start_file.and_then(|bytes| decode_offset_checkpoint(&String::from_utf8_lossy(&bytes)).ok());
        let checkpointed_start = start_on_disk.unwrap_or(0);
        let epoch_cache_file = read_small(&dir.join(LEADER_EPOCH_FILE)).await.map_err(io)?;
        let epochs_on_disk = epoch_cache_file.as_deref().map(|b| String::from_utf8_lossy(b).into_owned());
        let mut epoch_cache =
            epoch_cache_file.as_deref().and_then(|b| LeaderEpochCache::decode(&String::from_utf8_lossy(b)).ok());
        let rebuild_epochs = epoch_cache.is_none();
        let mut rebuilt_epochs = LeaderEpochCache::default();

        let settings = settings_of(&config);
        let max_batch_bytes = (config.max_message_bytes.max(0) as usize).max(MIN_RECOVERY_BATCH_CAP_BYTES);
        let now = now_ms();
        let mut segments: BTreeMap<i64, Segment> = BTreeMap::new();
        let mut truncated_at: Option<usize> = None;
        for (i, &base) in log_bases.iter().enumerate() {
            let next_base = log_bases.get(i + 1).copied();
            let (log_path, index_path, time_index_path) = Segment::paths(&dir, base);
            let file = Segment::open_file(&log_path, options.direct_io).await.map_err(io)?;
            let file_size = file.file_size().await.map_err(io)?;
            let mut segment = Segment::from_parts(base, log_path, file.clone(), 0, settings, None, now);
            let must_scan = !clean_shutdown && next_base.is_none_or(|n| n > recovery_point);
            let mut loaded = false;
            if !must_scan {
                loaded = Self::load_segment_indexes(&mut segment, file_size, &index_path, &time_index_path, settings)
                    .await?;
                if !loaded {
                    crate::warn_limited!(dir = %dir.display(), base, "index missing or corrupt; rebuilding from the log");
                }
            }
            if !loaded {
                let mut infos: Vec<(u64, BatchInfo)> = Vec::new();
                let scan =
                    scan_segment(&file, file_size, base, max_batch_bytes, &mut |pos, info| infos.push((pos, *info)))
                        .await
                        .map_err(io)?;
                for (pos, info) in &infos {
                    segment.note_batch(*pos, info, settings.index_interval_bytes);
                    if rebuild_epochs {
                        rebuilt_epochs.assign(info.partition_leader_epoch, info.base_offset);
                    }
                }
                if let ScanEnd::Invalid(reason) = &scan.end {
                    if scan.valid_len < file_size {
                        if reason.is_zero_tail() {
                            // Not damage: an unclean stop leaves the active segment's
                            // preallocated space. Later segments (none, normally) still go.
                            tracing::info!(
                                dir = %dir.display(), base, valid_bytes = scan.valid_len, file_bytes = file_size,
                                "cutting the zeros after the last batch of a segment that was not closed"
                            );
                        } else {
                            crate::warn_limited!(
                                dir = %dir.display(), base, valid_bytes = scan.valid_len, file_bytes = file_size,
                                %reason, "truncating damaged segment tail; later segments are dropped"
                            );
                        }
                        truncated_at = Some(i);
                    }
                }
                if scan.valid_len != file_size {
                    file.truncate(scan.valid_len).await.map_err(io)?;
                }
                segment.indexes_dirty = true;
            } else if rebuild_epochs {
                // Epochs of sealed segments: the first batch's epoch is enough to seed the cache.
                Self::seed_epochs_from_headers(&segment, &mut rebuilt_epochs).await?;
            }
            segments.insert(base, segment);
            if truncated_at.is_some() {
                break;
            }
        }
        if let Some(i) = truncated_at {
            for &base in &log_bases[i + 1..] {
                let (log_path, index_path, time_index_path) = Segment::paths(&dir, base);
                for path in [log_path, index_path, time_index_path] {
                    checkpoint_file::remove_if_exists(&path).await.map_err(io)?;
                }
            }
        }
        // Drop empty trailing segments other than the first one we keep.
        while segments.len() > 1 && segments.values().next_back().is_some_and(|s| s.is_empty()) {
            let (_, seg) = segments.pop_last().expect("non-empty");
            let (_, index_path, time_index_path) = Segment::paths(&dir, seg.base_offset);
            for path in [seg.log_path.clone(), index_path, time_index_path] {
                checkpoint_file::remove_if_exists(&path).await.map_err(io)?;
            }
        }

        let writer_options = options.writer;
        if segments.is_empty() {
            let base = checkpointed_start.max(0);
            let mut segment =
                Segment::create(&dir, base, settings, writer_options, options.direct_io, now).await.map_err(io)?;
            segment.tail_cache = Some(options.new_tail_cache(0));
            segments.insert(base, segment);
        } else {
            let active = segments.values_mut().next_back().expect("non-empty");
            let tail_start = align_down(active.size_bytes);
            let tail_len = (active.size_bytes - tail_start) as usize;
            let tail = if tail_len > 0 {
                let data = active.file.read_at(tail_start, tail_len).await.map_err(io)?;
                data.to_vec()
            } else {
                Vec::new()
            };
            active.writer = Some(SegmentWriter::new(active.file.clone(), active.size_bytes, &tail, writer_options));
            active.tail_cache = Some(options.new_tail_cache(active.size_bytes));
        }

        let first_base = *segments.keys().next().expect("non-empty");
        let log_end_offset = segments.values().next_back().expect("non-empty").next_offset;
        let log_start_offset = checkpointed_start.max(first_base).min(log_end_offset);
        let mut epoch_cache = if rebuild_epochs { rebuilt_epochs } else { epoch_cache.take().expect("loaded") };
        epoch_cache.truncate_from_end(log_end_offset);
        epoch_cache.truncate_from_start(log_start_offset);
        producer_snapshots.sort_unstable();
        let producers = rebuild_producer_state(
            &dir,
            &mut producer_snapshots,
            &SegmentExtent::of_all(&segments),
            log_start_offset,
            log_end_offset,
        )
        .await?;

        let log = Rc::new(PartitionLog {
            topic: topic.to_string(),
            partition,
            dir,
            config: RefCell::new(config),
            options,
            state: RefCell::new(LogState {
                segments,
                log_start_offset,
                epoch_cache,
                last_flush_ms: now,
                checkpointed_recovery_point: recovery_point,
                checkpointed_log_start_offset: start_on_disk,
                checkpointed_epochs: epochs_on_disk,
                producer_snapshots,
            }),
            producers: RefCell::new(producers),
            exclusive: Semaphore::new(1),
            log_end: Watermark::new(log_end_offset as u64),
            high_watermark: Watermark::new(log_end_offset as u64),
            flushed: Watermark::new(0),
            durable: Watermark::new(log_end_offset as u64),
            generation: Rc::new(Cell::new(0)),
            sync_running: Cell::new(false),
            syncs: Cell::new(0),
            closed: Cell::new(false),
            last_tail_read_ms: Cell::new(i64::MIN),
        });
        // Everything that survived recovery is on disk now; make it durable and say so (a clean
        // stop synced it already).
        if !clean_shutdown {
            log.active_writer().sync().await.map_err(write_error)?;
        }
        log.flushed.advance(log_end_offset as u64);
        log.write_checkpoints().await?;
        // Start-up next time replays only what is appended after this.
        log.write_producer_snapshot(log_end_offset).await?;
        Ok(log)
    }

    /// Writes the producer table as of `next_offset` (everything below it is appended) and
    /// keeps only the newest [`PRODUCER_SNAPSHOTS_KEPT`] snapshots.
    async fn write_producer_snapshot(&self, next_offset: i64) -> Result<(), LogError> {
        if self.state.borrow().producer_snapshots.last() == Some(&next_offset) {
            return Ok(());
        }
        let bytes = self.producers.borrow().encode_snapshot(next_offset);
        write_atomic(&producer_snapshot_path(&self.dir, next_offset), &bytes).await.map_err(io_error)?;
        let doomed: Vec<i64> = {
            let mut state = self.state.borrow_mut();
            state.producer_snapshots.retain(|o| *o != next_offset);
            state.producer_snapshots.push(next_offset);
            state.producer_snapshots.sort_unstable();
            let excess = state.producer_snapshots.len().saturating_sub(PRODUCER_SNAPSHOTS_KEPT);
            state.producer_snapshots.drain(..excess).collect()
        };
        for offset in doomed {
            checkpoint_file::remove_if_exists(&producer_snapshot_path(&self.dir, offset)).await.map_err(io)?;
        }
        Ok(())
    }

    /// Idempotent producers this partition tracks (tests, metrics).
    pub fn producer_count(&self) -> usize {
        self.producers.borrow().len()
    }

    /// Loads the index files of a sealed segment and walks the tail after the last index entry
    /// to learn the segment's size, next offset and max timestamp. False: rebuild by scanning.
    async fn load_segment_indexes(
        segment: &mut Segment,
        file_size: u64,
        index_path: &Path,
        time_index_path: &Path,
        settings: SegmentSettings,
    ) -> Result<bool, LogError> {
        let base = segment.base_offset;
        let Some(index_bytes) = read_small_or_none(index_path).await? else { return Ok(false) };
        let Some(time_bytes) = read_small_or_none(time_index_path).await? else { return Ok(false) };
        let Ok(offset_index) = OffsetIndex::decode(base, &index_bytes, settings.max_index_bytes, file_size.max(1))
        else {
            return Ok(false);
        };
        let Ok(time_index) = TimeIndex::decode(base, &time_bytes, settings.max_index_bytes) else { return Ok(false) };
        let start = offset_index.last().map_or(0, |e| e.position as u64);
        // Walk from the last indexed batch to the end, validating structure (not CRC: the
        // segment is below the recovery point or the stop was clean).
        let mut infos: Vec<(u64, BatchInfo)> = Vec::new();
        let len = (file_size - start) as usize;
        let data = if len > 0 { segment.file.read_at(start, len).await.map_err(io)?.to_vec() } else { Vec::new() };
        let mut rel = 0usize;
        while rel < data.len() {
            match crate::batch::validate_stored(&data[rel..]) {
                Ok(info) => {
                    infos.push((start + rel as u64, info));
                    rel += info.total_len;
                }
                Err(_) => return Ok(false),
            }
        }
        segment.offset_index = offset_index;
        segment.time_index = time_index;
        // Re-derive counters: size/next offset from the tail walk; max timestamp from the time
        // index plus the tail.
        segment.size_bytes = start;
        if let Some(last) = segment.time_index.last() {
            segment.max_timestamp_ms = last.timestamp_ms;
            segment.offset_of_max_timestamp = last.offset;
        }
        if start > 0 {
            // segment.ms counts from the first batch's timestamp (Kafka's rollingBasedTimestamp).
            let first = segment.file.read_at(0, crate::batch::BATCH_HEADER_LEN).await.map_err(io)?;
            if let Ok(header) = crate::batch::BatchHeader::parse(&first) {
                segment.first_batch_timestamp_ms = Some(header.max_timestamp());
            }
        }
        if let Some(first) = infos.first() {
            segment.next_offset = first.1.base_offset;
        } else if let Some(last) = segment.offset_index.last() {
            segment.next_offset = last.offset;
        }
        segment.bytes_since_index_entry = 0;
        for (pos, info) in &infos {
            // note_batch would add index entries already present; update counters directly.
            segment.size_bytes = pos + info.total_len as u64;
            segment.next_offset = info.next_offset();
            if info.max_timestamp > segment.max_timestamp_ms {
                segment.max_timestamp_ms = info.max_timestamp;
                segment.offset_of_max_timestamp = info.base_offset;
            }
            if segment.first_batch_timestamp_ms.is_none() {
                segment.first_batch_timestamp_ms = Some(info.max_timestamp);
            }
            segment.bytes_since_index_entry += info.total_len as u64;
        }
        if segment.size_bytes != file_size {
            return Ok(false);
        }
        segment.indexes_dirty = false;
        Ok(true)
    }

    async fn seed_epochs_from_headers(segment: &Segment, cache: &mut LeaderEpochCache) -> Result<(), LogError> {
        if segment.size_bytes == 0 {
            return Ok(());
        }
        let data = segment.file.read_at(0, crate::batch::BATCH_HEADER_LEN).await.map_err(io)?;
        if let Ok(header) = crate::batch::BatchHeader::parse(&data) {
            cache.assign(header.partition_leader_epoch(), header.base_offset());
        }
        Ok(())
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> LogConfig {
        self.config.borrow().clone()
    }

    /// Replaces the topic config (AlterConfigs). Takes effect for the next append/roll/retention.
    pub fn set_config(&self, config: LogConfig) {
        *self.config.borrow_mut() = config;
    }

    pub fn log_start_offset(&self) -> i64 {
        self.state.borrow().log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log_end.get() as i64
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.get() as i64
    }

    /// Offset below which everything is fsynced.
    pub fn recovery_point(&self) -> i64 {
        self.flushed.get() as i64
    }

    /// Waiters for the log end offset (followers) — woken by appends.
    pub fn log_end_watermark(&self) -> Rc<Watermark> {
        self.log_end.clone()
    }

    /// Waiters for the high watermark (long-poll fetches) — woken by appends/HW moves.
    pub fn high_watermark_watermark(&self) -> Rc<Watermark> {
        self.high_watermark.clone()
    }

    /// Moves the high watermark (replication); never past the LEO, never backwards.
    pub fn set_high_watermark(&self, offset: i64) {
        let offset = offset.clamp(0, self.log_end_offset());
        self.high_watermark.advance(offset as u64);
    }

    /// Position in the active segment file where the next batch would be appended (unless
    /// it rolls a new segment).
    pub fn next_append_position(&self) -> u64 {
        self.state.borrow().active().size_bytes
    }

    pub fn size_bytes(&self) -> u64 {
        self.state.borrow().size_bytes()
    }

    pub fn segment_count(&self) -> usize {
        self.state.borrow().segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.state.borrow().segments.keys().copied().collect()
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.state.borrow().epoch_cache.latest_epoch()
    }

    /// OffsetForLeaderEpoch: (epoch, end offset) per Kafka's `endOffsetFor`.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.state.borrow().epoch_cache.end_offset_for(epoch, self.log_end_offset())
    }

    pub fn leader_epoch_entries(&self) -> Vec<(i32, i64)> {
        self.state.borrow().epoch_cache.entries().iter().map(|e| (e.epoch, e.start_offset)).collect()
    }

    fn active_writer(&self) -> SegmentWriter {
        self.state.borrow().active().writer.clone().expect("active segment has a writer")
    }

    /// Validates and appends `records` (a produce request's record set) as the leader in
    /// `leader_epoch`, and returns once the append is durable (see the module docs).
    pub async fn append(&self, records: &[u8], leader_epoch: i32) -> Result<AppendInfo, AppendError> {
        let (info, durable) = self.append_buffered(records, leader_epoch).await?;
        self.wait_durable(durable).await?;
        Ok(info)
    }

    /// Waits until an append is durable: written to the file, and fsynced if its flush policy
    /// asked for it.
    pub async fn wait_durable(&self, target: DurableTarget) -> Result<(), LogError> {
        if target.needs_flush {
            self.flush().await?;
        }
        if self.durable.wait_for(target.next_offset as u64).await.is_err() {
            // Say why precisely (a full disk is retriable once space is freed).
            let cause = self.active_writer().error().map(write_error);
            return Err(cause.unwrap_or_else(|| LogError::Io("segment write failed; the append is not durable".into())));
        }
        Ok(())
    }

    /// Offset below which every appended byte is written to the file.
    pub fn durable_offset(&self) -> i64 {
        self.durable.get() as i64
    }

    /// The first phase of [`PartitionLog::append`]: validates the batch, assigns offsets and
    /// puts it in the write-behind buffer, then returns — appends of one partition keep their
    /// call order. The caller must [`PartitionLog::wait_durable`] before acknowledging.
    /// `records` is not modified: each batch's header is rewritten in a private copy (base
    /// offset, leader epoch, LogAppendTime) and streamed to the writer with the untouched
    /// record bytes — the records are copied once, into the write-behind (or not at all, see
    /// [`PartitionLog::append_buffered_shared`]).
    pub async fn append_buffered(
        &self,
        records: &[u8],
        leader_epoch: i32,
    ) -> Result<(AppendInfo, DurableTarget), AppendError> {
        self.append_buffered_from(records, None, leader_epoch).await
    }

    /// [`PartitionLog::append_buffered`] for records in shared memory (a produce request's
    /// frame): the batch's whole pages may be written straight from it, without a copy into
    /// the write-behind ([`SegmentWriter::append_shared`]), and are then kept until written.
    pub async fn append_buffered_shared(
        &self,
        records: &bytes::Bytes,
        leader_epoch: i32,
    ) -> Result<(AppendInfo, DurableTarget), AppendError> {
        self.append_buffered_from(records, Some(records), leader_epoch).await
    }

    /// `shared`, if any, holds the same bytes as `records`.
    async fn append_buffered_from(
        &self,
        records: &[u8],
        shared: Option<&bytes::Bytes>,
        leader_epoch: i32,
    ) -> Result<(AppendInfo, DurableTarget), AppendError> {
        let config = self.config.borrow().clone();
        let (infos, rewritten) = Self::validate(records, &config)?;
        let shared = shared.filter(|_| rewritten.is_none());
        let records: &[u8] = rewritten.as_deref().unwrap_or(records);
        let now = now_ms();
        if config.message_timestamp_type == TimestampTypeConfig::CreateTime {
            for info in &infos {
                for ts in [info.base_timestamp, info.max_timestamp] {
                    let too_old = now.saturating_sub(ts) > config.message_timestamp_before_max_ms;
                    let too_new = ts.saturating_sub(now) > config.message_timestamp_after_max_ms;
                    if ts >= 0 && (too_old || too_new) {
                        return Err(AppendError::InvalidTimestamp { timestamp_ms: ts, now_ms: now });
                    }
                }
            }
        }
        let log_append_time = (config.message_timestamp_type == TimestampTypeConfig::LogAppendTime).then_some(now);
        let fill_cache = self.options.tail_cache_fill == TailCacheFill::Always
            || now.saturating_sub(self.last_tail_read_ms.get()) <= TAIL_READER_WINDOW_MS;

        let permit = self.exclusive.acquire_permit(1).await.map_err(|_| LogError::Closed)?;
        if self.closed.get() {
            return Err(LogError::Closed.into());
        }
        // Idempotence: one batch per request (validate), so one verdict for the append.
        debug_assert_eq!(infos.len(), 1);
        if let SequenceCheck::Duplicate { first_offset, last_offset } =
            self.producers.borrow().check(&infos[0]).map_err(AppendError::Producer)?
        {
            drop(permit);
            let info = AppendInfo {
                base_offset: first_offset,
                last_offset,
                log_append_time_ms: -1,
                log_start_offset: self.log_start_offset(),
                record_count: last_offset - first_offset + 1,
                end_position: self.next_append_position(),
            };
            // The original may still be on its way to the file: acknowledge when it is there.
            return Ok((info, DurableTarget { next_offset: last_offset + 1, needs_flush: false }));
        }
        let settings = settings_of(&config);
        let mut first_offset = -1;
        let mut next_offset = self.log_end_offset();
        let mut position_in_records = 0usize;
        let mut new_epoch = false;
        for info in &infos {
            let batch_range = position_in_records..position_in_records + info.total_len;
            let batch = &records[batch_range.clone()];
            position_in_records += info.total_len;
            let mut header = [0u8; BATCH_HEADER_LEN];
            header.copy_from_slice(&batch[..BATCH_HEADER_LEN]);
            let rest = &batch[BATCH_HEADER_LEN..];
            assign_offsets_split(&mut header, rest, next_offset, leader_epoch, log_append_time);
            let mut stored = *info;
            stored.base_offset = next_offset;
            stored.partition_leader_epoch = leader_epoch;
            if let Some(t) = log_append_time {
                stored.max_timestamp = t;
            }
            let last_offset = stored.last_offset();
            let needs_roll = {
                let state = self.state.borrow();
                state.active().should_roll(
                    info.total_len as u64,
                    stored.max_timestamp,
                    last_offset,
                    config.segment_bytes as u64,
                    config.segment_ms,
                    now,
                )
            };
            if needs_roll {
                self.roll_locked(next_offset, &config).await?;
            }
            let (writer, position) = {
                let state = self.state.borrow();
                let active = state.active();
                (active.writer.clone().expect("active writer"), active.size_bytes)
            };
            writer.append(&header).await.map_err(|e| AppendError::Log(write_error(e)))?;
            match shared {
                Some(shared) => {
                    writer.append_shared(shared.slice(batch_range.start + BATCH_HEADER_LEN..batch_range.end)).await
                }
                None => writer.append(rest).await,
            }
            .map_err(|e| AppendError::Log(write_error(e)))?;
            {
                let mut state = self.state.borrow_mut();
                let active = state.active_mut();
                if let Some(cache) = &active.tail_cache {
                    let mut cache = cache.borrow_mut();
                    if fill_cache {
                        cache.push(position, &header);
                        cache.push(position + BATCH_HEADER_LEN as u64, rest);
                    } else if cache.cached_bytes() > 0 {
                        cache.clear(position + info.total_len as u64); // nobody tails: free it
                    }
                }
                active.note_batch(position, &stored, settings.index_interval_bytes);
                self.producers.borrow_mut().record(&stored);
                if state.epoch_cache.latest_epoch().is_none_or(|e| leader_epoch > e) {
                    new_epoch = state.epoch_cache.assign(leader_epoch, next_offset);
                }
            }
            if first_offset < 0 {
                first_offset = next_offset;
            }
            next_offset = last_offset + 1;
            self.log_end.advance(next_offset as u64);
            self.track_durability(&writer, position + info.total_len as u64, next_offset);
        }
        let end_position = self.next_append_position();
        if new_epoch {
            self.write_epoch_checkpoint().await?;
        }
        drop(permit);

        let flush_policy = config.flush_policy();
        let unflushed_messages = (next_offset as u64).saturating_sub(self.flushed.get());
        let info = AppendInfo {
            base_offset: first_offset,
            last_offset: next_offset - 1,
            log_append_time_ms: log_append_time.unwrap_or(-1),
            log_start_offset: self.log_start_offset(),
            record_count: next_offset - first_offset,
            end_position,
        };
        Ok((info, DurableTarget { next_offset, needs_flush: unflushed_messages >= flush_policy.every_messages }))
    }

    /// Advances the durable offset (and, in single-replica mode, the high watermark) to
    /// `next_offset` once the writer has `end_pos` bytes on file.
    fn track_durability(&self, writer: &SegmentWriter, end_pos: u64, next_offset: i64) {
        let writer = writer.clone();
        let durable = self.durable.clone();
        let high_watermark = self.options.high_watermark_follows_durable_end.then(|| self.high_watermark.clone());
        let log_end = self.log_end.clone();
        let generation = self.generation.clone();
        let started_in = generation.get();
        glommio::spawn_local(async move {
            let written = writer.wait_written(end_pos).await;
            if generation.get() != started_in {
                return; // truncated meanwhile: these offsets may no longer exist
            }
            match written {
                Ok(()) => {
                    assert!(next_offset as u64 <= log_end.get(), "durable offset past the log end");
                    durable.advance(next_offset as u64);
                    if let Some(hw) = high_watermark {
                        hw.advance(next_offset as u64);
                    }
                }
                Err(_) => durable.fail(),
            }
        })
        .detach();
    }

    /// Validates every batch of a produce record set; nothing is written if any fails.
    /// Compressed batches are decompressed and their records walked. Returns the batches as
    /// they will be stored and, when the topic's `compression.type` rewrites the batch, the
    /// rewritten bytes (else the request's bytes are stored unchanged).
    pub fn validate(records: &[u8], config: &LogConfig) -> Result<(Vec<BatchInfo>, Option<Vec<u8>>), AppendError> {
        // Kafka (ProduceRequest.validateRecords, v3+): exactly one whole batch per partition,
        // checked on the framing before the batch itself.
        let total_len = match crate::batch::BatchHeader::parse(records) {
            Ok(header) => header.total_len(),
            Err(_) if records.is_empty() => return Err(AppendError::Empty),
            Err(_) => return Err(AppendError::InvalidRecordSet("must have at least one record batch per partition")),
        };
        if total_len >= crate::batch::BATCH_HEADER_LEN && records.len() < total_len {
            return Err(AppendError::InvalidRecordSet("must have at least one record batch per partition"));
        }
        if total_len >= crate::batch::BATCH_HEADER_LEN && records.len() > total_len {
            return Err(AppendError::InvalidRecordSet("must have exactly one record batch per partition"));
        }
        let max_bytes = config.max_message_bytes.max(0) as usize;
        let mut infos = Vec::new();
        let mut consumed = 0usize;
        for item in batches(records, Validation::FromClient) {
            let (_, info) = item.map_err(AppendError::Batch)?;
            // Kafka's LogValidator.validateBatch rules for client batches.
            if info.is_control() {
                return Err(AppendError::Batch(BatchError::InvalidRecord("clients may not write control batches")));
            }
            if info.producer_id >= 0 && info.base_sequence < 0 {
                return Err(AppendError::Batch(BatchError::InvalidRecord(
                    "batch with a producer id has a negative base sequence",
                )));
            }
            if info.total_len > max_bytes {
                return Err(AppendError::RecordTooLarge { size_bytes: info.total_len, max_bytes });
            }
            consumed += info.total_len;
            infos.push(info);
        }
        if infos.is_empty() {
            return Err(AppendError::Empty);
        }
        if consumed != records.len() {
            return Err(AppendError::Batch(BatchError::Truncated { needed: records.len(), available: consumed }));
        }
        debug_assert_eq!(infos.len(), 1, "exactly one batch per partition");
        let info = infos[0];
        let target = compressed_batch::target_codec(config.compression_type, info.compression());
        let rewritten = COMPRESSION_SCRATCH
            .with(|scratch| compressed_batch::validate_and_rewrite(records, &info, target, &mut scratch.borrow_mut()));
        let Some(rewritten) = rewritten.map_err(AppendError::Batch)? else { return Ok((infos, None)) };
        let stored = crate::batch::validate_from_client(&rewritten).map_err(AppendError::Batch)?;
        if stored.total_len > max_bytes {
            return Err(AppendError::RecordTooLarge { size_bytes: stored.total_len, max_bytes });
        }
        Ok((vec![stored], Some(rewritten)))
    }

    /// Group commit: returns once everything appended before the call is fsynced. Concurrent
    /// callers share one `fdatasync`.
    pub async fn flush(&self) -> Result<(), LogError> {
        let target = self.log_end.get();
        loop {
            if self.flushed.get() >= target {
                return Ok(());
            }
            if self.flushed.is_failed() {
                return Err(LogError::Io("an earlier fdatasync failed".into()));
            }
            if self.sync_running.get() {
                let next = self.flushed.get() + 1;
                let _ = self.flushed.wait_for(next).await;
                continue;
            }
            self.sync_running.set(true);
            let (writer, sync_target) = (self.active_writer(), self.log_end.get());
            self.syncs.set(self.syncs.get() + 1);
            let result = writer.sync().await;
            self.sync_running.set(false);
            match result {
                Ok(()) => {
                    self.state.borrow_mut().last_flush_ms = now_ms();
                    self.flushed.advance(sync_target);
                }
                Err(e) => {
                    self.flushed.fail();
                    return Err(write_error(e));
                }
            }
        }
    }

    /// Syncs if `flush.ms` elapsed since the last sync and something is unflushed (the shard's
    /// flush timer calls this).
    pub async fn flush_if_due(&self, now_ms: i64) -> Result<(), LogError> {
        let every_ms = self.config.borrow().flush_policy().every_ms;
        let Some(every_ms) = every_ms else { return Ok(()) };
        let due = now_ms.saturating_sub(self.state.borrow().last_flush_ms) >= every_ms as i64;
        if due && self.log_end.get() > self.flushed.get() {
            self.flush().await?;
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one at `new_base`. Caller holds `exclusive`.
    async fn roll_locked(&self, new_base: i64, config: &LogConfig) -> Result<(), LogError> {
        let (writer, file, size, base) = {
            let state = self.state.borrow();
            let active = state.active();
            (active.writer.clone().expect("active writer"), active.file.clone(), active.size_bytes, active.base_offset)
        };
        if base == new_base {
            return Ok(()); // empty active segment already starts here
        }
        // Seal: everything written and synced, zero padding cut off, indexes on disk.
        writer.sync().await.map_err(write_error)?;
        file.truncate(size).await.map_err(io)?;
        self.write_segment_indexes(base).await?;
        let mut segment = Segment::create(
            &self.dir,
            new_base,
            settings_of(config),
            self.options.writer,
            self.options.direct_io,
            now_ms(),
        )
        .await
        .map_err(io)?;
        segment.tail_cache = Some(self.options.new_tail_cache(0));
        {
            let mut state = self.state.borrow_mut();
            state.active_mut().writer = None;
            state.active_mut().tail_cache = None;
            state.segments.insert(new_base, segment);
        }
        // Everything below the new base is durable.
        self.flushed.advance(new_base as u64);
        self.write_recovery_point(new_base).await?;
        self.write_producer_snapshot(new_base).await?;
        tracing::debug!(topic = %self.topic, partition = self.partition, new_base, "rolled segment");
        Ok(())
    }

    /// Forces a roll (tests, admin); a no-op on an empty active segment.
    pub async fn roll(&self) -> Result<(), LogError> {
        let _permit = self.exclusive.acquire_permit(1).await.map_err(|_| LogError::Closed)?;
        let config = self.config.borrow().clone();
        self.roll_locked(self.log_end_offset(), &config).await
    }

    async fn write_segment_indexes(&self, base: i64) -> Result<(), LogError> {
        let (index, time_index) = {
            let state = self.state.borrow();
            let Some(seg) = state.segments.get(&base) else { return Ok(()) };
            if !seg.indexes_dirty {
                return Ok(());
            }
            (seg.offset_index.encode(), seg.time_index.encode())
        };
        let (_, index_path, time_index_path) = Segment::paths(&self.dir, base);
        write_atomic(&index_path, &index).await.map_err(io_error)?;
        write_atomic(&time_index_path, &time_index).await.map_err(io_error)?;
        if let Some(seg) = self.state.borrow_mut().segments.get_mut(&base) {
            seg.indexes_dirty = false;
        }
        Ok(())
    }

    async fn write_recovery_point(&self, offset: i64) -> Result<(), LogError> {
        if self.state.borrow().checkpointed_recovery_point == offset {
            return Ok(());
        }
        write_atomic(&self.dir.join(RECOVERY_POINT_FILE), encode_offset_checkpoint(offset).as_bytes())
            .await
            .map_err(io_error)?;
        self.state.borrow_mut().checkpointed_recovery_point = offset;
        Ok(())
    }

    /// Writes the log start offset if it differs from what is on disk.
    async fn write_log_start_offset(&self) -> Result<(), LogError> {
        let lso = self.log_start_offset();
        if self.state.borrow().checkpointed_log_start_offset == Some(lso) {
            return Ok(());
        }
        write_atomic(&self.dir.join(LOG_START_OFFSET_FILE), encode_offset_checkpoint(lso).as_bytes())
            .await
            .map_err(io_error)?;
        self.state.borrow_mut().checkpointed_log_start_offset = Some(lso);
        Ok(())
    }

    /// Writes the leader-epoch checkpoint if it differs from what is on disk.
    async fn write_epoch_checkpoint(&self) -> Result<(), LogError> {
        let text = self.state.borrow().epoch_cache.encode();
        if self.state.borrow().checkpointed_epochs.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        write_atomic(&self.dir.join(LEADER_EPOCH_FILE), text.as_bytes()).await.map_err(io_error)?;
        self.state.borrow_mut().checkpointed_epochs = Some(text);
        Ok(())
    }

    /// [`PartitionLog::write_recovery_point`], or, when the disk is full, removing the file:
    /// without it the next unclean start scans every segment, which is always safe.
    async fn write_recovery_point_or_forget(&self, offset: i64) -> Result<(), LogError> {
        match self.write_recovery_point(offset).await {
            Err(e) if e.is_storage_full() => {
                self.forget_checkpoint(RECOVERY_POINT_FILE).await?;
                self.state.borrow_mut().checkpointed_recovery_point = -1;
                Ok(())
            }
            other => other,
        }
    }

    /// [`PartitionLog::write_epoch_checkpoint`], or, when the disk is full, removing the file:
    /// the next start rebuilds the epochs from the batch headers.
    async fn write_epoch_checkpoint_or_forget(&self) -> Result<(), LogError> {
        match self.write_epoch_checkpoint().await {
            Err(e) if e.is_storage_full() => {
                self.forget_checkpoint(LEADER_EPOCH_FILE).await?;
                self.state.borrow_mut().checkpointed_epochs = None;
                Ok(())
            }
            other => other,
        }
    }

    /// Removes a checkpoint that could not be rewritten (unlinking needs no free space).
    async fn forget_checkpoint(&self, name: &str) -> Result<(), LogError> {
        crate::warn_limited!(topic = %self.topic, partition = self.partition, file = name, "disk full: removing a stale checkpoint; the next start rebuilds it");
        checkpoint_file::remove_if_exists(&self.dir.join(name)).await.map_err(io_error)
    }

    async fn write_checkpoints(&self) -> Result<(), LogError> {
        self.write_recovery_point(self.recovery_point()).await?;
        self.write_log_start_offset().await?;
        self.write_epoch_checkpoint().await
    }

    /// Writes the recovery point if it moved (the shard calls this periodically).
    pub async fn checkpoint_recovery_point(&self) -> Result<(), LogError> {
        self.write_recovery_point(self.recovery_point()).await
    }

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
            let (log_start_offset, log_end_offset, high_watermark) =
                (self.log_start_offset(), self.log_end_offset(), self.high_watermark());
            let bound_offset = match bound {
                ReadBound::HighWatermark => high_watermark,
                ReadBound::LogEnd => log_end_offset,
            };
            let empty = |first| LogRead {
                chunks: Vec::new(),
                first_batch_offset: first,
                high_watermark,
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
            let snapshot = {
                let state = self.state.borrow();
                let mut range = state.segments.range((Bound::Unbounded, Bound::Included(offset)));
                let floor = range.next_back().map(|(b, _)| *b);
                let candidate = match floor {
                    Some(b) if state.segments[&b].next_offset > offset => Some(b),
                    _ => state.segments.range((Bound::Excluded(offset), Bound::Unbounded)).next().map(|(b, _)| *b),
                };
                candidate.map(|b| {
                    let seg = &state.segments[&b];
                    let start = seg.offset_index.lookup(offset).position as u64;
                    let bound_pos = if bound_offset < seg.next_offset { None } else { Some(seg.size_bytes) };
                    let bound_index = seg.offset_index.lookup(bound_offset).position as u64;
                    (
                        seg.file.clone(),
                        seg.writer.clone(),
                        seg.tail_cache.clone(),
                        (b, seg.log_path.clone()),
                        seg.size_bytes,
                        start,
                        bound_pos,
                        bound_index,
                        seg.next_offset,
                    )
                })
            };
            let Some((
                file,
                writer,
                cache,
                (_segment_base, log_path),
                size,
                index_start,
                bound_pos,
                bound_index,
                seg_next,
            )) = snapshot
            else {
                return Ok(empty(-1));
            };
            let location = Self::locate(&file, writer.as_ref(), cache.as_ref(), index_start, size, offset).await?;
            let Some(location) = location else {
                // Not in this segment (gap) — continue at its end.
                offset = seg_next.max(offset + 1);
                if offset >= bound_offset {
                    return Ok(empty(-1));
                }
                continue;
            };
            let end_pos = match bound_pos {
                Some(p) => p,
                None => {
                    match Self::locate(&file, writer.as_ref(), cache.as_ref(), bound_index, size, bound_offset).await? {
                        Some(l) => l.position,
                        None => size,
                    }
                }
            };
            if writer.is_some() && location.position + self.options.tail_cache_bytes as u64 >= size {
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
            // Buffered handles for `sendfile` come from the shard's bounded cache.
            let reader = match crate::reader_cache::get(&log_path).await {
                Ok(r) => Some(r),
                Err(e) => {
                    crate::warn_limited!(path = %log_path.display(), error = %e, "no buffered reader; sendfile disabled for this read");
                    None
                }
            };
            let chunks =
                Segment::chunks(&file, writer.as_ref(), cache.as_ref(), reader.as_ref(), location.position, len)
                    .map_err(io)?;
            return Ok(LogRead {
                chunks,
                first_batch_offset: location.base_offset,
                high_watermark,
                log_start_offset,
                log_end_offset,
            });
        }
        Err(LogError::Corrupt(format!("could not locate offset {offset}")))
    }

    /// Remembers that a reader tails the log now (see [`TailCacheFill::Tailing`]).
    fn note_tail_read(&self) {
        if self.options.tail_cache_fill == TailCacheFill::Tailing {
            self.last_tail_read_ms.set(now_ms());
        }
    }

    /// Finds the batch containing `target`, starting at an index position; falls back to a walk
    /// from the segment start if the index pointed at something that is not a batch.
    async fn locate(
        file: &Rc<glommio::io::DmaFile>,
        writer: Option<&SegmentWriter>,
        cache: Option<&crate::segment::SharedTailCache>,
        index_start: u64,
        size: u64,
        target: i64,
    ) -> Result<Option<crate::segment::BatchLocation>, LogError> {
        match Segment::find_batch(file, writer, cache, index_start, size, target, false).await.map_err(io)? {
            Ok(found) => Ok(found),
            Err(at) if index_start > 0 => {
                crate::warn_limited!(position = at, "index entry does not point at a batch; walking the segment");
                match Segment::find_batch(file, writer, cache, 0, size, target, false).await.map_err(io)? {
                    Ok(found) => Ok(found),
                    Err(at) => Err(LogError::Corrupt(format!("no batch header at position {at}"))),
                }
            }
            Err(at) => Err(LogError::Corrupt(format!("no batch header at position {at}"))),
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

    /// Deletes segments by `retention.ms`, `retention.bytes` and the log start offset. Returns
    /// how many segments were deleted.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let _permit = self.exclusive.acquire_permit(1).await.map_err(|_| LogError::Closed)?;
        if self.closed.get() {
            return Ok(0);
        }
        let expired = self.producers.borrow_mut().expire(now_ms, self.options.producer_id_expiration_ms);
        if expired > 0 {
            tracing::debug!(topic = %self.topic, partition = self.partition, expired, "expired idle producer ids");
        }
        let config = self.config.borrow().clone();
        if !config.cleanup_policy_delete() {
            // Compaction-only topics keep everything but what DeleteRecords removed.
            return self.delete_below_start_locked(&config).await;
        }
        let decision = {
            let state = self.state.borrow();
            let summaries = Self::summaries(&state);
            deletable_segments(
                &summaries,
                &RetentionInputs {
                    now_ms,
                    retention_ms: config.retention_ms,
                    retention_bytes: config.retention_bytes,
                    log_start_offset: state.log_start_offset,
                    high_watermark: self.high_watermark(),
                    log_end_offset: self.log_end_offset(),
                },
            )
        };
        if decision.count == 0 {
            return Ok(0);
        }
        if decision.needs_roll {
            self.roll_locked(self.log_end_offset(), &config).await?;
        }
        let deleted = self.delete_oldest_locked(decision.count).await?;
        tracing::info!(topic = %self.topic, partition = self.partition, deleted, reason = ?decision.reason, "retention deleted segments");
        Ok(deleted)
    }

    fn summaries(state: &LogState) -> Vec<SegmentSummary> {
        state
            .segments
            .values()
            .map(|s| SegmentSummary {
                base_offset: s.base_offset,
                size_bytes: s.size_bytes,
                max_timestamp_ms: s.max_timestamp_ms,
            })
            .collect()
    }

    async fn delete_below_start_locked(&self, _config: &LogConfig) -> Result<usize, LogError> {
        let count = {
            let state = self.state.borrow();
            let bases: Vec<i64> = state.segments.keys().copied().collect();
            bases.windows(2).take_while(|w| w[1] <= state.log_start_offset).count()
        };
        if count == 0 {
            return Ok(0);
        }
        self.delete_oldest_locked(count).await
    }

    /// Removes the `count` oldest segments (never the active one) and advances the log start
    /// offset past them. Caller holds `exclusive`.
    async fn delete_oldest_locked(&self, count: usize) -> Result<usize, LogError> {
        let removed: Vec<Segment> = {
            let mut state = self.state.borrow_mut();
            let count = count.min(state.segments.len().saturating_sub(1));
            let bases: Vec<i64> = state.segments.keys().take(count).copied().collect();
            let removed = bases.iter().filter_map(|b| state.segments.remove(b)).collect::<Vec<_>>();
            let first = *state.segments.keys().next().expect("active remains");
            if first > state.log_start_offset {
                state.log_start_offset = first;
            }
            let lso = state.log_start_offset;
            state.epoch_cache.truncate_from_start(lso);
            removed
        };
        for segment in &removed {
            let (_, index_path, time_index_path) = Segment::paths(&self.dir, segment.base_offset);
            // Open readers keep their file descriptor; unlinking is safe under them.
            crate::reader_cache::forget(&segment.log_path);
            for path in [segment.log_path.clone(), index_path, time_index_path] {
                checkpoint_file::remove_if_exists(&path).await.map_err(io)?;
            }
        }
        self.producers.borrow_mut().remove_before(self.log_start_offset());
        self.write_log_start_offset().await?;
        self.write_epoch_checkpoint().await?;
        Ok(removed.len())
    }

    /// DeleteRecords: moves the log start offset to `offset` (-1 = the high watermark) and drops
    /// segments wholly below it. Returns the new log start offset.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64, LogError> {
        let _permit = self.exclusive.acquire_permit(1).await.map_err(|_| LogError::Closed)?;
        let hw = self.high_watermark();
        let offset = if offset == -1 { hw } else { offset };
        if offset < 0 || offset > hw {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset(),
                log_end_offset: hw,
            });
        }
        let moved = {
            let mut state = self.state.borrow_mut();
            if offset > state.log_start_offset {
                state.log_start_offset = offset;
                state.epoch_cache.truncate_from_start(offset);
                true
            } else {
                false
            }
        };
        if moved {
            self.producers.borrow_mut().remove_before(offset);
            self.write_log_start_offset().await?;
            let config = self.config.borrow().clone();
            self.delete_below_start_locked(&config).await?;
        }
        Ok(self.log_start_offset())
    }

    /// Removes every batch at or above `offset` (follower truncation to a leader's epoch end;
    /// the replication layer calls this). Offsets must be batch boundaries.
    pub async fn truncate_to(&self, offset: i64) -> Result<(), LogError> {
        let _permit = self.exclusive.acquire_permit(1).await.map_err(|_| LogError::Closed)?;
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        self.truncate_locked(offset).await
    }

    /// Whether the active segment's writer failed (a write or fdatasync error: a full or failing
    /// disk). Appends fail with KAFKA_STORAGE_ERROR until [`PartitionLog::recover_from_write_failure`].
    pub fn write_failed(&self) -> bool {
        let writer_failed = self.state.borrow().active().writer.as_ref().is_some_and(|w| w.error().is_some());
        writer_failed || self.durable.is_failed() || self.flushed.is_failed()
    }

    /// After a failed write: cuts the log back to its durable offset and gives the active
    /// segment a new writer, so appends succeed again once the disk has room (if it is still
    /// full, the next append fails the same way and the shard tries again later, backing off).
    /// Nothing past the durable offset was acknowledged, and no consumer read it (the high
    /// watermark follows the durable offset), so nothing anyone saw is taken back. Returns
    /// whether there was anything to recover.
    pub async fn recover_from_write_failure(&self) -> Result<bool, LogError> {
        let _permit = self.exclusive.acquire_permit(1).await.map_err(|_| LogError::Closed)?;
        if self.closed.get() || !self.write_failed() {
            return Ok(false);
        }
        self.recover_locked().await?;
        Ok(true)
    }

    async fn recover_locked(&self) -> Result<(), LogError> {
        let durable = self.durable_offset();
        crate::warn_limited!(
            topic = %self.topic, partition = self.partition, durable, log_end = self.log_end_offset(),
            "recovering from a failed write: the log is cut back to its durable offset"
        );
        self.truncate_locked(durable).await
    }

    /// Removes every batch at or above `offset` and gives the active segment a new writer.
    /// Caller holds `exclusive`. Works on a failed writer too: it waits until none of the old
    /// writer's I/O is still in the kernel.
    async fn truncate_locked(&self, offset: i64) -> Result<(), LogError> {
        let offset = offset.max(self.log_start_offset());
        // Drop whole segments above, then cut the one containing `offset`.
        let doomed: Vec<i64> = {
            let state = self.state.borrow();
            state.segments.range((Bound::Excluded(offset), Bound::Unbounded)).map(|(b, _)| *b).collect()
        };
        let keep_one = doomed.len() == self.segment_count();
        for base in doomed.iter().skip(usize::from(keep_one)) {
            let segment = self.state.borrow_mut().segments.remove(base).expect("present");
            if let Some(w) = &segment.writer {
                let _ = w.drain().await;
                w.quiesce().await;
            }
            let (_, index_path, time_index_path) = Segment::paths(&self.dir, *base);
            crate::reader_cache::forget(&segment.log_path);
            for path in [segment.log_path.clone(), index_path, time_index_path] {
                checkpoint_file::remove_if_exists(&path).await.map_err(io)?;
            }
        }
        // Rebuild the (new) last segment up to `offset` by scanning it.
        let (file, writer, size, base) = {
            let state = self.state.borrow();
            let seg = state.active();
            (seg.file.clone(), seg.writer.clone(), seg.size_bytes, seg.base_offset)
        };
        if let Some(w) = &writer {
            // A failed writer returns at once from `drain`: `quiesce` still waits for its I/O.
            let _ = w.drain().await;
            w.quiesce().await;
        }
        let config = self.config.borrow().clone();
        let settings = settings_of(&config);
        let mut infos = Vec::new();
        scan_segment(&file, size, base, usize::MAX, &mut |pos, info| {
            if info.base_offset < offset {
                infos.push((pos, *info));
            }
        })
        .await
        .map_err(io)?;
        let mut segment =
            Segment::from_parts(base, Segment::paths(&self.dir, base).0, file.clone(), 0, settings, None, now_ms());
        for (pos, info) in &infos {
            segment.note_batch(*pos, info, settings.index_interval_bytes);
        }
        file.truncate(segment.size_bytes).await.map_err(io)?;
        let tail_start = align_down(segment.size_bytes);
        let tail = if segment.size_bytes > tail_start {
            file.read_at(tail_start, (segment.size_bytes - tail_start) as usize).await.map_err(io)?.to_vec()
        } else {
            Vec::new()
        };
        segment.writer = Some(SegmentWriter::new(file, segment.size_bytes, &tail, self.options.writer));
        segment.tail_cache = Some(self.options.new_tail_cache(segment.size_bytes));
        let new_end = segment.next_offset.max(base);
        {
            let mut state = self.state.borrow_mut();
            state.segments.insert(base, segment);
            state.epoch_cache.truncate_from_end(new_end);
        }
        self.generation.set(self.generation.get() + 1);
        self.log_end.reset(new_end as u64);
        // Every batch left was just read back from the file: all of it is durable.
        self.durable.reset(new_end as u64);
        self.durable.clear_failure();
        if self.options.high_watermark_follows_durable_end || self.high_watermark() > new_end {
            self.high_watermark.reset(new_end as u64);
        }
        if self.recovery_point() > new_end {
            self.flushed.reset(new_end as u64);
        }
        self.flushed.clear_failure();
        self.sync_running.set(false);
        // The on-disk recovery point must not claim offsets that no longer exist: a crash
        // now must rescan the truncated segment.
        self.write_recovery_point_or_forget(self.recovery_point().min(base)).await?;
        self.write_epoch_checkpoint_or_forget().await?;
        // Producer state of the removed batches must go too: rebuild it from what remains.
        let (mut snapshots, extents) = {
            let state = self.state.borrow();
            (state.producer_snapshots.clone(), SegmentExtent::of_all(&state.segments))
        };
        let producers =
            rebuild_producer_state(&self.dir, &mut snapshots, &extents, self.log_start_offset(), new_end).await?;
        *self.producers.borrow_mut() = producers;
        self.state.borrow_mut().producer_snapshots = snapshots;
        Ok(())
    }

    /// Clean close: write out and sync the active segment, trim its padding, write indexes and
    /// checkpoints. Later appends fail with `Closed`.
    pub async fn close(&self) -> Result<(), LogError> {
        let _permit = self.exclusive.acquire_permit(1).await.map_err(|_| LogError::Closed)?;
        if self.closed.replace(true) {
            return Ok(());
        }
        if self.write_failed() {
            // A full disk: what was not written was never acknowledged; close what is durable.
            self.recover_locked().await?;
        }
        let (writer, file, size, base) = {
            let state = self.state.borrow();
            let a = state.active();
            (a.writer.clone().expect("active writer"), a.file.clone(), a.size_bytes, a.base_offset)
        };
        writer.sync().await.map_err(write_error)?;
        self.flushed.advance(self.log_end.get());
        file.truncate(size).await.map_err(io)?;
        // On a full disk a checkpoint that cannot be rewritten is removed instead (each is
        // rebuilt at the next start): a clean stop stays clean.
        let bases: Vec<i64> = self.state.borrow().segments.keys().copied().collect();
        for b in bases {
            match self.write_segment_indexes(b).await {
                Err(e) if e.is_storage_full() => {
                    let (_, index_path, time_index_path) = Segment::paths(&self.dir, b);
                    for path in [index_path, time_index_path] {
                        checkpoint_file::remove_if_exists(&path).await.map_err(io_error)?;
                    }
                }
                other => other?,
            }
        }
        debug_assert!(self.state.borrow().segments.contains_key(&base));
        self.write_recovery_point_or_forget(self.recovery_point()).await?;
        self.write_log_start_offset().await?;
        self.write_epoch_checkpoint_or_forget().await?;
        match self.write_producer_snapshot(self.log_end_offset()).await {
            // The newest older snapshot and a replay of the batches after it rebuild it.
            Err(e) if e.is_storage_full() => {}
            other => other?,
        }
        self.log_end.wake_all();
        self.high_watermark.wake_all();
        Ok(())
    }

    /// How many group-commit fdatasyncs this log issued.
    pub fn sync_count(&self) -> u64 {
        self.syncs.get()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Deletes the partition's directory (DeleteTopics). The log must not be used afterwards.
    pub async fn delete(&self) -> Result<(), LogError> {
        let _permit = self.exclusive.acquire_permit(1).await.map_err(|_| LogError::Closed)?;
        self.closed.set(true);
        let writer = self.active_writer();
        let _ = writer.drain().await;
        crate::reader_cache::forget_dir(&self.dir);
        let dir = self.dir.clone();
        blocking(move || match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
        .map_err(io)?;
        self.log_end.fail();
        self.high_watermark.fail();
        Ok(())
    }
}

fn producer_snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}{PRODUCER_SNAPSHOT_SUFFIX}"))
}

fn parse_producer_snapshot_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(PRODUCER_SNAPSHOT_SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

/// What a scan needs of a segment, copied out so no borrow of the log state lives across an
/// await.
struct SegmentExtent {
    base_offset: i64,
    next_offset: i64,
    size_bytes: u64,
    file: Rc<glommio::io::DmaFile>,
}

impl SegmentExtent {
    fn of_all(segments: &BTreeMap<i64, Segment>) -> Vec<SegmentExtent> {
        segments
            .values()
            .map(|s| SegmentExtent {
                base_offset: s.base_offset,
                next_offset: s.next_offset,
                size_bytes: s.size_bytes,
                file: s.file.clone(),
            })
            .collect()
    }
}

/// Rebuilds the producer table for the log `[log_start, log_end)`: the newest readable
/// snapshot at or below `log_end`, then every batch after it, read from the segments (batch
/// headers carry producer id, epoch and sequence). Snapshots beyond `log_end` (left by a
/// truncation or a torn tail) are deleted; `snapshots` is updated to what remains.
async fn rebuild_producer_state(
    dir: &Path,
    snapshots: &mut Vec<i64>,
    segments: &[SegmentExtent],
    log_start: i64,
    log_end: i64,
) -> Result<ProducerStateTable, LogError> {
    for offset in snapshots.iter().filter(|o| **o > log_end) {
        checkpoint_file::remove_if_exists(&producer_snapshot_path(dir, *offset)).await.map_err(io)?;
    }
    snapshots.retain(|o| *o <= log_end);
    let mut loaded = None;
    for &offset in snapshots.iter().rev() {
        let bytes = read_small_or_none(&producer_snapshot_path(dir, offset)).await?;
        match bytes.as_deref().and_then(ProducerStateTable::decode_snapshot) {
            Some((table, at)) if at == offset => {
                loaded = Some((table, offset));
                break;
            }
            _ => {
                crate::warn_limited!(dir = %dir.display(), offset, "producer-state snapshot unreadable; using an older one")
            }
        }
    }
    let (mut table, from) = loaded.unwrap_or_else(|| (ProducerStateTable::default(), log_start));
    let mut replayed_batches = 0u64;
    for segment in segments {
        if segment.next_offset <= from || segment.size_bytes == 0 {
            continue;
        }
        let mut infos = Vec::new();
        scan_segment(&segment.file, segment.size_bytes, segment.base_offset, usize::MAX, &mut |_, info| {
            if info.base_offset >= from && info.base_offset < log_end && info.producer_id >= 0 {
                infos.push(*info);
            }
        })
        .await
        .map_err(io)?;
        replayed_batches += infos.len() as u64;
        for info in &infos {
            table.record(info);
        }
    }
    table.remove_before(log_start);
    tracing::debug!(dir = %dir.display(), from, replayed_batches, producers = table.len(), "producer state rebuilt");
    Ok(table)
}

async fn read_small_or_none(path: &Path) -> Result<Option<Vec<u8>>, LogError> {
    read_small(path).await.map_err(io)
}

/// The timestamp type a stored batch carries (re-exported for readers of `AppendInfo`).
pub fn timestamp_type_of(info: &BatchInfo) -> TimestampType {
    info.timestamp_type()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_dir_names_round_trip() {
        assert_eq!(partition_dir_name("orders", 3), "orders-3");
        assert_eq!(parse_partition_dir_name("my-topic-12"), Some(("my-topic".into(), 12)));
        assert_eq!(parse_partition_dir_name("topic"), None);
        assert_eq!(parse_partition_dir_name("-1"), None);
        assert_eq!(parse_partition_dir_name("t-x"), None);
        assert_eq!(parse_partition_dir_name("t-"), None);
    }
}
