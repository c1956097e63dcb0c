//! One cleaning of one log (Kafka's `Cleaner.doClean`): map the dirty section's keys to their
//! latest offsets, then rewrite the sealed segments up to where the map reaches — in groups of
//! consecutive segments that fit in `segment.bytes` together, so small segments merge — keeping
//! a record unless a later record of its key is mapped, it has no key, or it is a tombstone past
//! `delete.retention.ms`. Each group is swapped in with the segment set's crash-safe
//! [`PartitionLog::replace_segments`].
//!
//! Owns: the retention rule per record and per batch, the grouping, and the pass's figures.
//! Transactions as Kafka's cleaner treats them: a batch of an aborted transaction is removed
//! whole and never enters the key map; a committed transaction's records are compacted like any
//! other; markers (control batches) are kept (Kafka removes them once nothing of their
//! transaction is left and the delete horizon passed — not done here). Must never: touch the active
//! segment or anything at or past the first uncleanable offset, renumber an offset, hold a
//! `RefCell` borrow across an await, or keep the shard busy for a whole log without yielding.

use std::collections::HashMap;

use crate::batch::{batches, BatchInfo, Validation};
use crate::partition_log::{CleanedSegment, LogError, PartitionLog, ReadBound};
use crate::txn_index::AbortedTxn;

use super::choice::{Cleanable, SegmentExtent};
use super::offset_map::OffsetMap;
use super::record_filter::{filter_batch, for_each_record, Filtered, RecordView};

/// Bytes read from the log per step.
const READ_BYTES: usize = 1 << 20;
/// Rewritten bytes collected before they go to the new segment's writer.
const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// What a pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanPass {
    pub first_dirty_offset: i64,
    /// The next cleaning's first dirty offset: where the key map stopped.
    pub end_offset: i64,
    pub segments_before: usize,
    pub segments_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_removed: u64,
}

/// Settings of a pass besides the log's own config.
#[derive(Clone, Copy, Debug)]
pub struct PassInputs {
    pub now_ms: i64,
}

fn io(e: std::io::Error) -> LogError {
    LogError::Io(e.to_string())
}

/// Reads whole batches from `offset` on (within one segment): `None` at the end of the log.
async fn read_from(log: &PartitionLog, offset: i64) -> Result<Option<Vec<u8>>, LogError> {
    let read = log.read(offset, READ_BYTES, ReadBound::LogEnd, true).await?;
    if read.is_empty() {
        return Ok(None);
    }
    Ok(Some(read.to_vec().await.map_err(io)?))
}

/// The whole batches of `log` from `offset` on with base offsets below `to` (one read, within
/// one segment): the bytes read and each batch's position and header. `None`: nothing left.
async fn read_batches(
    log: &PartitionLog,
    offset: i64,
    to: i64,
) -> Result<Option<(Vec<u8>, Vec<(usize, BatchInfo)>)>, LogError> {
    if offset >= to {
        return Ok(None);
    }
    let Some(bytes) = read_from(log, offset).await? else { return Ok(None) };
    let mut found = Vec::new();
    for item in batches(&bytes, Validation::Stored) {
        // A read may end inside a batch: the next read starts there.
        let Ok((pos, info)) = item else { break };
        if info.base_offset >= to {
            break;
        }
        found.push((pos, info));
    }
    if found.is_empty() {
        let past_end = batches(&bytes, Validation::Stored).next().and_then(Result::ok).is_some();
        if past_end {
            return Ok(None); // the next batch is at or past `to`
        }
        return Err(LogError::Corrupt(format!("no whole batch at offset {offset} while cleaning")));
    }
    Ok(Some((bytes, found)))
}

/// Whether `info` is a batch of one of the `aborted` transactions (its records are not data).
fn is_aborted(info: &BatchInfo, aborted: &[AbortedTxn]) -> bool {
    info.is_transactional()
        && !info.is_control()
        && aborted.iter().any(|a| {
            a.producer_id == info.producer_id && a.first_offset <= info.base_offset && info.base_offset <= a.last_offset
        })
}

