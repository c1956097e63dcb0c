//! The ordered set of a partition's segments and what changes it: rolling a new active
//! segment, deleting the oldest ones (retention, DeleteRecords, the log start offset),
//! truncating the tail (followers), closing and deleting the log — and the checkpoint files
//! that say where the set stands (recovery point, log start offset, leader epochs, producer
//! snapshots). Replacing segments is [`super::replace`]'s.
//!
//! Owns: those changes to the segment map and the files behind it. Each runs under
//! `exclusive` and first waits for the seal of the last roll ([`super::seal`]): a roll for the
//! previous seal before it starts its own, the others for any. Must never: cut the log below
//! the log end offset except by [`PartitionLog::truncate_to`], move the log start offset
//! backwards, let the on-disk recovery point claim offsets the log no longer has, hold a
//! `RefCell` borrow across an await, or run a blocking syscall on the shard thread.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use crate::checkpoint_file::{self, blocking, write_atomic, write_atomic_without_dir_sync};
use crate::clock::now_ms;
use crate::leader_epoch_cache::encode_offset_checkpoint;
use crate::log_config::LogConfig;
use crate::log_recovery::scan_segment;
use crate::retention::{deletable_segments, RetentionInputs, SegmentSummary};
use crate::segment::Segment;
use crate::segment_writer::{align_down, SegmentWriter};

use super::open::{rebuild_producer_state, SegmentExtent};
use super::seal::SealWork;
use super::txn::merge_aborted;
use super::{
    io, io_error, settings_of, write_error, LogError, LogState, PartitionLog, HIGH_WATERMARK_FILE, LEADER_EPOCH_FILE,
    LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE,
};
use crate::txn_index::txn_index_path;

/// Producer-state snapshots are named like Kafka's: `<20-digit offset>.snapshot`.
const PRODUCER_SNAPSHOT_SUFFIX: &str = ".snapshot";
/// Snapshots kept per partition (the newest, and the one before in case it is damaged).
const PRODUCER_SNAPSHOTS_KEPT: usize = 2;

impl PartitionLog {
    /// Writes the producer table as of `next_offset` (everything below it is appended) and
    /// keeps only the newest [`PRODUCER_SNAPSHOTS_KEPT`] snapshots.
    pub(super) async fn write_producer_snapshot(&self, next_offset: i64) -> Result<(), LogError> {
        if self.state.borrow().producer_snapshots.last() == Some(&next_offset) {
            return self.write_txn_indexes_below(next_offset).await;
        }
        let bytes = self.producers.borrow().encode_snapshot(next_offset);
        self.store_producer_snapshot(next_offset, &bytes).await
    }

    /// Writes `bytes`, the producer table encoded as of `next_offset`, as that offset's snapshot
    /// (after the aborted-transaction indexes it relies on) and removes all but the newest
    /// [`PRODUCER_SNAPSHOTS_KEPT`] snapshots.
    pub(super) async fn store_producer_snapshot(&self, next_offset: i64, bytes: &[u8]) -> Result<(), LogError> {
        // Every abort marker below the snapshot must have its index entry on disk first.
        self.write_txn_indexes_below(next_offset).await?;
        if self.state.borrow().producer_snapshots.last() == Some(&next_offset) {
            return Ok(());
        }
        self.write_checkpoint_file(&producer_snapshot_path(&self.dir, next_offset), bytes).await.map_err(io_error)?;
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

    /// Closes the active segment and starts a new one at `new_base`. Caller holds `exclusive`.
    /// The old segment's bytes are written out and its preallocated tail cut off here; its
    /// `fdatasync`, index files, the recovery point and the producer snapshot at `new_base`
    /// follow in the background ([`super::seal`]), after the seal of the previous roll.
    pub(super) async fn roll_locked(&self, new_base: i64, config: &LogConfig) -> Result<(), LogError> {
        self.wait_for_seal().await?;
        let (writer, file, size, base) = {
            let state = self.state.borrow();
            let active = state.active();
            (active.writer.clone().expect("active writer"), active.file.clone(), active.size_bytes, active.base_offset)
        };
        let file = file.get().await.map_err(io)?;
        if base == new_base {
            return Ok(()); // empty active segment already starts here
        }
        // Every byte written (not synced), zero padding cut off.
        writer.drain().await.map_err(write_error)?;
        assert_eq!(writer.written_len(), size, "a drained writer has written the segment's every byte");
        file.truncate(size).await.map_err(io)?;
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
            state.active_mut().file.unpin();
            state.segments.insert(new_base, segment);
        }
        let producer_snapshot = self.producers.borrow().encode_snapshot(new_base);
        self.start_seal(SealWork { file, base, next_base: new_base, producer_snapshot });
        tracing::debug!(topic = %self.topic, partition = self.partition, new_base, "rolled segment");
        Ok(())
    }

