//! Broker settings from a Kafka-style properties file (`--config server.properties`) and
//! `--set key=value` overrides. Owns the translation of broker-level names
//! (`log.segment.bytes`, `log.retention.ms`, `log.flush.interval.messages`, …) into the default
//! topic [`LogConfig`]. Must never: accept an unknown key silently — a typo is an error with a
//! message, like Kafka's config validation.

use std::collections::BTreeMap;
use std::path::Path;

use sluice_engine::log_config::{broker_default_name, FlushMode, LogConfig};

/// Parses `key=value` lines; `#` and `!` start comments, blank lines are ignored.
pub fn parse_properties(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| format!("line {}: expected key=value, got {line:?}", n + 1))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// Settings that are not topic defaults.
#[derive(Debug, Default, Clone)]
pub struct BrokerSettings {
    pub default_log_config: LogConfig,
    pub memory_budget_bytes: Option<u64>,
    pub retention_check_interval_ms: Option<u64>,
    /// `log.cleaner.enable`, `log.cleaner.backoff.ms`, `log.cleaner.dedupe.buffer.size` (whole
    /// broker; each shard gets its share).
    pub cleaner_enabled: Option<bool>,
    pub cleaner_backoff_ms: Option<u64>,
    pub cleaner_dedupe_buffer_bytes: Option<usize>,
    pub num_partitions: Option<i32>,
    pub auto_create_topics: Option<bool>,
    pub max_request_bytes: Option<usize>,
    pub node_id: Option<i32>,
    pub default_replication_factor: Option<i16>,
    pub tail_cache_bytes: Option<usize>,
    pub tail_cache_fill: Option<sluice_engine::partition_log::TailCacheFill>,
    /// `sluice.segment.preallocate.max.step.bytes` (0 = never preallocate).
    pub preallocate_max_step_bytes: Option<u64>,
    pub producer_id_expiration_ms: Option<i64>,
    pub direct_io: Option<bool>,
    pub fetch_sendfile: Option<bool>,
    pub fetch_readahead_bytes: Option<u64>,
    /// `max.incremental.fetch.session.cache.slots` (whole broker),
    /// `min.incremental.fetch.session.eviction.ms`.
    pub fetch_session_cache_slots: Option<usize>,
    pub fetch_session_eviction_ms: Option<u64>,
    pub ack_when_written: Option<bool>,
    pub produce_discard: Option<bool>,
    /// Consumer-group settings (`group.*`, `offsets.*`).
    pub group_config: sluice_net::group::GroupConfig,
    /// Transaction coordinator settings (`transaction.*`, `transactional.id.expiration.ms`).
    pub txn_config: sluice_net::txn::TxnConfig,
    /// Data replication settings (`replica.*`).
    pub replication_config: sluice_net::replication::config::ReplicationConfig,
    /// Authentication and authorization settings (`sasl.*`, `authorizer.class.name`, …).
    pub security_config: sluice_net::security::SecurityConfig,
    /// Client quota windows (`quota.window.num`, `quota.window.size.seconds`).
    pub quota_config: sluice_net::quota::QuotaConfig,
    /// `listeners`, `advertised.listeners` and the KRaft role settings (see [`crate::listeners`]).
    pub listeners: crate::listeners::ListenerSettings,
    /// `ssl.*` of the TLS listeners ([`sluice_net::security::tls_config`]).
    pub tls: sluice_net::security::tls_config::TlsSettings,
    /// `max.connections` (whole broker; default: a quarter of the open-files limit).
    pub max_connections: Option<usize>,
    /// `sluice.reader.cache.fds` (whole broker; default: an eighth of the open-files limit).
    pub reader_cache_fds: Option<usize>,
    /// `sluice.segment.cache.fds` (whole broker; default: a quarter of the open-files limit).
    pub segment_cache_fds: Option<usize>,
    /// `log.dirs` (or `log.dir`): the data directory.
    pub log_dir: Option<std::path::PathBuf>,
    /// `broker.rack`.
    pub broker_rack: Option<String>,
    /// The quorum's timing (Kafka names and defaults in [`sluice_net::controller_quorum::QuorumConfig`]):
    /// `broker.heartbeat.interval.ms`, `broker.session.timeout.ms`,
    /// `controller.quorum.election.timeout.ms`, `controller.quorum.fetch.timeout.ms`.
    pub heartbeat_interval_ms: Option<u64>,
    pub session_timeout_ms: Option<u64>,
    pub election_timeout_ms: Option<u64>,
    pub fetch_timeout_ms: Option<u64>,
    /// `auto.leader.rebalance.enable`, `leader.imbalance.check.interval.seconds`,
    /// `leader.imbalance.per.broker.percentage`.
    pub auto_leader_rebalance: Option<bool>,
    pub leader_imbalance_check_interval_s: Option<u64>,
    pub leader_imbalance_percentage: Option<u32>,
    /// `sluice.metadata.snapshot.entries`.
    pub metadata_snapshot_entries: Option<u64>,
    /// `sluice.metrics.addr`: `Some(None)` disables the metrics endpoint (`none` or empty).
    pub metrics_addr: Option<Option<std::net::SocketAddr>>,
    /// `sluice.hot.keys.enable` (default true): sample produce batches for hot keys.
    pub hot_keys_enabled: Option<bool>,
    /// Whether `log.dirs` set `log_dir` (it wins over `log.dir`, as in Kafka).
    log_dirs_given: bool,
}

