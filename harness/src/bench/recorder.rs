//! Latency recording: an hdrhistogram of (completion − *intended* send time), in microseconds,
//! with samples whose intended time falls in the warm-up excluded.
//!
//! Measuring from the intended time (the rate schedule's, not the moment the message finally
//! left) is what makes the numbers coordinated-omission correct: a stall of N ms at R msgs/s
//! shows up as ~R·N/1000 delayed samples, not one. Owns: the histogram and its summary. Must
//! never: read the clock (callers pass times) or drop a sample silently (out-of-range values
//! saturate at the histogram's bound and are counted).

use hdrhistogram::Histogram;
use serde::Serialize;

/// Histogram range: 1 µs to 1 hour, 3 significant digits.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

pub struct LatencyRecorder {
    histogram: Histogram<u64>,
    warmup_end_ns: u64,
    excluded_warmup: u64,
}

/// Percentiles of one histogram, milliseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub p9999_ms: f64,
    pub max_ms: f64,
}

impl LatencyRecorder {
    pub fn new(warmup_end_ns: u64) -> LatencyRecorder {
        LatencyRecorder {
            histogram: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds"),
            warmup_end_ns,
            excluded_warmup: 0,
        }
    }

    /// Records one message intended at `intended_ns` and completed at `done_ns`. Returns
    /// false if it fell in the warm-up and was not recorded.
    pub fn record(&mut self, intended_ns: u64, done_ns: u64) -> bool {
        if intended_ns < self.warmup_end_ns {
            self.excluded_warmup += 1;
            return false;
        }
        let us = (done_ns.saturating_sub(intended_ns) / 1_000).clamp(1, MAX_LATENCY_US);
        self.histogram.saturating_record(us);
        true
    }

    /// Sets the end of the warm-up (known once the run starts); before any sample.
    pub fn set_warmup_end_ns(&mut self, warmup_end_ns: u64) {
        self.warmup_end_ns = warmup_end_ns;
    }

    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn excluded_warmup(&self) -> u64 {
        self.excluded_warmup
    }

    /// The `q` quantile so far, milliseconds (0 when empty).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.histogram.is_empty() {
            return 0.0;
        }
        self.histogram.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn merge(&mut self, other: &LatencyRecorder) {
        self.histogram.add(&other.histogram).expect("same bounds");
        self.excluded_warmup += other.excluded_warmup;
    }

    /// Samples at or above `threshold_ns`.
    #[cfg(test)]
    pub fn count_at_or_above_ns(&self, threshold_ns: u64) -> u64 {
        let us = (threshold_ns / 1_000).max(1);
        self.histogram.iter_recorded().filter(|v| v.value_iterated_to() >= us).map(|v| v.count_at_value()).sum()
    }

    pub fn summary(&self) -> LatencySummary {
        if self.histogram.is_empty() {
            return LatencySummary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        let h = &self.histogram;
        LatencySummary {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            p9999_ms: ms(h.value_at_quantile(0.9999)),
            max_ms: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::rate::RateSchedule;

    const MS: u64 = 1_000_000;

    /// A producer at `rate` msgs/s for one second whose sends take 100 µs, except that the
    /// sender stalls from 200 ms to 200 + `stall_ms` ms. Returns the recorder.
    fn run_with_stall(rate: f64, stall_ms: u64, warmup_end_ns: u64) -> LatencyRecorder {
        let mut schedule = RateSchedule::fixed(0, rate);
        let mut recorder = LatencyRecorder::new(warmup_end_ns);
        let stall = (200 * MS, (200 + stall_ms) * MS);
        let mut now = 0;
        while now < 1_000 * MS {
            while let Some(intended) = schedule.take_due(now) {
                let sent = if (stall.0..stall.1).contains(&now) { stall.1 } else { now };
                now = sent;
                recorder.record(intended, sent + 100_000);
            }
            now = schedule.next_due_ns(now);
        }
        recorder
    }

    #[test]
    fn a_stall_delays_every_message_intended_during_it() {
        for (rate, stall_ms) in [(1000.0, 50), (1000.0, 10), (10_000.0, 25)] {
            let r = run_with_stall(rate, stall_ms, 0);
            let expected_delayed = (rate * stall_ms as f64 / 1000.0) as u64;
            // Delayed by ≥ 1 ms: those intended in [200, 200 + stall − 1) ms, and the last ms
            // of the stall is within 1 ms of its end.
            let delayed = r.count_at_or_above_ns(MS + 100_000);
            let per_ms = (rate / 1000.0) as u64;
            assert!(
                delayed + per_ms >= expected_delayed && delayed <= expected_delayed,
                "rate {rate} stall {stall_ms} ms: {delayed} delayed, expected ~{expected_delayed}"
            );
            // The first message of the stall waited the whole stall.
            let max_ms = r.summary().max_ms;
            assert!((max_ms - (stall_ms as f64 + 0.1)).abs() < 0.1, "max {max_ms}");
            assert_eq!(r.count(), rate as u64, "every message recorded once");
        }
    }

    #[test]
    fn without_a_stall_nothing_is_delayed() {
        let r = run_with_stall(1000.0, 0, 0);
        assert_eq!(r.count_at_or_above_ns(MS), 0);
        assert!((r.summary().p99_ms - 0.1).abs() < 0.01);
    }

    #[test]
    fn warmup_samples_are_excluded_and_counted() {
        let r = run_with_stall(1000.0, 50, 500 * MS);
        assert_eq!(r.excluded_warmup(), 500);
        assert_eq!(r.count(), 500);
        assert_eq!(r.count_at_or_above_ns(MS), 0, "the stall was in the warm-up");
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = LatencyRecorder::new(0);
        let mut b = LatencyRecorder::new(0);
        a.record(0, 2 * MS);
        b.record(0, 4 * MS);
        b.record(10, 5); // completes "before" intended: clamps to 1 µs, still counted
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert!((a.summary().max_ms - 4.0).abs() < 0.01);
    }
}
