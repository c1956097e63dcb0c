//! Kafka's sparse offset index for one log segment (the `.index` file), plus the segment file
//! naming scheme shared by `.log`, `.index` and `.timeindex` files.
//!
//! Owns: the in-memory entries of one segment's offset index, the binary search over them, and
//! the exact on-disk byte format Kafka uses (8-byte entries, big-endian: relative offset as a
//! 4-byte int, then file position as a 4-byte int — see Kafka's `OffsetIndex`/`AbstractIndex`).
//! Also owns segment file names: 20 zero-padded decimal digits of the base offset plus a suffix
//! (Kafka's `LogFileUtils.filenamePrefixFromOffset`).
//!
//! Must never: do I/O (the caller reads and writes the bytes), panic on bytes read from disk
//! (`decode` returns `IndexCorruption` instead), allocate in proportion to a configured maximum
//! rather than to the entries actually present, or store an entry that breaks the ordering
//! invariant (offsets and positions both strictly increasing).

use std::fmt;

/// Bytes per offset index entry on disk.
pub const OFFSET_INDEX_ENTRY_BYTES: usize = 8;

/// Largest relative offset an index can hold. Kafka stores it as a signed 4-byte int
/// (`AbstractIndex.toRelative` rejects anything above `Integer.MAX_VALUE`).
pub const MAX_RELATIVE_OFFSET: i64 = i32::MAX as i64;

/// Largest file position an index entry can hold. Kafka reads positions as signed 4-byte ints,
/// and `segment.bytes` is an INT, so no real segment position exceeds this.
pub const MAX_POSITION: u32 = i32::MAX as u32;

/// Digits in a segment file name's base offset (`%020d`).
pub const SEGMENT_FILE_NAME_DIGITS: usize = 20;

pub const LOG_FILE_SUFFIX: &str = ".log";
pub const OFFSET_INDEX_FILE_SUFFIX: &str = ".index";
pub const TIME_INDEX_FILE_SUFFIX: &str = ".timeindex";
/// The aborted-transaction index ([`crate::txn_index`]).
pub const TXN_INDEX_FILE_SUFFIX: &str = ".txnindex";

/// One offset index entry: the record batch at `position` in the `.log` file holds `offset`
/// (sluice uses the batch's base offset), and no smaller offset lies after `position`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetIndexEntry {
    pub offset: i64,
    pub position: u32,
}

/// Index bytes that cannot be trusted (a torn write, a foreign file, bit rot). The caller
/// rebuilds the index from the log, as Kafka does on `CorruptIndexException`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexCorruption(pub String);

impl fmt::Display for IndexCorruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "corrupt index: {}", self.0)
    }
}

impl std::error::Error for IndexCorruption {}

/// The sparse offset index of one segment, held fully in memory.
///
/// Invariants: every entry's offset is in `[base_offset, base_offset + MAX_RELATIVE_OFFSET]`,
/// every position is `<= MAX_POSITION`, offsets and positions strictly increase, the entry
/// `{base_offset, 0}` is never stored (it is the implicit answer to any lookup below the first
/// entry, and on disk it is indistinguishable from preallocated zeroes), and
/// `entries.len() <= max_entries`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetIndex {
    base_offset: i64,
    entries: Vec<OffsetIndexEntry>,
    max_entries: usize,
}

