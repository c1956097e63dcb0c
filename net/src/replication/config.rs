//! Data-replication settings, with Kafka's broker config names, defaults and bounds.
//!
//! Owns: the values and [`ReplicationConfig::set`], which parses one of them. Must never:
//! accept a value outside its bounds (an error names the key), or hold per-shard state.

use super::read_replica::ReplicaSelector;

/// Kafka's `replica.*` broker settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// `replica.lag.time.max.ms` (Kafka default 30000): a follower not caught up with its
    /// leader's log end for this long leaves the ISR.
    pub lag_time_max_ms: i64,
    /// `replica.fetch.max.bytes` (Kafka default 1048576): per partition in one follower fetch.
    pub fetch_max_bytes: i32,
    /// `replica.fetch.response.max.bytes` (Kafka default 10485760): one whole follower fetch.
    pub fetch_response_max_bytes: i32,
    /// `replica.fetch.wait.max.ms` (Kafka default 500): a follower fetch's long poll.
    pub fetch_wait_max_ms: i32,
    /// `replica.fetch.min.bytes` (Kafka default 1).
    pub fetch_min_bytes: i32,
    /// `replica.fetch.backoff.ms` (Kafka default 1000): after a failed fetch (a broken
    /// connection, a leader that is not one yet).
    pub fetch_backoff_ms: u64,
    /// `replica.selector.class` (Kafka default: none, consumers read from leaders): KIP-392.
    pub selector: ReplicaSelector,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            lag_time_max_ms: 30_000,
            fetch_max_bytes: 1_048_576,
            fetch_response_max_bytes: 10_485_760,
            fetch_wait_max_ms: 500,
            fetch_min_bytes: 1,
            fetch_backoff_ms: 1_000,
            selector: ReplicaSelector::Leader,
        }
    }
}

/// The keys [`ReplicationConfig::set`] takes.
pub const REPLICATION_KEYS: &[&str] = &[
    "replica.lag.time.max.ms",
    "replica.fetch.max.bytes",
    "replica.fetch.response.max.bytes",
    "replica.fetch.wait.max.ms",
    "replica.fetch.min.bytes",
    "replica.fetch.backoff.ms",
    "replica.selector.class",
];

impl ReplicationConfig {
    /// Sets one `replica.*` key; an unknown key or a value out of bounds is an error.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        if key == "replica.selector.class" {
            self.selector = ReplicaSelector::parse(value)?;
            return Ok(());
        }
        let n: i64 = value.trim().parse().map_err(|_| format!("{key}: expected a number, got {value:?}"))?;
        let out_of_range = || format!("{key}: value {value} out of range");
        let int = |low: i64, high: i64| if (low..=high).contains(&n) { Ok(n) } else { Err(out_of_range()) };
        match key {
            "replica.lag.time.max.ms" => self.lag_time_max_ms = int(1, i64::from(i32::MAX))?,
            "replica.fetch.max.bytes" => self.fetch_max_bytes = int(1, i64::from(i32::MAX))? as i32,
            "replica.fetch.response.max.bytes" => self.fetch_response_max_bytes = int(1, i64::from(i32::MAX))? as i32,
            "replica.fetch.wait.max.ms" => self.fetch_wait_max_ms = int(0, 60_000)? as i32,
            "replica.fetch.min.bytes" => self.fetch_min_bytes = int(0, i64::from(i32::MAX))? as i32,
            "replica.fetch.backoff.ms" => self.fetch_backoff_ms = int(0, 3_600_000)? as u64,
            _ => return Err(format!("unknown replication setting {key:?}")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_defaults_and_bounds() {
        let mut c = ReplicationConfig::default();
        assert_eq!(
            (c.lag_time_max_ms, c.fetch_max_bytes, c.fetch_wait_max_ms, c.fetch_min_bytes),
            (30_000, 1 << 20, 500, 1)
        );
        c.set("replica.lag.time.max.ms", "2000").unwrap();
        assert_eq!(c.lag_time_max_ms, 2000);
        assert!(c.set("replica.lag.time.max.ms", "0").is_err());
        c.set("replica.selector.class", "org.apache.kafka.common.replica.RackAwareReplicaSelector").unwrap();
        assert_eq!(c.selector, ReplicaSelector::RackAware);
        assert!(c.set("replica.selector.class", "Nope").is_err());
        assert!(c.set("replica.fetch.max.bytes", "x").is_err());
        assert!(c.set("replica.fetch.wait.max.ms", "-1").is_err());
        for key in REPLICATION_KEYS.iter().filter(|k| **k != "replica.selector.class") {
            c.set(key, "1").unwrap();
        }
    }
}
