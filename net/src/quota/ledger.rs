//! The rates of the quota sensors one shard owns, and the throttle decision for each recorded
//! request.
//!
//! Why one owner shard per sensor: a client's connections may land on any shard (and a
//! user-level quota is shared by all its client ids), so per-shard rates would each see part
//! of the traffic. Splitting the quota (limit / shards on every shard) is simple but lets a
//! client with one connection reach only 1/shards of its quota. Instead every sensor lives on
//! the shard its key hashes to, and the shard serving a quota'd request records its bytes there
//! with one bounded cross-shard call ([`crate::quota::record`]). The rate then adds up exactly
//! across shards; the cost is one message per request *of quota'd clients only* — requests no
//! quota applies to never reach the ledger.
//!
//! Sensors idle for an hour are dropped (Kafka's inactive sensor expiration), so the ledger
//! holds at most the sensors of clients active in the last hour.
//!
//! Owns: [`Ledger`]. Pure: time is an input. Must never: hold a sensor of another shard's key.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use super::rate::{Rate, RateWindow};
use super::resolve::SensorKey;

/// Kafka drops quota sensors after an hour without activity.
pub const INACTIVE_SENSOR_EXPIRATION_MS: i64 = 3_600_000;
/// How often the ledger looks for idle sensors.
const SWEEP_INTERVAL_MS: i64 = 60_000;

/// The shard that owns `sensor` among `shard_count` shards (a stable hash: every shard
/// computes the same).
pub fn owner_shard(sensor: &SensorKey, shard_count: usize) -> usize {
    assert!(shard_count > 0);
    // `DefaultHasher::new()` has fixed keys: the same on every thread of this process.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    sensor.hash(&mut hasher);
    (hasher.finish() % shard_count as u64) as usize
}

/// What a recorded request earns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// How long the client must wait (and its connection stays muted); 0 within the quota.
    pub throttle_ms: i64,
}

/// One shard's sensors.
#[derive(Debug, Default)]
pub struct Ledger {
    sensors: HashMap<SensorKey, Rate>,
    last_sweep_ms: i64,
}

impl Ledger {
    pub fn sensor_count(&self) -> usize {
        self.sensors.len()
    }

    /// Records `value` bytes on `sensor` at `now_ms` and checks them against
    /// `limit_per_second`. With `unrecord_if_throttled` (Fetch: a throttled fetch answers with
    /// no data, so its bytes must not count, as in Kafka) a throttled value is taken back out.
    pub fn record(
        &mut self,
        window: RateWindow,
        sensor: &SensorKey,
        value: f64,
        limit_per_second: f64,
        unrecord_if_throttled: bool,
        now_ms: i64,
    ) -> Decision {
        self.sweep(now_ms);
        let rate = match self.sensors.get_mut(sensor) {
            Some(rate) => rate,
            None => self.sensors.entry(sensor.clone()).or_insert_with(|| Rate::new(window, now_ms)),
        };
        let throttle_ms = rate.record_and_throttle_ms(value, limit_per_second, now_ms);
        if throttle_ms > 0 && unrecord_if_throttled {
            rate.record(-value, now_ms);
        }
        Decision { throttle_ms }
    }

    fn sweep(&mut self, now_ms: i64) {
        if now_ms - self.last_sweep_ms < SWEEP_INTERVAL_MS {
            return;
        }
        self.last_sweep_ms = now_ms;
        self.sensors.retain(|_, rate| now_ms - rate.last_record_ms() < INACTIVE_SENSOR_EXPIRATION_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::super::resolve::QuotaKind;
    use super::*;

    fn sensor(client: &str) -> SensorKey {
        SensorKey { kind: QuotaKind::Produce, user: String::new(), client_id: client.into(), ip: String::new() }
    }

    #[test]
    fn every_shard_computes_the_same_owner_and_keys_spread() {
        let owners: Vec<usize> = (0..64).map(|i| owner_shard(&sensor(&format!("c{i}")), 4)).collect();
        let again: Vec<usize> =
            std::thread::spawn(|| (0..64).map(|i| owner_shard(&sensor(&format!("c{i}")), 4)).collect()).join().unwrap();
        assert_eq!(owners, again);
        assert!((0..4).all(|s| owners.contains(&s)), "{owners:?}");
    }

    #[test]
    fn rates_add_up_across_requests_from_anywhere_and_fetch_unrecords() {
        let mut ledger = Ledger::default();
        let window = RateWindow::default();
        // 10 s minimum window: 10,000 B at 1000 B/s is exactly the quota.
        assert_eq!(ledger.record(window, &sensor("a"), 6_000.0, 1_000.0, false, 0).throttle_ms, 0);
        assert_eq!(ledger.record(window, &sensor("a"), 4_000.0, 1_000.0, false, 0).throttle_ms, 0);
        // Another client is unaffected.
        assert_eq!(ledger.record(window, &sensor("b"), 1_000.0, 1_000.0, false, 0).throttle_ms, 0);
        // A fetch over the quota is throttled and does not count.
        assert_eq!(ledger.record(window, &sensor("a"), 10_000.0, 1_000.0, true, 0).throttle_ms, 10_000);
        assert_eq!(ledger.record(window, &sensor("a"), 0.0, 1_000.0, false, 0).throttle_ms, 0);
        // A produce over the quota counts.
        assert_eq!(ledger.record(window, &sensor("a"), 10_000.0, 1_000.0, false, 0).throttle_ms, 10_000);
        assert!(ledger.record(window, &sensor("a"), 0.0, 1_000.0, false, 0).throttle_ms > 0);
    }

    #[test]
    fn idle_sensors_expire() {
        let mut ledger = Ledger::default();
        let window = RateWindow::default();
        ledger.record(window, &sensor("old"), 1.0, 1_000.0, false, 0);
        ledger.record(window, &sensor("new"), 1.0, 1_000.0, false, INACTIVE_SENSOR_EXPIRATION_MS - 1);
        assert_eq!(ledger.sensor_count(), 2);
        ledger.record(window, &sensor("new"), 1.0, 1_000.0, false, INACTIVE_SENSOR_EXPIRATION_MS + SWEEP_INTERVAL_MS);
        assert_eq!(ledger.sensor_count(), 1);
    }
}
