//! Idempotent-producer state of one partition: for each producer id, its epoch and the
//! sequence/offset ranges of its last [`MAX_BATCHES_PER_PRODUCER`] batches — what the broker
//! needs to acknowledge a retried batch with its original offsets instead of writing it twice,
//! and to refuse gaps and stale epochs with Kafka's error codes.
//!
//! Owns: the sequence rules (Kafka's `ProducerStateManager` / `ProducerAppendInfo`), expiry by
//! `producer.id.expiration.ms`, dropping producers whose data retention removed, and the
//! snapshot encoding (so start-up replays only the log after the newest snapshot). Also each
//! producer's open transaction (KIP-98): a transactional batch opens one at its first offset,
//! an end-transaction marker closes it ([`ProducerStateTable::complete_txn`]); the first
//! offset of the oldest open transaction bounds the last stable offset.
//!
//! Must never: do I/O or read a clock (time comes in as arguments), or trust a count in a
//! snapshot to size an allocation.
//!
//! Rules, after Kafka 3.x/4.x (KIP-98, KIP-360):
//! - a batch without a producer id (-1) is not tracked;
//! - same epoch, same first and last sequence as one of the last five batches → duplicate,
//!   answered with that batch's offsets;
//! - an epoch below the producer's → `INVALID_PRODUCER_EPOCH`;
//! - a newer epoch must start at sequence 0, else `OUT_OF_ORDER_SEQUENCE_NUMBER`;
//! - same epoch: the first sequence must follow the last one (wrapping after `i32::MAX`),
//!   else `OUT_OF_ORDER_SEQUENCE_NUMBER`;
//! - a producer the partition does not know (new, expired, or its data deleted) may start at
//!   any sequence — Kafka no longer answers `UNKNOWN_PRODUCER_ID` (KIP-360);
//! - a marker from an epoch below the producer's → `INVALID_PRODUCER_EPOCH`, from a coordinator
//!   epoch below the last marker's → `TRANSACTION_COORDINATOR_FENCED` (Kafka's
//!   `ProducerAppendInfo.appendEndTxnMarker`); a marker for a producer without an open
//!   transaction is written and closes an empty one, as Kafka's does.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::batch::BatchInfo;
use crate::error_code::ErrorCode;

/// Batches remembered per producer for duplicate detection (Kafka's
/// `NUM_BATCHES_TO_RETAIN`; also the client's `max.in.flight.requests.per.connection` limit
/// with idempotence).
pub const MAX_BATCHES_PER_PRODUCER: usize = 5;
/// Kafka's default `producer.id.expiration.ms` (one day).
pub const DEFAULT_PRODUCER_ID_EXPIRATION_MS: i64 = 86_400_000;

const SNAPSHOT_MAGIC: &[u8; 4] = b"SLPS";
/// Version 2 adds each producer's coordinator epoch and open transaction; version 1 (no
/// transactions) still loads.
const SNAPSHOT_VERSION: u16 = 2;
const SNAPSHOT_VERSION_1: u16 = 1;
const SNAPSHOT_HEADER_LEN: usize = 4 + 2 + 8 + 4;
const PRODUCER_RECORD_LEN_V1: usize = 8 + 2 + 8 + 1;
const PRODUCER_RECORD_LEN: usize = PRODUCER_RECORD_LEN_V1 + 4 + 8;
const BATCH_RECORD_LEN: usize = 4 + 4 + 8 + 8;

/// One appended batch of a producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// What the partition knows of one producer id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// The batch's `maxTimestamp` of the producer's last append (expiry runs on it, as Kafka).
    pub last_timestamp_ms: i64,
    /// Oldest first; at most [`MAX_BATCHES_PER_PRODUCER`].
    pub batches: VecDeque<BatchMetadata>,
    /// Coordinator epoch of the producer's last marker (-1: none yet).
    pub coordinator_epoch: i32,
    /// First offset of the producer's open transaction, if one is open.
    pub current_txn_first_offset: Option<i64>,
}