impl OffsetIndex {
    /// An empty index for the segment starting at `base_offset` that may grow to
    /// `max_index_bytes` (rounded down to whole entries, like Kafka).
    pub fn new(base_offset: i64, max_index_bytes: usize) -> OffsetIndex {
        assert!(base_offset >= 0, "segment base offset must not be negative: {base_offset}");
        OffsetIndex { base_offset, entries: Vec::new(), max_entries: max_index_bytes / OFFSET_INDEX_ENTRY_BYTES }
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub fn entries(&self) -> &[OffsetIndexEntry] {
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

    /// Kafka's `isFull`: no room for another entry. The segment must roll.
    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.max_entries
    }

    pub fn last(&self) -> Option<OffsetIndexEntry> {
        self.entries.last().copied()
    }

    /// Whether `offset` fits this index's relative encoding (Kafka's `canAppendOffset`). When it
    /// does not, the segment must roll before a batch holding `offset` is appended.
    pub fn can_append_offset(&self, offset: i64) -> bool {
        relative_offset_fits(self.base_offset, offset)
    }

    /// Adds an entry. Returns false when the index is full, or — after a debug assertion — when
    /// the entry would break the ordering invariant (offset and position must both be strictly
    /// greater than the last entry's) or does not fit the relative encoding.
    ///
    /// `{base_offset, 0}` is accepted and not stored: it is what `lookup` already answers.
    pub fn append(&mut self, offset: i64, position: u32) -> bool {
        if self.is_full() {
            return false;
        }
        if self.entries.is_empty() && offset == self.base_offset && position == 0 {
            return true;
        }
        let in_range = relative_offset_fits(self.base_offset, offset) && position <= MAX_POSITION;
        let ordered = match self.entries.last() {
            None => true,
            Some(last) => offset > last.offset && position > last.position,
        };
        if !(in_range && ordered) {
            debug_assert!(
                false,
                "offset index append ({offset}, {position}) rejected: base {} last {:?}",
                self.base_offset,
                self.entries.last()
            );
            return false;
        }
        self.entries.push(OffsetIndexEntry { offset, position });
        debug_assert!(self.entries.len() <= self.max_entries);
        true
    }

    /// The entry with the largest offset `<= target_offset`, or `{base_offset, 0}` when there is
    /// none (Kafka's `OffsetIndex.lookup`). Reading from its position finds `target_offset` if
    /// the segment holds it.
    pub fn lookup(&self, target_offset: i64) -> OffsetIndexEntry {
        let after = self.entries.partition_point(|e| e.offset <= target_offset);
        if after == 0 {
            OffsetIndexEntry { offset: self.base_offset, position: 0 }
        } else {
            self.entries[after - 1]
        }
    }

    /// Removes every entry with offset `>= offset` (Kafka's `truncateTo`).
    pub fn truncate_to(&mut self, offset: i64) {
        let keep = self.entries.partition_point(|e| e.offset < offset);
        self.entries.truncate(keep);
    }

    /// Kafka's on-disk bytes for the entries present (no preallocated tail).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_INDEX_ENTRY_BYTES);
        for entry in &self.entries {
            let relative = entry.offset - self.base_offset;
            debug_assert!((0..=MAX_RELATIVE_OFFSET).contains(&relative));
            out.extend_from_slice(&(relative as u32).to_be_bytes());
            out.extend_from_slice(&entry.position.to_be_bytes());
        }
        out
    }