impl BrokerSettings {
    /// Copies the protocol-layer settings into the broker config.
    pub fn apply_to(&self, config: &mut sluice_net::broker_config::BrokerConfig) {
        if let Some(n) = self.num_partitions {
            config.num_partitions = n;
        }
        if let Some(b) = self.auto_create_topics {
            config.auto_create_topics = b;
        }
        if let Some(m) = self.max_request_bytes {
            config.max_request_bytes = m;
        }
        if let Some(id) = self.node_id {
            config.node_id = id;
        }
        if let Some(rf) = self.default_replication_factor {
            config.default_replication_factor = rf;
        }
        if let Some(b) = self.fetch_sendfile {
            config.fetch_sendfile = b;
        }
        if let Some(b) = self.fetch_readahead_bytes {
            config.fetch_readahead_bytes = b;
        }
        if let Some(slots) = self.fetch_session_cache_slots {
            config.fetch_sessions.cache_slots = slots;
        }
        if let Some(ms) = self.fetch_session_eviction_ms {
            config.fetch_sessions.eviction_ms = ms;
        }
        if let Some(b) = self.ack_when_written {
            config.ack_when_written = b;
        }
        if let Some(b) = self.produce_discard {
            config.produce_discard = b;
        }
        config.group = self.group_config.clone();
        config.txn = self.txn_config.clone();
        config.replication = self.replication_config.clone();
        config.security = self.security_config.clone();
        config.quota = self.quota_config;
        config.txn.hold_markers = crate::fault_points::txn_hold_markers();
    }
}

fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("{key}: invalid value {value:?}"))
}

/// A count or duration that must be at least 1.
fn parse_at_least_one<T: std::str::FromStr + PartialOrd + From<u8>>(key: &str, value: &str) -> Result<T, String> {
    let n: T = parse(key, value)?;
    if n < T::from(1) {
        return Err(format!("{key}: must be at least 1"));
    }
    Ok(n)
}

