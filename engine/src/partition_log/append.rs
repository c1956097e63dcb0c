//! Appends: validating a produce request's batch, assigning its offsets and handing it to the
//! active segment's write-behind, then tracking when it is durable (written, and fsynced when
//! `flush.messages` or `flush.ms` asks) — group commit included.
//!
//! Owns: the append path, the durable offset, and group-commit flushes. Must never: write a
//! batch that failed validation or a refused idempotent sequence, acknowledge an append before
//! it is durable, hold a `RefCell` borrow across an await, or run a blocking syscall on the
//! shard thread.

use crate::batch::{assign_offsets_split, batches, BatchError, BatchInfo, Validation, BATCH_HEADER_LEN};
use crate::clock::now_ms;
use crate::compressed_batch;
use crate::log_config::{LogConfig, TimestampType as TimestampTypeConfig};
use crate::producer_state::SequenceCheck;
use crate::segment_writer::SegmentWriter;
use crate::txn_marker::EndTxnMarker;

use super::{
    settings_of, write_error, AppendError, AppendInfo, DurableTarget, LogError, PartitionLog, TailCacheFill,
    COMPRESSION_SCRATCH, TAIL_READER_WINDOW_MS,
};

impl PartitionLog {
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
        self.append_validated(records, shared, &infos, &config, leader_epoch, AppendOrigin::Client).await
    }

    /// Appends what a follower fetched from its leader: whole batches that already carry the
    /// leader's offsets, leader epochs and timestamps, kept as they are. Each is validated as
    /// stored bytes (framing, CRC, record counts) and must continue the log exactly
    /// ([`AppendError::UnexpectedOffset`] otherwise, with nothing of that batch written); its
    /// partition leader epoch goes into the epoch cache, its producer and transaction state
    /// (markers, the `.txnindex`) are recorded as on the leader — without sequence checks, the
    /// leader made them. A partial batch at the end (a fetch response may cut the last one) is
    /// ignored. Returns what was appended (`None`: no whole batch), without waiting for
    /// durability: a follower reports its log end, and the leader's high watermark counts it.
    /// The high watermark is the replication layer's to move
    /// ([`PartitionLog::set_high_watermark`]).
    pub async fn append_as_follower(&self, records: &[u8]) -> Result<Option<AppendInfo>, AppendError> {
        self.append_as_follower_from(records, None).await
    }

    /// [`PartitionLog::append_as_follower`] for records in shared memory (a fetch response's
    /// frame): whole pages of each batch may be written straight from it, without a copy
    /// ([`PartitionLog::append_buffered_shared`] does the same for produce requests).
    pub async fn append_as_follower_shared(&self, records: &bytes::Bytes) -> Result<Option<AppendInfo>, AppendError> {
        self.append_as_follower_from(records, Some(records)).await
    }

    /// `shared`, if any, holds the same bytes as `records`.
    async fn append_as_follower_from(
        &self,
        records: &[u8],
        shared: Option<&bytes::Bytes>,
    ) -> Result<Option<AppendInfo>, AppendError> {
        let config = self.config.borrow().clone();
        let mut appended: Option<AppendInfo> = None;
        for item in batches(records, Validation::Stored) {
            let (position, info) = match item {
                Ok(found) => found,
                Err(BatchError::Truncated { .. }) => break,
                Err(e) => return Err(AppendError::Batch(e)),
            };
            let batch = &records[position..position + info.total_len];
            let marker = if info.is_control() { crate::txn_marker::decode_marker(&info, batch) } else { None };
            let origin = AppendOrigin::Replica { marker };
            let shared_batch = shared.map(|all| all.slice(position..position + info.total_len));
            let epoch = info.partition_leader_epoch;
            let (one, _) = self.append_validated(batch, shared_batch.as_ref(), &[info], &config, epoch, origin).await?;
            appended = Some(match appended {
                None => one,
                Some(first) => AppendInfo {
                    last_offset: one.last_offset,
                    record_count: first.record_count + one.record_count,
                    end_position: one.end_position,
                    log_start_offset: one.log_start_offset,
                    ..first
                },
            });
        }
        Ok(appended)
    }

    /// Appends batches that are valid (a client's, validated; a marker the broker built; or a
    /// leader's batch a follower copies): the second half of [`PartitionLog::append_buffered`].
    /// `origin` says which, and so what is checked and recorded.
    pub(super) async fn append_validated(
        &self,
        records: &[u8],
        shared: Option<&bytes::Bytes>,
        infos: &[BatchInfo],
        config: &LogConfig,
        leader_epoch: i32,
        origin: AppendOrigin,
    ) -> Result<(AppendInfo, DurableTarget), AppendError> {
        let now = now_ms();
        let is_replica = matches!(origin, AppendOrigin::Replica { .. });
        let log_append_time =
            (config.message_timestamp_type == TimestampTypeConfig::LogAppendTime && !is_replica).then_some(now);
        let fill_cache = self.options.tail_cache_fill == TailCacheFill::Always
            || now.saturating_sub(self.last_tail_read_ms.get()) <= TAIL_READER_WINDOW_MS;

        let permit = self.exclusive.acquire_permit(1).await.map_err(|_| LogError::Closed)?;
        if self.closed.get() {
            return Err(LogError::Closed.into());
        }
        // Idempotence: one batch per request (validate), so one verdict for the append.
        debug_assert_eq!(infos.len(), 1);
        let verdict = match origin {
            AppendOrigin::Marker(m) => {
                let info = &infos[0];
                let producers = self.producers.borrow();
                producers
                    .check_marker(info.producer_id, info.producer_epoch, m.coordinator_epoch)
                    .map(|()| SequenceCheck::Append)
            }
            AppendOrigin::Client => self.producers.borrow().check(&infos[0]),
            AppendOrigin::Replica { .. } => {
                let expected = self.log_end_offset();
                if infos[0].base_offset != expected {
                    return Err(AppendError::UnexpectedOffset { expected, got: infos[0].base_offset });
                }
                Ok(SequenceCheck::Append)
            }
        };
        if let SequenceCheck::Duplicate { first_offset, last_offset } = verdict.map_err(AppendError::Producer)? {
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
        let settings = settings_of(config);
        let mut first_offset = -1;
        let mut next_offset = self.log_end_offset();
        let mut position_in_records = 0usize;
        let mut new_epoch = false;
        for info in infos {
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
                self.roll_locked(next_offset, config).await?;
            }
            let (writer, position) = {
                let state = self.state.borrow();
                let active = state.active();
                (active.writer.clone().expect("active writer"), active.size_bytes)
            };
            // One eager write for header and records (the records' append submits it).
            writer.append_held(&header).await.map_err(|e| AppendError::Log(write_error(e)))?;
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
                match origin {
                    AppendOrigin::Client | AppendOrigin::Replica { marker: None } => {
                        self.producers.borrow_mut().record(&stored)
                    }
                    AppendOrigin::Marker(m) | AppendOrigin::Replica { marker: Some(m) } => {
                        self.record_marker(active, &stored, m)
                    }
                }
                if state.epoch_cache.latest_epoch().is_none_or(|e| leader_epoch > e) {
                    new_epoch = state.epoch_cache.assign(leader_epoch, next_offset);
                }
            }
            if first_offset < 0 {
                first_offset = next_offset;
            }
            next_offset = last_offset + 1;
            self.log_end.advance(next_offset as u64);
            if stored.is_transactional() {
                self.note_transactions_changed();
            }
            self.assert_watermarks_within_log_end();
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
        let high_watermark = self.high_watermark.clone();
        let follows = self.high_watermark_follows_durable_end.clone();
        let log_end = self.log_end.clone();
        let (last_stable, unstable) = (self.last_stable.clone(), self.unstable.clone());
        let generation = self.generation.clone();
        let started_in = generation.get();
        glommio::spawn_local(async move {
            let written = writer.wait_written(end_pos).await;
            if generation.get() != started_in {
                return; // truncated meanwhile: these offsets may no longer exist
            }
            match written {
                Ok(()) => {
                    let log_end = log_end.get();
                    assert!(
                        next_offset as u64 <= log_end,
                        "durable offset {next_offset} would pass the log end offset {log_end}"
                    );
                    durable.advance(next_offset as u64);
                    if follows.get() {
                        high_watermark.advance(next_offset as u64);
                        let lso = unstable.borrow_mut().last_stable_offset(high_watermark.get() as i64);
                        last_stable.advance(lso as u64);
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
        if config.cleanup_policy_compact() {
            refuse_keyless_records(records)?;
        }
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
            if let Some(sealed_end) = self.sealing_up_to().filter(|end| self.flushed.get() < *end as u64) {
                // A roll's seal syncs the segment before the active one: it counts first.
                let _ = self.flushed.wait_for(sealed_end as u64).await;
                continue;
            }
            if self.sync_running.get() {
                let next = self.flushed.get() + 1;
                let _ = self.flushed.wait_for(next).await;
                continue;
            }
            self.sync_running.set(true);
            let (writer, sync_target) = (self.active_writer(), self.log_end.get());
            self.syncs.set(self.syncs.get() + 1);
            let started = std::time::Instant::now();
            let result = writer.sync().await;
            crate::shard_metrics::note_fsync(started.elapsed());
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
}

/// Where the batch [`PartitionLog::append_validated`] appends comes from.
#[derive(Clone, Copy, Debug)]
pub(super) enum AppendOrigin {
    /// A client's batch: sequence-checked, stamped with its offsets and the leader's epoch.
    Client,
    /// An end-transaction marker the leader built: checked against the producer's epochs.
    Marker(EndTxnMarker),
    /// A leader's batch a follower copies: it must start at the log end; offsets, epoch and
    /// timestamps are kept; `marker` is the end-transaction marker it is, if it is one.
    Replica { marker: Option<EndTxnMarker> },
}

/// Kafka's `LogValidator` rule for compacted topics: every record has a key (a keyless record
/// could never be compacted away). Decompresses a compressed batch once more to look.
fn refuse_keyless_records(batch: &[u8]) -> Result<(), AppendError> {
    let mut keyless = false;
    COMPRESSION_SCRATCH
        .with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let walked = crate::cleaner::record_filter::for_each_record(batch, &mut scratch, |record, _| {
                keyless |= record.key.is_none();
            });
            compressed_batch::trim_scratch(&mut scratch);
            walked
        })
        .map_err(AppendError::Batch)?;
    if keyless {
        return Err(AppendError::Batch(BatchError::InvalidRecord("Compacted topic cannot accept message without key")));
    }
    Ok(())
}
