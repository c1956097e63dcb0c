//! The cleaner's key → latest offset map over a log's dirty section (Kafka's
//! `SkimpyOffsetMap`), bounded in memory: a log whose distinct keys do not fit is cleaned in
//! passes, each up to the offset where the map filled.
//!
//! Owns: 128-bit key digests (two SipHash runs; a collision would merge two keys, about one in
//! 2^64 for 2^32 keys — Kafka's MD5 digest takes the same risk) and the entry limit derived from
//! `log.cleaner.dedupe.buffer.size`. Must never: grow past its limit, or keep a key's bytes.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// Memory counted per entry: the digest and offset, plus the hash table's own overhead.
pub const BYTES_PER_ENTRY: usize = 32;
/// Kafka's `log.cleaner.io.buffer.load.factor`: how full the map is allowed to get.
pub const LOAD_FACTOR: f64 = 0.9;

/// See the module docs.
#[derive(Debug)]
pub struct OffsetMap {
    entries: HashMap<u128, i64>,
    max_entries: usize,
    /// Largest offset put (-1 when empty).
    latest_offset: i64,
}

/// The 128-bit digest of a key.
fn digest(key: &[u8]) -> u128 {
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0x5a)) << 64) | u128::from(half(0xa5))
}

impl OffsetMap {
    /// A map using at most `memory_bytes` (at least one entry).
    pub fn with_memory(memory_bytes: usize) -> OffsetMap {
        let max_entries = ((memory_bytes as f64 * LOAD_FACTOR) as usize / BYTES_PER_ENTRY).max(1);
        OffsetMap { entries: HashMap::new(), max_entries, latest_offset: -1 }
    }

    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a key not in the map yet would still fit.
    pub fn has_room(&self) -> bool {
        self.entries.len() < self.max_entries
    }

    /// Records that `key`'s latest record is at `offset` (offsets come in increasing order).
    /// `false`, and nothing changed, when the key is new and the map is full.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        assert!(
            offset >= self.latest_offset,
            "offsets go into the map in order: {offset} after {}",
            self.latest_offset
        );
        let digest = digest(key);
        if !self.entries.contains_key(&digest) && !self.has_room() {
            return false;
        }
        self.entries.insert(digest, offset);
        self.latest_offset = offset;
        true
    }

    /// The latest offset of `key` in the mapped section, if it is there.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        self.entries.get(&digest(key)).copied()
    }

    /// Largest offset put, -1 when empty.
    pub fn latest_offset(&self) -> i64 {
        self.latest_offset
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.latest_offset = -1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_offset_of_each_key_wins() {
        let mut map = OffsetMap::with_memory(1 << 20);
        assert!(map.put(b"a", 0) && map.put(b"b", 1) && map.put(b"a", 2));
        assert_eq!((map.get(b"a"), map.get(b"b"), map.get(b"c")), (Some(2), Some(1), None));
        assert_eq!((map.len(), map.latest_offset()), (2, 2));
    }

    #[test]
    fn a_full_map_refuses_new_keys_but_updates_known_ones() {
        let mut map = OffsetMap::with_memory(4 * BYTES_PER_ENTRY);
        assert_eq!(map.max_entries(), 3, "0.9 of four entries' memory");
        for (i, key) in [b"a", b"b", b"c"].iter().enumerate() {
            assert!(map.put(*key, i as i64));
        }
        assert!(!map.put(b"d", 3), "no room for a fourth key");
        assert_eq!((map.get(b"d"), map.latest_offset()), (None, 2));
        assert!(map.put(b"a", 4), "a known key still moves");
        assert_eq!(map.get(b"a"), Some(4));
    }

    #[test]
    fn many_keys_do_not_collide() {
        let mut map = OffsetMap::with_memory(64 << 20);
        for i in 0..100_000i64 {
            assert!(map.put(format!("key-{i}").as_bytes(), i));
        }
        assert_eq!(map.len(), 100_000);
        assert!((0..100_000i64).step_by(997).all(|i| map.get(format!("key-{i}").as_bytes()) == Some(i)));
    }
}
