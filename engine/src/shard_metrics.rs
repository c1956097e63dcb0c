//! The engine's per-shard operating numbers: tail-cache hits and misses, fsync latency, and
//! the record bytes written to segment files straight from a network frame.
//! Each shard thread owns its own (plain `Cell`s in a thread local): nothing is shared or
//! locked on the data path; the broker's scrape asks every shard for a [`snapshot`] through
//! the shard mesh and adds them up.
//!
//! Owns: the counters and [`LatencyHistogram`], the fixed-bucket histogram the protocol
//! layer's request latencies use too (fixed buckets add up across shards and map one to one
//! onto Prometheus' `_bucket{le=…}` lines). Must never: be the source of a decision (the numbers
//! only report), or allocate on the data path.

use std::cell::{Cell, RefCell};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds (Prometheus' `le`); a last, implicit bucket
/// is `+Inf`. 100 µs to 10 s covers an in-memory request (~100 µs) to a stalled disk.
pub const LATENCY_BUCKETS_S: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Latencies counted in [`LATENCY_BUCKETS_S`] (each bucket on its own, not cumulative) with
/// their sum; `Copy`, so a snapshot crosses shards as plain data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    pub buckets: [u64; LATENCY_BUCKETS_S.len() + 1],
    pub sum_ns: u64,
}

impl LatencyHistogram {
    pub fn record(&mut self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS_S.iter().position(|le| seconds <= *le).unwrap_or(LATENCY_BUCKETS_S.len());
        self.buckets[bucket] += 1;
        self.sum_ns = self.sum_ns.saturating_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
    }

    /// The upper bound of the bucket holding quantile `q` (0..=1); `None` when empty. What a
    /// PromQL `histogram_quantile` approximates.
    pub fn quantile_upper_bound_s(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(LATENCY_BUCKETS_S.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        Some(f64::INFINITY)
    }
}

/// One shard's engine numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineMetrics {
    /// Reads of record data served from a partition's tail cache, and those that were not.
    pub tail_cache_hits: u64,
    pub tail_cache_misses: u64,
    /// `fdatasync`s of segment files (group commits: one per flush, however many appends).
    pub fsync: LatencyHistogram,
    /// Record bytes written to segment files from the request (or fetch response) frame they
    /// arrived in, without a copy into the write-behind.
    pub written_from_frame_bytes: u64,
}

thread_local! {
    static TAIL_CACHE_HITS: Cell<u64> = const { Cell::new(0) };
    static TAIL_CACHE_MISSES: Cell<u64> = const { Cell::new(0) };
    static FSYNC: RefCell<LatencyHistogram> = RefCell::new(LatencyHistogram::default());
    static WRITTEN_FROM_FRAME_BYTES: Cell<u64> = const { Cell::new(0) };
}

/// A read of record data was served from memory (`hit`) or not.
pub fn note_tail_cache_read(hit: bool) {
    let counter = if hit { &TAIL_CACHE_HITS } else { &TAIL_CACHE_MISSES };
    counter.with(|c| c.set(c.get() + 1));
}

/// A segment `fdatasync` took `elapsed`.
pub fn note_fsync(elapsed: Duration) {
    FSYNC.with(|h| h.borrow_mut().record(elapsed));
}

/// `bytes` of records go to a segment file straight from the frame they arrived in.
pub fn note_written_from_frame(bytes: u64) {
    WRITTEN_FROM_FRAME_BYTES.with(|c| c.set(c.get() + bytes));
}

/// This shard's numbers so far.
pub fn snapshot() -> EngineMetrics {
    EngineMetrics {
        tail_cache_hits: TAIL_CACHE_HITS.with(Cell::get),
        tail_cache_misses: TAIL_CACHE_MISSES.with(Cell::get),
        fsync: FSYNC.with(|h| *h.borrow()),
        written_from_frame_bytes: WRITTEN_FROM_FRAME_BYTES.with(Cell::get),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_their_bucket_and_merge() {
        let mut h = LatencyHistogram::default();
        h.record(Duration::from_micros(50)); // ≤ 100 µs
        h.record(Duration::from_micros(100)); // ≤ 100 µs (bounds are inclusive, as `le`)
        h.record(Duration::from_millis(3)); // ≤ 5 ms
        h.record(Duration::from_secs(60)); // +Inf
        assert_eq!(h.buckets[0], 2);
        assert_eq!(h.buckets[5], 1);
        assert_eq!(h.buckets[LATENCY_BUCKETS_S.len()], 1);
        assert_eq!(h.count(), 4);
        assert_eq!(h.sum_ns, 50_000 + 100_000 + 3_000_000 + 60_000_000_000);
        let mut merged = h;
        merged.merge(&h);
        assert_eq!(merged.count(), 8);
        assert_eq!(h.quantile_upper_bound_s(0.5), Some(0.0001));
        assert_eq!(h.quantile_upper_bound_s(0.75), Some(0.005));
        assert_eq!(h.quantile_upper_bound_s(1.0), Some(f64::INFINITY));
        assert_eq!(LatencyHistogram::default().quantile_upper_bound_s(0.5), None);
    }

    #[test]
    fn snapshot_counts_this_thread_only() {
        note_tail_cache_read(true);
        note_tail_cache_read(false);
        note_tail_cache_read(true);
        note_fsync(Duration::from_millis(1));
        note_written_from_frame(4096);
        note_written_from_frame(8192);
        let s = snapshot();
        assert_eq!((s.tail_cache_hits, s.tail_cache_misses, s.fsync.count()), (2, 1, 1));
        assert_eq!(s.written_from_frame_bytes, 12288);
        let other = std::thread::spawn(snapshot).join().unwrap();
        assert_eq!(other, EngineMetrics::default());
    }
}
