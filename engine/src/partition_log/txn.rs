//! Transactions in a partition's log (KIP-98): end-transaction markers, the last stable offset,
//! and each segment's aborted-transaction index (`.txnindex`).
//!
//! Owns: appending a marker for a producer ([`PartitionLog::append_txn_marker`], through the
//! ordinary append path, so it is ordered, durable and indexed like a batch), the last stable
//! offset (the oldest open transaction's first offset, or a completed one whose marker the
//! high watermark has not passed, bounded by the high watermark — [`UnstableOffsets`]), the
//! aborted transactions a read_committed fetch needs, and the `.txnindex` files.
//!
//! Persistence: a segment's `.txnindex` is written whole (atomically) before every
//! producer-state snapshot, so every abort marker below a snapshot's offset has its entry on
//! disk; the entries of markers after the snapshot are rebuilt by the replay that rebuilds the
//! producer state from it (on open and after truncation). A file is removed with its segment.
//!
//! Must never: let a read_committed reader see an offset at or past the last stable offset,
//! move the last stable offset backwards except by truncation, hold a `RefCell` borrow across
//! an await, or run a blocking syscall on the shard thread.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::rc::Rc;

use crate::batch::BatchInfo;
use crate::checkpoint_file;
use crate::clock::now_ms;
use crate::replica_state::UnstableOffsets;
use crate::segment::Segment;
use crate::txn_index::{txn_index_path, AbortedTxn, TxnIndex};
use crate::txn_marker::{encode_marker_batch, EndTxnMarker};
use crate::watermark::Watermark;

use super::append::AppendOrigin;
use super::{io, io_error, AppendError, AppendInfo, LogError, PartitionLog};

impl PartitionLog {
    /// Writes a commit (`commit`) or abort marker for the producer's transaction, as the leader
    /// in `leader_epoch` (WriteTxnMarkers), and returns once it is durable. Refused with
    /// `INVALID_PRODUCER_EPOCH` for an epoch older than the producer's and with
    /// `TRANSACTION_COORDINATOR_FENCED` for an older coordinator epoch.
    pub async fn append_txn_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        leader_epoch: i32,
    ) -> Result<AppendInfo, AppendError> {
        let marker = EndTxnMarker { commit, coordinator_epoch };
        let batch = encode_marker_batch(self.log_end_offset(), producer_id, producer_epoch, marker, now_ms());
        let info = crate::batch::validate_stored(&batch).map_err(AppendError::Batch)?;
        let config = self.config.borrow().clone();
        let (appended, durable) =
            self.append_validated(&batch, None, &[info], &config, leader_epoch, AppendOrigin::Marker(marker)).await?;
        self.wait_durable(durable).await?;
        Ok(appended)
    }

    /// The last stable offset: read_committed consumers read below it.
    pub fn last_stable_offset(&self) -> i64 {
        self.last_stable.get() as i64
    }

    /// Waiters for the last stable offset (long-poll read_committed fetches).
    pub fn last_stable_watermark(&self) -> Rc<Watermark> {
        self.last_stable.clone()
    }

    /// The producers this partition tracks (idempotent and transactional), by producer id.
    pub fn active_producers(&self) -> Vec<(i64, crate::producer_state::ProducerEntry)> {
        self.producers.borrow().entries()
    }

    /// Open transactions as (producer id, first offset), oldest first.
    pub fn open_transactions(&self) -> Vec<(i64, i64)> {
        self.producers.borrow().open_transactions()
    }

    /// The aborted transactions overlapping `[fetch_offset, upper_bound_offset)`, oldest marker
    /// first: what a read_committed Fetch of that range returns. A transaction's marker is at
    /// or after its records, so only the segments from the one holding `fetch_offset` on can
    /// hold one; and the search stops after an entry whose last stable offset reaches the upper
    /// bound (Kafka's `TxnIndexSearchResult.isComplete`): every transaction open when that
    /// marker was written started at or after it, so none aborted later starts below the bound.
    pub fn aborted_transactions(&self, fetch_offset: i64, upper_bound_offset: i64) -> Vec<AbortedTxn> {
        let state = self.state.borrow();
        let from = state
            .segments
            .range((Bound::Unbounded, Bound::Included(fetch_offset)))
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        let mut found = Vec::new();
        for segment in state.segments.range(from..).map(|(_, s)| s) {
            found.extend(segment.txn_index.overlapping(fetch_offset, upper_bound_offset).copied());
            if segment.txn_index.entries().iter().any(|e| e.last_stable_offset >= upper_bound_offset) {
                break;
            }
        }
        found
    }

    /// Every aborted transaction the log's segments index (tests, tools).
    pub fn aborted_transaction_index(&self) -> Vec<AbortedTxn> {
        self.aborted_transactions(i64::MIN, i64::MAX)
    }

    /// Records an appended marker in the producer state and, for an abort, in the active
    /// segment's transaction index. Caller holds `exclusive` and the state borrow.
    pub(super) fn record_marker(&self, active: &mut Segment, stored: &BatchInfo, marker: EndTxnMarker) {
        let mut producers = self.producers.borrow_mut();
        let done = producers.complete_txn(stored, marker.coordinator_epoch, marker.commit);
        self.unstable.borrow_mut().completed(done.first_offset, done.last_offset);
        if done.aborted {
            active.txn_index.insert(AbortedTxn {
                producer_id: done.producer_id,
                first_offset: done.first_offset,
                last_offset: done.last_offset,
                last_stable_offset: producers.first_unstable_offset().unwrap_or(done.last_offset + 1),
            });
        }
    }

    /// After a transactional batch or a marker: the oldest open transaction may have changed.
    pub(super) fn note_transactions_changed(&self) {
        self.unstable.borrow_mut().oldest_open = self.producers.borrow().first_unstable_offset();
        self.refresh_last_stable();
    }

    /// Advances the last stable offset to what the high watermark and the unstable
    /// transactions allow.
    pub(super) fn refresh_last_stable(&self) {
        let lso = self.unstable.borrow_mut().last_stable_offset(self.high_watermark());
        self.last_stable.advance(lso as u64);
    }

    /// After a truncation rebuilt the producer state: recompute from scratch (the last stable
    /// offset may move back, with the high watermark).
    pub(super) fn reset_last_stable(&self) {
        let oldest_open = self.producers.borrow().first_unstable_offset();
        let lso = {
            let mut unstable = self.unstable.borrow_mut();
            unstable.clear_unreplicated();
            unstable.oldest_open = oldest_open;
            unstable.last_stable_offset(self.high_watermark())
        };
        self.last_stable.reset(lso as u64);
    }

    /// Writes the `.txnindex` of every segment whose entries changed (removing it when the
    /// segment has none left). Runs before each producer snapshot (see the module docs).
    pub(super) async fn write_txn_indexes(&self) -> Result<(), LogError> {
        self.write_txn_indexes_below(i64::MAX).await
    }

    /// [`PartitionLog::write_txn_indexes`] of the segments that start below `offset` (a
    /// seal's: the active segment's index may change meanwhile, the sealed ones may not).
    pub(super) async fn write_txn_indexes_below(&self, offset: i64) -> Result<(), LogError> {
        let dirty: Vec<(i64, Vec<u8>, bool)> = self
            .state
            .borrow()
            .segments
            .range(..offset)
            .map(|(_, s)| s)
            .filter(|s| s.txn_index.dirty)
            .map(|s| (s.base_offset, s.txn_index.encode(), s.txn_index.is_empty()))
            .collect();
        for (base, bytes, empty) in dirty {
            let path = txn_index_path(&self.dir, base);
            if empty {
                checkpoint_file::remove_if_exists(&path).await.map_err(io)?;
            } else {
                self.write_checkpoint_file(&path, &bytes).await.map_err(io_error)?;
            }
            if let Some(segment) = self.state.borrow_mut().segments.get_mut(&base) {
                segment.txn_index.dirty = false;
            }
        }
        Ok(())
    }
}