    /// Parses index bytes read from disk and checks them against the segment they index.
    ///
    /// Trailing all-zero entries are dropped: they are the preallocated tail of a file that was
    /// not trimmed (Kafka sizes a new index file to `max_index_bytes` up front). A leading
    /// `{base_offset, 0}` entry is dropped too, as it is implicit. The index may hold more
    /// entries than `max_index_bytes` allows when the config shrank since it was written; it is
    /// then full, as Kafka would treat it.
    ///
    /// Rejected: a length that is not a multiple of 8, a relative offset above
    /// `MAX_RELATIVE_OFFSET` (negative as Kafka reads it) or whose absolute offset overflows,
    /// a position above `MAX_POSITION` or `>= segment_size_bytes`, and offsets or positions that
    /// do not strictly increase.
    pub fn decode(
        base_offset: i64,
        bytes: &[u8],
        max_index_bytes: usize,
        segment_size_bytes: u64,
    ) -> Result<OffsetIndex, IndexCorruption> {
        if base_offset < 0 {
            return Err(IndexCorruption(format!("negative base offset {base_offset}")));
        }
        let partial_entry_bytes = bytes.len() % OFFSET_INDEX_ENTRY_BYTES;
        if partial_entry_bytes > 0 {
            return Err(IndexCorruption(format!(
                "offset index of {} bytes is not a multiple of {OFFSET_INDEX_ENTRY_BYTES}",
                bytes.len()
            )));
        }
        let used_bytes = trim_zero_entries(bytes, OFFSET_INDEX_ENTRY_BYTES);
        let count = used_bytes.len() / OFFSET_INDEX_ENTRY_BYTES;
        let mut entries: Vec<OffsetIndexEntry> = Vec::with_capacity(count);
        let mut previous: Option<OffsetIndexEntry> = None;
        for (slot, chunk) in used_bytes.chunks_exact(OFFSET_INDEX_ENTRY_BYTES).enumerate() {
            let relative = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let position = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            if i64::from(relative) > MAX_RELATIVE_OFFSET {
                return Err(IndexCorruption(format!("slot {slot}: relative offset {relative} is negative as an int")));
            }
            let Some(offset) = base_offset.checked_add(i64::from(relative)) else {
                return Err(IndexCorruption(format!("slot {slot}: offset {base_offset} + {relative} overflows")));
            };
            if position > MAX_POSITION {
                return Err(IndexCorruption(format!("slot {slot}: position {position} is negative as an int")));
            }
            if u64::from(position) >= segment_size_bytes {
                return Err(IndexCorruption(format!(
                    "slot {slot}: position {position} is not inside the {segment_size_bytes}-byte segment"
                )));
            }
            let entry = OffsetIndexEntry { offset, position };
            if let Some(prev) = previous {
                if entry.offset <= prev.offset {
                    return Err(IndexCorruption(format!(
                        "slot {slot}: offset {} does not increase past {}",
                        entry.offset, prev.offset
                    )));
                }
                if entry.position <= prev.position {
                    return Err(IndexCorruption(format!(
                        "slot {slot}: position {} does not increase past {}",
                        entry.position, prev.position
                    )));
                }
            }
            previous = Some(entry);
            let implicit = slot == 0 && offset == base_offset && position == 0;
            if !implicit {
                entries.push(entry);
            }
        }
        let max_entries = (max_index_bytes / OFFSET_INDEX_ENTRY_BYTES).max(entries.len());
        Ok(OffsetIndex { base_offset, entries, max_entries })
    }
}

fn relative_offset_fits(base_offset: i64, offset: i64) -> bool {
    match offset.checked_sub(base_offset) {
        Some(relative) => (0..=MAX_RELATIVE_OFFSET).contains(&relative),
        None => false,
    }
}

/// `bytes` without its trailing run of all-zero `entry_bytes`-sized entries.
/// `bytes.len()` must be a multiple of `entry_bytes`.
pub(crate) fn trim_zero_entries(bytes: &[u8], entry_bytes: usize) -> &[u8] {
    debug_assert!(entry_bytes > 0 && bytes.chunks_exact(entry_bytes).remainder().is_empty());
    let mut end = bytes.len();
    while end >= entry_bytes && bytes[end - entry_bytes..end].iter().all(|&b| b == 0) {
        end -= entry_bytes;
    }
    &bytes[..end]
}

/// Which file of a segment a name refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SegmentFileKind {
    Log,
    OffsetIndex,
    TimeIndex,
    TxnIndex,
}

impl SegmentFileKind {
    pub fn suffix(self) -> &'static str {
        match self {
            SegmentFileKind::Log => LOG_FILE_SUFFIX,
            SegmentFileKind::OffsetIndex => OFFSET_INDEX_FILE_SUFFIX,
            SegmentFileKind::TimeIndex => TIME_INDEX_FILE_SUFFIX,
            SegmentFileKind::TxnIndex => TXN_INDEX_FILE_SUFFIX,
        }
    }
}

/// `00000000000000000042.log` style name for `base_offset` (Kafka's `%020d` + suffix).
pub fn segment_file_name(base_offset: i64, kind: SegmentFileKind) -> String {
    assert!(base_offset >= 0, "segment base offset must not be negative: {base_offset}");
    format!("{base_offset:020}{}", kind.suffix())
}