/// Maps the keys of `[first dirty, first uncleanable)` into `map` until it is full. Returns
/// where the mapped section ends, and the base offset of the last batch of each producer id
/// seen (such a batch is kept, empty if need be, so the producer's sequence survives).
async fn build_offset_map(
    log: &PartitionLog,
    cleanable: &Cleanable,
    aborted: &[AbortedTxn],
    map: &mut OffsetMap,
) -> Result<(i64, HashMap<i64, i64>), LogError> {
    map.clear();
    let mut end_offset = cleanable.first_dirty_offset;
    let mut last_batch_of_producer = HashMap::new();
    let mut scratch = Vec::new();
    'read: while let Some((bytes, found)) = read_batches(log, end_offset, cleanable.first_uncleanable_offset).await? {
        for (pos, info) in found {
            if !info.is_control() && !is_aborted(&info, aborted) {
                // Kafka's rule: stop before a batch that might not fit.
                if map.len() + info.records_count.max(0) as usize > map.max_entries() {
                    if map.is_empty() {
                        return Err(LogError::Corrupt(format!(
                            "a batch of {} records does not fit the cleaner's key map of {} entries \
                             (log.cleaner.dedupe.buffer.size)",
                            info.records_count,
                            map.max_entries()
                        )));
                    }
                    break 'read;
                }
                for_each_record(&bytes[pos..pos + info.total_len], &mut scratch, |record, _| {
                    if let Some(key) = record.key {
                        let fitted = map.put(key, record.offset);
                        debug_assert!(fitted, "room was checked for the whole batch");
                    }
                })
                .map_err(|e| LogError::Corrupt(format!("batch at {}: {e}", info.base_offset)))?;
            }
            if info.producer_id >= 0 {
                last_batch_of_producer.insert(info.producer_id, info.base_offset);
            }
            end_offset = info.next_offset();
        }
        glommio::yield_if_needed().await;
    }
    Ok((end_offset, last_batch_of_producer))
}

/// Consecutive runs of `segments` whose sizes add up to at most `max_bytes` (one segment alone
/// may exceed it) and whose offsets fit one segment's 32-bit relative offsets.
pub fn group_by_size(segments: &[SegmentExtent], max_bytes: u64) -> Vec<Vec<SegmentExtent>> {
    let mut groups: Vec<Vec<SegmentExtent>> = Vec::new();
    for segment in segments {
        let fits = groups.last().is_some_and(|group| {
            let bytes: u64 = group.iter().map(|s| s.size_bytes).sum();
            bytes + segment.size_bytes <= max_bytes && segment.next_offset - group[0].base_offset <= i64::from(i32::MAX)
        });
        if fits {
            groups.last_mut().expect("non-empty").push(*segment);
        } else {
            groups.push(vec![*segment]);
        }
    }
    groups
}