    /// Forces a roll (tests, admin); a no-op on an empty active segment.
    pub async fn roll(&self) -> Result<(), LogError> {
        let _permit = self.exclusive.acquire_permit(1).await.map_err(|_| LogError::Closed)?;
        let config = self.config.borrow().clone();
        self.roll_locked(self.log_end_offset(), &config).await?;
        self.wait_for_seal().await
    }

    /// Records `epoch` as the leader epoch from the log end offset on, if it is newer than the
    /// latest one, and writes the epoch checkpoint — when a replica becomes leader, as Kafka's
    /// `maybeAssignEpochStartOffset` does, so the epoch's first append does not write it (a
    /// new 1,000-partition topic paid a synced checkpoint write per partition inside its first
    /// produce requests). Returns whether the epoch was new.
    pub async fn assign_leader_epoch(&self, epoch: i32) -> Result<bool, LogError> {
        let _permit = self.exclusive.acquire_permit(1).await.map_err(|_| LogError::Closed)?;
        if self.closed.get() {
            return Err(LogError::Closed);
        }
        let log_end_offset = self.log_end_offset();
        let assigned = {
            let mut state = self.state.borrow_mut();
            state.epoch_cache.latest_epoch().is_none_or(|e| epoch > e)
                && state.epoch_cache.assign(epoch, log_end_offset)
        };
        if assigned {
            self.write_epoch_checkpoint().await?;
        }
        Ok(assigned)
    }

    /// Waits until every segment rolled so far is sealed: fsynced, its index files, the
    /// recovery point and the producer snapshot written (a roll seals in the background).
    pub async fn wait_sealed(&self) -> Result<(), LogError> {
        let _permit = self.exclusive.acquire_permit(1).await.map_err(|_| LogError::Closed)?;
        self.wait_for_seal().await
    }

    /// Writes a checkpoint, index or snapshot file durably: at once, or — while
    /// [`PartitionLog::close`] runs — with the directory fsync left for the end of the close
    /// (one for every file it writes).
    pub(super) async fn write_checkpoint_file(&self, path: &Path, contents: &[u8]) -> std::io::Result<()> {
        if self.dir_sync_deferred.get() {
            self.dir_sync_pending.set(true);
            write_atomic_without_dir_sync(path, contents).await
        } else {
            write_atomic(path, contents).await
        }
    }

    pub(super) async fn write_segment_indexes(&self, base: i64) -> Result<(), LogError> {
        let (index, time_index) = {
            let state = self.state.borrow();
            let Some(seg) = state.segments.get(&base) else { return Ok(()) };
            if !seg.indexes_dirty {
                return Ok(());
            }
            (seg.offset_index.encode(), seg.time_index.encode())
        };
        let (_, index_path, time_index_path) = Segment::paths(&self.dir, base);
        self.write_checkpoint_file(&index_path, &index).await.map_err(io_error)?;
        self.write_checkpoint_file(&time_index_path, &time_index).await.map_err(io_error)?;
        if let Some(seg) = self.state.borrow_mut().segments.get_mut(&base) {
            seg.indexes_dirty = false;
        }
        Ok(())
    }

    pub(super) async fn write_recovery_point(&self, offset: i64) -> Result<(), LogError> {
        let _one_writer = self.recovery_point_writes.acquire_permit(1).await.map_err(|_| LogError::Closed)?;
        if self.state.borrow().checkpointed_recovery_point == offset {
            return Ok(());
        }
        self.write_checkpoint_file(&self.dir.join(RECOVERY_POINT_FILE), encode_offset_checkpoint(offset).as_bytes())
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
        self.write_checkpoint_file(&self.dir.join(LOG_START_OFFSET_FILE), encode_offset_checkpoint(lso).as_bytes())
            .await
            .map_err(io_error)?;
        self.state.borrow_mut().checkpointed_log_start_offset = Some(lso);
        Ok(())
    }

