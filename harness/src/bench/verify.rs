//! Verification that what was produced was consumed: per partition, offsets must follow each
//! other without holes, and each producer's sequence numbers (in the payload header) must
//! arrive in order, each exactly once; at the end, messages of this run consumed must equal
//! messages acknowledged.
//!
//! A partition may be read in several stretches (segments) by different consumers of a group,
//! one after another as rebalances move it: [`join_segments`] checks that each segment starts
//! exactly where the previous one ended (offsets and every producer's sequence), so the verdict
//! holds across the whole group.
//!
//! Owns: the per-partition bookkeeping and the final verdict. Must never: stop at the first
//! problem (every gap, duplicate and mismatch is counted and reported).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::bench::payload::PayloadHeader;

/// What one consumer saw on one partition.
#[derive(Clone, Debug, Default)]
pub struct PartitionTracker {
    /// Offset of the first record seen, and whether the reader started where this run's
    /// producers started (see [`PartitionTracker::observe`]).
    first_offset: Option<i64>,
    from_run_start: bool,
    next_offset: Option<i64>,
    /// Offsets skipped between consecutive records (holes in the log as read).
    pub offset_gaps: u64,
    /// First sequence number seen and next expected one, per producer of this run.
    first_sequence: HashMap<u32, u64>,
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
        if self.first_offset.is_none() {
            self.first_offset = Some(offset);
            self.from_run_start = first_sequence_known;
        }
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
        self.first_sequence.entry(h.producer_id).or_insert(h.sequence);
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

impl PartitionTracker {
    /// `later` (what the partition's next reader saw) appended to `self`: a later segment must
    /// start at the offset where this one stopped (a jump is a gap, a step back a re-read: its
    /// records count as duplicates) and continue every producer's sequence.
    pub fn append(&mut self, later: PartitionTracker) {
        let (Some(first), Some(next)) = (later.first_offset, self.next_offset) else {
            if self.first_offset.is_none() {
                *self = later;
            }
            return;
        };
        let reread = if first > next {
            self.offset_gaps += (first - next) as u64;
            false
        } else if first < next {
            self.duplicates_or_reordered += (next - first) as u64;
            true
        } else {
            false
        };
        for (producer, first_sequence) in &later.first_sequence {
            let expected = match self.next_sequence.get(producer) {
                Some(n) => Some(*n),
                None if self.from_run_start => Some(0),
                None => None,
            };
            match expected {
                Some(e) if *first_sequence > e => self.missing_in_sequence += first_sequence - e,
                Some(e) if *first_sequence < e && !reread => self.duplicates_or_reordered += 1,
                _ => {}
            }
            self.first_sequence.entry(*producer).or_insert(*first_sequence);
        }
        self.next_sequence.extend(later.next_sequence);
        self.next_offset = self.next_offset.max(later.next_offset);
        self.offset_gaps += later.offset_gaps;
        self.missing_in_sequence += later.missing_in_sequence;
        self.duplicates_or_reordered += later.duplicates_or_reordered;
        self.consumed_this_run += later.consumed_this_run;
        self.consumed_other += later.consumed_other;
    }
}

/// One partition's segments (in any order) joined in offset order into one tracker; segments
/// that saw no record are dropped.
pub fn join_segments(mut segments: Vec<PartitionTracker>) -> PartitionTracker {
    segments.retain(|s| s.first_offset.is_some());
    segments.sort_by_key(|s| s.first_offset);
    let mut joined = PartitionTracker::default();
    for s in segments {
        joined.append(s);
    }
    joined
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
/// consume-only run (nothing to compare counts with; gaps are still checked unless
/// `offset_gaps_expected`: transactional runs leave a commit marker at an offset no consumer
/// is given).
pub fn verdicts(
    acked: &BTreeMap<(String, i32), u64>,
    seen: &BTreeMap<(String, i32), PartitionTracker>,
    check_counts: bool,
    offset_gaps_expected: bool,
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
                ok: counts_ok
                    && (offset_gaps_expected || t.offset_gaps == 0)
                    && t.missing_in_sequence == 0
                    && t.duplicates_or_reordered == 0,
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

    /// Producer 1 writes sequences 0.. at offsets 0.. of one partition; `read(range, from_start)`
    /// is a segment that read those offsets.
    fn read(offsets: std::ops::Range<i64>, from_run_start: bool) -> PartitionTracker {
        let mut t = PartitionTracker::default();
        for o in offsets {
            t.observe(o, h(1, o as u64), 9, from_run_start);
        }
        t
    }

    #[test]
    fn segments_handed_over_exactly_join_cleanly_in_any_order() {
        let joined = join_segments(vec![read(40..100, false), PartitionTracker::default(), read(0..40, true)]);
        assert_eq!(
            (joined.consumed_this_run, joined.offset_gaps, joined.missing_in_sequence, joined.duplicates_or_reordered),
            (100, 0, 0, 0)
        );
        assert_eq!(joined.next_offset, Some(100));
    }

    #[test]
    fn segments_with_a_hole_or_an_overlap_are_flagged() {
        let gap = join_segments(vec![read(0..40, true), read(45..100, false)]);
        assert_eq!((gap.offset_gaps, gap.missing_in_sequence, gap.duplicates_or_reordered), (5, 5, 0));
        let overlap = join_segments(vec![read(0..40, true), read(30..100, false)]);
        assert_eq!(overlap.duplicates_or_reordered, 10, "offsets 30..40 read twice");
        assert_eq!(overlap.consumed_this_run, 110);
        assert_eq!(overlap.offset_gaps, 0);
    }

    #[test]
    fn a_producer_first_seen_after_a_handover_must_start_at_zero_when_reading_from_the_start() {
        let mut first = PartitionTracker::default();
        first.observe(0, h(1, 0), 9, true);
        let mut later = PartitionTracker::default();
        later.observe(1, h(2, 3), 9, false); // producer 2's sequences 0..3 never seen
        assert_eq!(join_segments(vec![first.clone(), later.clone()]).missing_in_sequence, 3);
        // Read mid-stream from the beginning: the first sequence seen is taken as given.
        let mut mid = PartitionTracker::default();
        mid.observe(0, h(1, 7), 9, false);
        assert_eq!(join_segments(vec![mid, later]).missing_in_sequence, 0);
    }

    #[test]
    fn verdict_flags_count_mismatches_and_partitions_never_read() {
        let key = |p| ("t".to_string(), p);
        let mut seen = BTreeMap::new();
        let mut t = PartitionTracker::default();
        t.observe(0, h(1, 0), 9, true);
        seen.insert(key(0), t);
        let acked = BTreeMap::from([(key(0), 1), (key(1), 5)]);
        let v = verdicts(&acked, &seen, true, false);
        assert!(v[0].ok);
        assert!(!v[1].ok, "5 acked, none consumed");
        assert_eq!(v[1].consumed, 0);
        let v = verdicts(&BTreeMap::new(), &seen, false, false);
        assert!(v[0].ok, "consume-only: no count comparison");
        // A commit marker at offset 1: a gap, failed unless the run is transactional.
        let mut t = PartitionTracker::default();
        t.observe(0, h(1, 0), 9, true);
        t.observe(2, h(1, 1), 9, true);
        let seen = BTreeMap::from([(key(0), t)]);
        let acked = BTreeMap::from([(key(0), 2)]);
        assert!(!verdicts(&acked, &seen, true, false)[0].ok);
        assert!(verdicts(&acked, &seen, true, true)[0].ok);
    }
}
