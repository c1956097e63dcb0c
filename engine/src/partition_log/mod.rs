//! The log of one topic-partition: its segments, offsets, durability and retention.
//!
//! Owns: the segments of `<data-dir>/<topic>-<partition>/`, the log start offset, log end
//! offset (LEO), high watermark (HW) and recovery point (fsynced offset) — four separate
//! numbers — the leader-epoch cache, the idempotent producers' state
//! ([`crate::producer_state`], checked and updated under `exclusive` with each append, snapshot
//! to `<offset>.snapshot` on roll (encoded at the roll, written by its seal) and close,
//! rebuilt after the newest snapshot on open and truncation), transactions (markers, the last stable offset and each segment's
//! aborted-transaction index, see `txn.rs`), and the per-partition checkpoint files (`recovery-point.checkpoint`,
//! `log-start-offset.checkpoint`, `leader-epoch-checkpoint`). Compressed batches are validated
//! and, per `compression.type`, rewritten here ([`crate::compressed_batch`]). Segments
//! rewritten by log compaction are swapped in through `.cleaned`, `.swap` and `.deleted` files
//! ([`PartitionLog::replace_segments`]); open finishes or abandons a swap a crash interrupted.
//!
//! Layout: this file holds the state, options, errors and accessors; `open.rs` opens and
//! recovers, `append.rs` validates and appends and tracks durability, `read.rs` serves reads
//! and timestamp lookups, `segment_set.rs` rolls, retains, deletes and truncates segments,
//! closes the log and writes its checkpoints, `seal.rs` finishes a rolled segment in the
//! background (its fdatasync, index files, recovery point and producer snapshot), and
//! `replace.rs` swaps rewritten segments in
//! (both halves of that protocol: the swap, and settling an interrupted one at open), and
//! `txn.rs` appends transaction markers and keeps the last stable offset and the `.txnindex`
//! files.
//!
//! Concurrency: one shard owns a `PartitionLog` (it is `!Send`). Appends, rolls, truncation,
//! retention, replacement and close run one at a time under `exclusive` (a local FIFO
//! semaphore, not a lock between threads); reads take a consistent snapshot synchronously and
//! then do I/O without blocking appends — through the file handles of that snapshot, so a
//! segment deleted or replaced meanwhile still reads its own bytes. Durability waits happen
//! *outside* the exclusive section so concurrent appends share one `fdatasync` (group commit).
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
//! happen from the shard's timer ([`PartitionLog::flush_if_due`]). A roll does not sync: the
//! rolled segment's `fdatasync` runs in the background, and a flush waits for it before the
//! recovery point passes that segment. A segment replacement is
//! committed once every replacement file is fsynced and renamed to `.swap`; a crash before
//! that keeps the old segments, after it the new ones.
//!
//! Invariants checked in release builds too (a storage engine stops rather than serve wrong
//! bytes): offsets strictly increase as batches are recorded, the durable offset and the high
//! watermark never pass the log end offset, and a read never returns bytes past its bound.
//!
//! Must never: write a batch that failed validation, serve bytes past the bound it was asked
//! for (HW for consumers, LEO for followers), serve bytes of a file other than the segment's
//! own (a path may name a replacement by then), leave two segments holding the same offset
//! after a crash, hold a `RefCell` borrow across an await, or run a blocking syscall on the
//! shard thread.

mod append;
mod open;
mod read;
mod replace;
mod seal;
mod segment_set;
mod txn;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use glommio::sync::Semaphore;

use crate::batch::{BatchError, BatchInfo, TimestampType};
use crate::error_code::ErrorCode;
use crate::leader_epoch_cache::LeaderEpochCache;
use crate::log_config::LogConfig;
use crate::producer_state::{ProducerError, ProducerStateTable, DEFAULT_PRODUCER_ID_EXPIRATION_MS};
use crate::replica_state::UnstableOffsets;
use crate::segment::{Segment, SegmentSettings};
use crate::segment_writer::{SegmentWriter, WriterOptions};
use crate::watermark::Watermark;

pub use read::LogRead;
pub use replace::CleanedSegment;
pub use seal::{set_seal_fault_hook, SealStep};

const RECOVERY_POINT_FILE: &str = "recovery-point.checkpoint";
const LOG_START_OFFSET_FILE: &str = "log-start-offset.checkpoint";
const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";
/// A replicated partition's high watermark (Kafka keeps them in `replication-offset-checkpoint`
/// per log dir): written periodically and at close, so a restarted replica does not take its
/// log end for committed.
const HIGH_WATERMARK_FILE: &str = "high-watermark.checkpoint";

