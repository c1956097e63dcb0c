//! Hot keys: a bounded top-k of (topic, key) by produced bytes over about the last minute,
//! one per shard. Sans-I/O: time is an input, the sampling decision is a seeded xorshift.
//!
//! Owns: the space-saving summaries (Metwally et al.: `CAPACITY` counters; a new key takes
//! over the smallest counter and inherits its count as its error, so a key's estimate is
//! never below its true count and any key with more than 1/`CAPACITY` of the total is in the
//! summary) and the sampling of produce batches. Must never: grow past its capacity, read a
//! clock, or allocate for an unsampled batch.
//!
//! Cost on the produce path: one record set in [`SAMPLE_ONE_IN`] is walked (one varint to skip
//! a record), and one record in [`RECORD_STRIDE`] of it (from a random start) is counted: a few
//! varints, a hash of its key and a lookup in the summary's index; the other sets only draw a
//! random number. `tuning/results/hot-keys/` measured the broker's CPU per message with and
//! without it (a linear scan of the 64 counters per record, the first version, cost ~5%).
//! Counted records weigh `SAMPLE_ONE_IN × RECORD_STRIDE` times their bytes, so the estimates
//! are in produced bytes. Compressed batches are **skipped**: finding their keys means decompressing them,
//! which costs more than the whole budget (a zstd batch of 1 MiB takes ~1 ms to decompress);
//! they are counted in [`KeySketch::skipped_compressed_batches`] so a report can say its keys
//! come from uncompressed produce only.
//!
//! Windows: counts go to the current one-minute window; the window before it is kept, and a
//! report merges both — it covers between one and two minutes.

use sluice_engine::batch::{read_varint, read_varlong, BatchHeader, Compression, BATCH_HEADER_LEN};

/// Counters per summary (fixed memory: `CAPACITY` × (topic + at most [`MAX_KEY_BYTES`])).
pub const CAPACITY: usize = 64;
/// Keys reported per shard (the `key` label's cardinality is capped here).
pub const REPORTED: usize = 10;
/// Longer keys are counted by their first `MAX_KEY_BYTES` bytes.
pub const MAX_KEY_BYTES: usize = 64;
/// One produce record set in this many is sampled.
pub const SAMPLE_ONE_IN: u64 = 16;
/// In a sampled set, one record in this many is counted.
pub const RECORD_STRIDE: usize = 4;
/// Length of a window.
pub const WINDOW_MS: u64 = 60_000;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Counter {
    /// [`key_hash`] of (topic, key): the index's key.
    hash: u64,
    topic: String,
    /// The partition the key was last produced to (a keyed producer's partitioner sends a key
    /// to one partition; this is what ties hot keys to hot partitions).
    partition: i32,
    key: Vec<u8>,
    count: u64,
    error: u64,
}

/// FNV-1a of a topic name: computed once per record set.
pub fn topic_hash(topic: &str) -> u64 {
    fnv1a(0xcbf2_9ce4_8422_2325, topic.as_bytes())
}

/// The index key of (topic, key), from the topic's [`topic_hash`].
pub fn key_hash(topic_hash: u64, key: &[u8]) -> u64 {
    fnv1a(topic_hash ^ 0x9e37_79b9_7f4a_7c15, key)
}

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A `HashMap` hasher for keys that are hashes already.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv1a(self.0, bytes);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Index = std::collections::HashMap<u64, usize, std::hash::BuildHasherDefault<PassThrough>>;

/// A space-saving summary of (topic, key) weights, with an index by [`key_hash`] (fixed size:
/// at most `CAPACITY` entries).
#[derive(Clone, Debug, Default)]
pub struct SpaceSaving {
    counters: Vec<Counter>,
    index: Index,
}

impl SpaceSaving {
    pub fn add(&mut self, topic: &str, partition: i32, key: &[u8], weight: u64) {
        self.add_hashed(topic, topic_hash(topic), partition, key, weight)
    }

