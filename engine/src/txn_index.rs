//! The aborted-transaction index of a segment (`<base offset>.txnindex`, Kafka's
//! `TransactionIndex`): one 34-byte entry per transaction whose abort marker is in the segment
//! — version (`int16`, 0), producer id, first offset, last offset (the marker's), and the last
//! stable offset when the marker was written, big-endian. A read_committed Fetch returns the
//! entries that overlap the range it reads, and the client drops those producers' records.
//!
//! Owns: the entries of one segment, their file encoding, and the overlap lookup. Must never:
//! do I/O, or trust a length from disk (a file is whole entries or it is refused).

use std::path::{Path, PathBuf};

use crate::offset_index::{segment_file_name, SegmentFileKind};

/// Bytes of one entry on disk (Kafka's `AbortedTxn.TOTAL_SIZE`).
pub const TXN_INDEX_ENTRY_BYTES: usize = 2 + 8 + 8 + 8 + 8;
const ENTRY_VERSION: i16 = 0;

/// One aborted transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// Offset of the abort marker.
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&ENTRY_VERSION.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.first_offset.to_be_bytes());
        out.extend_from_slice(&self.last_offset.to_be_bytes());
        out.extend_from_slice(&self.last_stable_offset.to_be_bytes());
    }

    fn decode(bytes: &[u8; TXN_INDEX_ENTRY_BYTES]) -> Option<AbortedTxn> {
        let i64_at = |at: usize| i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        if i16::from_be_bytes([bytes[0], bytes[1]]) != ENTRY_VERSION {
            return None;
        }
        let entry = AbortedTxn {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        };
        (entry.first_offset >= 0 && entry.first_offset <= entry.last_offset).then_some(entry)
    }

    /// Kafka's overlap rule (`TransactionIndex.collectAbortedTxns`): the transaction ends at
    /// or after `fetch_offset` and starts before `upper_bound_offset`.
    pub fn overlaps(&self, fetch_offset: i64, upper_bound_offset: i64) -> bool {
        self.last_offset >= fetch_offset && self.first_offset < upper_bound_offset
    }
}

/// A damaged `.txnindex` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnIndexError(pub String);

impl std::fmt::Display for TxnIndexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "transaction index: {}", self.0)
    }
}

/// A segment's aborted transactions, ordered by their marker's offset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnIndex {
    entries: Vec<AbortedTxn>,
    /// The file may not hold what `entries` does.
    pub dirty: bool,
}

impl TxnIndex {
    pub fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds an abort. Markers land in offset order, so entries stay ordered; a marker already
    /// present (the same offset, seen again by a replay) is not added twice. Returns whether
    /// it was added.
    pub fn insert(&mut self, entry: AbortedTxn) -> bool {
        match self.entries.binary_search_by_key(&entry.last_offset, |e| e.last_offset) {
            Ok(_) => false,
            Err(at) => {
                self.entries.insert(at, entry);
                self.dirty = true;
                true
            }
        }
    }

    /// Drops the entries whose marker is at or after `offset` (truncation, a torn tail).
    pub fn truncate_from(&mut self, offset: i64) {
        let before = self.entries.len();
        self.entries.retain(|e| e.last_offset < offset);
        if self.entries.len() != before {
            self.dirty = true;
        }
    }

    /// The entries overlapping `[fetch_offset, upper_bound_offset)` (see [`AbortedTxn::overlaps`]).
    pub fn overlapping(&self, fetch_offset: i64, upper_bound_offset: i64) -> impl Iterator<Item = &AbortedTxn> {
        self.entries.iter().filter(move |e| e.overlaps(fetch_offset, upper_bound_offset))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TXN_INDEX_ENTRY_BYTES);
        for e in &self.entries {
            e.encode_into(&mut out);
        }
        out
    }

    /// Reads a file written by [`TxnIndex::encode`] (or by Kafka).
    pub fn decode(bytes: &[u8]) -> Result<TxnIndex, TxnIndexError> {
        if !bytes.len().is_multiple_of(TXN_INDEX_ENTRY_BYTES) {
            return Err(TxnIndexError(format!("{} bytes is not a whole number of entries", bytes.len())));
        }
        let mut index = TxnIndex::default();
        for chunk in bytes.chunks_exact(TXN_INDEX_ENTRY_BYTES) {
            let entry = AbortedTxn::decode(chunk.try_into().expect("exact chunk"))
                .ok_or_else(|| TxnIndexError(format!("bad entry {chunk:02x?}")))?;
            index.insert(entry);
        }
        index.dirty = false;
        Ok(index)
    }
}