/// A transaction a marker closed (Kafka's `CompletedTxn`): `last_offset` is the marker's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub aborted: bool,
}

/// The verdict on a batch about to be appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it (new data, or a batch without a producer id).
    Append,
    /// Already in the log: acknowledge with the original offsets, write nothing.
    Duplicate { first_offset: i64, last_offset: i64 },
}

/// A batch the producer state refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProducerError {
    /// The batch's epoch is older than the producer's current one.
    InvalidProducerEpoch { producer_id: i64, batch_epoch: i16, current_epoch: i16 },
    /// The batch's first sequence does not follow the producer's last one.
    OutOfOrderSequence { producer_id: i64, epoch: i16, first_sequence: i32, last_sequence: Option<i32> },
    /// A marker from a coordinator epoch older than the producer's last marker's.
    CoordinatorFenced { producer_id: i64, coordinator_epoch: i32, current_coordinator_epoch: i32 },
}

impl ProducerError {
    pub fn error_code(&self) -> ErrorCode {
        match self {
            ProducerError::InvalidProducerEpoch { .. } => ErrorCode::INVALID_PRODUCER_EPOCH,
            ProducerError::OutOfOrderSequence { .. } => ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER,
            ProducerError::CoordinatorFenced { .. } => ErrorCode::TRANSACTION_COORDINATOR_FENCED,
        }
    }
}

impl std::fmt::Display for ProducerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProducerError::InvalidProducerEpoch { producer_id, batch_epoch, current_epoch } => write!(
                f,
                "epoch {batch_epoch} of producer {producer_id} is older than its current epoch {current_epoch}"
            ),
            ProducerError::OutOfOrderSequence { producer_id, epoch, first_sequence, last_sequence: Some(last) } => {
                write!(
                    f,
                    "out of order sequence number for producer {producer_id} (epoch {epoch}): {first_sequence} \
                     (incoming seq. number), {last} (current end sequence number)"
                )
            }
            ProducerError::OutOfOrderSequence { producer_id, epoch, first_sequence, last_sequence: None } => write!(
                f,
                "invalid sequence number for new epoch {epoch} of producer {producer_id}: {first_sequence} (must be 0)"
            ),
            ProducerError::CoordinatorFenced { producer_id, coordinator_epoch, current_coordinator_epoch } => write!(
                f,
                "marker of producer {producer_id} from coordinator epoch {coordinator_epoch} is older than \
                 {current_coordinator_epoch}"
            ),
        }
    }
}

impl std::error::Error for ProducerError {}

/// Last sequence of a batch: Kafka's `DefaultRecordBatch.incrementSequence(base, delta)`,
/// which wraps past `i32::MAX` to 0.
pub fn last_sequence(base_sequence: i32, last_offset_delta: i32) -> i32 {
    if base_sequence > i32::MAX - last_offset_delta {
        last_offset_delta - (i32::MAX - base_sequence) - 1
    } else {
        base_sequence + last_offset_delta
    }
}

fn in_sequence(last: i32, next: i32) -> bool {
    next == last.wrapping_add(1) || (next == 0 && last == i32::MAX)
}

/// A partition's producer table. See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
    /// (first offset, producer id) of every open transaction: derived from `producers`.
    ongoing: BTreeSet<(i64, i64)>,
}

impl ProducerStateTable {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every producer the partition knows, by producer id (DescribeProducers).
    pub fn entries(&self) -> Vec<(i64, ProducerEntry)> {
        let mut all: Vec<(i64, ProducerEntry)> = self.producers.iter().map(|(id, e)| (*id, e.clone())).collect();
        all.sort_unstable_by_key(|(id, _)| *id);
        all
    }