/// Applies broker properties. Accepts broker names (`log.retention.ms`), topic names
/// (`retention.ms`), `sluice.flush.mode` (always | never | interval:MS),
/// `sluice.shard.memory.bytes`, `sluice.tail.cache.bytes` (per partition),
/// `sluice.tail.cache.fill` (tailing | always) and `sluice.segment.preallocate.max.step.bytes`.
pub fn apply(settings: &mut BrokerSettings, props: &BTreeMap<String, String>) -> Result<(), String> {
    let topic_names: Vec<&'static str> = settings.default_log_config.describe().iter().map(|e| e.name).collect();
    for (key, value) in props {
        match key.as_str() {
            "sluice.flush.mode" => {
                let mode = FlushMode::parse(value).map_err(|e| format!("{key}: {e}"))?;
                settings.default_log_config.apply_flush_mode(mode);
            }
            "sluice.tail.cache.bytes" => settings.tail_cache_bytes = Some(parse(key, value)?),
            "sluice.tail.cache.fill" => {
                let fill =
                    sluice_engine::partition_log::TailCacheFill::parse(value).map_err(|e| format!("{key}: {e}"))?;
                settings.tail_cache_fill = Some(fill);
            }
            "sluice.segment.preallocate.max.step.bytes" => {
                settings.preallocate_max_step_bytes = Some(parse(key, value)?)
            }
            "sluice.fetch.sendfile" => settings.fetch_sendfile = Some(parse(key, value)?),
            "sluice.fetch.readahead.bytes" => settings.fetch_readahead_bytes = Some(parse(key, value)?),
            "max.incremental.fetch.session.cache.slots" => {
                settings.fetch_session_cache_slots = Some(parse(key, value)?)
            }
            "min.incremental.fetch.session.eviction.ms" => {
                settings.fetch_session_eviction_ms = Some(parse(key, value)?)
            }
            "sluice.metrics.addr" => {
                settings.metrics_addr = Some(parse_metrics_addr(value).map_err(|e| format!("{key}: {e}"))?)
            }
            "sluice.hot.keys.enable" => settings.hot_keys_enabled = Some(parse(key, value)?),
            "sluice.produce.discard" => settings.produce_discard = Some(parse(key, value)?),
            "sluice.segment.io" => {
                settings.direct_io = Some(match value.as_str() {
                    "direct" => true,
                    "buffered" => false,
                    other => return Err(format!("{key}: expected direct or buffered, got {other:?}")),
                })
            }
            "sluice.ack.on" => {
                settings.ack_when_written = Some(match value.as_str() {
                    "written" => true,
                    "buffered" => false,
                    other => return Err(format!("{key}: expected written or buffered, got {other:?}")),
                })
            }
            "sluice.shard.memory.bytes" => {
                settings.memory_budget_bytes =
                    Some(value.parse().map_err(|_| format!("{key}: not a number: {value}"))?);
            }
            "log.retention.check.interval.ms" => settings.retention_check_interval_ms = Some(parse(key, value)?),
            "log.cleaner.enable" => settings.cleaner_enabled = Some(parse(key, value)?),
            "log.cleaner.backoff.ms" => settings.cleaner_backoff_ms = Some(parse_at_least_one(key, value)?),
            "log.cleaner.dedupe.buffer.size" => {
                settings.cleaner_dedupe_buffer_bytes = Some(parse_at_least_one(key, value)?)
            }
            // Checked with retention (log.retention.check.interval.ms), not on its own timer.
            "producer.id.expiration.ms" => settings.producer_id_expiration_ms = Some(parse_at_least_one(key, value)?),
            "num.partitions" => settings.num_partitions = Some(parse_at_least_one(key, value)?),
            "auto.create.topics.enable" => settings.auto_create_topics = Some(parse(key, value)?),
            "socket.request.max.bytes" => {
                let n: usize = parse(key, value)?;
                if n < 1024 || n > i32::MAX as usize {
                    return Err(format!("{key}: must be between 1024 and {}", i32::MAX));
                }
                settings.max_request_bytes = Some(n);
            }
            "node.id" | "broker.id" => settings.node_id = Some(parse(key, value)?),
            "default.replication.factor" => settings.default_replication_factor = Some(parse(key, value)?),
            "group.min.session.timeout.ms"
            | "group.max.session.timeout.ms"
            | "group.max.size"
            | "group.initial.rebalance.delay.ms"
            | "offsets.topic.num.partitions"
            | "offsets.topic.replication.factor"
            | "offsets.retention.minutes"
            | "offsets.retention.check.interval.ms"
            | "offset.metadata.max.bytes" => apply_group_setting(&mut settings.group_config, key, value)?,
            "group.coordinator.rebalance.protocols"
            | "group.consumer.assignors"
            | "group.consumer.session.timeout.ms"
            | "group.consumer.min.session.timeout.ms"
            | "group.consumer.max.session.timeout.ms"
            | "group.consumer.heartbeat.interval.ms"
            | "group.consumer.min.heartbeat.interval.ms"
            | "group.consumer.max.heartbeat.interval.ms"
            | "group.consumer.max.size"
            | "group.consumer.migration.policy" => {
                apply_consumer_group_setting(&mut settings.group_config, key, value)?
            }
            "transaction.state.log.num.partitions"
            | "transaction.state.log.replication.factor"
            | "transaction.max.timeout.ms"
            | "transaction.abort.timed.out.transaction.cleanup.interval.ms"
            | "transaction.remove.expired.transaction.cleanup.interval.ms"
            | "transactional.id.expiration.ms" => apply_txn_setting(&mut settings.txn_config, key, value)?,
            key if sluice_net::replication::config::REPLICATION_KEYS.contains(&key) => {
                settings.replication_config.set(key, value)?
            }
            key if sluice_net::security::SECURITY_KEYS.contains(&key) => settings.security_config.set(key, value)?,
            key if sluice_net::quota::QUOTA_KEYS.contains(&key) => settings.quota_config.set(key, value)?,
            "broker.rack" => {
                if value.is_empty() || value.len() > 255 {
                    return Err(format!("{key}: expected a rack name of 1 to 255 characters"));
                }
                settings.broker_rack = Some(value.clone());
            }
            "broker.heartbeat.interval.ms" => settings.heartbeat_interval_ms = Some(parse_at_least_one(key, value)?),
            "broker.session.timeout.ms" => settings.session_timeout_ms = Some(parse_at_least_one(key, value)?),
            "controller.quorum.election.timeout.ms" => {
                settings.election_timeout_ms = Some(parse_at_least_one(key, value)?)
            }
            "auto.leader.rebalance.enable" => settings.auto_leader_rebalance = Some(parse(key, value)?),
            "leader.imbalance.check.interval.seconds" => {
                settings.leader_imbalance_check_interval_s = Some(parse_at_least_one(key, value)?)
            }
            "leader.imbalance.per.broker.percentage" => {
                let n: u32 = parse(key, value)?;
                if n > 100 {
                    return Err(format!("{key}: must be between 0 and 100"));
                }
                settings.leader_imbalance_percentage = Some(n);
            }
            "sluice.metadata.snapshot.entries" => {
                let n: u64 = parse_at_least_one(key, value)?;
                if n < 10 {
                    return Err(format!("{key}: must be at least 10"));
                }
                settings.metadata_snapshot_entries = Some(n);
            }
            "controller.quorum.fetch.timeout.ms" => settings.fetch_timeout_ms = Some(parse_at_least_one(key, value)?),
            "max.connections" => settings.max_connections = Some(parse_at_least_one(key, value)?),
            "sluice.reader.cache.fds" => settings.reader_cache_fds = Some(parse_at_least_one(key, value)?),
            "sluice.segment.cache.fds" => settings.segment_cache_fds = Some(parse_at_least_one(key, value)?),
            "log.dirs" => {
                settings.log_dir = Some(crate::listeners::parse_log_dirs(key, value)?);
                settings.log_dirs_given = true;
            }
            "log.dir" if !settings.log_dirs_given => {
                settings.log_dir = Some(crate::listeners::parse_log_dirs(key, value)?)
            }
            "log.dir" => {}
            // Thread-pool sizes of Kafka's network and I/O layers: sluice has one shard per core
            // (`--cores`) instead. Accepted so a Kafka server.properties can be reused.
            "num.network.threads" | "num.io.threads" => {
                tracing::info!(key, "setting has no meaning in a thread-per-core broker; --cores sets the shards");
            }
            key if settings.listeners.accept(key, value) => {}
            key if settings.tls.accept(key, value)? => {}
            _ => {
                let topic_name = topic_names
                    .iter()
                    .find(|t| broker_default_name(t) == Some(key.as_str()) || **t == key.as_str())
                    .ok_or_else(|| format!("unknown broker config {key:?}"))?;
                settings.default_log_config.set(topic_name, value).map_err(|e| format!("{key}: {e}"))?;
            }
        }
    }
    Ok(())
}