    /// [`SpaceSaving::add`] with the topic's hash computed by the caller.
    pub fn add_hashed(&mut self, topic: &str, topic_hash: u64, partition: i32, key: &[u8], weight: u64) {
        let key = &key[..key.len().min(MAX_KEY_BYTES)];
        let hash = key_hash(topic_hash, key);
        let found = match self.index.get(&hash) {
            Some(&i) if self.counters[i].key == key && self.counters[i].topic == topic => Some(i),
            // A hash collision (rare): look for the key itself.
            Some(_) => self.counters.iter().position(|c| c.key == key && c.topic == topic),
            None => None,
        };
        if let Some(i) = found {
            let c = &mut self.counters[i];
            c.count = c.count.saturating_add(weight);
            c.partition = partition;
            return;
        }
        if self.counters.len() < CAPACITY {
            let topic = topic.to_string();
            self.index.insert(hash, self.counters.len());
            self.counters.push(Counter { hash, topic, partition, key: key.to_vec(), count: weight, error: 0 });
            return;
        }
        let (slot, smallest) = self.counters.iter_mut().enumerate().min_by_key(|(_, c)| c.count).expect("full summary");
        if self.index.get(&smallest.hash) == Some(&slot) {
            self.index.remove(&smallest.hash);
        }
        let inherited = smallest.count;
        smallest.hash = hash;
        smallest.topic.clear();
        smallest.topic.push_str(topic);
        smallest.key.clear();
        smallest.key.extend_from_slice(key);
        smallest.partition = partition;
        smallest.count = inherited.saturating_add(weight);
        smallest.error = inherited;
        self.index.insert(hash, slot);
        assert!(self.counters.len() <= CAPACITY && self.index.len() <= CAPACITY);
    }

    pub fn len(&self) -> usize {
        self.counters.len()
    }

    /// The index points at counters with its hash, and is no larger than the summary.
    pub fn check_invariants(&self) -> bool {
        self.counters.len() <= CAPACITY
            && self.index.len() <= self.counters.len()
            && self.index.iter().all(|(h, i)| self.counters.get(*i).is_some_and(|c| c.hash == *h))
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    /// Every counter: (topic, partition, key, estimate, error); the true count is within
    /// `estimate - error ..= estimate`.
    pub fn entries(&self) -> impl Iterator<Item = (&str, i32, &[u8], u64, u64)> {
        self.counters.iter().map(|c| (c.topic.as_str(), c.partition, c.key.as_slice(), c.count, c.error))
    }
}

/// One reported hot key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotKey {
    pub topic: String,
    /// The partition the key was last produced to.
    pub partition: i32,
    pub key: Vec<u8>,
    /// Estimated produced bytes over the report's window (an upper bound; see the module docs).
    pub bytes: u64,
}

/// A shard's hot-key sketch. See the module docs.
#[derive(Clone, Debug)]
pub struct KeySketch {
    current: SpaceSaving,
    previous: SpaceSaving,
    /// Start of the current window.
    window_start_ms: u64,
    rng: u64,
    pub sampled_batches: u64,
    pub skipped_compressed_batches: u64,
}

impl KeySketch {
    pub fn new(seed: u64) -> KeySketch {
        KeySketch {
            current: SpaceSaving::default(),
            previous: SpaceSaving::default(),
            window_start_ms: 0,
            rng: seed | 1,
            sampled_batches: 0,
            skipped_compressed_batches: 0,
        }
    }

    /// Whether to sample the next batch (xorshift64: a counter would alias with producers that
    /// visit partitions in a fixed rotation).
    pub fn sample_next(&mut self) -> bool {
        self.next_random().is_multiple_of(SAMPLE_ONE_IN)
    }

    fn rotate(&mut self, now_ms: u64) {
        if now_ms >= self.window_start_ms + 2 * WINDOW_MS {
            self.previous = SpaceSaving::default();
            self.current = SpaceSaving::default();
            self.window_start_ms = now_ms - now_ms % WINDOW_MS;
        } else if now_ms >= self.window_start_ms + WINDOW_MS {
            self.previous = std::mem::take(&mut self.current);
            self.window_start_ms += WINDOW_MS;
        }
    }

