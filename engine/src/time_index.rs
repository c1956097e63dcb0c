//! Kafka's time index for one log segment (the `.timeindex` file).
//!
//! Owns: the in-memory entries of one segment's time index, the binary search over them, and
//! Kafka's on-disk byte format (12-byte entries, big-endian: timestamp as an 8-byte long, then
//! the offset relative to the segment base as a 4-byte int — see Kafka's `TimeIndex`). Each
//! entry says "the largest timestamp in the segment up to and including the batch holding
//! `offset` is `timestamp_ms`"; entries are only added when the timestamp grows.
//!
//! Must never: do I/O, panic on bytes read from disk (`decode` returns `IndexCorruption`),
//! allocate in proportion to the configured maximum rather than to the entries present, or
//! store entries whose timestamps or offsets go backwards.

use crate::offset_index::{trim_zero_entries, IndexCorruption, MAX_RELATIVE_OFFSET};

/// Bytes per time index entry on disk.
pub const TIME_INDEX_ENTRY_BYTES: usize = 12;

/// Kafka's `RecordBatch.NO_TIMESTAMP`: what `lookup` reports when no entry qualifies.
pub const NO_TIMESTAMP: i64 = -1;

/// One time index entry: the largest timestamp among batches up to the one holding `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeIndexEntry {
    pub timestamp_ms: i64,
    pub offset: i64,
}

/// The time index of one segment, held fully in memory.
///
/// Invariants: timestamps are `> NO_TIMESTAMP` and non-decreasing (strictly increasing for
/// entries added by `maybe_append`; a file written elsewhere may repeat one), offsets are
/// non-decreasing and within `[base_offset, base_offset + MAX_RELATIVE_OFFSET]`, and
/// `entries.len() <= max_entries`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeIndex {
    base_offset: i64,
    entries: Vec<TimeIndexEntry>,
    max_entries: usize,
}