thread_local! {
    /// The shard's decompression scratch buffer (see [`crate::compressed_batch::trim_scratch`]).
    static COMPRESSION_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

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

/// Errors of the log as a whole (open, I/O, closed), and `InvalidReplace`: a refused
/// [`PartitionLog::replace_segments`], which changed nothing.
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
    InvalidReplace(String),
}

impl LogError {
    pub fn error_code(&self) -> ErrorCode {
        match self {
            LogError::Io(_) | LogError::StorageFull(_) | LogError::Corrupt(_) => ErrorCode::KAFKA_STORAGE_ERROR,
            LogError::Closed => ErrorCode::NOT_LEADER_OR_FOLLOWER,
            LogError::OffsetOutOfRange { .. } => ErrorCode::OFFSET_OUT_OF_RANGE,
            LogError::InvalidReplace(_) => ErrorCode::UNKNOWN_SERVER_ERROR,
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
            LogError::InvalidReplace(e) => write!(f, "invalid segment replacement: {e}"),
        }
    }
}

impl std::error::Error for LogError {}

fn io(e: impl std::fmt::Display) -> LogError {
    LogError::Io(e.to_string())
}

/// An I/O error, keeping whether the disk is full.
fn io_error(e: std::io::Error) -> LogError {
    if crate::checkpoint_file::is_storage_full(&e) {
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
    /// A follower's batch does not start at the log end offset (a replicated batch keeps the
    /// leader's offsets, so it must continue the log exactly: Kafka's
    /// `UnexpectedAppendOffsetException`). Nothing was written.
    UnexpectedOffset {
        expected: i64,
        got: i64,
    },
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
            AppendError::UnexpectedOffset { .. } => ErrorCode::UNKNOWN_SERVER_ERROR,
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
            AppendError::UnexpectedOffset { expected, got } => {
                write!(f, "replicated batch starts at offset {got}, the log ends at {expected}")
            }
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
    /// read_committed consumers: below the last stable offset.
    LastStable,
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

/// The background seal of the segment the last roll closed (see `seal.rs`).
struct PendingSeal {
    /// The rolled segment's end: once sealed, everything below it is fsynced.
    next_base: i64,
    /// 1 once the seal finished; failed if its fdatasync failed.
    done: Rc<Watermark>,
}

/// One partition's log. See the module docs.
pub struct PartitionLog {
    /// The `Rc` this log lives in (a roll's background seal holds the log through it).
    this: Weak<PartitionLog>,
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
    /// The last stable offset (read_committed fetches wait on it); follows `unstable` and the
    /// high watermark.
    last_stable: Rc<Watermark>,
    /// Open and not yet replicated transactions: what holds the last stable offset back.
    unstable: Rc<RefCell<UnstableOffsets>>,
    flushed: Rc<Watermark>,
    /// Offset below which every appended byte is written to the file.
    durable: Rc<Watermark>,
    /// Bumped by truncation, so durability tasks of truncated appends do nothing.
    generation: Rc<Cell<u64>>,
    sync_running: Cell<bool>,
    /// fdatasyncs issued by `flush` (metrics, and the group-commit test).
    syncs: Cell<u64>,
    closed: Cell<bool>,
    /// The seal a roll left running, if it has not been waited for yet; at most one at a time.
    seal: RefCell<Option<PendingSeal>>,
    /// One write of `recovery-point.checkpoint` at a time (a seal, the shard's periodic
    /// checkpoint and the exclusive sections all write it; two writes would share a temp file).
    recovery_point_writes: Semaphore,
    /// While a close writes its files: their directory fsync is left for its end, and whether
    /// one is owed.
    dir_sync_deferred: Cell<bool>,
    dir_sync_pending: Cell<bool>,
    /// When a read last tailed the log (see [`TailCacheFill::Tailing`]).
    last_tail_read_ms: Cell<i64>,
    /// A segment replacement failed after its commit point: its files are left for the next
    /// open to finish, and no other replacement may start before.
    replace_awaits_open: Cell<bool>,
    /// Whether the high watermark follows the durable end (single-replica mode, from
    /// [`LogOptions::high_watermark_follows_durable_end`]) or is moved by the replication layer
    /// ([`PartitionLog::set_high_watermark`]); switched per partition at run time
    /// ([`PartitionLog::set_high_watermark_follows_durable_end`]).
    high_watermark_follows_durable_end: Rc<Cell<bool>>,
    /// The high watermark checkpoint on disk (`None`: no file), and whether the one read at
    /// open is still to be applied (the first switch to replication applies it).
    checkpointed_high_watermark: Cell<Option<i64>>,
    high_watermark_checkpoint_pending: Cell<bool>,
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
    /// Idempotent producers this partition tracks (tests, metrics).
    pub fn producer_count(&self) -> usize {
        self.producers.borrow().len()
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

    /// Whether the high watermark follows the durable end of the log (single-replica mode).
    pub fn high_watermark_follows_durable_end(&self) -> bool {
        self.high_watermark_follows_durable_end.get()
    }

    /// Switches the high watermark between following the durable end (a partition with one
    /// replica: `true`) and being moved by the replication layer through
    /// [`PartitionLog::set_high_watermark`] (a replicated one: `false`). Switching to `true`
    /// catches it up with the durable offset at once; switching to `false` leaves it where it
    /// is.
    pub fn set_high_watermark_follows_durable_end(&self, follows: bool) {
        if self.high_watermark_follows_durable_end.replace(follows) == follows {
            return;
        }
        if follows {
            self.high_watermark.advance(self.durable.get());
            self.refresh_last_stable();
        } else {
            self.restore_checkpointed_high_watermark();
        }
    }

    /// Replication starts from the high watermark checkpointed by the last run (the log end
    /// may hold records no other replica has), once after open.
    fn restore_checkpointed_high_watermark(&self) {
        if !self.high_watermark_checkpoint_pending.replace(false) {
            return;
        }
        let Some(checkpointed) = self.checkpointed_high_watermark.get() else { return };
        let restored = checkpointed.clamp(self.log_start_offset(), self.log_end_offset());
        if restored < self.high_watermark() {
            self.high_watermark.reset(restored as u64);
            self.reset_last_stable();
        }
    }

    /// Moves the high watermark (replication); never past the LEO, never backwards.
    pub fn set_high_watermark(&self, offset: i64) {
        let offset = offset.clamp(0, self.log_end_offset());
        self.high_watermark.advance(offset as u64);
        self.refresh_last_stable();
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

    /// What the cleaner's choice needs of each segment, oldest first (the last one active).
    pub fn segment_extents(&self) -> Vec<crate::cleaner::choice::SegmentExtent> {
        self.state
            .borrow()
            .segments
            .values()
            .map(|s| crate::cleaner::choice::SegmentExtent {
                base_offset: s.base_offset,
                next_offset: s.next_offset,
                size_bytes: s.size_bytes,
                max_timestamp_ms: s.max_timestamp_ms,
                first_timestamp_ms: s.first_batch_timestamp_ms.unwrap_or(-1),
            })
            .collect()
    }

    /// Where `epoch` starts in this log, if the epoch cache has it.
    pub fn epoch_start_offset(&self, epoch: i32) -> Option<i64> {
        self.state.borrow().epoch_cache.entries().iter().find(|e| e.epoch == epoch).map(|e| e.start_offset)
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

    /// Waiters for the durable offset (a replicated partition's leader moves its high
    /// watermark when it advances).
    pub fn durable_watermark(&self) -> Rc<Watermark> {
        self.durable.clone()
    }

    /// Offset below which every appended byte is written to the file.
    pub fn durable_offset(&self) -> i64 {
        self.durable.get() as i64
    }

    /// How many group-commit fdatasyncs this log issued.
    pub fn sync_count(&self) -> u64 {
        self.syncs.get()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Fails fast if the high watermark or the durable offset passed the log end offset: a
    /// consumer would be told that records exist, or are safe, that are not in the log.
    fn assert_watermarks_within_log_end(&self) {
        let (log_end, high_watermark, durable) = (self.log_end.get(), self.high_watermark.get(), self.durable.get());
        assert!(high_watermark <= log_end, "high watermark {high_watermark} is past the log end offset {log_end}");
        assert!(durable <= log_end, "durable offset {durable} is past the log end offset {log_end}");
        if self.high_watermark_follows_durable_end.get() {
            // A consumer never reads what a failed write or a crash may take back.
            assert!(high_watermark <= durable, "high watermark {high_watermark} is past the durable offset {durable}");
        }
    }
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