    /// Counts one key's `bytes` (already scaled for sampling).
    pub fn add(&mut self, now_ms: u64, topic: &str, partition: i32, key: &[u8], bytes: u64) {
        self.rotate(now_ms);
        self.current.add(topic, partition, key, bytes);
    }

    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Counts the keyed records of a produce request's record set for `topic` (whole batches;
    /// called for sampled sets only). Records without a key are not counted; a compressed or
    /// malformed batch ends the walk (the append validated the set, so only compression does).
    pub fn add_record_set(&mut self, now_ms: u64, topic: &str, partition: i32, records: &[u8]) {
        self.sampled_batches += 1;
        self.rotate(now_ms);
        let topic_hash = topic_hash(topic);
        let weight = SAMPLE_ONE_IN * RECORD_STRIDE as u64;
        let first = (self.next_random() % RECORD_STRIDE as u64) as usize;
        let mut rest = records;
        while rest.len() >= BATCH_HEADER_LEN {
            let Ok(header) = BatchHeader::parse(rest) else { return };
            let total = header.total_len().min(rest.len());
            if header.compression() != Compression::None {
                self.skipped_compressed_batches += 1;
            } else if !header.is_control() {
                let current = &mut self.current;
                for_each_keyed_record(&rest[BATCH_HEADER_LEN..total], first, RECORD_STRIDE, |key, record_bytes| {
                    current.add_hashed(topic, topic_hash, partition, key, record_bytes.saturating_mul(weight))
                });
            }
            rest = &rest[total..];
        }
    }

    /// The top [`REPORTED`] keys over the previous and current windows, largest first.
    pub fn report(&mut self, now_ms: u64) -> Vec<HotKey> {
        self.rotate(now_ms);
        let mut merged: Vec<HotKey> = Vec::with_capacity(2 * CAPACITY);
        // The current window's entries come last: their partition is the latest.
        for (topic, partition, key, bytes, _) in self.previous.entries().chain(self.current.entries()) {
            match merged.iter_mut().find(|h| h.key == key && h.topic == topic) {
                Some(h) => {
                    h.bytes += bytes;
                    h.partition = partition;
                }
                None => merged.push(HotKey { topic: topic.to_string(), partition, key: key.to_vec(), bytes }),
            }
        }
        merged.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.key.cmp(&b.key)));
        merged.truncate(REPORTED);
        merged
    }
}

