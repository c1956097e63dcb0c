//! A partition's produce rate over the last minute: bytes and records in a ring of
//! [`BUCKETS`] buckets of [`BUCKET_MS`] each. Sans-I/O: time is an input (milliseconds).
//!
//! Owns: the ring and the rate it implies. Must never: allocate after construction or read a
//! clock. Five-second buckets instead of one-second ones: 12 × 16 bytes per partition instead
//! of 60 × 16 (a shard with 10,000 produced-to partitions holds ~2 MB of windows, not ~10 MB);
//! the rate then lags at most one bucket behind a change.

/// Buckets in the ring.
pub const BUCKETS: usize = 12;
/// The time one bucket spans.
pub const BUCKET_MS: u64 = 5_000;
/// The window the rate is over: one minute.
pub const WINDOW_MS: u64 = BUCKETS as u64 * BUCKET_MS;

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    /// Which bucket of time this is (`now_ms / BUCKET_MS`); a stale one is reset on use.
    index: u64,
    bytes: u64,
    records: u64,
}

/// Rates over the last minute, per second.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rate {
    pub bytes_per_second: f64,
    pub records_per_second: f64,
}

#[derive(Clone, Debug)]
pub struct RateWindow {
    buckets: [Bucket; BUCKETS],
    /// When the first thing was added: a partition produced to for 10 s has a rate over those
    /// 10 s, not diluted over a minute.
    first_ms: Option<u64>,
}

impl Default for RateWindow {
    fn default() -> Self {
        RateWindow::new()
    }
}

impl RateWindow {
    pub fn new() -> RateWindow {
        RateWindow { buckets: [Bucket { index: u64::MAX, bytes: 0, records: 0 }; BUCKETS], first_ms: None }
    }

    pub fn add(&mut self, now_ms: u64, bytes: u64, records: u64) {
        let index = now_ms / BUCKET_MS;
        let bucket = &mut self.buckets[(index % BUCKETS as u64) as usize];
        if bucket.index != index {
            *bucket = Bucket { index, bytes: 0, records: 0 };
        }
        bucket.bytes = bucket.bytes.saturating_add(bytes);
        bucket.records = bucket.records.saturating_add(records);
        if self.first_ms.is_none() {
            self.first_ms = Some(now_ms);
        }
    }

    /// Bytes and records per second over the last minute (or since the first add, if later;
    /// at least one second).
    pub fn rate(&self, now_ms: u64) -> Rate {
        let Some(first_ms) = self.first_ms else { return Rate::default() };
        let current = now_ms / BUCKET_MS;
        // The buckets of the window: the current one and the BUCKETS - 1 before it.
        let oldest = current.saturating_sub(BUCKETS as u64 - 1);
        let (mut bytes, mut records) = (0u64, 0u64);
        for b in &self.buckets {
            if b.index != u64::MAX && b.index >= oldest && b.index <= current {
                bytes = bytes.saturating_add(b.bytes);
                records = records.saturating_add(b.records);
            }
        }
        // The window spans from the oldest bucket's start to now.
        let window_start_ms = (oldest * BUCKET_MS).max(first_ms);
        let span_s = (now_ms.saturating_sub(window_start_ms) as f64 / 1000.0).max(1.0);
        Rate { bytes_per_second: bytes as f64 / span_s, records_per_second: records as f64 / span_s }
    }

    /// Whether nothing was added within the last minute (the window can be dropped).
    pub fn is_idle(&self, now_ms: u64) -> bool {
        let oldest = (now_ms / BUCKET_MS).saturating_sub(BUCKETS as u64 - 1);
        self.buckets.iter().all(|b| b.index == u64::MAX || b.index < oldest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_steady_rate_reads_back() {
        let mut w = RateWindow::new();
        // 1,000 bytes and 10 records every 100 ms for two minutes: 10,000 B/s, 100 records/s.
        let start = 1_000_000u64;
        for i in 0..1200 {
            w.add(start + i * 100, 1000, 10);
        }
        let r = w.rate(start + 120_000);
        assert!((r.bytes_per_second - 10_000.0).abs() < 10_000.0 * 0.1, "{r:?}");
        assert!((r.records_per_second - 100.0).abs() < 100.0 * 0.1, "{r:?}");
    }

    #[test]
    fn a_young_window_is_not_diluted_and_an_old_one_decays() {
        let mut w = RateWindow::new();
        w.add(10_000, 5_000, 5);
        w.add(14_000, 5_000, 5);
        // 10,000 bytes over the 5 s since the first add.
        assert_eq!(w.rate(15_000).bytes_per_second, 2_000.0);
        assert!(!w.is_idle(15_000));
        // A minute and a bucket later nothing is left.
        assert_eq!(w.rate(15_000 + WINDOW_MS + BUCKET_MS).bytes_per_second, 0.0);
        assert!(w.is_idle(15_000 + WINDOW_MS + BUCKET_MS));
        assert_eq!(RateWindow::new().rate(1), Rate::default());
    }

    proptest! {
        /// Whatever the adds, the rate never counts more than what was added in the last
        /// minute plus one bucket, never less than what was added within the current window,
        /// and never reads a clock (same input, same output).
        #[test]
        fn rate_is_bounded_by_what_was_added(
            adds in proptest::collection::vec((0u64..200_000, 0u64..10_000), 1..200),
            now_extra in 0u64..100_000,
        ) {
            let mut sorted = adds.clone();
            sorted.sort();
            let mut w = RateWindow::new();
            for (t, b) in &sorted {
                w.add(*t, *b, 1);
            }
            let now = sorted.last().unwrap().0 + now_extra;
            let r = w.rate(now);
            let first = sorted[0].0;
            let oldest_ms = (now / BUCKET_MS).saturating_sub(BUCKETS as u64 - 1) * BUCKET_MS;
            let span_s = (now.saturating_sub(oldest_ms.max(first)) as f64 / 1000.0).max(1.0);
            let in_window: u64 = sorted.iter().filter(|(t, _)| *t >= oldest_ms).map(|(_, b)| b).sum();
            prop_assert!((r.bytes_per_second * span_s - in_window as f64).abs() < 1e-6 * (1.0 + in_window as f64));
            prop_assert_eq!(r, w.rate(now));
        }
    }
}
