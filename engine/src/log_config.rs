//! Per-topic log configuration: Kafka's topic config names, defaults, parsing, validation and
//! the way DescribeConfigs renders them.
//!
//! Owns: the `LogConfig` value a partition log runs with, the table of topic configs sluice
//! supports (name, type, default, validator, broker-level synonym, documentation), and the
//! simple flush-mode shorthand (`always` / `interval:N` / `never`).
//!
//! Sources (Kafka 4.x): `storage/.../internals/log/LogConfig.java` (the `define(...)` calls:
//! types, defaults, validators; `validateValues` for the compaction-lag cross check),
//! `server-common/.../config/ServerLogConfigs.java` (defaults shared with broker configs, e.g.
//! `LOG_MESSAGE_TIMESTAMP_AFTER_MAX_MS_DEFAULT = 3600000`, changed from `Long.MAX_VALUE` in 4.0
//! by KIP-1030), `ServerTopicConfigSynonyms.java` (broker synonyms), and `ConfigDef.parseType`
//! (values are trimmed; booleans are case-insensitive; lists split on commas).
//!
//! Deliberate differences from Kafka: `segment.bytes` accepts values down to
//! `SLUICE_MIN_SEGMENT_BYTES` (1024) so tests can roll segments quickly — Kafka 4.x requires
//! `KAFKA_MIN_SEGMENT_BYTES` (1 MiB) and offers the internal `internal.segment.bytes` for tests;
//! `min.cleanable.dirty.ratio` rejects NaN, which Kafka's `Range.between` lets through; and
//! `cleanup.policy` rejects repeated policies.
//! Kafka 4.x topic configs not modelled: `compression.{gzip,lz4,zstd}.level`,
//! `remote.storage.enable`, `remote.log.copy.disable`, `remote.log.delete.on.disable`,
//! `local.retention.{ms,bytes}`, `{leader,follower}.replication.throttled.replicas`, and the
//! no-op `message.downconversion.enable`; setting them yields `ConfigError::Unknown`.
//!
//! Must never: do I/O, read the environment, or accept a value Kafka's validator would reject
//! (other than the `segment.bytes` floor above).

use std::fmt;

use crate::error_code::ErrorCode;

/// Kafka 4.x's minimum `segment.bytes` (`atLeast(1024 * 1024)`).
pub const KAFKA_MIN_SEGMENT_BYTES: i32 = 1024 * 1024;
/// Sluice's minimum `segment.bytes`: small segments for tests.
pub const SLUICE_MIN_SEGMENT_BYTES: i32 = 1024;
/// Longest rejected value quoted back in a `ConfigError`.
const MAX_QUOTED_VALUE_BYTES: usize = 256;

/// `message.timestamp.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

impl TimestampType {
    pub fn name(self) -> &'static str {
        match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }

    /// Exact, case-sensitive match, as Kafka's `ValidString.in`.
    pub fn parse(value: &str) -> Option<TimestampType> {
        match value {
            "CreateTime" => Some(TimestampType::CreateTime),
            "LogAppendTime" => Some(TimestampType::LogAppendTime),
            _ => None,
        }
    }
}

/// `compression.type` (Kafka's `BrokerCompressionType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BrokerCompressionType {
    /// Keep whatever codec the producer used.
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl BrokerCompressionType {
    pub fn name(self) -> &'static str {
        match self {
            BrokerCompressionType::Producer => "producer",
            BrokerCompressionType::Uncompressed => "uncompressed",
            BrokerCompressionType::Gzip => "gzip",
            BrokerCompressionType::Snappy => "snappy",
            BrokerCompressionType::Lz4 => "lz4",
            BrokerCompressionType::Zstd => "zstd",
        }
    }

    /// Exact, case-sensitive match, as Kafka's `ValidString.in`.
    pub fn parse(value: &str) -> Option<BrokerCompressionType> {
        match value {
            "producer" => Some(BrokerCompressionType::Producer),
            "uncompressed" => Some(BrokerCompressionType::Uncompressed),
            "gzip" => Some(BrokerCompressionType::Gzip),
            "snappy" => Some(BrokerCompressionType::Snappy),
            "lz4" => Some(BrokerCompressionType::Lz4),
            "zstd" => Some(BrokerCompressionType::Zstd),
            _ => None,
        }
    }
}

/// One element of `cleanup.policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CleanupPolicy {
    Delete,
    Compact,
}

impl CleanupPolicy {
    pub fn name(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
        }
    }

    pub fn parse(value: &str) -> Option<CleanupPolicy> {
        match value {
            "delete" => Some(CleanupPolicy::Delete),
            "compact" => Some(CleanupPolicy::Compact),
            _ => None,
        }
    }
}

/// Kafka's `ConfigDef.Type`, as DescribeConfigs reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Short,
    Long,
    Double,
    List,
    Class,
    Password,
}

impl ConfigType {
    /// The `ConfigType` int8 of DescribeConfigsResponse v3+ (`DescribeConfigsResponse.ConfigType`:
    /// 0 is UNKNOWN).
    pub fn wire_id(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Short => 4,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
            ConfigType::Class => 8,
            ConfigType::Password => 9,
        }
    }
}

/// One row of `describe`: a topic config with its current and default values, rendered as
/// Kafka renders them (`ConfigDef.convertToString`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: &'static str,
    pub value: String,
    pub default_value: String,
    pub is_default: bool,
    pub read_only: bool,
    pub sensitive: bool,
    pub config_type: ConfigType,
    pub documentation: &'static str,
}

/// A rejected topic config. Every variant maps to Kafka's INVALID_CONFIG.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// Not a topic config sluice knows.
    Unknown { name: String },
    /// A known config given a value that does not parse or fails its validator. `value` is
    /// shortened to a bounded length.
    Invalid { name: String, value: String, reason: String },
}