    /// Decides what to do with a validated batch from a client (its header as sent).
    pub fn check(&self, batch: &BatchInfo) -> Result<SequenceCheck, ProducerError> {
        if batch.producer_id < 0 || batch.is_control() {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&batch.producer_id) else { return Ok(SequenceCheck::Append) };
        let first = batch.base_sequence;
        let last = last_sequence(first, batch.last_offset_delta);
        if batch.producer_epoch == entry.epoch {
            if let Some(dup) = entry.batches.iter().find(|b| b.first_sequence == first && b.last_sequence == last) {
                return Ok(SequenceCheck::Duplicate { first_offset: dup.first_offset, last_offset: dup.last_offset });
            }
        }
        if batch.producer_epoch < entry.epoch {
            return Err(ProducerError::InvalidProducerEpoch {
                producer_id: batch.producer_id,
                batch_epoch: batch.producer_epoch,
                current_epoch: entry.epoch,
            });
        }
        if batch.producer_epoch > entry.epoch {
            if first != 0 {
                return Err(ProducerError::OutOfOrderSequence {
                    producer_id: batch.producer_id,
                    epoch: batch.producer_epoch,
                    first_sequence: first,
                    last_sequence: None,
                });
            }
            return Ok(SequenceCheck::Append);
        }
        match entry.batches.back() {
            Some(prev) if !in_sequence(prev.last_sequence, first) => Err(ProducerError::OutOfOrderSequence {
                producer_id: batch.producer_id,
                epoch: batch.producer_epoch,
                first_sequence: first,
                last_sequence: Some(prev.last_sequence),
            }),
            _ => Ok(SequenceCheck::Append),
        }
    }

    /// Records a batch now in the log (`stored`: its header with the assigned offsets). Also
    /// used to replay the log on start-up, so it accepts whatever the log holds.
    /// Control batches are not recorded here (see [`ProducerStateTable::complete_txn`]).
    pub fn record(&mut self, stored: &BatchInfo) {
        if stored.producer_id < 0 || stored.is_control() {
            return;
        }
        let entry = self.producers.entry(stored.producer_id).or_insert_with(|| new_entry(stored));
        if stored.producer_epoch != entry.epoch {
            entry.epoch = stored.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == MAX_BATCHES_PER_PRODUCER {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMetadata {
            first_sequence: stored.base_sequence,
            last_sequence: last_sequence(stored.base_sequence, stored.last_offset_delta),
            first_offset: stored.base_offset,
            last_offset: stored.last_offset(),
        });
        entry.last_timestamp_ms = entry.last_timestamp_ms.max(stored.max_timestamp);
        debug_assert!(entry.batches.len() <= MAX_BATCHES_PER_PRODUCER);
        if stored.is_transactional() && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(stored.base_offset);
            self.ongoing.insert((stored.base_offset, stored.producer_id));
        }
    }

    /// Decides whether an end-transaction marker of a producer may be written.
    pub fn check_marker(&self, producer_id: i64, epoch: i16, coordinator_epoch: i32) -> Result<(), ProducerError> {
        let Some(entry) = self.producers.get(&producer_id) else { return Ok(()) };
        if epoch < entry.epoch {
            return Err(ProducerError::InvalidProducerEpoch {
                producer_id,
                batch_epoch: epoch,
                current_epoch: entry.epoch,
            });
        }
        if coordinator_epoch < entry.coordinator_epoch {
            return Err(ProducerError::CoordinatorFenced {
                producer_id,
                coordinator_epoch,
                current_coordinator_epoch: entry.coordinator_epoch,
            });
        }
        Ok(())
    }