    /// Writes the leader-epoch checkpoint if it differs from what is on disk. An empty cache
    /// with no file is left so: a missing file is rebuilt from the batch headers, which gives the
    /// same empty cache (a new partition's leader writes its first epoch at once instead).
    pub(super) async fn write_epoch_checkpoint(&self) -> Result<(), LogError> {
        let text = {
            let state = self.state.borrow();
            let on_disk = state.checkpointed_epochs.as_deref();
            if on_disk.is_none() && state.epoch_cache.is_empty() {
                return Ok(());
            }
            let text = state.epoch_cache.encode();
            if on_disk == Some(text.as_str()) {
                return Ok(());
            }
            text
        };
        self.write_checkpoint_file(&self.dir.join(LEADER_EPOCH_FILE), text.as_bytes()).await.map_err(io_error)?;
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

    pub(super) async fn write_checkpoints(&self) -> Result<(), LogError> {
        self.write_recovery_point(self.recovery_point()).await?;
        self.write_log_start_offset().await?;
        self.write_epoch_checkpoint().await
    }

    /// Writes the recovery point, and a replicated partition's high watermark, if they moved
    /// (the shard calls this periodically).
    pub async fn checkpoint_recovery_point(&self) -> Result<(), LogError> {
        self.write_recovery_point(self.recovery_point()).await?;
        self.write_high_watermark().await
    }

    /// Writes a replicated partition's high watermark if it differs from what is on disk
    /// (single-node partitions have none: theirs follows the durable end).
    async fn write_high_watermark(&self) -> Result<(), LogError> {
        let hw = self.high_watermark();
        if self.high_watermark_follows_durable_end.get() || self.checkpointed_high_watermark.get() == Some(hw) {
            return Ok(());
        }
        self.write_checkpoint_file(&self.dir.join(HIGH_WATERMARK_FILE), encode_offset_checkpoint(hw).as_bytes())
            .await
            .map_err(io_error)?;
        self.checkpointed_high_watermark.set(Some(hw));
        Ok(())
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
        self.wait_for_seal().await?;
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
            let txn_index = txn_index_path(&self.dir, segment.base_offset);
            for path in [segment.log_path.clone(), index_path, time_index_path, txn_index] {
                checkpoint_file::remove_if_exists(&path).await.map_err(io)?;
            }
        }
        self.producers.borrow_mut().remove_before(self.log_start_offset());
        self.note_transactions_changed();
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
            self.note_transactions_changed();
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

    /// A follower far behind its leader (Kafka's `truncateFullyAndStartAt`): the leader's log
    /// now starts at `offset`, past this log's end, so nothing here is of use. Every segment
    /// goes, the log restarts empty at `offset` (log start, log end and high watermark), with
    /// no leader epochs and no producers. Refused (`OffsetOutOfRange`) unless `offset` is past
    /// the log end.
    pub async fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), LogError> {
        let _permit = self.exclusive.acquire_permit(1).await.map_err(|_| LogError::Closed)?;
        let log_end_offset = self.log_end_offset();
        if offset <= log_end_offset || self.closed.get() {
            let log_start_offset = self.log_start_offset();
            return Err(LogError::OffsetOutOfRange { offset, log_start_offset, log_end_offset });
        }
        *self.producers.borrow_mut() = Default::default();
        let config = self.config.borrow().clone();
        // A new, empty active segment at `offset` (the roll's seal syncs what the old one holds
        // and snapshots the now empty producer table there; the deletion below waits for it).
        self.roll_locked(offset, &config).await?;
        self.log_end.advance(offset as u64);
        self.durable.advance(offset as u64);
        self.high_watermark.advance(offset as u64);
        {
            let mut state = self.state.borrow_mut();
            state.log_start_offset = offset;
            state.epoch_cache.clear();
        }
        self.delete_below_start_locked(&config).await?;
        self.write_epoch_checkpoint().await?;
        self.reset_last_stable();
        self.assert_watermarks_within_log_end();
        tracing::info!(topic = %self.topic, partition = self.partition, offset, "log emptied to start at the leader's log start");
        Ok(())
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
        // A failed seal failed `flushed` too; what follows recovers from that.
        let _ = self.wait_for_seal().await;
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
            let txn_index = txn_index_path(&self.dir, *base);
            for path in [segment.log_path.clone(), index_path, time_index_path, txn_index] {
                checkpoint_file::remove_if_exists(&path).await.map_err(io)?;
            }
        }
        // Rebuild the (new) last segment up to `offset` by scanning it.
        let (file, writer, size, base, mut txn_index) = {
            let state = self.state.borrow();
            let seg = state.active();
            (seg.file.clone(), seg.writer.clone(), seg.size_bytes, seg.base_offset, seg.txn_index.clone())
        };
        txn_index.truncate_from(offset);
        // The new last segment becomes the active one: its file stays open from now on.
        let segment_file = file;
        let file = segment_file.pin().await.map_err(io)?;
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
            Segment::from_parts(base, Segment::paths(&self.dir, base).0, segment_file, 0, settings, None, now_ms());
        for (pos, info) in &infos {
            segment.note_batch(*pos, info, settings.index_interval_bytes);
        }
        segment.txn_index = txn_index;
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
        if self.high_watermark_follows_durable_end.get() || self.high_watermark() > new_end {
            self.high_watermark.reset(new_end as u64);
        }
        if self.recovery_point() > new_end {
            self.flushed.reset(new_end as u64);
        }
        self.flushed.clear_failure();
        self.sync_running.set(false);
        self.assert_watermarks_within_log_end();
        // The on-disk recovery point must not claim offsets that no longer exist: a crash
        // now must rescan the truncated segment.
        self.write_recovery_point_or_forget(self.recovery_point().min(base)).await?;
        self.write_epoch_checkpoint_or_forget().await?;
        // Producer state of the removed batches must go too: rebuild it from what remains.
        let (mut snapshots, extents) = {
            let state = self.state.borrow();
            (state.producer_snapshots.clone(), SegmentExtent::of_all(&state.segments))
        };
        let (producers, aborted) =
            rebuild_producer_state(&self.dir, &mut snapshots, &extents, self.log_start_offset(), new_end).await?;
        *self.producers.borrow_mut() = producers;
        {
            let mut state = self.state.borrow_mut();
            state.producer_snapshots = snapshots;
            merge_aborted(&mut state.segments, &aborted);
        }
        self.reset_last_stable();
        Ok(())
    }

    /// Clean close: write out and sync the active segment, trim its padding, write indexes and
    /// checkpoints. Later appends fail with `Closed`.
    pub async fn close(&self) -> Result<(), LogError> {
        let _permit = self.exclusive.acquire_permit(1).await.map_err(|_| LogError::Closed)?;
        if self.closed.replace(true) {
            return Ok(());
        }
        // A failed seal failed `flushed`: the write failure below recovers from it.
        let _ = self.wait_for_seal().await;
        if self.write_failed() {
            // A full disk: what was not written was never acknowledged; close what is durable.
            self.recover_locked().await?;
        }
        let (writer, file, size, base) = {
            let state = self.state.borrow();
            let a = state.active();
            (a.writer.clone().expect("active writer"), a.file.clone(), a.size_bytes, a.base_offset)
        };
        let file = file.get().await.map_err(io)?;
        writer.sync().await.map_err(write_error)?;
        self.flushed.advance(self.log_end.get());
        file.truncate(size).await.map_err(io)?;
        // One directory fsync for every file the close writes.
        self.dir_sync_deferred.set(true);
        let written = self.write_close_checkpoints(base).await;
        self.dir_sync_deferred.set(false);
        written?;
        if self.dir_sync_pending.replace(false) {
            let dir = self.dir.clone();
            blocking(move || checkpoint_file::sync_dir(&dir)).await.map_err(io_error)?;
        }
        self.log_end.wake_all();
        self.high_watermark.wake_all();
        self.last_stable.wake_all();
        Ok(())
    }

    /// The files a clean close leaves: indexes, recovery point, log start offset, epochs, the
    /// producer snapshot. On a full disk a checkpoint that cannot be rewritten is removed
    /// instead (each is rebuilt at the next start): a clean stop stays clean.
    async fn write_close_checkpoints(&self, base: i64) -> Result<(), LogError> {
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
        match self.write_high_watermark().await {
            // An older checkpoint (or none) is still safe: a lower HW, raised by replication.
            Err(e) if e.is_storage_full() => {}
            other => other?,
        }
        match self.write_producer_snapshot(self.log_end_offset()).await {
            // The newest older snapshot and a replay of the batches after it rebuild it.
            Err(e) if e.is_storage_full() => {}
            other => other?,
        }
        Ok(())
    }

    /// Deletes the partition's directory (DeleteTopics). The log must not be used afterwards.
    pub async fn delete(&self) -> Result<(), LogError> {
        let _permit = self.exclusive.acquire_permit(1).await.map_err(|_| LogError::Closed)?;
        self.closed.set(true);
        let _ = self.wait_for_seal().await; // it writes files in the directory
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
        self.last_stable.fail();
        Ok(())
    }
}

pub(super) fn producer_snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}{PRODUCER_SNAPSHOT_SUFFIX}"))
}

pub(super) fn parse_producer_snapshot_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(PRODUCER_SNAPSHOT_SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}