impl ConfigError {
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::INVALID_CONFIG
    }

    fn invalid(name: &str, value: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { name: shorten(name), value: shorten(value), reason: reason.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Unknown { name } => write!(f, "Unknown topic config name: {name}"),
            ConfigError::Invalid { name, value, reason } => {
                write!(f, "Invalid value {value} for configuration {name}: {reason}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

fn shorten(text: &str) -> String {
    let mut end = text.len().min(MAX_QUOTED_VALUE_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// The log configuration of one topic. Field comments give the Kafka name, type, default and
/// valid range. Values outside those ranges can only come from writing fields directly;
/// `validate` catches them.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes` INT, 1073741824 (1 GiB). Kafka: >= 1048576; sluice: >= 1024.
    pub segment_bytes: i32,
    /// `segment.ms` LONG, 604800000 (7 days), >= 1.
    pub segment_ms: i64,
    /// `segment.jitter.ms` LONG, 0, >= 0.
    pub segment_jitter_ms: i64,
    /// `segment.index.bytes` INT, 10485760 (10 MiB), >= 4.
    pub segment_index_bytes: i32,
    /// `index.interval.bytes` INT, 4096, >= 0.
    pub index_interval_bytes: i32,
    /// `retention.ms` LONG, 604800000 (7 days), >= -1; -1 means no time limit.
    pub retention_ms: i64,
    /// `retention.bytes` LONG, -1, any; negative means no size limit.
    pub retention_bytes: i64,
    /// `flush.messages` LONG, i64::MAX, >= 1.
    pub flush_messages: i64,
    /// `flush.ms` LONG, i64::MAX, >= 0.
    pub flush_ms: i64,
    /// `max.message.bytes` INT, 1048588 (1 MiB + the 12-byte log overhead), >= 0.
    pub max_message_bytes: i32,
    /// `message.timestamp.type` STRING, CreateTime.
    pub message_timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms` LONG, i64::MAX, >= 0.
    pub message_timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms` LONG, 3600000 (1 hour, since Kafka 4.0), >= 0.
    pub message_timestamp_after_max_ms: i64,
    /// `cleanup.policy` LIST of delete/compact, "delete". Empty means neither (Kafka 4.2
    /// documents it as infinite retention). No policy appears twice.
    pub cleanup_policy: Vec<CleanupPolicy>,
    /// `compression.type` STRING, producer.
    pub compression_type: BrokerCompressionType,
    /// `min.insync.replicas` INT, 1, >= 1.
    pub min_insync_replicas: i32,
    /// `unclean.leader.election.enable` BOOLEAN, false.
    pub unclean_leader_election_enable: bool,
    /// `file.delete.delay.ms` LONG, 60000, >= 0.
    pub file_delete_delay_ms: i64,
    /// `preallocate` BOOLEAN, false.
    pub preallocate: bool,
    /// `min.compaction.lag.ms` LONG, 0, >= 0, and <= `max.compaction.lag.ms`.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms` LONG, i64::MAX, >= 1.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio` DOUBLE, 0.5, in [0, 1].
    pub min_cleanable_dirty_ratio: f64,
    /// `delete.retention.ms` LONG, 86400000 (1 day), >= 0.
    pub delete_retention_ms: i64,
}

impl Default for LogConfig {
    /// Kafka 4.x topic defaults (see the module comment for sources).
    fn default() -> LogConfig {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            segment_jitter_ms: 0,
            segment_index_bytes: 10 * 1024 * 1024,
            index_interval_bytes: 4096,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            max_message_bytes: 1024 * 1024 + 12,
            message_timestamp_type: TimestampType::CreateTime,
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: 60 * 60 * 1000,
            cleanup_policy: vec![CleanupPolicy::Delete],
            compression_type: BrokerCompressionType::Producer,
            min_insync_replicas: 1,
            unclean_leader_election_enable: false,
            file_delete_delay_ms: 60_000,
            preallocate: false,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
            delete_retention_ms: 24 * 60 * 60 * 1000,
        }
    }
}

/// Static facts about one topic config.
struct ConfigKey {
    name: &'static str,
    config_type: ConfigType,
    /// The broker config that supplies this topic config's default (the first synonym in
    /// Kafka's `ServerTopicConfigSynonyms.ALL_TOPIC_CONFIG_SYNONYMS`).
    broker_name: &'static str,
    documentation: &'static str,
}

/// Every topic config sluice supports, sorted by name (the order `describe` reports them in).
const CONFIG_KEYS: &[ConfigKey] = &[
    ConfigKey {
        name: "cleanup.policy",
        config_type: ConfigType::List,
        broker_name: "log.cleanup.policy",
        documentation: "Comma-separated retention policies for old segments: \"delete\" discards segments past \
                        the retention time or size, \"compact\" keeps the latest record per key. Empty keeps \
                        everything.",
    },
    ConfigKey {
        name: "compression.type",
        config_type: ConfigType::String,
        broker_name: "compression.type",
        documentation: "Final compression codec of the topic's data: uncompressed, gzip, snappy, lz4, zstd, or \
                        producer to keep the codec the producer used.",
    },
    ConfigKey {
        name: "delete.retention.ms",
        config_type: ConfigType::Long,
        broker_name: "log.cleaner.delete.retention.ms",
        documentation: "How long tombstones are kept in compacted topics before they may be removed.",
    },
    ConfigKey {
        name: "file.delete.delay.ms",
        config_type: ConfigType::Long,
        broker_name: "log.segment.delete.delay.ms",
        documentation: "How long to wait before deleting a removed segment's files from the filesystem.",
    },
    ConfigKey {
        name: "flush.messages",
        config_type: ConfigType::Long,
        broker_name: "log.flush.interval.messages",
        documentation: "Force an fsync of the log after this many messages have been appended since the last \
                        one.",
    },
    ConfigKey {
        name: "flush.ms",
        config_type: ConfigType::Long,
        broker_name: "log.flush.interval.ms",
        documentation: "Force an fsync of the log when this much time has passed since the last one.",
    },
    ConfigKey {
        name: "index.interval.bytes",
        config_type: ConfigType::Int,
        broker_name: "log.index.interval.bytes",
        documentation: "How many bytes of batches may be appended between two offset index entries.",
    },
    ConfigKey {
        name: "max.compaction.lag.ms",
        config_type: ConfigType::Long,
        broker_name: "log.cleaner.max.compaction.lag.ms",
        documentation: "Longest time a record may stay ineligible for compaction in a compacted topic.",
    },
    ConfigKey {
        name: "max.message.bytes",
        config_type: ConfigType::Int,
        broker_name: "message.max.bytes",
        documentation: "Largest record batch size accepted for the topic, after compression.",
    },
    ConfigKey {
        name: "message.timestamp.after.max.ms",
        config_type: ConfigType::Long,
        broker_name: "log.message.timestamp.after.max.ms",
        documentation: "How far a CreateTime timestamp may be ahead of the broker's clock before the batch is \
                        rejected. Ignored with LogAppendTime.",
    },
    ConfigKey {
        name: "message.timestamp.before.max.ms",
        config_type: ConfigType::Long,
        broker_name: "log.message.timestamp.before.max.ms",
        documentation: "How far a CreateTime timestamp may be behind the broker's clock before the batch is \
                        rejected. Ignored with LogAppendTime.",
    },
    ConfigKey {
        name: "message.timestamp.type",
        config_type: ConfigType::String,
        broker_name: "log.message.timestamp.type",
        documentation: "Whether record timestamps are the producer's create time (CreateTime) or the broker's \
                        append time (LogAppendTime).",
    },
    ConfigKey {
        name: "min.cleanable.dirty.ratio",
        config_type: ConfigType::Double,
        broker_name: "log.cleaner.min.cleanable.ratio",
        documentation: "Share of the log that must be uncompacted before the cleaner compacts it.",
    },
    ConfigKey {
        name: "min.compaction.lag.ms",
        config_type: ConfigType::Long,
        broker_name: "log.cleaner.min.compaction.lag.ms",
        documentation: "Shortest time a record stays uncompacted in a compacted topic.",
    },
    ConfigKey {
        name: "min.insync.replicas",
        config_type: ConfigType::Int,
        broker_name: "min.insync.replicas",
        documentation: "With acks=all, how many in-sync replicas must acknowledge a write for it to succeed.",
    },
    ConfigKey {
        name: "preallocate",
        config_type: ConfigType::Boolean,
        broker_name: "log.preallocate",
        documentation: "Whether to preallocate a new segment's file on disk.",
    },
    ConfigKey {
        name: "retention.bytes",
        config_type: ConfigType::Long,
        broker_name: "log.retention.bytes",
        documentation: "Largest size a partition may grow to before old segments are deleted (delete policy). \
                        Negative means no size limit.",
    },
    ConfigKey {
        name: "retention.ms",
        config_type: ConfigType::Long,
        broker_name: "log.retention.ms",
        documentation: "How long a segment is kept before it is deleted (delete policy). -1 means no time \
                        limit.",
    },
    ConfigKey {
        name: "segment.bytes",
        config_type: ConfigType::Int,
        broker_name: "log.segment.bytes",
        documentation: "Size at which the active segment is rolled.",
    },
    ConfigKey {
        name: "segment.index.bytes",
        config_type: ConfigType::Int,
        broker_name: "log.index.size.max.bytes",
        documentation: "Largest size of a segment's offset index (and time index); a full index rolls the \
                        segment.",
    },
    ConfigKey {
        name: "segment.jitter.ms",
        config_type: ConfigType::Long,
        broker_name: "log.roll.jitter.ms",
        documentation: "Largest random amount subtracted from segment.ms, to spread segment rolls out.",
    },
    ConfigKey {
        name: "segment.ms",
        config_type: ConfigType::Long,
        broker_name: "log.roll.ms",
        documentation: "Age at which the active segment is rolled even if it is not full.",
    },
    ConfigKey {
        name: "unclean.leader.election.enable",
        config_type: ConfigType::Boolean,
        broker_name: "unclean.leader.election.enable",
        documentation: "Whether a replica outside the ISR may become leader as a last resort, at the risk of \
                        losing data.",
    },
];

fn config_key(name: &str) -> Option<&'static ConfigKey> {
    CONFIG_KEYS.iter().find(|key| key.name == name)
}

/// Names of every topic config sluice supports, sorted.
pub fn config_names() -> impl Iterator<Item = &'static str> {
    CONFIG_KEYS.iter().map(|key| key.name)
}

/// The broker config whose value is this topic config's default (Kafka's
/// `ServerTopicConfigSynonyms.TOPIC_CONFIG_SYNONYMS`), e.g. `segment.ms` → `log.roll.ms`.
/// None for names that are not supported topic configs.
pub fn broker_default_name(topic_config_name: &str) -> Option<&'static str> {
    config_key(topic_config_name).map(|key| key.broker_name)
}

impl LogConfig {
    /// Parses, validates and applies one topic config, as `kafka-configs --add-config` or
    /// CreateTopics would. On error `self` is unchanged. Cross-config rules (compaction lags)
    /// are checked by `validate` / `from_overrides`, not here, so overrides may come in any order.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let Some(key) = config_key(name) else {
            return Err(ConfigError::Unknown { name: shorten(name) });
        };
        let name = key.name;
        let raw = value;
        let value = value.trim();
        match name {
            "cleanup.policy" => self.cleanup_policy = parse_cleanup_policy(name, raw, value)?,
            "compression.type" => {
                self.compression_type = BrokerCompressionType::parse(value).ok_or_else(|| {
                    ConfigError::invalid(
                        name,
                        raw,
                        "String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer",
                    )
                })?
            }
            "delete.retention.ms" => self.delete_retention_ms = parse_long(name, raw, value, 0)?,
            "file.delete.delay.ms" => self.file_delete_delay_ms = parse_long(name, raw, value, 0)?,
            "flush.messages" => self.flush_messages = parse_long(name, raw, value, 1)?,
            "flush.ms" => self.flush_ms = parse_long(name, raw, value, 0)?,
            "index.interval.bytes" => self.index_interval_bytes = parse_int(name, raw, value, 0)?,
            "max.compaction.lag.ms" => self.max_compaction_lag_ms = parse_long(name, raw, value, 1)?,
            "max.message.bytes" => self.max_message_bytes = parse_int(name, raw, value, 0)?,
            "message.timestamp.after.max.ms" => self.message_timestamp_after_max_ms = parse_long(name, raw, value, 0)?,
            "message.timestamp.before.max.ms" => {
                self.message_timestamp_before_max_ms = parse_long(name, raw, value, 0)?
            }
            "message.timestamp.type" => {
                self.message_timestamp_type = TimestampType::parse(value).ok_or_else(|| {
                    ConfigError::invalid(name, raw, "String must be one of: CreateTime, LogAppendTime")
                })?
            }
            "min.cleanable.dirty.ratio" => self.min_cleanable_dirty_ratio = parse_ratio(name, raw, value)?,
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = parse_long(name, raw, value, 0)?,
            "min.insync.replicas" => self.min_insync_replicas = parse_int(name, raw, value, 1)?,
            "preallocate" => self.preallocate = parse_boolean(name, raw, value)?,
            "retention.bytes" => self.retention_bytes = parse_long(name, raw, value, i64::MIN)?,
            "retention.ms" => self.retention_ms = parse_long(name, raw, value, -1)?,
            "segment.bytes" => self.segment_bytes = parse_int(name, raw, value, SLUICE_MIN_SEGMENT_BYTES)?,
            "segment.index.bytes" => self.segment_index_bytes = parse_int(name, raw, value, 4)?,
            "segment.jitter.ms" => self.segment_jitter_ms = parse_long(name, raw, value, 0)?,
            "segment.ms" => self.segment_ms = parse_long(name, raw, value, 1)?,
            "unclean.leader.election.enable" => self.unclean_leader_election_enable = parse_boolean(name, raw, value)?,
            _ => unreachable!("config key {name} has no parser"),
        }
        Ok(())
    }

    /// `base` with `overrides` applied in order (a repeated name: the last wins), then checked
    /// as a whole with `validate`. `base` is typically the broker's defaults.
    pub fn from_overrides<'a>(
        base: &LogConfig,
        overrides: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<LogConfig, ConfigError> {
        let mut config = base.clone();
        for (name, value) in overrides {
            config.set(name, value)?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every field against its validator (by rendering and re-parsing it) and the
    /// cross-config rule of Kafka's `LogConfig.validateValues`: `min.compaction.lag.ms` must not
    /// exceed `max.compaction.lag.ms`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut scratch = LogConfig::default();
        for key in CONFIG_KEYS {
            scratch.set(key.name, &self.value_string(key.name))?;
        }
        debug_assert_eq!(&scratch, self, "rendering and re-parsing must be lossless");
        if self.min_compaction_lag_ms > self.max_compaction_lag_ms {
            return Err(ConfigError::invalid(
                "min.compaction.lag.ms",
                &self.min_compaction_lag_ms.to_string(),
                format!("must not exceed max.compaction.lag.ms ({})", self.max_compaction_lag_ms),
            ));
        }
        Ok(())
    }

    /// The current value of a supported topic config rendered as Kafka renders it, or None for
    /// an unsupported name.
    pub fn get(&self, name: &str) -> Option<String> {
        config_key(name).map(|key| self.value_string(key.name))
    }

    fn value_string(&self, name: &'static str) -> String {
        match name {
            "cleanup.policy" => self.cleanup_policy.iter().map(|policy| policy.name()).collect::<Vec<_>>().join(","),
            "compression.type" => self.compression_type.name().to_string(),
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "file.delete.delay.ms" => self.file_delete_delay_ms.to_string(),
            "flush.messages" => self.flush_messages.to_string(),
            "flush.ms" => self.flush_ms.to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "max.compaction.lag.ms" => self.max_compaction_lag_ms.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.after.max.ms" => self.message_timestamp_after_max_ms.to_string(),
            "message.timestamp.before.max.ms" => self.message_timestamp_before_max_ms.to_string(),
            "message.timestamp.type" => self.message_timestamp_type.name().to_string(),
            "min.cleanable.dirty.ratio" => java_double_string(self.min_cleanable_dirty_ratio),
            "min.compaction.lag.ms" => self.min_compaction_lag_ms.to_string(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "preallocate" => self.preallocate.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.index.bytes" => self.segment_index_bytes.to_string(),
            "segment.jitter.ms" => self.segment_jitter_ms.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "unclean.leader.election.enable" => self.unclean_leader_election_enable.to_string(),
            _ => unreachable!("config key {name} has no renderer"),
        }
    }

    /// Every supported topic config, sorted by name, with defaults taken from Kafka's defaults.
    pub fn describe(&self) -> Vec<ConfigEntry> {
        self.describe_with_defaults(&LogConfig::default())
    }

    /// Every supported topic config, sorted by name, with `defaults` (e.g. the broker's
    /// effective defaults) as the default column; `is_default` is true where the rendered
    /// values agree.
    pub fn describe_with_defaults(&self, defaults: &LogConfig) -> Vec<ConfigEntry> {
        CONFIG_KEYS
            .iter()
            .map(|key| {
                let value = self.value_string(key.name);
                let default_value = defaults.value_string(key.name);
                ConfigEntry {
                    name: key.name,
                    is_default: value == default_value,
                    value,
                    default_value,
                    read_only: false,
                    sensitive: false,
                    config_type: key.config_type,
                    documentation: key.documentation,
                }
            })
            .collect()
    }

    /// Whether old segments are deleted by retention time/size.
    pub fn cleanup_policy_delete(&self) -> bool {
        self.cleanup_policy.contains(&CleanupPolicy::Delete)
    }

    /// Whether the log is compacted.
    pub fn cleanup_policy_compact(&self) -> bool {
        self.cleanup_policy.contains(&CleanupPolicy::Compact)
    }

    /// Sets `flush.messages` / `flush.ms` from the flush-mode shorthand.
    pub fn apply_flush_mode(&mut self, mode: FlushMode) {
        match mode {
            FlushMode::Always => {
                self.flush_messages = 1;
                self.flush_ms = i64::MAX;
            }
            FlushMode::IntervalMs(interval_ms) => {
                self.flush_messages = i64::MAX;
                self.flush_ms = i64::try_from(interval_ms).unwrap_or(i64::MAX);
            }
            FlushMode::Never => {
                self.flush_messages = i64::MAX;
                self.flush_ms = i64::MAX;
            }
        }
    }

    /// When the log must fsync: after `every_messages` unflushed messages, or once the oldest
    /// unflushed data is `every_ms` old (None: never by time, `flush.ms` = i64::MAX).
    pub fn flush_policy(&self) -> FlushPolicy {
        debug_assert!(self.flush_messages >= 1 && self.flush_ms >= 0);
        FlushPolicy {
            every_messages: u64::try_from(self.flush_messages.max(1)).unwrap_or(u64::MAX),
            every_ms: if self.flush_ms == i64::MAX { None } else { Some(u64::try_from(self.flush_ms).unwrap_or(0)) },
        }
    }
}

/// The flush-mode shorthand for `flush.messages` / `flush.ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlushMode {
    /// fsync after every append: `flush.messages=1`, `flush.ms=i64::MAX`.
    Always,
    /// fsync on a timer: `flush.messages=i64::MAX`, `flush.ms=N`.
    IntervalMs(u64),
    /// Leave flushing to the OS (Kafka's default): both i64::MAX.
    Never,
}

