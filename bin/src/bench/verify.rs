//! Verification that what was produced was consumed: per partition, offsets must follow each
//! other without holes, and each producer's sequence numbers (in the payload header) must
//! arrive in order, each exactly once; at the end, messages of this run consumed must equal
//! messages acknowledged.
//!
//! Owns: the per-partition bookkeeping and the final verdict. Must never: stop at the first
//! problem (every gap, duplicate and mismatch is counted and reported).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::bench::payload::PayloadHeader;

/// What one consumer saw on one partition.
#[derive(Clone, Debug, Default)]
pub struct PartitionTracker {
    next_offset: Option<i64>,
    /// Offsets skipped between consecutive records (holes in the log as read).
    pub offset_gaps: u64,
    /// Next expected sequence number per producer of this run.
    next_sequence: HashMap<u32, u64>,
    /// Sequence numbers never seen (a jump forward counts the numbers jumped over).
    pub missing_in_sequence: u64,
    /// Sequence numbers seen again, or out of order.
    pub duplicates_or_reordered: u64,
    /// Records of this run.
    pub consumed_this_run: u64,
    /// Records from other runs or other writers (not checked).
    pub consumed_other: u64,
}

impl PartitionTracker {
    /// `first_sequence_known`: the consumer starts where this run's producers started (a fresh
    /// topic read from the earliest offset), so every producer's first message must be 0.
    pub fn observe(&mut self, offset: i64, header: Option<PayloadHeader>, run_id: u32, first_sequence_known: bool) {
        if let Some(expected) = self.next_offset {
            if offset > expected {
                self.offset_gaps += (offset - expected) as u64;
            }
        }
        self.next_offset = Some(offset + 1);
        let Some(h) = header.filter(|h| h.run_id == run_id) else {
            self.consumed_other += 1;
            return;
        };
        self.consumed_this_run += 1;
        let next = self.next_sequence.entry(h.producer_id).or_insert(if first_sequence_known { 0 } else { h.sequence });
        if h.sequence == *next {
            *next += 1;
        } else if h.sequence > *next {
            self.missing_in_sequence += h.sequence - *next;
            *next = h.sequence + 1;
        } else {
            self.duplicates_or_reordered += 1;
        }
    }
}

/// The verdict for one partition.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PartitionVerdict {
    pub topic: String,
    pub partition: i32,
    pub acked: u64,
    pub consumed: u64,
    pub offset_gaps: u64,
    pub missing_in_sequence: u64,
    pub duplicates_or_reordered: u64,
    pub ok: bool,
}

/// Compares acknowledged counts with what the trackers saw. `acked` is `None` for a
/// consume-only run (nothing to compare counts with; gaps are still checked).
pub fn verdicts(
    acked: &BTreeMap<(String, i32), u64>,
    seen: &BTreeMap<(String, i32), PartitionTracker>,
    check_counts: bool,
) -> Vec<PartitionVerdict> {
    let mut keys: Vec<&(String, i32)> = acked.keys().chain(seen.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|key| {
            let t = seen.get(key).cloned().unwrap_or_default();
            let acked = acked.get(key).copied().unwrap_or(0);
            let counts_ok = !check_counts || t.consumed_this_run == acked;
            PartitionVerdict {
                topic: key.0.clone(),
                partition: key.1,
                acked,
                consumed: t.consumed_this_run,
                offset_gaps: t.offset_gaps,
                missing_in_sequence: t.missing_in_sequence,
                duplicates_or_reordered: t.duplicates_or_reordered,
                ok: counts_ok && t.offset_gaps == 0 && t.missing_in_sequence == 0 && t.duplicates_or_reordered == 0,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(producer_id: u32, sequence: u64) -> Option<PayloadHeader> {
        Some(PayloadHeader { run_id: 9, producer_id, sequence, intended_ns: 0 })
    }

    #[test]
    fn in_order_interleaved_producers_are_clean() {
        let mut t = PartitionTracker::default();
        for (offset, (p, s)) in [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2)].into_iter().enumerate() {
            t.observe(offset as i64, h(p, s), 9, true);
        }
        assert_eq!(
            (t.consumed_this_run, t.offset_gaps, t.missing_in_sequence, t.duplicates_or_reordered),
            (5, 0, 0, 0)
        );
    }

    #[test]
    fn gaps_duplicates_and_foreign_records_are_counted() {
        let mut t = PartitionTracker::default();
        t.observe(0, h(1, 1), 9, true); // sequence 0 never seen
        t.observe(1, h(1, 4), 9, true); // 2, 3 missing
        t.observe(5, h(1, 4), 9, true); // duplicate, and offsets 2..=4 skipped
        t.observe(6, h(1, 5), 8, true); // another run
        t.observe(7, None, 9, true); // not a bench message
        assert_eq!(t.missing_in_sequence, 3);
        assert_eq!(t.duplicates_or_reordered, 1);
        assert_eq!(t.offset_gaps, 3);
        assert_eq!(t.consumed_this_run, 3);
        assert_eq!(t.consumed_other, 2);
    }

    #[test]
    fn starting_mid_stream_takes_the_first_sequence_as_given() {
        let mut t = PartitionTracker::default();
        t.observe(100, h(1, 50), 9, false);
        t.observe(101, h(1, 51), 9, false);
        assert_eq!(t.missing_in_sequence, 0);
    }

    #[test]
    fn verdict_flags_count_mismatches_and_partitions_never_read() {
        let key = |p| ("t".to_string(), p);
        let mut seen = BTreeMap::new();
        let mut t = PartitionTracker::default();
        t.observe(0, h(1, 0), 9, true);
        seen.insert(key(0), t);
        let acked = BTreeMap::from([(key(0), 1), (key(1), 5)]);
        let v = verdicts(&acked, &seen, true);
        assert!(v[0].ok);
        assert!(!v[1].ok, "5 acked, none consumed");
        assert_eq!(v[1].consumed, 0);
        let v = verdicts(&BTreeMap::new(), &seen, false);
        assert!(v[0].ok, "consume-only: no count comparison");
    }
}