    /// Records an end-transaction marker now in the log (`stored`: its header with its offset;
    /// also used by replay, so it accepts whatever the log holds) and returns the transaction
    /// it closed — starting at the marker itself if none was open, as Kafka's does.
    pub fn complete_txn(&mut self, stored: &BatchInfo, coordinator_epoch: i32, commit: bool) -> CompletedTxn {
        let marker_offset = stored.base_offset;
        let entry = self.producers.entry(stored.producer_id).or_insert_with(|| new_entry(stored));
        if stored.producer_epoch != entry.epoch {
            entry.epoch = stored.producer_epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = coordinator_epoch;
        entry.last_timestamp_ms = entry.last_timestamp_ms.max(stored.max_timestamp);
        let first_offset = match entry.current_txn_first_offset.take() {
            Some(first) => {
                self.ongoing.remove(&(first, stored.producer_id));
                first
            }
            None => marker_offset,
        };
        CompletedTxn { producer_id: stored.producer_id, first_offset, last_offset: marker_offset, aborted: !commit }
    }

    /// First offset of the oldest open transaction (Kafka's `firstUnstableOffset`).
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.first().map(|(first, _)| *first)
    }

    /// Open transactions as (producer id, first offset), oldest first (DescribeProducers,
    /// tests).
    pub fn open_transactions(&self) -> Vec<(i64, i64)> {
        self.ongoing.iter().map(|(first, pid)| (*pid, *first)).collect()
    }

    fn rebuild_ongoing(&mut self) {
        self.ongoing = self
            .producers
            .iter()
            .filter_map(|(pid, e)| e.current_txn_first_offset.map(|first| (first, *pid)))
            .collect();
    }