/// Name used in `ConfigError`s about the flush-mode shorthand.
pub const FLUSH_MODE_NAME: &str = "flush.mode";

impl FlushMode {
    /// Parses `always`, `never` or `interval:N` with N a whole number of milliseconds in
    /// `1..=i64::MAX` (exact lowercase words; surrounding whitespace is ignored).
    pub fn parse(text: &str) -> Result<FlushMode, ConfigError> {
        let trimmed = text.trim();
        match trimmed {
            "always" => return Ok(FlushMode::Always),
            "never" => return Ok(FlushMode::Never),
            _ => {}
        }
        let Some(digits) = trimmed.strip_prefix("interval:") else {
            return Err(ConfigError::invalid(FLUSH_MODE_NAME, text, "expected always, never or interval:<ms>"));
        };
        let interval_ms: i64 = digits.parse().map_err(|_| {
            ConfigError::invalid(FLUSH_MODE_NAME, text, "interval must be a whole number of milliseconds")
        })?;
        if interval_ms < 1 {
            return Err(ConfigError::invalid(FLUSH_MODE_NAME, text, "interval must be at least 1 ms (use always)"));
        }
        Ok(FlushMode::IntervalMs(interval_ms as u64))
    }
}

/// When a partition log fsyncs, derived from `flush.messages` / `flush.ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlushPolicy {
    pub every_messages: u64,
    pub every_ms: Option<u64>,
}