pub fn log_file_name(base_offset: i64) -> String {
    segment_file_name(base_offset, SegmentFileKind::Log)
}

pub fn offset_index_file_name(base_offset: i64) -> String {
    segment_file_name(base_offset, SegmentFileKind::OffsetIndex)
}

pub fn time_index_file_name(base_offset: i64) -> String {
    segment_file_name(base_offset, SegmentFileKind::TimeIndex)
}

/// The base offset and kind of a segment file name, or `None` unless the name is exactly
/// 20 ASCII digits (a value `<= i64::MAX`) followed by `.log`, `.index`, `.timeindex` or
/// `.txnindex`. Other Kafka files (`.snapshot`, `.deleted`, `.cleaned`, `.swap`, ...) are `None`.
pub fn parse_segment_base_offset(file_name: &str) -> Option<(i64, SegmentFileKind)> {
    let digits = file_name.get(..SEGMENT_FILE_NAME_DIGITS)?;
    let suffix = &file_name[SEGMENT_FILE_NAME_DIGITS..];
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let kind = match suffix {
        LOG_FILE_SUFFIX => SegmentFileKind::Log,
        OFFSET_INDEX_FILE_SUFFIX => SegmentFileKind::OffsetIndex,
        TIME_INDEX_FILE_SUFFIX => SegmentFileKind::TimeIndex,
        TXN_INDEX_FILE_SUFFIX => SegmentFileKind::TxnIndex,
        _ => return None,
    };
    // 20 digits can exceed i64::MAX (19 digits); parse as u64 is also fallible, so go via i64.
    let base_offset: i64 = digits.parse().ok()?;
    debug_assert!(base_offset >= 0);
    Some((base_offset, kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BIG: usize = 1 << 20;

    fn index_with(entries: &[(i64, u32)]) -> OffsetIndex {
        let mut index = OffsetIndex::new(100, BIG);
        for &(offset, position) in entries {
            assert!(index.append(offset, position));
        }
        index
    }

    fn entry(offset: i64, position: u32) -> OffsetIndexEntry {
        OffsetIndexEntry { offset, position }
    }

    #[test]
    fn lookup_on_empty_index_returns_base() {
        let index = OffsetIndex::new(100, BIG);
        assert_eq!(index.lookup(0), entry(100, 0));
        assert_eq!(index.lookup(100), entry(100, 0));
        assert_eq!(index.lookup(i64::MAX), entry(100, 0));
        assert_eq!(index.lookup(i64::MIN), entry(100, 0));
    }

    #[test]
    fn lookup_boundaries() {
        let index = index_with(&[(110, 1000), (120, 2000), (130, 3000)]);
        // Before the first entry (and before the base offset).
        assert_eq!(index.lookup(50), entry(100, 0));
        assert_eq!(index.lookup(100), entry(100, 0));
        assert_eq!(index.lookup(109), entry(100, 0));
        // Exactly on entries.
        assert_eq!(index.lookup(110), entry(110, 1000));
        assert_eq!(index.lookup(120), entry(120, 2000));
        assert_eq!(index.lookup(130), entry(130, 3000));
        // Between entries.
        assert_eq!(index.lookup(111), entry(110, 1000));
        assert_eq!(index.lookup(129), entry(120, 2000));
        // After the last.
        assert_eq!(index.lookup(131), entry(130, 3000));
        assert_eq!(index.lookup(i64::MAX), entry(130, 3000));
    }

    #[test]
    fn truncate_at_inside_after() {
        let base = index_with(&[(110, 1000), (120, 2000), (130, 3000)]);

        let mut at = base.clone();
        at.truncate_to(120);
        assert_eq!(at.entries(), &[entry(110, 1000)]);

        let mut inside = base.clone();
        inside.truncate_to(125);
        assert_eq!(inside.entries(), &[entry(110, 1000), entry(120, 2000)]);

        let mut after = base.clone();
        after.truncate_to(131);
        assert_eq!(after, base);

        let mut all = base.clone();
        all.truncate_to(100);
        assert!(all.is_empty());
        assert_eq!(all.lookup(130), entry(100, 0));

        let mut below = base.clone();
        below.truncate_to(0);
        assert!(below.is_empty());

        // Appending continues after a truncation.
        let mut again = base;
        again.truncate_to(120);
        assert!(again.append(115, 1500));
        assert_eq!(again.last(), Some(entry(115, 1500)));
    }

    #[test]
    fn full_index_refuses_appends() {
        let mut index = OffsetIndex::new(0, 3 * OFFSET_INDEX_ENTRY_BYTES + 7);
        assert_eq!(index.max_entries(), 3);
        assert!(index.append(1, 10));
        assert!(index.append(2, 20));
        assert!(!index.is_full());
        assert!(index.append(3, 30));
        assert!(index.is_full());
        assert!(!index.append(4, 40));
        assert_eq!(index.len(), 3);
        index.truncate_to(3);
        assert!(!index.is_full());
        assert!(index.append(4, 40));
    }

    #[test]
    fn zero_sized_index_is_always_full() {
        let mut index = OffsetIndex::new(0, 4);
        assert!(index.is_full());
        assert!(!index.append(1, 10));
    }

    #[test]
    fn implicit_base_entry_is_not_stored() {
        let mut index = OffsetIndex::new(100, BIG);
        assert!(index.append(100, 0));
        assert!(index.is_empty());
        assert!(index.append(100, 50));
        assert_eq!(index.lookup(100), entry(100, 50));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic]
    fn non_increasing_offset_panics_in_debug() {
        let mut index = index_with(&[(110, 1000)]);
        index.append(110, 2000);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic]
    fn non_increasing_position_panics_in_debug() {
        let mut index = index_with(&[(110, 1000)]);
        index.append(111, 1000);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic]
    fn offset_below_base_panics_in_debug() {
        let mut index = OffsetIndex::new(100, BIG);
        index.append(99, 10);
    }

    #[test]
    #[cfg(not(debug_assertions))]
    fn bad_appends_return_false_in_release() {
        let mut index = index_with(&[(110, 1000)]);
        assert!(!index.append(110, 2000));
        assert!(!index.append(111, 1000));
        assert!(!index.append(99, 1001));
        assert!(!index.append(100 + MAX_RELATIVE_OFFSET + 1, 1001));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn relative_offset_limit() {
        let index = OffsetIndex::new(100, BIG);
        assert!(index.can_append_offset(100));
        assert!(index.can_append_offset(100 + MAX_RELATIVE_OFFSET));
        assert!(!index.can_append_offset(100 + MAX_RELATIVE_OFFSET + 1));
        assert!(!index.can_append_offset(99));
        assert!(!index.can_append_offset(i64::MIN));
        let mut index = index;
        assert!(index.append(100 + MAX_RELATIVE_OFFSET, 7));
        let decoded = OffsetIndex::decode(100, &index.encode(), BIG, 8).unwrap();
        assert_eq!(decoded, index);
    }

    #[test]
    fn encode_matches_kafka_layout() {
        let index = index_with(&[(110, 1000), (356, 0x0102_0304)]);
        assert_eq!(index.encode(), vec![0, 0, 0, 10, 0, 0, 0x03, 0xe8, 0, 0, 1, 0, 1, 2, 3, 4],);
    }

    #[test]
    fn decode_ignores_preallocated_tail() {
        let index = index_with(&[(110, 1000), (120, 2000)]);
        let mut bytes = index.encode();
        bytes.resize(bytes.len() + 10 * OFFSET_INDEX_ENTRY_BYTES, 0);
        let decoded = OffsetIndex::decode(100, &bytes, BIG, 5000).unwrap();
        assert_eq!(decoded, index);

        let empty = OffsetIndex::decode(100, &[0u8; 800], BIG, 5000).unwrap();
        assert!(empty.is_empty());
        let empty = OffsetIndex::decode(100, &[], BIG, 0).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn decode_drops_leading_implicit_entry() {
        let bytes = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 9];
        let decoded = OffsetIndex::decode(100, &bytes, BIG, 100).unwrap();
        assert_eq!(decoded.entries(), &[entry(105, 9)]);
    }

    #[test]
    fn decode_keeps_oversized_index_but_full() {
        let index = index_with(&[(110, 1000), (120, 2000), (130, 3000)]);
        let decoded = OffsetIndex::decode(100, &index.encode(), 8, 5000).unwrap();
        assert_eq!(decoded.len(), 3);
        assert!(decoded.is_full());
    }

    #[test]
    fn decode_rejects_corruption() {
        let ok = index_with(&[(110, 1000), (120, 2000)]).encode();
        let cases: Vec<(&str, Vec<u8>, u64)> = vec![
            ("length not a multiple of 8", ok[..ok.len() - 1].to_vec(), 5000),
            ("offsets not increasing", [&ok[8..16], &ok[0..8]].concat(), 5000),
            ("offsets equal", [&ok[0..8], &[0, 0, 0, 10, 0, 0, 0x0f, 0]].concat(), 5000),
            ("positions not increasing", [&ok[0..8], &[0, 0, 0, 20, 0, 0, 0x03, 0xe8]].concat(), 5000),
            ("position past segment end", ok.clone(), 2000),
            ("position negative as int", vec![0, 0, 0, 1, 0x80, 0, 0, 0], u64::MAX),
            ("relative offset negative as int", vec![0x80, 0, 0, 0, 0, 0, 0, 1], 5000),
        ];
        for (what, bytes, segment_size_bytes) in cases {
            assert!(OffsetIndex::decode(100, &bytes, BIG, segment_size_bytes).is_err(), "{what}");
        }
        // Absolute offset overflow.
        let near_max = i64::MAX - 5;
        assert!(OffsetIndex::decode(near_max, &[0, 0, 0, 9, 0, 0, 0, 1], BIG, 10).is_err());
        assert!(OffsetIndex::decode(-1, &[], BIG, 10).is_err());
        let err = OffsetIndex::decode(100, &ok, BIG, 2000).unwrap_err();
        assert!(err.to_string().contains("position 2000"), "{err}");
    }

    #[test]
    fn file_names() {
        assert_eq!(log_file_name(0), "00000000000000000000.log");
        assert_eq!(offset_index_file_name(0), "00000000000000000000.index");
        assert_eq!(time_index_file_name(42), "00000000000000000042.timeindex");
        assert_eq!(log_file_name(i64::MAX), "09223372036854775807.log");
        assert_eq!(parse_segment_base_offset("00000000000000000042.log"), Some((42, SegmentFileKind::Log)));
        assert_eq!(parse_segment_base_offset("00000000000000000042.index"), Some((42, SegmentFileKind::OffsetIndex)));
        assert_eq!(
            parse_segment_base_offset("09223372036854775807.timeindex"),
            Some((i64::MAX, SegmentFileKind::TimeIndex))
        );
        for bad in [
            "",
            ".log",
            "0000000000000000042.log",
            "000000000000000000042.log",
            "0000000000000000004a.log",
            "+0000000000000000042.log",
            "-0000000000000000042.log",
            "00000000000000000042.snapshot",
            "00000000000000000042.log.deleted",
            "00000000000000000042.log.swap",
            "00000000000000000042.LOG",
            "00000000000000000042",
            "09223372036854775808.log",
            "99999999999999999999.log",
            "0000000000000000004é.log",
            "leader-epoch-checkpoint",
        ] {
            assert_eq!(parse_segment_base_offset(bad), None, "{bad:?}");
        }
        for kind in [SegmentFileKind::Log, SegmentFileKind::OffsetIndex, SegmentFileKind::TimeIndex] {
            for base in [0, 1, 99, 1 << 40, i64::MAX] {
                assert_eq!(parse_segment_base_offset(&segment_file_name(base, kind)), Some((base, kind)));
            }
        }
    }

    /// Naive model: linear scan for the last entry with offset <= target.
    fn model_lookup(base_offset: i64, entries: &[OffsetIndexEntry], target: i64) -> OffsetIndexEntry {
        let mut found = OffsetIndexEntry { offset: base_offset, position: 0 };
        for e in entries {
            if e.offset <= target {
                found = *e;
            }
        }
        found
    }

    /// Strictly increasing (offset, position) pairs starting above the base offset.
    fn increasing_entries(base_offset: i64) -> impl Strategy<Value = Vec<(i64, u32)>> {
        prop::collection::vec((1i64..50, 1u32..5000), 0..200).prop_map(move |steps| {
            let mut offset = base_offset;
            let mut position = 0u32;
            steps
                .into_iter()
                .map(|(d_offset, d_position)| {
                    offset += d_offset;
                    position += d_position;
                    (offset, position)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn prop_lookup_matches_linear_model(
            base_offset in 0i64..1_000_000,
            raw in increasing_entries(0),
            max_entries in 0usize..250,
            targets in prop::collection::vec(-10i64..20_000, 1..50),
        ) {
            let mut index = OffsetIndex::new(base_offset, max_entries * OFFSET_INDEX_ENTRY_BYTES);
            let mut model: Vec<OffsetIndexEntry> = Vec::new();
            for (offset, position) in raw {
                let offset = base_offset + offset;
                let appended = index.append(offset, position);
                prop_assert_eq!(appended, model.len() < max_entries);
                if appended {
                    model.push(OffsetIndexEntry { offset, position });
                }
            }
            prop_assert_eq!(index.entries(), &model[..]);
            for target in targets {
                let target = base_offset + target;
                prop_assert_eq!(index.lookup(target), model_lookup(base_offset, &model, target));
            }
        }

        #[test]
        fn prop_truncate_matches_model(raw in increasing_entries(100), cut in 0i64..12_000) {
            let mut index = OffsetIndex::new(100, BIG);
            for &(offset, position) in &raw {
                prop_assert!(index.append(offset, position));
            }
            index.truncate_to(cut);
            let expected: Vec<OffsetIndexEntry> = raw
                .iter()
                .filter(|(offset, _)| *offset < cut)
                .map(|&(offset, position)| OffsetIndexEntry { offset, position })
                .collect();
            prop_assert_eq!(index.entries(), &expected[..]);
        }

        #[test]
        fn prop_encode_decode_round_trip(
            base_offset in 0i64..(1 << 40),
            raw in increasing_entries(0),
            padding_entries in 0usize..20,
        ) {
            let mut index = OffsetIndex::new(base_offset, BIG);
            for (offset, position) in raw {
                prop_assert!(index.append(base_offset + offset, position));
            }
            let mut bytes = index.encode();
            prop_assert_eq!(bytes.len(), index.len() * OFFSET_INDEX_ENTRY_BYTES);
            bytes.resize(bytes.len() + padding_entries * OFFSET_INDEX_ENTRY_BYTES, 0);
            let segment_size_bytes = index.last().map_or(0, |e| u64::from(e.position) + 1);
            let decoded = OffsetIndex::decode(base_offset, &bytes, BIG, segment_size_bytes).unwrap();
            prop_assert_eq!(decoded, index);
        }

        #[test]
        fn prop_decode_never_panics(
            base_offset in prop_oneof![Just(0i64), Just(i64::MAX), any::<i64>()],
            bytes in prop::collection::vec(any::<u8>(), 0..256),
            segment_size_bytes in any::<u64>(),
            max_index_bytes in 0usize..4096,
        ) {
            if let Ok(index) = OffsetIndex::decode(base_offset, &bytes, max_index_bytes, segment_size_bytes) {
                // Whatever decodes must satisfy the invariants and re-encode to its own bytes.
                for pair in index.entries().windows(2) {
                    prop_assert!(pair[0].offset < pair[1].offset);
                    prop_assert!(pair[0].position < pair[1].position);
                }
                prop_assert!(index.len() <= index.max_entries());
                let again = OffsetIndex::decode(base_offset, &index.encode(), max_index_bytes, segment_size_bytes);
                prop_assert_eq!(again, Ok(index));
            }
        }
    }
}