impl TimeIndex {
    /// An empty index for the segment starting at `base_offset` that may grow to
    /// `max_index_bytes` (rounded down to whole entries, like Kafka).
    pub fn new(base_offset: i64, max_index_bytes: usize) -> TimeIndex {
        assert!(base_offset >= 0, "segment base offset must not be negative: {base_offset}");
        TimeIndex { base_offset, entries: Vec::new(), max_entries: max_index_bytes / TIME_INDEX_ENTRY_BYTES }
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub fn entries(&self) -> &[TimeIndexEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Kafka's `TimeIndex.isFull`: true one slot early, keeping the last slot for the entry
    /// written when the segment rolls (`maybe_append_on_roll`). The segment must roll.
    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.max_entries.saturating_sub(1)
    }

    pub fn last(&self) -> Option<TimeIndexEntry> {
        self.entries.last().copied()
    }

    /// Kafka's `lastEntry`: the last entry, or `{NO_TIMESTAMP, base_offset}` when empty.
    pub fn last_entry(&self) -> TimeIndexEntry {
        self.last().unwrap_or(TimeIndexEntry { timestamp_ms: NO_TIMESTAMP, offset: self.base_offset })
    }

    /// Records that the largest timestamp seen so far in the segment is `max_timestamp_ms`, held
    /// by the batch at `offset` (Kafka's `maybeAppend`). Appends — and returns true — only when
    /// `max_timestamp_ms` is greater than the last entry's timestamp (`NO_TIMESTAMP` when empty)
    /// and the index is not full. A timestamp that does not grow is ignored, not an error.
    ///
    /// Debug-asserts (and returns false) when `offset` is below the last entry's offset while the
    /// timestamp grows, or outside the relative encoding: Kafka throws for both.
    pub fn maybe_append(&mut self, max_timestamp_ms: i64, offset: i64) -> bool {
        if self.is_full() {
            return false;
        }
        self.append_unchecked_full(max_timestamp_ms, offset)
    }

    /// `maybe_append` that may also use the slot `is_full` keeps in reserve (Kafka's
    /// `maybeAppend(timestamp, offset, skipFullCheck = true)`, called from
    /// `LogSegment.onBecomeInactiveSegment`). Still never exceeds `max_entries`.
    pub fn maybe_append_on_roll(&mut self, max_timestamp_ms: i64, offset: i64) -> bool {
        if self.entries.len() >= self.max_entries {
            return false;
        }
        self.append_unchecked_full(max_timestamp_ms, offset)
    }

    fn append_unchecked_full(&mut self, max_timestamp_ms: i64, offset: i64) -> bool {
        let last = self.last_entry();
        if max_timestamp_ms <= last.timestamp_ms {
            return false;
        }
        let in_range =
            offset.checked_sub(self.base_offset).is_some_and(|relative| (0..=MAX_RELATIVE_OFFSET).contains(&relative));
        let ordered = self.entries.is_empty() || offset >= last.offset;
        if !(in_range && ordered) {
            debug_assert!(
                false,
                "time index append ({max_timestamp_ms}, {offset}) rejected: base {} last {:?}",
                self.base_offset,
                self.entries.last()
            );
            return false;
        }
        self.entries.push(TimeIndexEntry { timestamp_ms: max_timestamp_ms, offset });
        debug_assert!(self.entries.len() <= self.max_entries);
        true
    }

    /// The entry with the largest timestamp `<= target_ms`, or `{NO_TIMESTAMP, base_offset}`
    /// when there is none (Kafka's `TimeIndex.lookup`). Where timestamps repeat, the last such
    /// entry wins, as in Kafka's largest-lower-bound search.
    pub fn lookup(&self, target_ms: i64) -> TimeIndexEntry {
        let after = self.entries.partition_point(|e| e.timestamp_ms <= target_ms);
        if after == 0 {
            TimeIndexEntry { timestamp_ms: NO_TIMESTAMP, offset: self.base_offset }
        } else {
            self.entries[after - 1]
        }
    }

    /// Removes every entry with offset `>= offset` (Kafka's `TimeIndex.truncateTo`).
    pub fn truncate_to(&mut self, offset: i64) {
        let keep = self.entries.partition_point(|e| e.offset < offset);
        self.entries.truncate(keep);
    }

    /// Kafka's on-disk bytes for the entries present (no preallocated tail).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_INDEX_ENTRY_BYTES);
        for entry in &self.entries {
            let relative = entry.offset - self.base_offset;
            debug_assert!((0..=MAX_RELATIVE_OFFSET).contains(&relative));
            out.extend_from_slice(&entry.timestamp_ms.to_be_bytes());
            out.extend_from_slice(&(relative as u32).to_be_bytes());
        }
        out
    }