/// Calls `visit(key, record_bytes)` for records `first`, `first + stride`, … that have a key,
/// in uncompressed record bytes (a batch's records section). Stops at the first malformed
/// record.
pub fn for_each_keyed_record(records: &[u8], first: usize, stride: usize, mut visit: impl FnMut(&[u8], u64)) {
    let mut pos = 0usize;
    let mut n = 0usize;
    while pos < records.len() {
        let Some(len) = read_varint(records, &mut pos).and_then(|l| usize::try_from(l).ok()) else { return };
        let Some(end) = pos.checked_add(len).filter(|e| *e <= records.len()) else { return };
        let counted = n >= first && (n - first).is_multiple_of(stride);
        n += 1;
        if !counted {
            pos = end;
            continue;
        }
        let body = &records[pos..end];
        let mut at = 1usize; // attributes
        let parsed = read_varlong(body, &mut at)
            .and_then(|_| read_varint(body, &mut at))
            .and_then(|_| read_varint(body, &mut at));
        if let Some(key_len) = parsed.and_then(|l| usize::try_from(l).ok()) {
            if let Some(key) = at.checked_add(key_len).and_then(|e| body.get(at..e)) {
                visit(key, (end - pos) as u64);
            }
        }
        pos = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sluice_engine::record_encoding::{build_batch, RecordSpec};

    #[test]
    fn heavy_keys_are_found_and_capacity_holds() {
        let mut s = SpaceSaving::default();
        for i in 0..10_000u64 {
            // key 0 every other add, key 1 every fourth, the rest all different.
            let key = match i % 4 {
                0 | 2 => b"k0".to_vec(),
                1 => b"k1".to_vec(),
                _ => format!("cold-{i}").into_bytes(),
            };
            s.add("t", 0, &key, 10);
        }
        assert_eq!(s.len(), CAPACITY);
        let mut entries: Vec<_> = s.entries().collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.3));
        assert_eq!(entries[0].2, b"k0");
        assert_eq!(entries[1].2, b"k1");
        assert!(entries[0].3 >= 50_000 && entries[0].3 - entries[0].4 <= 50_000);
    }

    #[test]
    fn record_sets_are_walked_and_compressed_ones_skipped() {
        let v = [0u8; 100];
        // 40 records: "hot" keys but every fifth (32 of them), the rest without a key.
        let specs: Vec<RecordSpec<'_>> =
            (0..40).map(|i| (if i % 5 == 4 { None } else { Some(&b"hot"[..]) }, Some(&v[..]), &[][..])).collect();
        let batch = build_batch(0, &specs, 1_000);
        let mut sketch = KeySketch::new(7);
        sketch.add_record_set(1_000, "t", 3, &batch);
        let report = sketch.report(1_000);
        assert_eq!(report.len(), 1);
        assert_eq!((report[0].key.as_slice(), report[0].partition), (&b"hot"[..], 3));
        // Every fourth record is counted, from a random start: 10 records, at least 8 keyed, of
        // more than 100 bytes each; the weight scales them back to all 40, of every sampled set.
        let weight = SAMPLE_ONE_IN * RECORD_STRIDE as u64;
        assert!(report[0].bytes >= 8 * 100 * weight, "{report:?}");
        let mut seen = Vec::new();
        for_each_keyed_record(&batch[BATCH_HEADER_LEN..], 1, 4, |k, _| seen.push(k.to_vec()));
        assert_eq!(seen.len(), 8, "records 1, 5, … 37 but 9 and 29");
        let mut compressed = batch.clone();
        sluice_engine::record_encoding::reframe(&mut compressed, Compression::Lz4);
        sketch.add_record_set(1_000, "t", 3, &compressed);
        assert_eq!(sketch.skipped_compressed_batches, 1);
    }

    #[test]
    fn windows_rotate_and_old_keys_leave() {
        let mut sketch = KeySketch::new(1);
        sketch.add(1_000, "t", 0, b"a", 5);
        sketch.add(61_000, "t", 1, b"b", 7);
        let r = sketch.report(61_000);
        assert_eq!(r.iter().map(|h| h.key.as_slice()).collect::<Vec<_>>(), vec![&b"b"[..], &b"a"[..]]);
        // Two windows later, "a" is gone; much later, everything is.
        assert_eq!(sketch.report(125_000).len(), 1);
        assert!(sketch.report(1_000_000).is_empty());
    }

    #[test]
    fn sampling_is_about_one_in_n() {
        let mut sketch = KeySketch::new(12345);
        let sampled = (0..160_000).filter(|_| sketch.sample_next()).count();
        let expected = 160_000 / SAMPLE_ONE_IN as usize;
        assert!(sampled.abs_diff(expected) < expected / 10, "{sampled} vs {expected}");
    }

    proptest! {
        /// Space-saving's guarantees: bounded size, estimates never below the truth and at most
        /// `error` above it, and every key heavier than total/CAPACITY present.
        #[test]
        fn space_saving_guarantees(keys in proptest::collection::vec((0u16..300, 1u64..100), 1..2000)) {
            let mut s = SpaceSaving::default();
            let mut truth = std::collections::HashMap::<u16, u64>::new();
            let mut total = 0u64;
            for (k, w) in &keys {
                s.add("t", 0, &k.to_be_bytes(), *w);
                *truth.entry(*k).or_default() += w;
                total += w;
            }
            prop_assert!(s.len() <= CAPACITY);
            prop_assert!(s.check_invariants());
            for (_, _, key, estimate, error) in s.entries() {
                let k = u16::from_be_bytes([key[0], key[1]]);
                let t = truth[&k];
                prop_assert!(estimate >= t && estimate - error <= t);
            }
            for (k, t) in &truth {
                if *t > total / CAPACITY as u64 {
                    prop_assert!(s.entries().any(|(_, _, key, _, _)| key == k.to_be_bytes()));
                }
            }
        }
    }
}