fn parse_long(name: &str, raw: &str, value: &str, min: i64) -> Result<i64, ConfigError> {
    let parsed: i64 = value.parse().map_err(|_| ConfigError::invalid(name, raw, "Not a number of type LONG"))?;
    if parsed < min {
        return Err(ConfigError::invalid(name, raw, format!("Value must be at least {min}")));
    }
    Ok(parsed)
}

fn parse_int(name: &str, raw: &str, value: &str, min: i32) -> Result<i32, ConfigError> {
    let parsed: i32 = value.parse().map_err(|_| ConfigError::invalid(name, raw, "Not a number of type INT"))?;
    if parsed < min {
        return Err(ConfigError::invalid(name, raw, format!("Value must be at least {min}")));
    }
    Ok(parsed)
}

fn parse_boolean(name: &str, raw: &str, value: &str) -> Result<bool, ConfigError> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(ConfigError::invalid(name, raw, "Expected value to be either true or false"))
    }
}

fn parse_ratio(name: &str, raw: &str, value: &str) -> Result<f64, ConfigError> {
    let parsed: f64 = value.parse().map_err(|_| ConfigError::invalid(name, raw, "Not a number of type DOUBLE"))?;
    if !(0.0..=1.0).contains(&parsed) {
        return Err(ConfigError::invalid(name, raw, "Value must be in [0.0, 1.0]"));
    }
    // -0.0 is in range; store +0.0 so it renders as Kafka's "0.0".
    Ok(parsed + 0.0)
}