/// Cleans `log`'s section `cleanable` (from [`super::choice::cleanable`]) with `map`.
pub async fn clean_log(
    log: &PartitionLog,
    cleanable: &Cleanable,
    map: &mut OffsetMap,
    inputs: PassInputs,
) -> Result<CleanPass, LogError> {
    let config = log.config();
    // Every aborted transaction with records below the cleanable end: the search stops once no
    // later entry can start below it (the segments' `.txnindex`).
    let aborted = log.aborted_transactions(log.log_start_offset(), cleanable.first_uncleanable_offset);
    let (end_offset, last_batch_of_producer) = build_offset_map(log, cleanable, &aborted, map).await?;
    let extents = log.segment_extents();
    let sealed = &extents[..extents.len().saturating_sub(1)];
    let to_clean: Vec<SegmentExtent> = sealed
        .iter()
        .copied()
        .filter(|s| s.base_offset < end_offset && s.next_offset <= cleanable.first_uncleanable_offset)
        .collect();
    let mut pass = CleanPass {
        first_dirty_offset: cleanable.first_dirty_offset,
        end_offset,
        segments_before: to_clean.len(),
        bytes_before: to_clean.iter().map(|s| s.size_bytes).sum(),
        ..CleanPass::default()
    };
    let first_dirty = cleanable.first_dirty_offset;
    let delete_retention_ms = config.delete_retention_ms;
    let keep_record = |r: &RecordView<'_>| -> bool {
        if r.offset >= end_offset {
            return true; // past the map: not de-duplicated this pass
        }
        let Some(key) = r.key else { return false }; // Kafka's cleaner drops keyless records
        if map.get(key).is_some_and(|latest| r.offset < latest) {
            return false;
        }
        if r.is_tombstone {
            // A tombstone survives its first cleaning and then delete.retention.ms after its
            // timestamp (Kafka counts from the cleaning; see the issue note).
            return r.offset >= first_dirty || r.timestamp_ms.saturating_add(delete_retention_ms) > inputs.now_ms;
        }
        true
    };
    for (i, group) in group_by_size(&to_clean, config.segment_bytes.max(1) as u64).into_iter().enumerate() {
        let group_end = extents
            .iter()
            .find(|s| s.base_offset > group.last().expect("non-empty").base_offset)
            .map_or(i64::MAX, |s| s.base_offset);
        let mut cleaned: CleanedSegment = log.create_cleaned_segment(group[0].base_offset).await?;
        let mut out: Vec<u8> = Vec::new();
        let mut scratch = Vec::new();
        let mut removed = 0u64;
        let mut offset = group[0].base_offset;
        while let Some((bytes, found)) = read_batches(log, offset, group_end).await? {
            for (pos, info) in found {
                let batch = &bytes[pos..pos + info.total_len];
                offset = info.next_offset();
                if info.is_control() {
                    out.extend_from_slice(batch);
                    continue;
                }
                if is_aborted(&info, &aborted) {
                    removed += info.records_count.max(0) as u64;
                    continue;
                }
                let keep_empty =
                    info.producer_id >= 0 && last_batch_of_producer.get(&info.producer_id) == Some(&info.base_offset);
                let before = info.records_count.max(0) as u64;
                match filter_batch(batch, keep_empty, &mut scratch, keep_record) {
                    Ok(Filtered::Unchanged) => out.extend_from_slice(batch),
                    Ok(Filtered::Removed) => removed += before,
                    Ok(Filtered::Rewritten(rewritten)) => {
                        let after = crate::batch::BatchHeader::parse(&rewritten)
                            .map(|h| h.records_count().max(0) as u64)
                            .unwrap_or(before);
                        removed += before - after.min(before);
                        out.extend_from_slice(&rewritten);
                    }
                    Err(e) => return Err(LogError::Corrupt(format!("batch at {}: {e}", info.base_offset))),
                }
            }
            if out.len() >= WRITE_CHUNK_BYTES {
                cleaned.append(&out).await?;
                out.clear();
            }
            glommio::yield_if_needed().await;
        }
        if !out.is_empty() {
            cleaned.append(&out).await?;
        }
        pass.bytes_after += cleaned.size_bytes();
        pass.records_removed += removed;
        pass.segments_after += 1;
        let old_bases: Vec<i64> = group.iter().map(|s| s.base_offset).collect();
        super::fault_point(super::CleanerStep::BeforeSwap(i));
        log.replace_segments(&old_bases, vec![cleaned]).await?;
        super::fault_point(super::CleanerStep::AfterSwap(i));
    }
    Ok(pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: i64, next: i64, size: u64) -> SegmentExtent {
        SegmentExtent {
            base_offset: base,
            next_offset: next,
            size_bytes: size,
            max_timestamp_ms: 0,
            first_timestamp_ms: 0,
        }
    }

    #[test]
    fn consecutive_segments_merge_up_to_the_segment_size() {
        let segments = [seg(0, 10, 400), seg(10, 20, 400), seg(20, 30, 400), seg(30, 40, 1500), seg(40, 50, 100)];
        let bases = |groups: Vec<Vec<SegmentExtent>>| -> Vec<Vec<i64>> {
            groups.iter().map(|g| g.iter().map(|s| s.base_offset).collect()).collect()
        };
        assert_eq!(bases(group_by_size(&segments, 1000)), vec![vec![0, 10], vec![20], vec![30], vec![40]]);
        assert_eq!(bases(group_by_size(&segments, 1200)), vec![vec![0, 10, 20], vec![30], vec![40]]);
        assert_eq!(bases(group_by_size(&segments, 10_000)), vec![vec![0, 10, 20, 30, 40]]);
        // Relative offsets must fit in 32 bits.
        let far = [seg(0, 10, 1), seg(i64::from(i32::MAX), i64::from(i32::MAX) + 5, 1)];
        assert_eq!(bases(group_by_size(&far, 10_000)), vec![vec![0], vec![i64::from(i32::MAX)]]);
    }
}