    /// Parses time index bytes read from disk.
    ///
    /// Trailing all-zero entries are dropped as a preallocated tail. (A genuine last entry of
    /// timestamp 0 at the base offset is dropped with them; lookups then answer
    /// `{NO_TIMESTAMP, base_offset}` instead of `{0, base_offset}`, the same place to scan
    /// from.) An index larger than `max_index_bytes` is kept, and is full.
    ///
    /// Rejected: a length that is not a multiple of 12, a timestamp `<= NO_TIMESTAMP`, a
    /// relative offset above `MAX_RELATIVE_OFFSET` or whose absolute offset overflows, and
    /// timestamps or offsets that decrease.
    pub fn decode(base_offset: i64, bytes: &[u8], max_index_bytes: usize) -> Result<TimeIndex, IndexCorruption> {
        if base_offset < 0 {
            return Err(IndexCorruption(format!("negative base offset {base_offset}")));
        }
        let partial_entry_bytes = bytes.len() % TIME_INDEX_ENTRY_BYTES;
        if partial_entry_bytes > 0 {
            return Err(IndexCorruption(format!(
                "time index of {} bytes is not a multiple of {TIME_INDEX_ENTRY_BYTES}",
                bytes.len()
            )));
        }
        let used_bytes = trim_zero_entries(bytes, TIME_INDEX_ENTRY_BYTES);
        let mut entries: Vec<TimeIndexEntry> = Vec::with_capacity(used_bytes.len() / TIME_INDEX_ENTRY_BYTES);
        for (slot, chunk) in used_bytes.chunks_exact(TIME_INDEX_ENTRY_BYTES).enumerate() {
            let mut timestamp_bytes = [0u8; 8];
            timestamp_bytes.copy_from_slice(&chunk[..8]);
            let timestamp_ms = i64::from_be_bytes(timestamp_bytes);
            let relative = u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]);
            if timestamp_ms <= NO_TIMESTAMP {
                return Err(IndexCorruption(format!("slot {slot}: timestamp {timestamp_ms} is not a real timestamp")));
            }
            if i64::from(relative) > MAX_RELATIVE_OFFSET {
                return Err(IndexCorruption(format!("slot {slot}: relative offset {relative} is negative as an int")));
            }
            let Some(offset) = base_offset.checked_add(i64::from(relative)) else {
                return Err(IndexCorruption(format!("slot {slot}: offset {base_offset} + {relative} overflows")));
            };
            if let Some(prev) = entries.last() {
                if timestamp_ms < prev.timestamp_ms {
                    return Err(IndexCorruption(format!(
                        "slot {slot}: timestamp {timestamp_ms} is below the previous {}",
                        prev.timestamp_ms
                    )));
                }
                if offset < prev.offset {
                    return Err(IndexCorruption(format!(
                        "slot {slot}: offset {offset} is below the previous {}",
                        prev.offset
                    )));
                }
            }
            entries.push(TimeIndexEntry { timestamp_ms, offset });
        }
        let max_entries = (max_index_bytes / TIME_INDEX_ENTRY_BYTES).max(entries.len());
        Ok(TimeIndex { base_offset, entries, max_entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BIG: usize = 1 << 20;

    fn entry(timestamp_ms: i64, offset: i64) -> TimeIndexEntry {
        TimeIndexEntry { timestamp_ms, offset }
    }

    fn index_with(entries: &[(i64, i64)]) -> TimeIndex {
        let mut index = TimeIndex::new(100, BIG);
        for &(timestamp_ms, offset) in entries {
            assert!(index.maybe_append(timestamp_ms, offset));
        }
        index
    }

    #[test]
    fn lookup_on_empty_index() {
        let index = TimeIndex::new(100, BIG);
        assert_eq!(index.lookup(0), entry(NO_TIMESTAMP, 100));
        assert_eq!(index.lookup(i64::MAX), entry(NO_TIMESTAMP, 100));
        assert_eq!(index.lookup(i64::MIN), entry(NO_TIMESTAMP, 100));
        assert_eq!(index.last(), None);
        assert_eq!(index.last_entry(), entry(NO_TIMESTAMP, 100));
    }

    #[test]
    fn lookup_boundaries() {
        let index = index_with(&[(1_000, 100), (2_000, 110), (3_000, 120)]);
        assert_eq!(index.lookup(999), entry(NO_TIMESTAMP, 100));
        assert_eq!(index.lookup(-5), entry(NO_TIMESTAMP, 100));
        assert_eq!(index.lookup(1_000), entry(1_000, 100));
        assert_eq!(index.lookup(1_500), entry(1_000, 100));
        assert_eq!(index.lookup(2_000), entry(2_000, 110));
        assert_eq!(index.lookup(2_999), entry(2_000, 110));
        assert_eq!(index.lookup(3_000), entry(3_000, 120));
        assert_eq!(index.lookup(i64::MAX), entry(3_000, 120));
    }

    #[test]
    fn maybe_append_only_when_timestamp_grows() {
        let mut index = TimeIndex::new(100, BIG);
        // NO_TIMESTAMP and below never start an index (message format v0 has no timestamps).
        assert!(!index.maybe_append(NO_TIMESTAMP, 100));
        assert!(!index.maybe_append(-7, 100));
        // Offsets below the base are not checked when nothing would be appended.
        assert!(!index.maybe_append(NO_TIMESTAMP, -1));
        assert!(index.maybe_append(0, 100));
        assert!(!index.maybe_append(0, 105));
        assert!(index.maybe_append(10, 105));
        assert!(!index.maybe_append(9, 106));
        assert!(!index.maybe_append(10, 106));
        // Same offset, larger timestamp: allowed (Kafka only rejects offsets that go back).
        assert!(index.maybe_append(11, 105));
        assert_eq!(index.entries(), &[entry(0, 100), entry(10, 105), entry(11, 105)]);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic]
    fn offset_going_back_panics_in_debug() {
        let mut index = index_with(&[(10, 110)]);
        index.maybe_append(20, 109);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic]
    fn offset_below_base_panics_in_debug() {
        let mut index = TimeIndex::new(100, BIG);
        index.maybe_append(20, 99);
    }

    #[test]
    #[cfg(not(debug_assertions))]
    fn bad_appends_return_false_in_release() {
        let mut index = index_with(&[(10, 110)]);
        assert!(!index.maybe_append(20, 109));
        assert!(!index.maybe_append(20, 100 + MAX_RELATIVE_OFFSET + 1));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn full_index_keeps_a_slot_for_roll() {
        let mut index = TimeIndex::new(0, 3 * TIME_INDEX_ENTRY_BYTES + 11);
        assert_eq!(index.max_entries(), 3);
        assert!(index.maybe_append(1, 1));
        assert!(!index.is_full());
        assert!(index.maybe_append(2, 2));
        assert!(index.is_full());
        assert!(!index.maybe_append(3, 3));
        assert!(index.maybe_append_on_roll(3, 3));
        assert!(!index.maybe_append_on_roll(4, 4));
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn tiny_index_is_always_full() {
        let mut index = TimeIndex::new(0, TIME_INDEX_ENTRY_BYTES);
        assert!(index.is_full());
        assert!(!index.maybe_append(1, 1));
        assert!(index.maybe_append_on_roll(1, 1));
        let mut index = TimeIndex::new(0, 0);
        assert!(index.is_full());
        assert!(!index.maybe_append_on_roll(1, 1));
    }

    #[test]
    fn truncate_at_inside_after() {
        let base = index_with(&[(1_000, 100), (2_000, 110), (3_000, 120)]);

        let mut at = base.clone();
        at.truncate_to(110);
        assert_eq!(at.entries(), &[entry(1_000, 100)]);
        // The next append compares against the new last entry.
        assert!(at.maybe_append(1_500, 105));

        let mut inside = base.clone();
        inside.truncate_to(115);
        assert_eq!(inside.entries(), &[entry(1_000, 100), entry(2_000, 110)]);

        let mut after = base.clone();
        after.truncate_to(121);
        assert_eq!(after, base);

        let mut all = base;
        all.truncate_to(100);
        assert!(all.is_empty());
        assert_eq!(all.lookup(5_000), entry(NO_TIMESTAMP, 100));
    }

    #[test]
    fn encode_matches_kafka_layout() {
        let index = index_with(&[(0x0102_0304_0506_0708, 356)]);
        assert_eq!(index.encode(), vec![1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 1, 0]);
    }

    #[test]
    fn decode_ignores_preallocated_tail() {
        let index = index_with(&[(1_000, 100), (2_000, 110)]);
        let mut bytes = index.encode();
        bytes.resize(bytes.len() + 5 * TIME_INDEX_ENTRY_BYTES, 0);
        assert_eq!(TimeIndex::decode(100, &bytes, BIG).unwrap(), index);
        assert!(TimeIndex::decode(100, &[0u8; 120], BIG).unwrap().is_empty());
        assert!(TimeIndex::decode(100, &[], BIG).unwrap().is_empty());
        // A leading zero entry that is not trailing is a real entry (timestamp 0 at the base).
        let zero_then_more = [vec![0u8; 12], index.encode()].concat();
        let decoded = TimeIndex::decode(100, &zero_then_more, BIG).unwrap();
        assert_eq!(decoded.entries()[0], entry(0, 100));
        assert_eq!(decoded.len(), 3);
    }

    #[test]
    fn decode_allows_repeated_values_from_foreign_files() {
        let bytes = [
            [0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 2],
            [0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 2],
        ]
        .concat();
        let index = TimeIndex::decode(100, &bytes, BIG).unwrap();
        assert_eq!(index.lookup(5), entry(5, 102));
        assert_eq!(index.lookup(7), entry(6, 102));
    }

    #[test]
    fn decode_rejects_corruption() {
        let ok = index_with(&[(1_000, 100), (2_000, 110)]).encode();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("length not a multiple of 12", ok[..ok.len() - 1].to_vec()),
            ("timestamps decrease", [&ok[12..24], &ok[0..12]].concat()),
            ("offsets decrease", [&ok[12..24], &[0, 0, 0, 0, 0, 0, 0x0f, 0, 0, 0, 0, 5]].concat()),
            ("negative timestamp", vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1]),
            ("relative offset negative as int", vec![0, 0, 0, 0, 0, 0, 0, 1, 0x80, 0, 0, 0]),
        ];
        for (what, bytes) in cases {
            assert!(TimeIndex::decode(100, &bytes, BIG).is_err(), "{what}");
        }
        assert!(TimeIndex::decode(i64::MAX - 1, &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9], BIG).is_err());
        assert!(TimeIndex::decode(-1, &[], BIG).is_err());
    }

    fn model_lookup(base_offset: i64, entries: &[TimeIndexEntry], target_ms: i64) -> TimeIndexEntry {
        let mut found = TimeIndexEntry { timestamp_ms: NO_TIMESTAMP, offset: base_offset };
        for e in entries {
            if e.timestamp_ms <= target_ms {
                found = *e;
            }
        }
        found
    }

    proptest! {
        #[test]
        fn prop_matches_linear_model(
            base_offset in 0i64..1_000_000,
            // (timestamp_ms, offset step) where timestamps wander and offsets never go back.
            steps in prop::collection::vec((-5i64..3_000, 0i64..20), 0..200),
            max_entries in 0usize..250,
            targets in prop::collection::vec(-10i64..4_000, 1..50),
        ) {
            let mut index = TimeIndex::new(base_offset, max_entries * TIME_INDEX_ENTRY_BYTES);
            let mut model: Vec<TimeIndexEntry> = Vec::new();
            let mut offset = base_offset;
            let mut max_timestamp_ms = NO_TIMESTAMP;
            for (timestamp_ms, d_offset) in steps {
                offset += d_offset;
                max_timestamp_ms = max_timestamp_ms.max(timestamp_ms);
                let grows = max_timestamp_ms > model.last().map_or(NO_TIMESTAMP, |e| e.timestamp_ms);
                let room = model.len() < max_entries.saturating_sub(1);
                prop_assert_eq!(index.maybe_append(max_timestamp_ms, offset), grows && room);
                if grows && room {
                    model.push(TimeIndexEntry { timestamp_ms: max_timestamp_ms, offset });
                }
            }
            prop_assert_eq!(index.entries(), &model[..]);
            for target in targets {
                prop_assert_eq!(index.lookup(target), model_lookup(base_offset, &model, target));
            }
        }

        #[test]
        fn prop_encode_decode_round_trip(
            base_offset in 0i64..(1 << 40),
            steps in prop::collection::vec((1i64..1_000, 0i64..20), 0..200),
            padding_entries in 0usize..20,
            cut in 0i64..5_000,
        ) {
            let mut index = TimeIndex::new(base_offset, BIG);
            let (mut timestamp_ms, mut offset) = (0i64, base_offset);
            for (d_ts, d_offset) in steps {
                timestamp_ms += d_ts;
                offset += d_offset;
                prop_assert!(index.maybe_append(timestamp_ms, offset));
            }
            if cut % 2 == 0 {
                index.truncate_to(base_offset + cut);
                prop_assert!(index.entries().iter().all(|e| e.offset < base_offset + cut));
            }
            let mut bytes = index.encode();
            bytes.resize(bytes.len() + padding_entries * TIME_INDEX_ENTRY_BYTES, 0);
            prop_assert_eq!(TimeIndex::decode(base_offset, &bytes, BIG).unwrap(), index);
        }

        #[test]
        fn prop_decode_never_panics(
            base_offset in prop_oneof![Just(0i64), Just(i64::MAX), any::<i64>()],
            bytes in prop::collection::vec(any::<u8>(), 0..256),
            max_index_bytes in 0usize..4096,
        ) {
            if let Ok(index) = TimeIndex::decode(base_offset, &bytes, max_index_bytes) {
                for pair in index.entries().windows(2) {
                    prop_assert!(pair[0].timestamp_ms <= pair[1].timestamp_ms);
                    prop_assert!(pair[0].offset <= pair[1].offset);
                }
                prop_assert!(index.len() <= index.max_entries());
                let again = TimeIndex::decode(base_offset, &index.encode(), max_index_bytes);
                prop_assert_eq!(again, Ok(index));
            }
        }
    }
}