/// One consumer-protocol (KIP-848) group setting: Kafka's names; the bounds across settings
/// are checked once all are read (`ConsumerGroupConfig::validate`, in `settings_from`).
fn apply_consumer_group_setting(
    group: &mut sluice_net::group::GroupConfig,
    key: &str,
    value: &str,
) -> Result<(), String> {
    let list = || value.split(',').map(str::trim).filter(|v| !v.is_empty());
    match key {
        "group.coordinator.rebalance.protocols" => {
            let mut consumer = false;
            let mut classic = false;
            for protocol in list() {
                match protocol {
                    "classic" => classic = true,
                    "consumer" => consumer = true,
                    // Share groups (KIP-932) and streams groups are not implemented.
                    other => {
                        return Err(format!("{key}: unsupported protocol {other:?} (supported: classic, consumer)"))
                    }
                }
            }
            if !classic {
                return Err(format!("{key}: must include classic"));
            }
            group.consumer_protocol_enabled = consumer;
        }
        // sluice converts only empty groups between the protocols (Kafka's `disabled` for
        // groups with members; see README): other policies are refused, not ignored.
        "group.consumer.migration.policy" => {
            if !value.trim().eq_ignore_ascii_case("disabled") {
                return Err(format!(
                    "{key}: only `disabled` is supported (no online upgrade or downgrade of a group with members)"
                ));
            }
        }
        "group.consumer.assignors" => {
            let assignors = list()
                .map(|a| {
                    sluice_net::group::config::AssignorName::parse(a)
                        .ok_or_else(|| format!("{key}: unknown assignor {a:?} (supported: uniform, range)"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if assignors.is_empty() {
                return Err(format!("{key}: needs at least one assignor"));
            }
            group.consumer.assignors = assignors;
        }
        _ => {
            let n: u64 = parse_at_least_one(key, value)?;
            if n > i32::MAX as u64 {
                return Err(format!("{key}: value {value} out of range"));
            }
            let c = &mut group.consumer;
            match key {
                "group.consumer.session.timeout.ms" => c.session_timeout_ms = n,
                "group.consumer.min.session.timeout.ms" => c.min_session_timeout_ms = n,
                "group.consumer.max.session.timeout.ms" => c.max_session_timeout_ms = n,
                "group.consumer.heartbeat.interval.ms" => c.heartbeat_interval_ms = n,
                "group.consumer.min.heartbeat.interval.ms" => c.min_heartbeat_interval_ms = n,
                "group.consumer.max.heartbeat.interval.ms" => c.max_heartbeat_interval_ms = n,
                "group.consumer.max.size" => c.max_size = n.min(1_000_000) as usize,
                _ => return Err(format!("unknown broker config {key:?}")),
            }
        }
    }
    Ok(())
}

/// One consumer-group setting (Kafka name and bounds).
fn apply_group_setting(group: &mut sluice_net::group::GroupConfig, key: &str, value: &str) -> Result<(), String> {
    let n: u64 = parse(key, value)?;
    match key {
        "group.min.session.timeout.ms" => group.min_session_timeout_ms = n,
        "group.max.session.timeout.ms" => group.max_session_timeout_ms = n,
        "group.max.size" if n >= 1 => group.max_size = n.min(1_000_000) as usize,
        "group.initial.rebalance.delay.ms" => group.initial_rebalance_delay_ms = n,
        "offsets.topic.num.partitions" if (1..=10_000).contains(&n) => group.offsets_topic_num_partitions = n as i32,
        "offsets.topic.replication.factor" if (1..=i16::MAX as u64).contains(&n) => {
            group.offsets_topic_replication_factor = n as i16
        }
        "offsets.retention.minutes" if n >= 1 => group.offsets_retention_ms = n.saturating_mul(60_000),
        "offsets.retention.check.interval.ms" if n >= 1 => group.offsets_retention_check_interval_ms = n,
        "offset.metadata.max.bytes" => group.offset_metadata_max_bytes = n.min(1 << 20) as usize,
        _ => return Err(format!("{key}: value {value} out of range")),
    }
    if group.min_session_timeout_ms > group.max_session_timeout_ms {
        return Err("group.min.session.timeout.ms exceeds group.max.session.timeout.ms".into());
    }
    Ok(())
}

/// One transaction coordinator setting (Kafka name and bounds: every one at least 1).
fn apply_txn_setting(txn: &mut sluice_net::txn::TxnConfig, key: &str, value: &str) -> Result<(), String> {
    let n: u64 = parse_at_least_one(key, value)?;
    match key {
        "transaction.state.log.num.partitions" if n <= 10_000 => txn.state_log_num_partitions = n as i32,
        "transaction.state.log.replication.factor" if n <= i16::MAX as u64 => {
            txn.state_log_replication_factor = n as i16
        }
        "transaction.max.timeout.ms" if n <= i32::MAX as u64 => txn.max_timeout_ms = n,
        "transaction.abort.timed.out.transaction.cleanup.interval.ms" => txn.abort_timed_out_interval_ms = n,
        "transaction.remove.expired.transaction.cleanup.interval.ms" => txn.remove_expired_interval_ms = n,
        "transactional.id.expiration.ms" if n <= i32::MAX as u64 => txn.id_expiration_ms = n,
        _ => return Err(format!("{key}: value {value} out of range")),
    }
    Ok(())
}

/// A metrics address: `host:port`, or `none`/empty for no metrics endpoint.
pub fn parse_metrics_addr(value: &str) -> Result<Option<std::net::SocketAddr>, String> {
    let value = value.trim();
    if value.is_empty() || value.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| format!("expected host:port (an IP address) or none, got {value:?}"))
}

/// Loads a properties file.
pub fn load_file(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_properties(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_and_topic_names_both_set_topic_defaults() {
        let props =
            parse_properties("# comment\nlog.segment.bytes=2097152\nretention.ms = 1000\n\nsluice.flush.mode=always\n")
                .unwrap();
        let mut s = BrokerSettings::default();
        apply(&mut s, &props).unwrap();
        assert_eq!(s.default_log_config.segment_bytes, 2097152);
        assert_eq!(s.default_log_config.retention_ms, 1000);
        assert_eq!(s.default_log_config.flush_policy().every_messages, 1);
    }

    #[test]
    fn bad_input_is_an_error_not_a_default() {
        let mut s = BrokerSettings::default();
        assert!(parse_properties("novalue\n").is_err());
        assert!(apply(&mut s, &parse_properties("log.segment.bytes=-5").unwrap()).is_err());
        assert!(apply(&mut s, &parse_properties("log.segmnet.bytes=5").unwrap()).is_err());
        assert!(apply(&mut s, &parse_properties("sluice.flush.mode=sometimes").unwrap()).is_err());
        assert!(apply(&mut s, &parse_properties("sluice.tail.cache.fill=often").unwrap()).is_err());
        assert!(apply(&mut s, &parse_properties("sluice.segment.preallocate.max.step.bytes=-1").unwrap()).is_err());
    }

    #[test]
    fn transaction_settings_use_kafka_names_defaults_and_bounds() {
        let mut s = BrokerSettings::default();
        assert_eq!(s.txn_config, sluice_net::txn::TxnConfig::default());
        assert_eq!(s.txn_config.max_timeout_ms, 900_000);
        let props = parse_properties(
            "transaction.max.timeout.ms=60000\ntransaction.abort.timed.out.transaction.cleanup.interval.ms=200\n\
             transactional.id.expiration.ms=1000\ntransaction.state.log.num.partitions=3\n",
        )
        .unwrap();
        apply(&mut s, &props).unwrap();
        assert_eq!(s.txn_config.max_timeout_ms, 60_000);
        assert_eq!(s.txn_config.abort_timed_out_interval_ms, 200);
        assert_eq!(s.txn_config.id_expiration_ms, 1000);
        assert_eq!(s.txn_config.state_log_num_partitions, 3);
        assert!(apply(&mut s, &parse_properties("transaction.max.timeout.ms=0").unwrap()).is_err());
        assert!(apply(&mut s, &parse_properties("transaction.state.log.num.partitions=100000").unwrap()).is_err());
    }

    #[test]
    fn consumer_group_settings_use_kafka_names_defaults_and_bounds() {
        use sluice_net::group::config::AssignorName;
        let mut s = BrokerSettings::default();
        assert!(s.group_config.consumer_protocol_enabled);
        assert_eq!(s.group_config.consumer.session_timeout_ms, 45_000);
        assert_eq!(s.group_config.consumer.heartbeat_interval_ms, 5_000);
        let props = parse_properties(
            "group.coordinator.rebalance.protocols=classic\ngroup.consumer.assignors=range,uniform\n\
             group.consumer.session.timeout.ms=3000\ngroup.consumer.min.session.timeout.ms=1000\n\
             group.consumer.heartbeat.interval.ms=500\ngroup.consumer.min.heartbeat.interval.ms=100\n",
        )
        .unwrap();
        apply(&mut s, &props).unwrap();
        assert!(!s.group_config.consumer_protocol_enabled);
        assert_eq!(s.group_config.consumer.assignors, vec![AssignorName::Range, AssignorName::Uniform]);
        assert_eq!(s.group_config.consumer.session_timeout_ms, 3000);
        assert_eq!(s.group_config.consumer.validate(), Ok(()));
        apply(&mut s, &parse_properties("group.consumer.migration.policy=disabled").unwrap()).unwrap();
        for bad in [
            "group.coordinator.rebalance.protocols=consumer",
            "group.coordinator.rebalance.protocols=classic,share",
            "group.consumer.assignors=sticky",
            "group.consumer.assignors=",
            "group.consumer.session.timeout.ms=0",
            "group.consumer.session.timeout.ms=x",
            "group.consumer.migration.policy=bidirectional",
        ] {
            assert!(apply(&mut s, &parse_properties(bad).unwrap()).is_err(), "{bad}");
        }
        let mut s = BrokerSettings::default();
        apply(&mut s, &parse_properties("group.consumer.session.timeout.ms=1000").unwrap()).unwrap();
        assert!(s.group_config.consumer.validate().is_err(), "below group.consumer.min.session.timeout.ms");
        let mut s = BrokerSettings::default();
        apply(&mut s, &parse_properties("group.consumer.heartbeat.interval.ms=50000").unwrap()).unwrap();
        assert!(s.group_config.consumer.validate().is_err(), "above the max heartbeat interval");
    }

    #[test]
    fn fetch_session_settings_use_kafka_names_and_defaults() {
        let mut s = BrokerSettings::default();
        let mut config = sluice_net::broker_config::BrokerConfig::new("/tmp".into(), "h".into(), 1);
        s.apply_to(&mut config);
        assert_eq!((config.fetch_sessions.cache_slots, config.fetch_sessions.eviction_ms), (1000, 120_000));
        let props = parse_properties(
            "max.incremental.fetch.session.cache.slots=0\nmin.incremental.fetch.session.eviction.ms=500\n",
        )
        .unwrap();
        apply(&mut s, &props).unwrap();
        s.apply_to(&mut config);
        assert_eq!((config.fetch_sessions.cache_slots, config.fetch_sessions.eviction_ms), (0, 500));
        assert!(apply(&mut s, &parse_properties("max.incremental.fetch.session.cache.slots=-1").unwrap()).is_err());
    }

    #[test]
    fn metrics_addr_is_an_address_or_none() {
        let mut s = BrokerSettings::default();
        apply(&mut s, &parse_properties("sluice.metrics.addr=127.0.0.1:9700").unwrap()).unwrap();
        assert_eq!(s.metrics_addr, Some(Some("127.0.0.1:9700".parse().unwrap())));
        apply(&mut s, &parse_properties("sluice.metrics.addr=none").unwrap()).unwrap();
        assert_eq!(s.metrics_addr, Some(None));
        apply(&mut s, &parse_properties("sluice.metrics.addr=").unwrap()).unwrap();
        assert_eq!(s.metrics_addr, Some(None));
        assert!(apply(&mut s, &parse_properties("sluice.metrics.addr=localhost").unwrap()).is_err());
    }

    #[test]
    fn tail_cache_fill_is_tailing_or_always() {
        use sluice_engine::partition_log::TailCacheFill;
        let mut s = BrokerSettings::default();
        assert_eq!(s.tail_cache_fill, None, "the engine's default (tailing) applies");
        apply(&mut s, &parse_properties("sluice.tail.cache.fill=always").unwrap()).unwrap();
        assert_eq!(s.tail_cache_fill, Some(TailCacheFill::Always));
        apply(&mut s, &parse_properties("sluice.tail.cache.fill=tailing").unwrap()).unwrap();
        assert_eq!(s.tail_cache_fill, Some(TailCacheFill::Tailing));
    }
}