    /// Forgets producers whose last batch is below the log start offset (retention or
    /// DeleteRecords removed their data), as Kafka's `truncateHead`. Returns how many.
    /// A producer with an open transaction stays while the transaction starts at or after
    /// the log start offset.
    pub fn remove_before(&mut self, log_start_offset: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| match e.current_txn_first_offset {
            Some(first) => first >= log_start_offset,
            None => e.batches.back().is_some_and(|b| b.last_offset >= log_start_offset),
        });
        self.rebuild_ongoing();
        before - self.producers.len()
    }

    /// Forgets producers idle for `expiration_ms` or longer (`producer.id.expiration.ms`),
    /// never one with an open transaction (Kafka's `isProducerExpired`). Returns how many.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.current_txn_first_offset.is_some() || now_ms.saturating_sub(e.last_timestamp_ms) < expiration_ms
        });
        before - self.producers.len()
    }

    /// Encodes the table as of `next_offset` (every batch below it is included): magic,
    /// version, offset, producer count, producers, then a CRC-32C of everything before it.
    pub fn encode_snapshot(&self, next_offset: i64) -> Vec<u8> {
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort_unstable();
        let mut out = Vec::with_capacity(
            SNAPSHOT_HEADER_LEN
                + self.producers.len() * (PRODUCER_RECORD_LEN + MAX_BATCHES_PER_PRODUCER * BATCH_RECORD_LEN)
                + 4,
        );
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&next_offset.to_be_bytes());
        out.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in ids {
            let e = &self.producers[id];
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.extend_from_slice(&e.last_timestamp_ms.to_be_bytes());
            out.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
            out.extend_from_slice(&e.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_sequence.to_be_bytes());
                out.extend_from_slice(&b.last_sequence.to_be_bytes());
                out.extend_from_slice(&b.first_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        let crc = crate::crc::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes a snapshot: the table and the offset it covers up to. `None` for anything
    /// damaged (bad magic, version, CRC, or lengths) — the caller replays the log instead.
    pub fn decode_snapshot(bytes: &[u8]) -> Option<(ProducerStateTable, i64)> {
        if bytes.len() < SNAPSHOT_HEADER_LEN + 4 {
            return None;
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crate::crc::crc32c(body).to_be_bytes() != crc {
            return None;
        }
        let mut r = Reader { buf: body, pos: 0 };
        if r.take(4)? != SNAPSHOT_MAGIC {
            return None;
        }
        let version = r.u16()?;
        let record_len = match version {
            SNAPSHOT_VERSION => PRODUCER_RECORD_LEN,
            SNAPSHOT_VERSION_1 => PRODUCER_RECORD_LEN_V1,
            _ => return None,
        };
        let next_offset = r.i64()?;
        let count = r.u32()? as usize;
        // Each producer takes at least its record's bytes: bound the count by them.
        if count > (body.len() - SNAPSHOT_HEADER_LEN) / record_len {
            return None;
        }
        let mut producers = HashMap::with_capacity(count);
        for _ in 0..count {
            let id = r.i64()?;
            let epoch = r.i16()?;
            let last_timestamp_ms = r.i64()?;
            let (coordinator_epoch, current_txn_first_offset) = if version == SNAPSHOT_VERSION {
                let coordinator_epoch = r.i32()?;
                let first = r.i64()?;
                if first < -1 {
                    return None;
                }
                (coordinator_epoch, (first >= 0).then_some(first))
            } else {
                (-1, None)
            };
            let n = r.take(1)?[0] as usize;
            if n > MAX_BATCHES_PER_PRODUCER {
                return None;
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchMetadata {
                    first_sequence: r.i32()?,
                    last_sequence: r.i32()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                });
            }
            producers.insert(
                id,
                ProducerEntry { epoch, last_timestamp_ms, batches, coordinator_epoch, current_txn_first_offset },
            );
        }
        if r.pos != body.len() {
            return None;
        }
        let mut table = ProducerStateTable { producers, ongoing: BTreeSet::new() };
        table.rebuild_ongoing();
        Some((table, next_offset))
    }
}

fn new_entry(stored: &BatchInfo) -> ProducerEntry {
    ProducerEntry {
        epoch: stored.producer_epoch,
        last_timestamp_ms: stored.max_timestamp,
        batches: VecDeque::with_capacity(MAX_BATCHES_PER_PRODUCER),
        coordinator_epoch: -1,
        current_txn_first_offset: None,
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, seq: i32, count: i32, base_offset: i64) -> BatchInfo {
        BatchInfo {
            total_len: 100,
            base_offset,
            last_offset_delta: count - 1,
            records_count: count,
            partition_leader_epoch: 0,
            attributes: 0,
            base_timestamp: 1_000,
            max_timestamp: 1_000 + base_offset,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
        }
    }

    /// Appends like the log would: check, then record at the next offset.
    fn append(t: &mut ProducerStateTable, next: &mut i64, b: BatchInfo) -> Result<SequenceCheck, ProducerError> {
        let verdict = t.check(&b)?;
        if verdict == SequenceCheck::Append {
            let mut stored = b;
            stored.base_offset = *next;
            t.record(&stored);
            *next += i64::from(b.records_count);
        }
        Ok(verdict)
    }

    #[test]
    fn retries_of_any_of_the_last_five_batches_are_duplicates_with_their_original_offsets() {
        let mut t = ProducerStateTable::default();
        let mut next = 0;
        for i in 0..7 {
            assert_eq!(append(&mut t, &mut next, batch(9, 0, i * 10, 10, 0)), Ok(SequenceCheck::Append));
        }
        for i in 2..7 {
            let dup = append(&mut t, &mut next, batch(9, 0, i * 10, 10, 0));
            assert_eq!(
                dup,
                Ok(SequenceCheck::Duplicate { first_offset: i as i64 * 10, last_offset: i as i64 * 10 + 9 })
            );
        }
        assert_eq!(next, 70, "duplicates wrote nothing");
        // Older than the last five: no longer known, so it is a sequence error.
        assert!(matches!(t.check(&batch(9, 0, 10, 10, 0)), Err(ProducerError::OutOfOrderSequence { .. })));
    }

    #[test]
    fn gaps_and_stale_epochs_get_kafkas_errors() {
        let mut t = ProducerStateTable::default();
        let mut next = 0;
        append(&mut t, &mut next, batch(1, 3, 0, 5, 0)).unwrap();
        let gap = t.check(&batch(1, 3, 6, 1, 0)).unwrap_err();
        assert_eq!(gap.error_code(), ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER);
        assert!(gap.to_string().contains("6 (incoming seq. number), 4"), "{gap}");
        let stale = t.check(&batch(1, 2, 5, 1, 0)).unwrap_err();
        assert_eq!(stale.error_code(), ErrorCode::INVALID_PRODUCER_EPOCH);
        // A new epoch must restart at 0.
        assert!(matches!(t.check(&batch(1, 4, 5, 1, 0)), Err(ProducerError::OutOfOrderSequence { .. })));
        assert_eq!(append(&mut t, &mut next, batch(1, 4, 0, 1, 0)), Ok(SequenceCheck::Append));
        assert_eq!(t.entry(1).unwrap().epoch, 4);
        assert_eq!(t.entry(1).unwrap().batches.len(), 1, "a new epoch starts a fresh history");
        // The old epoch is now fenced even for what used to be a duplicate.
        assert_eq!(t.check(&batch(1, 3, 0, 5, 0)).unwrap_err().error_code(), ErrorCode::INVALID_PRODUCER_EPOCH);
    }

    #[test]
    fn unknown_producers_may_start_anywhere_and_unidentified_batches_are_untracked() {
        let mut t = ProducerStateTable::default();
        let mut next = 0;
        assert_eq!(append(&mut t, &mut next, batch(5, 0, 1234, 2, 0)), Ok(SequenceCheck::Append));
        assert_eq!(append(&mut t, &mut next, batch(5, 0, 1236, 1, 0)), Ok(SequenceCheck::Append));
        assert_eq!(append(&mut t, &mut next, batch(-1, -1, -1, 3, 0)), Ok(SequenceCheck::Append));
        assert_eq!(append(&mut t, &mut next, batch(-1, -1, -1, 3, 0)), Ok(SequenceCheck::Append));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn sequences_wrap_after_i32_max() {
        assert_eq!(last_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(last_sequence(i32::MAX, 0), i32::MAX);
        let mut t = ProducerStateTable::default();
        let mut next = 0;
        append(&mut t, &mut next, batch(2, 0, i32::MAX - 1, 2, 0)).unwrap();
        assert_eq!(append(&mut t, &mut next, batch(2, 0, 0, 1, 0)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn retention_and_expiry_forget_producers() {
        let mut t = ProducerStateTable::default();
        let mut next = 0;
        append(&mut t, &mut next, batch(1, 0, 0, 10, 0)).unwrap(); // offsets 0..9, ts 1000
        append(&mut t, &mut next, batch(2, 0, 0, 10, 0)).unwrap(); // offsets 10..19, ts 1000
        assert_eq!(t.remove_before(10), 1);
        assert!(t.entry(1).is_none() && t.entry(2).is_some());
        assert_eq!(t.expire(1_000 + 99, 100), 0);
        assert_eq!(t.expire(1_000 + 100, 100), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn snapshots_round_trip_and_damage_is_detected() {
        let mut t = ProducerStateTable::default();
        let mut next = 0;
        for pid in 0..20 {
            for s in 0..(pid % 8) {
                append(&mut t, &mut next, batch(pid, (pid % 3) as i16, s as i32 * 2, 2, 0)).unwrap();
            }
        }
        let bytes = t.encode_snapshot(next);
        let (back, offset) = ProducerStateTable::decode_snapshot(&bytes).unwrap();
        assert_eq!(offset, next);
        assert_eq!(back, t);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(ProducerStateTable::decode_snapshot(&bad).is_none(), "flip at {i} detected");
        }
        for cut in 0..bytes.len() {
            assert!(ProducerStateTable::decode_snapshot(&bytes[..cut]).is_none());
        }
        let empty = ProducerStateTable::default().encode_snapshot(0);
        assert_eq!(ProducerStateTable::decode_snapshot(&empty), Some((ProducerStateTable::default(), 0)));
    }

    fn txn_batch(pid: i64, epoch: i16, seq: i32, count: i32, base_offset: i64) -> BatchInfo {
        let mut b = batch(pid, epoch, seq, count, base_offset);
        b.attributes = crate::batch::TRANSACTIONAL_MASK;
        b
    }

    fn marker(pid: i64, epoch: i16, offset: i64) -> BatchInfo {
        let mut b = batch(pid, epoch, -1, 1, offset);
        b.attributes = crate::batch::TRANSACTIONAL_MASK | crate::batch::CONTROL_MASK;
        b
    }

    #[test]
    fn transactional_batches_open_a_transaction_and_a_marker_closes_it() {
        let mut t = ProducerStateTable::default();
        let mut next = 0;
        append(&mut t, &mut next, batch(1, 0, 0, 5, 0)).unwrap(); // 0..4, not transactional
        assert_eq!(t.first_unstable_offset(), None);
        append(&mut t, &mut next, txn_batch(2, 0, 0, 3, 0)).unwrap(); // 5..7
        append(&mut t, &mut next, txn_batch(3, 0, 0, 2, 0)).unwrap(); // 8..9
        append(&mut t, &mut next, txn_batch(2, 0, 3, 2, 0)).unwrap(); // 10..11, same transaction
        assert_eq!(t.first_unstable_offset(), Some(5));
        assert_eq!(t.open_transactions(), vec![(2, 5), (3, 8)]);
        t.check_marker(2, 0, 0).unwrap();
        let done = t.complete_txn(&marker(2, 0, 12), 0, false);
        assert_eq!(done, CompletedTxn { producer_id: 2, first_offset: 5, last_offset: 12, aborted: true });
        assert_eq!(t.first_unstable_offset(), Some(8));
        let done = t.complete_txn(&marker(3, 0, 13), 0, true);
        assert_eq!(done, CompletedTxn { producer_id: 3, first_offset: 8, last_offset: 13, aborted: false });
        assert_eq!(t.first_unstable_offset(), None);
        // A marker is not a data batch: the producer's sequence goes on where it was.
        assert_eq!(t.check(&txn_batch(2, 0, 5, 1, 0)), Ok(SequenceCheck::Append));
        // A marker without an open transaction closes an empty one at itself, as Kafka's.
        let done = t.complete_txn(&marker(9, 0, 20), 0, false);
        assert_eq!((done.first_offset, done.last_offset), (20, 20));
    }

    #[test]
    fn stale_markers_are_refused() {
        let mut t = ProducerStateTable::default();
        let mut next = 0;
        append(&mut t, &mut next, txn_batch(1, 4, 0, 1, 0)).unwrap();
        assert_eq!(t.check_marker(1, 3, 0).unwrap_err().error_code(), ErrorCode::INVALID_PRODUCER_EPOCH);
        t.complete_txn(&marker(1, 4, 1), 7, true);
        assert_eq!(t.check_marker(1, 4, 6).unwrap_err().error_code(), ErrorCode::TRANSACTION_COORDINATOR_FENCED);
        assert!(t.check_marker(1, 4, 7).is_ok());
        assert!(t.check_marker(1, 5, 8).is_ok(), "a newer epoch (the coordinator fenced the producer) is fine");
        assert!(t.check_marker(99, 0, 0).is_ok(), "an unknown producer is fine");
        // A marker of a newer epoch bumps the producer's epoch: its old batches are fenced.
        t.complete_txn(&marker(1, 5, 2), 8, false);
        assert_eq!(t.check(&txn_batch(1, 4, 1, 1, 0)).unwrap_err().error_code(), ErrorCode::INVALID_PRODUCER_EPOCH);
    }

    #[test]
    fn open_transactions_survive_expiry_and_snapshots() {
        let mut t = ProducerStateTable::default();
        let mut next = 0;
        append(&mut t, &mut next, txn_batch(1, 0, 0, 2, 0)).unwrap();
        append(&mut t, &mut next, batch(2, 0, 0, 2, 0)).unwrap();
        t.complete_txn(&marker(3, 2, next), 5, false);
        assert_eq!(t.expire(i64::MAX / 2, 100), 2, "idle producers without an open transaction go");
        assert_eq!(t.first_unstable_offset(), Some(0));
        let bytes = t.encode_snapshot(next);
        let (back, _) = ProducerStateTable::decode_snapshot(&bytes).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.first_unstable_offset(), Some(0));
        assert_eq!(back.remove_before_clone(1), 1, "its transaction's start was deleted");
    }

    impl ProducerStateTable {
        fn remove_before_clone(&self, offset: i64) -> usize {
            self.clone().remove_before(offset)
        }
    }

    /// A version-1 snapshot, as written before transactions.
    fn encode_v1(entries: &[(i64, i16, i64, Vec<BatchMetadata>)], next_offset: i64) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION_1.to_be_bytes());
        out.extend_from_slice(&next_offset.to_be_bytes());
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        for (id, epoch, ts, batches) in entries {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&epoch.to_be_bytes());
            out.extend_from_slice(&ts.to_be_bytes());
            out.push(batches.len() as u8);
            for b in batches {
                out.extend_from_slice(&b.first_sequence.to_be_bytes());
                out.extend_from_slice(&b.last_sequence.to_be_bytes());
                out.extend_from_slice(&b.first_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        let crc = crate::crc::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    #[test]
    fn version_1_snapshots_still_load() {
        let b = BatchMetadata { first_sequence: 0, last_sequence: 4, first_offset: 10, last_offset: 14 };
        let bytes = encode_v1(&[(7, 2, 1_000, vec![b])], 15);
        let (t, next) = ProducerStateTable::decode_snapshot(&bytes).expect("v1 loads");
        assert_eq!(next, 15);
        let e = t.entry(7).unwrap();
        assert_eq!((e.epoch, e.coordinator_epoch, e.current_txn_first_offset), (2, -1, None));
        assert_eq!(e.batches.iter().copied().collect::<Vec<_>>(), vec![b]);
        assert_eq!(t.first_unstable_offset(), None);
    }

    proptest::proptest! {
        /// Against a model: the first unstable offset is the smallest first offset of the
        /// producers whose transaction is open, whatever the interleaving; a snapshot at any
        /// point restores the same table.
        #[test]
        fn first_unstable_offset_follows_a_model(ops in proptest::collection::vec((0i64..4, 0u8..3), 1..60)) {
            let mut t = ProducerStateTable::default();
            let mut open: HashMap<i64, i64> = HashMap::new();
            let mut seqs: HashMap<i64, i32> = HashMap::new();
            let mut next = 0i64;
            for (pid, op) in ops {
                match op {
                    0 | 1 => {
                        let seq = seqs.entry(pid).or_insert(0);
                        let mut b = txn_batch(pid, 0, *seq, 2, 0);
                        if op == 1 { b.attributes = 0; }
                        append(&mut t, &mut next, b).unwrap();
                        if op == 0 { open.entry(pid).or_insert(next - 2); }
                        *seq += 2;
                    }
                    _ => {
                        t.check_marker(pid, 0, 0).unwrap();
                        let done = t.complete_txn(&marker(pid, 0, next), 0, pid % 2 == 0);
                        proptest::prop_assert_eq!(done.first_offset, open.remove(&pid).unwrap_or(next));
                        next += 1;
                    }
                }
                proptest::prop_assert_eq!(t.first_unstable_offset(), open.values().min().copied());
                let (back, _) = ProducerStateTable::decode_snapshot(&t.encode_snapshot(next)).unwrap();
                proptest::prop_assert_eq!(&back, &t);
            }
        }
    }
}