fn parse_cleanup_policy(name: &str, raw: &str, value: &str) -> Result<Vec<CleanupPolicy>, ConfigError> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    let mut policies = Vec::with_capacity(2);
    for item in value.split(',') {
        let Some(policy) = CleanupPolicy::parse(item.trim()) else {
            return Err(ConfigError::invalid(name, raw, "Each policy must be one of: compact, delete"));
        };
        if policies.contains(&policy) {
            return Err(ConfigError::invalid(name, raw, "A policy may appear only once"));
        }
        policies.push(policy);
    }
    debug_assert!(policies.len() <= 2);
    Ok(policies)
}

/// `value` as Java's `Double.toString` writes it: "0.5", "1.0", "0.0", "5.0E-4", "1.0E7",
/// "NaN", "Infinity" (decimal between 1e-3 and 1e7, scientific outside).
fn java_double_string(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    if (1e-3..1e7).contains(&value.abs()) {
        let text = format!("{value}");
        if text.contains('.') {
            text
        } else {
            format!("{text}.0")
        }
    } else {
        let text = format!("{value:e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        if mantissa.contains('.') {
            format!("{mantissa}E{exponent}")
        } else {
            format!("{mantissa}.0E{exponent}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Kafka 4.x topic config defaults as DescribeConfigs renders them.
    const KAFKA_DEFAULTS: &[(&str, &str)] = &[
        ("cleanup.policy", "delete"),
        ("compression.type", "producer"),
        ("delete.retention.ms", "86400000"),
        ("file.delete.delay.ms", "60000"),
        ("flush.messages", "9223372036854775807"),
        ("flush.ms", "9223372036854775807"),
        ("index.interval.bytes", "4096"),
        ("max.compaction.lag.ms", "9223372036854775807"),
        ("max.message.bytes", "1048588"),
        ("message.timestamp.after.max.ms", "3600000"),
        ("message.timestamp.before.max.ms", "9223372036854775807"),
        ("message.timestamp.type", "CreateTime"),
        ("min.cleanable.dirty.ratio", "0.5"),
        ("min.compaction.lag.ms", "0"),
        ("min.insync.replicas", "1"),
        ("preallocate", "false"),
        ("retention.bytes", "-1"),
        ("retention.ms", "604800000"),
        ("segment.bytes", "1073741824"),
        ("segment.index.bytes", "10485760"),
        ("segment.jitter.ms", "0"),
        ("segment.ms", "604800000"),
        ("unclean.leader.election.enable", "false"),
    ];

    #[test]
    fn defaults_equal_kafka() {
        let config = LogConfig::default();
        assert_eq!(config.segment_bytes, 1_073_741_824);
        assert_eq!(config.segment_ms, 604_800_000);
        assert_eq!(config.segment_jitter_ms, 0);
        assert_eq!(config.segment_index_bytes, 10_485_760);
        assert_eq!(config.index_interval_bytes, 4096);
        assert_eq!(config.retention_ms, 604_800_000);
        assert_eq!(config.retention_bytes, -1);
        assert_eq!(config.flush_messages, i64::MAX);
        assert_eq!(config.flush_ms, i64::MAX);
        assert_eq!(config.max_message_bytes, 1_048_588);
        assert_eq!(config.message_timestamp_type, TimestampType::CreateTime);
        assert_eq!(config.message_timestamp_before_max_ms, i64::MAX);
        assert_eq!(config.message_timestamp_after_max_ms, 3_600_000);
        assert_eq!(config.cleanup_policy, vec![CleanupPolicy::Delete]);
        assert_eq!(config.compression_type, BrokerCompressionType::Producer);
        assert_eq!(config.min_insync_replicas, 1);
        assert!(!config.unclean_leader_election_enable);
        assert_eq!(config.file_delete_delay_ms, 60_000);
        assert!(!config.preallocate);
        assert_eq!(config.min_compaction_lag_ms, 0);
        assert_eq!(config.max_compaction_lag_ms, i64::MAX);
        assert_eq!(config.min_cleanable_dirty_ratio, 0.5);
        assert_eq!(config.delete_retention_ms, 86_400_000);
        assert!(config.validate().is_ok());
        assert!(config.cleanup_policy_delete());
        assert!(!config.cleanup_policy_compact());

        let described = config.describe();
        let rendered: Vec<(&str, &str)> = described.iter().map(|e| (e.name, e.value.as_str())).collect();
        assert_eq!(rendered, KAFKA_DEFAULTS);
        for entry in &described {
            assert!(entry.is_default, "{}", entry.name);
            assert_eq!(entry.value, entry.default_value);
        }
    }

    #[test]
    fn describe_lists_every_config_sorted() {
        let described = LogConfig::default().describe();
        let names: Vec<&str> = described.iter().map(|e| e.name).collect();
        let expected: Vec<&str> = KAFKA_DEFAULTS.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, expected);
        assert_eq!(config_names().collect::<Vec<_>>(), expected);
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        for entry in &described {
            assert!(!entry.read_only && !entry.sensitive);
            assert!(!entry.documentation.is_empty());
        }
        let type_of = |name: &str| described.iter().find(|e| e.name == name).unwrap().config_type;
        assert_eq!(type_of("segment.bytes"), ConfigType::Int);
        assert_eq!(type_of("segment.ms"), ConfigType::Long);
        assert_eq!(type_of("cleanup.policy"), ConfigType::List);
        assert_eq!(type_of("min.cleanable.dirty.ratio"), ConfigType::Double);
        assert_eq!(type_of("preallocate"), ConfigType::Boolean);
        assert_eq!(type_of("compression.type"), ConfigType::String);
        assert_eq!(ConfigType::Long.wire_id(), 5);
        assert_eq!(ConfigType::Password.wire_id(), 9);
    }

    /// (name, value to set, how describe must render it) — a non-default value per config.
    const ROUND_TRIPS: &[(&str, &str, &str)] = &[
        ("cleanup.policy", "compact", "compact"),
        ("cleanup.policy", " compact , delete ", "compact,delete"),
        ("cleanup.policy", "delete,compact", "delete,compact"),
        ("cleanup.policy", "", ""),
        ("compression.type", "zstd", "zstd"),
        ("compression.type", "uncompressed", "uncompressed"),
        ("compression.type", "gzip", "gzip"),
        ("compression.type", "snappy", "snappy"),
        ("compression.type", "lz4", "lz4"),
        ("delete.retention.ms", "1000", "1000"),
        ("file.delete.delay.ms", "0", "0"),
        ("flush.messages", "1", "1"),
        ("flush.ms", "250", "250"),
        ("index.interval.bytes", "0", "0"),
        ("max.compaction.lag.ms", "1", "1"),
        ("max.message.bytes", "0", "0"),
        ("message.timestamp.after.max.ms", "9223372036854775807", "9223372036854775807"),
        ("message.timestamp.before.max.ms", "0", "0"),
        ("message.timestamp.type", "LogAppendTime", "LogAppendTime"),
        ("min.cleanable.dirty.ratio", "0.25", "0.25"),
        ("min.cleanable.dirty.ratio", "1", "1.0"),
        ("min.cleanable.dirty.ratio", "0", "0.0"),
        ("min.cleanable.dirty.ratio", "-0.0", "0.0"),
        ("min.cleanable.dirty.ratio", "0.0005", "5.0E-4"),
        ("min.compaction.lag.ms", "5", "5"),
        ("min.insync.replicas", "2", "2"),
        ("preallocate", "TRUE", "true"),
        ("retention.bytes", "-5", "-5"),
        ("retention.bytes", "1073741824", "1073741824"),
        ("retention.ms", "-1", "-1"),
        ("segment.bytes", "1024", "1024"),
        ("segment.bytes", "2147483647", "2147483647"),
        ("segment.index.bytes", "4", "4"),
        ("segment.jitter.ms", "100", "100"),
        ("segment.ms", " +60000 ", "60000"),
        ("unclean.leader.election.enable", "true", "true"),
    ];

    #[test]
    fn every_config_round_trips_through_describe() {
        for name in config_names() {
            assert!(ROUND_TRIPS.iter().any(|(n, _, _)| *n == name), "no round trip for {name}");
        }
        for &(name, value, rendered) in ROUND_TRIPS {
            let mut config = LogConfig::default();
            config.set(name, value).unwrap_or_else(|e| panic!("{name}={value:?}: {e}"));
            let entry = config.describe().into_iter().find(|e| e.name == name).unwrap();
            assert_eq!(entry.value, rendered, "{name}={value:?}");
            assert_eq!(config.get(name).as_deref(), Some(rendered));
            assert_eq!(entry.is_default, rendered == entry.default_value);
            // Setting the rendered value again changes nothing.
            let mut again = config.clone();
            again.set(name, rendered).unwrap();
            assert_eq!(again, config);
        }
    }

    #[test]
    fn invalid_values_are_rejected_with_invalid_config() {
        let cases: &[(&str, &str)] = &[
            ("segment.bytes", "-1"),
            ("segment.bytes", "1023"),
            ("segment.bytes", "2147483648"),
            ("segment.bytes", "1GB"),
            ("segment.ms", "0"),
            ("segment.ms", "9223372036854775808"),
            ("segment.jitter.ms", "-1"),
            ("segment.index.bytes", "3"),
            ("index.interval.bytes", "-1"),
            ("retention.ms", "-2"),
            ("retention.bytes", "x"),
            ("retention.bytes", ""),
            ("flush.messages", "0"),
            ("flush.ms", "-1"),
            ("max.message.bytes", "-1"),
            ("message.timestamp.type", "createtime"),
            ("message.timestamp.type", "NoTimestamp"),
            ("message.timestamp.before.max.ms", "-1"),
            ("message.timestamp.after.max.ms", "-1"),
            ("cleanup.policy", "delete,"),
            ("cleanup.policy", "Delete"),
            ("cleanup.policy", "delete,delete"),
            ("cleanup.policy", "delete;compact"),
            ("compression.type", "ZSTD"),
            ("compression.type", "brotli"),
            ("compression.type", ""),
            ("min.insync.replicas", "0"),
            ("unclean.leader.election.enable", "yes"),
            ("unclean.leader.election.enable", "1"),
            ("file.delete.delay.ms", "-1"),
            ("preallocate", ""),
            ("min.compaction.lag.ms", "-1"),
            ("max.compaction.lag.ms", "0"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("min.cleanable.dirty.ratio", "-0.1"),
            ("min.cleanable.dirty.ratio", "NaN"),
            ("min.cleanable.dirty.ratio", "half"),
            ("delete.retention.ms", "-1"),
            ("delete.retention.ms", "1.5"),
        ];
        for &(name, value) in cases {
            let mut config = LogConfig::default();
            let err = config.set(name, value).unwrap_err();
            assert_eq!(err.error_code(), ErrorCode::INVALID_CONFIG, "{name}={value:?}");
            assert!(matches!(&err, ConfigError::Invalid { name: n, .. } if n == name), "{name}={value:?}: {err:?}");
            assert_eq!(config, LogConfig::default(), "{name}={value:?} changed the config");
        }
        // Kafka's own floor is above sluice's, so a Kafka-valid value is always accepted.
        let mut config = LogConfig::default();
        assert!(config.set("segment.bytes", &KAFKA_MIN_SEGMENT_BYTES.to_string()).is_ok());
    }

    #[test]
    fn unknown_names_are_rejected_with_invalid_config() {
        for name in [
            "segment.size",
            "SEGMENT.BYTES",
            "",
            "log.segment.bytes",
            "compression.zstd.level",
            "message.downconversion.enable",
        ] {
            let err = LogConfig::default().set(name, "1").unwrap_err();
            assert_eq!(err, ConfigError::Unknown { name: name.to_string() });
            assert_eq!(err.error_code(), ErrorCode::INVALID_CONFIG);
            assert_eq!(err.error_code().0, 40);
        }
        let long_name = "x".repeat(10_000);
        match LogConfig::default().set(&long_name, "1").unwrap_err() {
            ConfigError::Unknown { name } => assert!(name.len() <= MAX_QUOTED_VALUE_BYTES),
            other => panic!("{other:?}"),
        }
        let err = LogConfig::default().set("segment.ms", &"9".repeat(10_000)).unwrap_err();
        assert!(err.to_string().len() < 1_000);
    }

    #[test]
    fn from_overrides_applies_in_order_and_checks_cross_rules() {
        let base = LogConfig { retention_ms: 1_000, ..LogConfig::default() };
        let config = LogConfig::from_overrides(
            &base,
            [("segment.bytes", "4096"), ("cleanup.policy", "compact"), ("segment.bytes", "8192")],
        )
        .unwrap();
        assert_eq!(config.segment_bytes, 8192);
        assert_eq!(config.retention_ms, 1_000);
        assert!(config.cleanup_policy_compact() && !config.cleanup_policy_delete());
        assert!(LogConfig::from_overrides(&base, []).unwrap() == base);

        // Order does not matter for the cross rule: lowering max then min is fine.
        let ok = LogConfig::from_overrides(&base, [("max.compaction.lag.ms", "10"), ("min.compaction.lag.ms", "5")]);
        assert!(ok.is_ok());
        let err = LogConfig::from_overrides(&base, [("min.compaction.lag.ms", "11"), ("max.compaction.lag.ms", "10")])
            .unwrap_err();
        assert_eq!(err.error_code(), ErrorCode::INVALID_CONFIG);
        let err = LogConfig::from_overrides(&base, [("bogus", "1")]).unwrap_err();
        assert!(matches!(err, ConfigError::Unknown { .. }));
    }

    #[test]
    fn validate_catches_fields_written_directly() {
        let bad = [
            LogConfig { segment_bytes: 5, ..LogConfig::default() },
            LogConfig { flush_messages: 0, ..LogConfig::default() },
            LogConfig { min_cleanable_dirty_ratio: f64::NAN, ..LogConfig::default() },
            LogConfig { cleanup_policy: vec![CleanupPolicy::Delete, CleanupPolicy::Delete], ..LogConfig::default() },
            LogConfig { min_compaction_lag_ms: 10, max_compaction_lag_ms: 9, ..LogConfig::default() },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn describe_with_broker_defaults() {
        let broker = LogConfig { retention_ms: 1_000, ..LogConfig::default() };
        let topic = LogConfig::from_overrides(&broker, [("segment.bytes", "4096")]).unwrap();
        let described = topic.describe_with_defaults(&broker);
        let entry = |name: &str| described.iter().find(|e| e.name == name).unwrap().clone();
        assert!(entry("retention.ms").is_default);
        assert_eq!(entry("retention.ms").default_value, "1000");
        assert!(!entry("segment.bytes").is_default);
        assert_eq!(entry("segment.bytes").default_value, "1073741824");
    }

    #[test]
    fn broker_synonyms() {
        for name in config_names() {
            assert!(broker_default_name(name).is_some(), "{name}");
        }
        assert_eq!(broker_default_name("segment.bytes"), Some("log.segment.bytes"));
        assert_eq!(broker_default_name("segment.ms"), Some("log.roll.ms"));
        assert_eq!(broker_default_name("segment.jitter.ms"), Some("log.roll.jitter.ms"));
        assert_eq!(broker_default_name("segment.index.bytes"), Some("log.index.size.max.bytes"));
        assert_eq!(broker_default_name("retention.ms"), Some("log.retention.ms"));
        assert_eq!(broker_default_name("retention.bytes"), Some("log.retention.bytes"));
        assert_eq!(broker_default_name("flush.messages"), Some("log.flush.interval.messages"));
        assert_eq!(broker_default_name("flush.ms"), Some("log.flush.interval.ms"));
        assert_eq!(broker_default_name("max.message.bytes"), Some("message.max.bytes"));
        assert_eq!(broker_default_name("index.interval.bytes"), Some("log.index.interval.bytes"));
        assert_eq!(broker_default_name("file.delete.delay.ms"), Some("log.segment.delete.delay.ms"));
        assert_eq!(broker_default_name("min.cleanable.dirty.ratio"), Some("log.cleaner.min.cleanable.ratio"));
        assert_eq!(broker_default_name("delete.retention.ms"), Some("log.cleaner.delete.retention.ms"));
        assert_eq!(broker_default_name("min.insync.replicas"), Some("min.insync.replicas"));
        assert_eq!(broker_default_name("preallocate"), Some("log.preallocate"));
        assert_eq!(broker_default_name("message.timestamp.type"), Some("log.message.timestamp.type"));
        assert_eq!(broker_default_name("nope"), None);
    }

    #[test]
    fn flush_mode() {
        assert_eq!(FlushMode::parse("always"), Ok(FlushMode::Always));
        assert_eq!(FlushMode::parse("never"), Ok(FlushMode::Never));
        assert_eq!(FlushMode::parse("interval:250"), Ok(FlushMode::IntervalMs(250)));
        assert_eq!(FlushMode::parse(" interval:1 "), Ok(FlushMode::IntervalMs(1)));
        for bad in [
            "",
            "Always",
            "sometimes",
            "interval",
            "interval:",
            "interval:0",
            "interval:-5",
            "interval:x",
            "interval: 5",
            "interval:9223372036854775808",
            "interval:1.5",
        ] {
            let err = FlushMode::parse(bad).unwrap_err();
            assert_eq!(err.error_code(), ErrorCode::INVALID_CONFIG, "{bad:?}");
        }

        let mut config = LogConfig::default();
        assert_eq!(config.flush_policy(), FlushPolicy { every_messages: u64::MAX >> 1, every_ms: None });
        config.apply_flush_mode(FlushMode::Always);
        assert_eq!((config.flush_messages, config.flush_ms), (1, i64::MAX));
        assert_eq!(config.flush_policy(), FlushPolicy { every_messages: 1, every_ms: None });
        config.apply_flush_mode(FlushMode::IntervalMs(250));
        assert_eq!((config.flush_messages, config.flush_ms), (i64::MAX, 250));
        assert_eq!(config.flush_policy(), FlushPolicy { every_messages: i64::MAX as u64, every_ms: Some(250) });
        config.apply_flush_mode(FlushMode::Never);
        assert_eq!((config.flush_messages, config.flush_ms), (i64::MAX, i64::MAX));
        config.apply_flush_mode(FlushMode::IntervalMs(u64::MAX));
        assert_eq!(config.flush_ms, i64::MAX);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn java_double_rendering() {
        for (value, text) in [
            (0.5, "0.5"),
            (1.0, "1.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (0.001, "0.001"),
            (0.0005, "5.0E-4"),
            (0.00012, "1.2E-4"),
            (1e7, "1.0E7"),
            (1234.5, "1234.5"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
        ] {
            assert_eq!(java_double_string(value), text);
        }
    }

    proptest! {
        #[test]
        fn prop_set_never_panics_and_round_trips(index in 0..CONFIG_KEYS.len(), value in ".{0,24}") {
            let name = CONFIG_KEYS[index].name;
            let mut config = LogConfig::default();
            match config.set(name, &value) {
                Ok(()) => {
                    let rendered = config.get(name).unwrap();
                    let mut again = LogConfig::default();
                    again.set(name, &rendered).unwrap();
                    prop_assert_eq!(&again, &config);
                    prop_assert!(config.validate().is_ok());
                }
                Err(err) => {
                    prop_assert_eq!(err.error_code(), ErrorCode::INVALID_CONFIG);
                    prop_assert_eq!(&config, &LogConfig::default());
                }
            }
        }

        #[test]
        fn prop_numeric_configs_round_trip(index in 0..CONFIG_KEYS.len(), number in any::<i64>()) {
            let name = CONFIG_KEYS[index].name;
            let mut config = LogConfig::default();
            if config.set(name, &number.to_string()).is_ok() {
                let rendered = config.get(name).unwrap();
                let mut again = LogConfig::default();
                again.set(name, &rendered).unwrap();
                prop_assert_eq!(again, config);
            }
        }
    }
}
