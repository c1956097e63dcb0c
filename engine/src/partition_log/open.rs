//! Opening a partition's log: list its directory, delete what interrupted writes left, settle
//! an interrupted segment replacement, load each segment's indexes or rebuild them by scanning
//! (with CRCs, after an unclean stop), cut a damaged tail and everything after it, seed the
//! leader-epoch cache when its checkpoint is missing, and rebuild the idempotent producers'
//! state from the newest snapshot.
//!
//! Owns: recovery — turning whatever a crash left in the directory (`.tmp` checkpoint files,
//! `.deleted` segments, torn tails, missing or stale indexes, snapshots past the log end) into
//! a consistent log; the replacement protocol's files are settled by [`super::replace`]. Must
//! never: serve anything after the first damaged batch, trust a length from disk beyond
//! `max_batch_bytes`, claim a recovery point the files do not back, or run a blocking syscall
//! on the shard thread.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use glommio::sync::Semaphore;

use crate::batch::BatchInfo;
use crate::checkpoint_file::{self, blocking, read_small};
use crate::clock::now_ms;
use crate::leader_epoch_cache::{decode_offset_checkpoint, LeaderEpochCache};
use crate::log_config::LogConfig;
use crate::log_recovery::{scan_segment, ScanEnd};
use crate::offset_index::{parse_segment_base_offset, OffsetIndex, SegmentFileKind};
use crate::producer_state::ProducerStateTable;
use crate::segment::{Segment, SegmentSettings};
use crate::segment_file::SegmentFile;
use crate::segment_writer::{align_down, SegmentWriter};
use crate::time_index::TimeIndex;
use crate::watermark::Watermark;

use super::replace::settle_interrupted_replace;
use super::segment_set::{parse_producer_snapshot_name, producer_snapshot_path};
use super::txn::{load_txn_indexes, merge_aborted, unstable_offsets};
use super::{
    io, partition_dir_name, settings_of, write_error, LogError, LogOptions, LogState, PartitionLog,
    HIGH_WATERMARK_FILE, LEADER_EPOCH_FILE, LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE,
};
use crate::txn_index::{txn_index_path, AbortedTxn};
use crate::txn_marker::decode_marker;