/// Loads each segment's `.txnindex` (a damaged one is dropped: the replay after the newest
/// snapshot rebuilds what it can, see the module docs), keeping only entries whose marker the
/// segment still holds.
pub(super) async fn load_txn_indexes(dir: &Path, segments: &mut BTreeMap<i64, Segment>) -> Result<(), LogError> {
    let bases: Vec<i64> = segments.keys().copied().collect();
    for base in bases {
        let path = txn_index_path(dir, base);
        let Some(bytes) = checkpoint_file::read_small(&path).await.map_err(io)? else { continue };
        let mut index = match TxnIndex::decode(&bytes) {
            Ok(index) => index,
            Err(e) => {
                crate::warn_limited!(path = %path.display(), error = %e, "transaction index unreadable; rebuilding");
                let mut empty = TxnIndex::default();
                empty.dirty = true;
                empty
            }
        };
        let segment = segments.get_mut(&base).expect("listed");
        index.truncate_from(segment.next_offset);
        segment.txn_index = index;
    }
    Ok(())
}

/// Puts aborted transactions found by a replay into the segments holding their markers (an
/// entry already indexed is not added twice).
pub(super) fn merge_aborted(segments: &mut BTreeMap<i64, Segment>, aborted: &[AbortedTxn]) {
    for entry in aborted {
        let holder = segments.range_mut((Bound::Unbounded, Bound::Included(entry.last_offset))).next_back();
        if let Some((_, segment)) = holder {
            if entry.last_offset < segment.next_offset {
                segment.txn_index.insert(*entry);
            }
        }
    }
}

/// A fresh tracker of what holds the last stable offset back, for a log whose every batch is
/// durable (open, truncation): only open transactions.
pub(super) fn unstable_offsets(oldest_open: Option<i64>) -> UnstableOffsets {
    let mut unstable = UnstableOffsets::default();
    unstable.oldest_open = oldest_open;
    unstable
}
