//! A windowed rate with Kafka's semantics (`org.apache.kafka.common.metrics.stats.Rate` over a
//! `SampledStat`), and the throttle time a quota violation earns (`QuotaUtils.throttleTime`).
//!
//! The rate keeps `samples` (`quota.window.num`, default 11) samples of `window_ms`
//! (`quota.window.size.seconds`, default 1 s) each. A recorded value goes into the current
//! sample, or into the next one (recycling the oldest) once the current one is `window_ms` old.
//! Samples older than `samples × window_ms` are reset before measuring. The rate is the sum of
//! the samples divided by the time they span — at least `(samples − 1) × window_ms`, so a new
//! sensor does not measure a huge rate from its first bytes (Kafka's `Rate.windowSize`).
//!
//! Owns: the arithmetic. Pure: time is an input (`now_ms`), nothing here reads a clock or does
//! I/O. Must never: return a negative or non-finite throttle time, or divide by zero.

/// How a quota's rate is measured: `quota.window.num` samples of `quota.window.size.seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateWindow {
    pub samples: usize,
    pub window_ms: i64,
}

impl Default for RateWindow {
    /// Kafka's defaults: 11 samples (10 whole windows and the current one) of 1 s.
    fn default() -> Self {
        RateWindow { samples: 11, window_ms: 1_000 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Sample {
    /// When this sample's window began.
    start_ms: i64,
    value: f64,
}

/// One sensor's samples. See the module docs.
#[derive(Clone, Debug)]
pub struct Rate {
    window: RateWindow,
    samples: Vec<Sample>,
    current: usize,
    /// When something was last recorded (idle sensors are dropped, see the ledger).
    last_record_ms: i64,
}

impl Rate {
    pub fn new(window: RateWindow, now_ms: i64) -> Rate {
        assert!(window.samples >= 1 && window.window_ms >= 1, "bad rate window {window:?}");
        Rate { window, samples: vec![Sample { start_ms: now_ms, value: 0.0 }], current: 0, last_record_ms: now_ms }
    }

    pub fn last_record_ms(&self) -> i64 {
        self.last_record_ms
    }

    /// Adds `value` (may be negative: Kafka's "unrecord" of a throttled fetch) at `now_ms`.
    pub fn record(&mut self, value: f64, now_ms: i64) {
        self.last_record_ms = self.last_record_ms.max(now_ms);
        if now_ms - self.samples[self.current].start_ms >= self.window.window_ms {
            self.current = (self.current + 1) % self.window.samples;
            let fresh = Sample { start_ms: now_ms, value: 0.0 };
            if self.current >= self.samples.len() {
                self.samples.push(fresh);
            } else {
                self.samples[self.current] = fresh;
            }
        }
        self.samples[self.current].value += value;
    }

    /// Resets samples too old to count (`samples × window_ms`).
    fn purge_obsolete(&mut self, now_ms: i64) {
        let expire_age_ms = self.window.samples as i64 * self.window.window_ms;
        for sample in &mut self.samples {
            if now_ms - sample.start_ms >= expire_age_ms {
                *sample = Sample { start_ms: now_ms, value: 0.0 };
            }
        }
    }

    /// The time the retained samples span, at least `(samples − 1)` whole windows and 1 ms.
    pub fn window_size_ms(&mut self, now_ms: i64) -> i64 {
        self.purge_obsolete(now_ms);
        let oldest_ms = self.samples.iter().map(|s| s.start_ms).min().unwrap_or(now_ms);
        let mut elapsed_ms = (now_ms - oldest_ms).max(0);
        let full_windows = elapsed_ms / self.window.window_ms;
        let min_full_windows = self.window.samples as i64 - 1;
        if full_windows < min_full_windows {
            elapsed_ms += (min_full_windows - full_windows) * self.window.window_ms;
        }
        elapsed_ms.max(1)
    }

    /// The rate per second at `now_ms`.
    pub fn per_second(&mut self, now_ms: i64) -> f64 {
        let window_ms = self.window_size_ms(now_ms);
        let total: f64 = self.samples.iter().map(|s| s.value).sum();
        total / (window_ms as f64 / 1000.0)
    }

    /// Records `value` and checks the rate against `limit_per_second`: the time to throttle
    /// for, 0 if within the quota. Kafka's formula: `(rate − limit) / limit × window`, where
    /// window is the span the rate was measured over.
    pub fn record_and_throttle_ms(&mut self, value: f64, limit_per_second: f64, now_ms: i64) -> i64 {
        self.record(value, now_ms);
        self.throttle_ms(limit_per_second, now_ms)
    }

    /// The throttle time at `now_ms` without recording anything.
    pub fn throttle_ms(&mut self, limit_per_second: f64, now_ms: i64) -> i64 {
        let rate = self.per_second(now_ms);
        throttle_ms(rate, limit_per_second, self.window_size_ms(now_ms))
    }
}

/// Kafka's `QuotaUtils.throttleTime`: how long the client must stay silent for `rate` to come
/// back to `limit` over a window of `window_ms`; 0 within the quota. Capped at `i32::MAX`
/// (the protocol's field).
pub fn throttle_ms(rate: f64, limit: f64, window_ms: i64) -> i64 {
    if limit.is_nan() || limit <= 0.0 || !rate.is_finite() || rate <= limit {
        return 0;
    }
    let throttle = (rate - limit) / limit * window_ms as f64;
    if throttle.is_finite() {
        throttle.round().clamp(0.0, i32::MAX as f64) as i64
    } else {
        i32::MAX as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_new_sensor_measures_over_the_minimum_window() {
        let mut rate = Rate::new(RateWindow::default(), 0);
        rate.record(10_000.0, 0);
        // 10 whole windows are assumed before there are any: 10 s.
        assert_eq!(rate.window_size_ms(0), 10_000);
        assert!((rate.per_second(0) - 1_000.0).abs() < 1e-9);
        // Within a 1000 B/s quota: no throttle; one more byte throttles for about 10 ms.
        assert_eq!(rate.throttle_ms(1_000.0, 0), 0);
        assert_eq!(rate.record_and_throttle_ms(100.0, 1_000.0, 0), 100);
    }

    #[test]
    fn samples_expire_after_the_whole_window() {
        let window = RateWindow { samples: 3, window_ms: 1_000 };
        let mut rate = Rate::new(window, 0);
        rate.record(3_000.0, 0);
        // 3000 B over 0.5 s plus the 2 whole windows assumed before there are any.
        assert!((rate.per_second(500) - 1_200.0).abs() < 1e-9);
        rate.record(0.0, 1_000);
        rate.record(0.0, 2_000);
        // At 3 s the first sample is 3 windows old: reset.
        assert_eq!(rate.per_second(3_000), 0.0);
    }

    #[test]
    fn an_unrecorded_value_brings_the_sum_back() {
        let mut rate = Rate::new(RateWindow::default(), 0);
        rate.record(5_000.0, 100);
        let before = rate.per_second(200);
        rate.record(1_000_000.0, 200);
        rate.record(-1_000_000.0, 200);
        assert!((rate.per_second(200) - before).abs() < 1e-6);
    }

    #[test]
    fn throttle_time_follows_kafkas_formula() {
        assert_eq!(throttle_ms(2_000.0, 1_000.0, 10_000), 10_000);
        assert_eq!(throttle_ms(1_500.0, 1_000.0, 10_000), 5_000);
        assert_eq!(throttle_ms(999.0, 1_000.0, 10_000), 0);
        assert_eq!(throttle_ms(f64::INFINITY, 1_000.0, 10_000), 0);
        assert_eq!(throttle_ms(1e300, 1e-300, 10_000), i32::MAX as i64);
        assert_eq!(throttle_ms(5.0, 0.0, 10_000), 0, "a zero limit is refused when set, never divided by");
    }

    /// A client that always waits out its throttle time before sending again: what Kafka's
    /// clients do (KIP-219) and what muting enforces. Returns the bytes sent in `[from, to)`.
    fn obedient_client(window: RateWindow, limit: f64, chunk: f64, from_ms: i64, to_ms: i64) -> f64 {
        let mut rate = Rate::new(window, 0);
        let (mut now, mut sent) = (0i64, 0.0);
        while now < to_ms {
            let throttle = rate.record_and_throttle_ms(chunk, limit, now);
            if now >= from_ms {
                sent += chunk;
            }
            // A request takes at least a millisecond; then the client waits out its throttle.
            now += 1 + throttle;
        }
        sent
    }

    #[test]
    fn a_throttled_client_converges_to_its_quota() {
        // A new sensor allows a burst of (samples - 1) windows' worth at once; when that sample
        // expires (after samples × window) the next burst comes: the rate is bursty with a
        // period of about samples × window, and right on average. 1 MB/s quota, 64 KiB
        // requests, measured over 20 periods.
        let sent = obedient_client(RateWindow::default(), 1_000_000.0, 65_536.0, 0, 220_000);
        let rate = sent / 220.0;
        assert!((rate / 1_000_000.0 - 1.0).abs() < 0.1, "{rate} B/s against a 1 MB/s quota");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn throttle_is_never_negative_and_zero_within_quota(
            values in proptest::collection::vec((0.0f64..1e7, 0i64..5_000), 1..50),
            limit in 1.0f64..1e7,
            samples in 1usize..20,
            window_ms in 1i64..5_000,
        ) {
            let mut rate = Rate::new(RateWindow { samples, window_ms }, 0);
            let mut now = 0;
            for (value, step) in values {
                now += step;
                let throttle = rate.record_and_throttle_ms(value, limit, now);
                prop_assert!((0..=i32::MAX as i64).contains(&throttle));
                let measured = rate.per_second(now);
                prop_assert!(measured.is_finite() && measured >= 0.0);
                if throttle > 0 {
                    prop_assert!(measured > limit, "throttled at {} within {}", measured, limit);
                } else {
                    // Within the quota, or over it by less than half a millisecond's worth.
                    let window_ms = rate.window_size_ms(now) as f64;
                    prop_assert!(measured <= limit || (measured - limit) / limit * window_ms < 0.5);
                }
            }
        }

        #[test]
        fn obedient_clients_stay_near_the_quota(
            limit in 10_000.0f64..10_000_000.0,
            chunk_fraction in 0.01f64..0.2,
            samples in 2usize..12,
        ) {
            // Over 20 burst periods (see above), a client that obeys its throttle times sends
            // its quota, within 10%.
            let chunk = limit * chunk_fraction;
            let window = RateWindow { samples, window_ms: 1_000 };
            let horizon_ms = 20 * samples as i64 * 1_000;
            let sent = obedient_client(window, limit, chunk, 0, horizon_ms);
            let ratio = sent / (horizon_ms as f64 / 1000.0) / limit;
            prop_assert!(ratio < 1.1 && ratio > 0.8, "ratio {}", ratio);
        }
    }
}