/// Smallest cap on a single batch read during recovery (a corrupt length is not trusted).
const MIN_RECOVERY_BATCH_CAP_BYTES: usize = 16 << 20;

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
        let max_batch_bytes = (config.max_message_bytes.max(0) as usize).max(MIN_RECOVERY_BATCH_CAP_BYTES);
        let DirContents { log_bases, mut producer_snapshots } =
            read_dir_contents(&dir, options.direct_io, max_batch_bytes).await?;

        let recovery_point = match read_small(&dir.join(RECOVERY_POINT_FILE)).await.map_err(io)? {
            Some(bytes) => decode_offset_checkpoint(&String::from_utf8_lossy(&bytes)).unwrap_or(0),
            None => 0,
        };
        let high_watermark_file = read_small(&dir.join(HIGH_WATERMARK_FILE)).await.map_err(io)?;
        let checkpointed_high_watermark =
            high_watermark_file.and_then(|bytes| decode_offset_checkpoint(&String::from_utf8_lossy(&bytes)).ok());
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
        let now = now_ms();
        let mut segments: BTreeMap<i64, Segment> = BTreeMap::new();
        let mut truncated_at: Option<usize> = None;
        for (i, &base) in log_bases.iter().enumerate() {
            let next_base = log_bases.get(i + 1).copied();
            let (log_path, index_path, time_index_path) = Segment::paths(&dir, base);
            let file = Segment::open_file(&log_path, options.direct_io).await.map_err(io)?;
            let file_size = file.file_size().await.map_err(io)?;
            let segment_file = SegmentFile::from_open(log_path.clone(), options.direct_io, file.clone(), false);
            let mut segment = Segment::from_parts(base, log_path, segment_file, 0, settings, None, now);
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
            if must_scan && next_base.is_some() {
                // A segment rolled just before the crash may not be fsynced yet (a roll seals
                // the old segment in the background): it is now, before the recovery point
                // moves past it. The active segment is synced through its writer below.
                file.fdatasync().await.map_err(io)?;
            }
            segments.insert(base, segment);
            if truncated_at.is_some() {
                break;
            }
        }
        if let Some(i) = truncated_at {
            for &base in &log_bases[i + 1..] {
                let (log_path, index_path, time_index_path) = Segment::paths(&dir, base);
                for path in [log_path, index_path, time_index_path, txn_index_path(&dir, base)] {
                    checkpoint_file::remove_if_exists(&path).await.map_err(io)?;
                }
            }
        }
        // Drop empty trailing segments other than the first one we keep.
        while segments.len() > 1 && segments.values().next_back().is_some_and(|s| s.is_empty()) {
            let (_, seg) = segments.pop_last().expect("non-empty");
            let (_, index_path, time_index_path) = Segment::paths(&dir, seg.base_offset);
            for path in [seg.log_path.clone(), index_path, time_index_path, txn_index_path(&dir, seg.base_offset)] {
                checkpoint_file::remove_if_exists(&path).await.map_err(io)?;
            }
        }
        load_txn_indexes(&dir, &mut segments).await?;

        let writer_options = options.writer;
        if segments.is_empty() {
            let base = checkpointed_start.max(0);
            let mut segment =
                Segment::create(&dir, base, settings, writer_options, options.direct_io, now).await.map_err(io)?;
            segment.tail_cache = Some(options.new_tail_cache(0));
            segments.insert(base, segment);
        } else {
            let active = segments.values_mut().next_back().expect("non-empty");
            // The active segment's file stays open while it is active (its writer holds it).
            let file = active.file.pin().await.map_err(io)?;
            let tail_start = align_down(active.size_bytes);
            let tail_len = (active.size_bytes - tail_start) as usize;
            let tail = if tail_len > 0 {
                let data = file.read_at(tail_start, tail_len).await.map_err(io)?;
                data.to_vec()
            } else {
                Vec::new()
            };
            active.writer = Some(SegmentWriter::new(file, active.size_bytes, &tail, writer_options));
            active.tail_cache = Some(options.new_tail_cache(active.size_bytes));
        }

        let first_base = *segments.keys().next().expect("non-empty");
        let log_end_offset = segments.values().next_back().expect("non-empty").next_offset;
        let log_start_offset = checkpointed_start.max(first_base).min(log_end_offset);
        let mut epoch_cache = if rebuild_epochs { rebuilt_epochs } else { epoch_cache.take().expect("loaded") };
        epoch_cache.truncate_from_end(log_end_offset);
        epoch_cache.truncate_from_start(log_start_offset);
        let (producers, aborted) = rebuild_producer_state(
            &dir,
            &mut producer_snapshots,
            &SegmentExtent::of_all(&segments),
            log_start_offset,
            log_end_offset,
        )
        .await?;
        merge_aborted(&mut segments, &aborted);
        // Everything recovered is durable: only open transactions hold the LSO back.
        let mut unstable = unstable_offsets(producers.first_unstable_offset());
        let last_stable_offset = unstable.last_stable_offset(log_end_offset);

        let log = Rc::new_cyclic(|this| PartitionLog {
            this: this.clone(),
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
            last_stable: Watermark::new(last_stable_offset as u64),
            unstable: Rc::new(RefCell::new(unstable)),
            flushed: Watermark::new(0),
            durable: Watermark::new(log_end_offset as u64),
            generation: Rc::new(Cell::new(0)),
            sync_running: Cell::new(false),
            syncs: Cell::new(0),
            closed: Cell::new(false),
            seal: RefCell::new(None),
            recovery_point_writes: Semaphore::new(1),
            dir_sync_deferred: Cell::new(false),
            dir_sync_pending: Cell::new(false),
            last_tail_read_ms: Cell::new(i64::MIN),
            replace_awaits_open: Cell::new(false),
            high_watermark_follows_durable_end: Rc::new(Cell::new(options.high_watermark_follows_durable_end)),
            checkpointed_high_watermark: Cell::new(checkpointed_high_watermark),
            high_watermark_checkpoint_pending: Cell::new(true),
        });
        if !options.high_watermark_follows_durable_end {
            log.restore_checkpointed_high_watermark();
        }
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
        let data = if len > 0 {
            segment.file.get().await.map_err(io)?.read_at(start, len).await.map_err(io)?.to_vec()
        } else {
            Vec::new()
        };
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
            let file = segment.file.get().await.map_err(io)?;
            let first = file.read_at(0, crate::batch::BATCH_HEADER_LEN).await.map_err(io)?;
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
        let file = segment.file.get().await.map_err(io)?;
        let data = file.read_at(0, crate::batch::BATCH_HEADER_LEN).await.map_err(io)?;
        if let Ok(header) = crate::batch::BatchHeader::parse(&data) {
            cache.assign(header.partition_leader_epoch(), header.base_offset());
        }
        Ok(())
    }
}