/// `<dir>/<20-digit base offset>.txnindex`.
pub fn txn_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(segment_file_name(base_offset, SegmentFileKind::TxnIndex))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(pid: i64, first: i64, last: i64) -> AbortedTxn {
        AbortedTxn { producer_id: pid, first_offset: first, last_offset: last, last_stable_offset: last + 1 }
    }

    #[test]
    fn entries_are_kafkas_34_bytes() {
        let mut index = TxnIndex::default();
        index.insert(AbortedTxn { producer_id: 1, first_offset: 2, last_offset: 3, last_stable_offset: 4 });
        let bytes = index.encode();
        assert_eq!(bytes.len(), 34);
        let mut expected = vec![0, 0];
        for v in [1i64, 2, 3, 4] {
            expected.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(bytes, expected);
    }

    #[test]
    fn overlap_lookup_follows_kafka() {
        let mut index = TxnIndex::default();
        index.insert(entry(1, 0, 10));
        index.insert(entry(2, 5, 20));
        index.insert(entry(3, 30, 31));
        let pids = |from, to| index.overlapping(from, to).map(|e| e.producer_id).collect::<Vec<_>>();
        assert_eq!(pids(0, 5), vec![1]);
        assert_eq!(pids(0, 6), vec![1, 2]);
        assert_eq!(pids(11, 30), vec![2]);
        assert_eq!(pids(21, 31), vec![3]);
        assert_eq!(pids(32, 100), Vec::<i64>::new());
    }

    #[test]
    fn truncation_and_duplicates() {
        let mut index = TxnIndex::default();
        assert!(index.insert(entry(1, 0, 10)));
        assert!(!index.insert(entry(1, 0, 10)), "a replayed marker is not added twice");
        assert!(index.insert(entry(2, 11, 12)));
        index.dirty = false;
        index.truncate_from(12);
        assert!(index.dirty);
        assert_eq!(index.entries(), &[entry(1, 0, 10)]);
    }

    #[test]
    fn damaged_files_are_refused() {
        let mut index = TxnIndex::default();
        index.insert(entry(1, 0, 10));
        let bytes = index.encode();
        assert!(TxnIndex::decode(&bytes[..33]).is_err());
        let mut bad_version = bytes.clone();
        bad_version[1] = 9;
        assert!(TxnIndex::decode(&bad_version).is_err());
        let mut bad_range = bytes;
        bad_range[17] = 99; // first offset 99 > last offset 10
        assert!(TxnIndex::decode(&bad_range).is_err());
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(raw in proptest::collection::vec((0i64..1000, 0i64..1000, 0i64..50), 0..40)) {
            let mut index = TxnIndex::default();
            for (pid, first, len) in raw {
                index.insert(AbortedTxn { producer_id: pid, first_offset: first, last_offset: first + len, last_stable_offset: first });
            }
            let back = TxnIndex::decode(&index.encode()).unwrap();
            prop_assert_eq!(back.entries(), index.entries());
            prop_assert!(back.entries().windows(2).all(|w| w[0].last_offset < w[1].last_offset));
        }

        #[test]
        fn lookup_equals_a_plain_filter(raw in proptest::collection::vec((0i64..200, 0i64..30), 0..30), from in 0i64..250, len in 0i64..100) {
            let mut index = TxnIndex::default();
            let mut all = Vec::new();
            for (i, (first, span)) in raw.into_iter().enumerate() {
                let e = entry(i as i64, first, first + span);
                if index.insert(e) { all.push(e); }
            }
            let got: Vec<_> = index.overlapping(from, from + len).copied().collect();
            let mut want: Vec<_> = all.into_iter().filter(|e| e.last_offset >= from && e.first_offset < from + len).collect();
            want.sort_by_key(|e| e.last_offset);
            prop_assert_eq!(got, want);
        }
    }
}