/// What a partition directory holds once the leftovers are gone.
struct DirContents {
    /// Base offsets of the segments (a `.log` file each), ascending.
    log_bases: Vec<i64>,
    /// Offsets of the producer-state snapshots, ascending.
    producer_snapshots: Vec<i64>,
}

/// Lists `dir` (creating it), deletes the leftovers of interrupted writes (`.tmp` files,
/// `.deleted` segments, index files without a log file) and settles an interrupted segment
/// replacement ([`settle_interrupted_replace`]).
async fn read_dir_contents(dir: &Path, direct_io: bool, max_batch_bytes: usize) -> Result<DirContents, LogError> {
    let listing_dir = dir.to_path_buf();
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
    let names = settle_interrupted_replace(dir, names, direct_io, max_batch_bytes).await?;

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
    producer_snapshots.sort_unstable();
    // Index files without a log file are leftovers of a deleted segment.
    for (base, name) in index_files {
        if log_bases.binary_search(&base).is_err() {
            checkpoint_file::remove_if_exists(&dir.join(name)).await.map_err(io)?;
        }
    }
    Ok(DirContents { log_bases, producer_snapshots })
}

/// What a scan needs of a segment, copied out so no borrow of the log state lives across an
/// await.
pub(super) struct SegmentExtent {
    base_offset: i64,
    next_offset: i64,
    size_bytes: u64,
    file: Rc<SegmentFile>,
}

impl SegmentExtent {
    pub(super) fn of_all(segments: &BTreeMap<i64, Segment>) -> Vec<SegmentExtent> {
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
/// headers carry producer id, epoch and sequence; a transaction marker's record is read for
/// its type). Snapshots beyond `log_end` (left by a truncation or a torn tail) are deleted;
/// `snapshots` is updated to what remains. Also returns the transactions the replayed abort
/// markers closed (for the segments' transaction indexes).
pub(super) async fn rebuild_producer_state(
    dir: &Path,
    snapshots: &mut Vec<i64>,
    segments: &[SegmentExtent],
    log_start: i64,
    log_end: i64,
) -> Result<(ProducerStateTable, Vec<AbortedTxn>), LogError> {
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
    let mut aborted = Vec::new();
    for segment in segments {
        if segment.next_offset <= from || segment.size_bytes == 0 {
            continue;
        }
        let mut infos = Vec::new();
        let file = segment.file.get().await.map_err(io)?;
        scan_segment(&file, segment.size_bytes, segment.base_offset, usize::MAX, &mut |pos, info| {
            if info.base_offset >= from && info.base_offset < log_end && info.producer_id >= 0 {
                infos.push((pos, *info));
            }
        })
        .await
        .map_err(io)?;
        replayed_batches += infos.len() as u64;
        for (pos, info) in &infos {
            if !info.is_control() {
                table.record(info);
                continue;
            }
            let bytes = file.read_at(*pos, info.total_len).await.map_err(io)?;
            let Some(marker) = decode_marker(info, &bytes) else { continue };
            let done = table.complete_txn(info, marker.coordinator_epoch, marker.commit);
            if done.aborted {
                aborted.push(AbortedTxn {
                    producer_id: done.producer_id,
                    first_offset: done.first_offset,
                    last_offset: done.last_offset,
                    last_stable_offset: table.first_unstable_offset().unwrap_or(done.last_offset + 1),
                });
            }
        }
    }
    table.remove_before(log_start);
    tracing::debug!(dir = %dir.display(), from, replayed_batches, producers = table.len(), "producer state rebuilt");
    Ok((table, aborted))
}

async fn read_small_or_none(path: &Path) -> Result<Option<Vec<u8>>, LogError> {
    read_small(path).await.map_err(io)
}
