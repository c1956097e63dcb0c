//! The workload a bench run executes: parsed from a TOML file (ours, or OpenMessaging
//! Benchmark's field names), overridden by command-line flags, checked, and resolved into a
//! [`Workload`] with every value explicit — which is also written into the results JSON, so a
//! run can be repeated exactly.
//!
//! Owns: field names, defaults, limits and validation. Must never: touch the network or the
//! clock (plain data, unit-tested without a runtime).

use serde::{Deserialize, Serialize};

use crate::bench::payload::PayloadKind;

/// Most topics, partitions per topic, producers/consumers per topic a run may ask for.
pub const MAX_TOPICS: usize = 1024;
pub const MAX_PARTITIONS_PER_TOPIC: usize = 10_000;
pub const MAX_CLIENTS_PER_TOPIC: usize = 1024;
/// Largest message and batch a producer builds.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;
pub const MAX_BATCH_BYTES: usize = 16 << 20;
/// Most produce requests in flight per producer connection.
pub const MAX_IN_FLIGHT_LIMIT: usize = 64;
/// Most in flight for an idempotent or transactional producer (Kafka's limit: the broker keeps
/// the last five batches per producer for duplicate detection).
pub const MAX_IDEMPOTENT_IN_FLIGHT: usize = 5;
/// A transactional producer commits this often unless told otherwise.
pub const DEFAULT_TRANSACTION_COMMIT_MS: f64 = 100.0;
/// `transaction.timeout.ms` the bench's producers ask for (Kafka's client default).
pub const DEFAULT_TRANSACTION_TIMEOUT_MS: i32 = 60_000;

/// How a transactional producer commits.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct TransactionSettings {
    /// Commit once the open transaction is this old…
    pub commit_interval_ms: f64,
    /// …or holds this many messages, whichever comes first.
    pub commit_messages: Option<u64>,
    pub timeout_ms: i32,
}
/// Longest consumer group id accepted.
pub const MAX_GROUP_ID_BYTES: usize = 255;
/// Longest fetch wait a group consumer may use: it heartbeats between fetches, every second.
pub const MAX_GROUP_FETCH_WAIT_MS: i32 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    Produce,
    Consume,
    E2e,
}

impl WorkloadKind {
    pub fn produces(self) -> bool {
        matches!(self, WorkloadKind::Produce | WorkloadKind::E2e)
    }
    pub fn consumes(self) -> bool {
        matches!(self, WorkloadKind::Consume | WorkloadKind::E2e)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionCodec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl std::str::FromStr for CompressionCodec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(CompressionCodec::None),
            "gzip" => Ok(CompressionCodec::Gzip),
            "snappy" => Ok(CompressionCodec::Snappy),
            "lz4" => Ok(CompressionCodec::Lz4),
            "zstd" => Ok(CompressionCodec::Zstd),
            other => Err(format!("unknown compression {other:?} (none, gzip, snappy, lz4, zstd)")),
        }
    }
}

/// Where consumers start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartOffset {
    Earliest,
    Latest,
}

/// Message value size: fixed, or uniform in `[min, max]` (drawn per message).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageSize {
    Fixed(usize),
    Uniform { min: usize, max: usize },
}

impl MessageSize {
    pub fn max_bytes(self) -> usize {
        match self {
            MessageSize::Fixed(n) => n,
            MessageSize::Uniform { max, .. } => max,
        }
    }
    pub fn min_bytes(self) -> usize {
        match self {
            MessageSize::Fixed(n) => n,
            MessageSize::Uniform { min, .. } => min,
        }
    }
}

impl std::str::FromStr for MessageSize {
    type Err = String;
    /// `1024` or `100..2000` (uniform, inclusive).
    fn from_str(s: &str) -> Result<Self, String> {
        let parse = |t: &str| t.trim().parse::<usize>().map_err(|e| format!("message size {t:?}: {e}"));
        match s.split_once("..") {
            Some((a, b)) => Ok(MessageSize::Uniform { min: parse(a)?, max: parse(b)? }),
            None => Ok(MessageSize::Fixed(parse(s)?)),
        }
    }
}

/// Acknowledgements asked of the broker: 0, 1 or -1 ("all").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acks(pub i16);

impl std::str::FromStr for Acks {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "0" => Ok(Acks(0)),
            "1" => Ok(Acks(1)),
            "-1" | "all" => Ok(Acks(-1)),
            other => Err(format!("acks must be 0, 1, -1 or all, got {other:?}")),
        }
    }
}

impl Serialize for Acks {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i16(self.0)
    }
}

impl<'de> Deserialize<'de> for Acks {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(i) => i.to_string().parse().map_err(serde::de::Error::custom),
            Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A workload file as written: every field optional. Our names are snake_case; OMB's camelCase
/// names are accepted as aliases (`testDurationMinutes` and `producerRate` are converted).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkloadFile {
    pub name: Option<String>,
    pub kind: Option<WorkloadKind>,
    pub bootstrap: Option<String>,
    /// Client shards (cores) of the bench process.
    pub cores: Option<usize>,
    /// Use these existing topic names instead of creating fresh ones.
    pub topic_names: Option<Vec<String>>,
    pub topic_prefix: Option<String>,
    pub topics: Option<usize>,
    #[serde(alias = "partitionsPerTopic")]
    pub partitions_per_topic: Option<usize>,
    pub replication_factor: Option<i16>,
    #[serde(alias = "messageSize")]
    pub message_size: Option<MessageSize>,
    #[serde(alias = "producersPerTopic")]
    pub producers_per_topic: Option<usize>,
    #[serde(alias = "consumerPerSubscription")]
    pub consumers_per_topic: Option<usize>,
    /// Total target rate of all producers, messages/s; 0 = as fast as possible.
    #[serde(alias = "producerRate")]
    pub producer_rate_per_sec: Option<f64>,
    pub duration_secs: Option<f64>,
    #[serde(rename = "testDurationMinutes")]
    pub omb_test_duration_minutes: Option<f64>,
    #[serde(rename = "warmupDurationMinutes")]
    pub omb_warmup_duration_minutes: Option<f64>,
    /// Total messages produced (or consumed, for `consume`) after which the run stops.
    pub message_count: Option<u64>,
    pub warmup_secs: Option<f64>,
    pub batch_bytes: Option<usize>,
    pub linger_ms: Option<f64>,
    pub acks: Option<Acks>,
    pub compression: Option<CompressionCodec>,
    pub keyed: Option<bool>,
    pub key_space: Option<u64>,
    /// `uniform` (default), `zipf` or `zipf:EXPONENT` (see [`super::key_distribution`]).
    pub key_distribution: Option<String>,
    /// OMB's key distributor: NO_KEY, KEY_ROUND_ROBIN or RANDOM_NANO.
    #[serde(rename = "keyDistributor")]
    pub omb_key_distributor: Option<String>,
    pub max_in_flight: Option<usize>,
    pub start: Option<StartOffset>,
    /// Consume through this consumer group (join, assignment by its leader, committed offsets)
    /// instead of static assignment. OMB runs every subscription as a Kafka consumer group but
    /// names it itself, so there is no OMB field for this.
    pub group: Option<String>,
    pub fetch_max_bytes: Option<usize>,
    pub partition_fetch_max_bytes: Option<usize>,
    pub fetch_max_wait_ms: Option<i32>,
    /// How long e2e consumers keep reading after producers finish before declaring the rest missing.
    pub drain_timeout_secs: Option<f64>,
    pub seed: Option<u64>,
    /// Message bodies: random bytes (default) or text-like words.
    pub payload: Option<PayloadKind>,
    /// Produce in transactions (KIP-98): each producer has a transactional id and commits
    /// every `transaction_commit_ms` or `transaction_commit_messages`, whichever comes first.
    pub transactional: Option<bool>,
    /// Idempotent producers (KIP-98 without transactions): a producer id, epoch and sequences.
    pub idempotent: Option<bool>,
    pub transaction_commit_ms: Option<f64>,
    pub transaction_commit_messages: Option<u64>,
    /// OMB fields with no bench equivalent; accepted so OMB files parse, recorded as ignored.
    #[serde(rename = "subscriptionsPerTopic")]
    pub omb_subscriptions_per_topic: Option<usize>,
    #[serde(rename = "payloadFile")]
    pub omb_payload_file: Option<String>,
    #[serde(rename = "consumerBacklogSizeGB")]
    pub omb_consumer_backlog_size_gb: Option<f64>,
}

/// A fully resolved workload: what runs, and what the results JSON records.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Workload {
    pub name: String,
    pub kind: WorkloadKind,
    pub bootstrap: String,
    pub cores: usize,
    pub topic_names: Option<Vec<String>>,
    pub topic_prefix: String,
    pub topics: usize,
    pub partitions_per_topic: usize,
    pub replication_factor: i16,
    pub message_size: MessageSize,
    pub producers_per_topic: usize,
    pub consumers_per_topic: usize,
    /// `None`: as fast as possible.
    pub producer_rate_per_sec: Option<f64>,
    pub duration_secs: Option<f64>,
    pub message_count: Option<u64>,
    pub warmup_secs: f64,
    pub batch_bytes: usize,
    pub linger_ms: f64,
    pub acks: Acks,
    pub compression: CompressionCodec,
    pub keyed: bool,
    pub key_space: u64,
    pub key_distribution: super::key_distribution::KeyDistribution,
    pub max_in_flight: usize,
    pub start: StartOffset,
    /// Consumer group of the consumers; `None`: static assignment, no group.
    pub group: Option<String>,
    pub fetch_max_bytes: usize,
    pub partition_fetch_max_bytes: usize,
    pub fetch_max_wait_ms: i32,
    pub drain_timeout_secs: f64,
    pub seed: u64,
    pub payload: PayloadKind,
    /// `None`: plain (non-transactional) producers.
    pub transaction: Option<TransactionSettings>,
    /// Idempotent producers (always so when transactional).
    pub idempotent: bool,
    /// OMB fields that were present but have no effect here.
    pub ignored_fields: Vec<String>,
}

impl WorkloadFile {
    pub fn parse_toml(text: &str) -> Result<WorkloadFile, String> {
        toml::from_str(text).map_err(|e| format!("workload file: {e}"))
    }

    /// `self` with every field `over` sets replaced.
    pub fn overlay(mut self, over: WorkloadFile) -> WorkloadFile {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f; } )* };
        }
        take!(
            name,
            kind,
            bootstrap,
            cores,
            topic_names,
            topic_prefix,
            topics,
            partitions_per_topic,
            replication_factor,
            message_size,
            producers_per_topic,
            consumers_per_topic,
            producer_rate_per_sec,
            duration_secs,
            omb_test_duration_minutes,
            omb_warmup_duration_minutes,
            message_count,
            warmup_secs,
            batch_bytes,
            linger_ms,
            acks,
            compression,
            keyed,
            key_space,
            key_distribution,
            omb_key_distributor,
            max_in_flight,
            start,
            group,
            fetch_max_bytes,
            partition_fetch_max_bytes,
            fetch_max_wait_ms,
            drain_timeout_secs,
            seed,
            payload,
            transactional,
            idempotent,
            transaction_commit_ms,
            transaction_commit_messages,
            omb_subscriptions_per_topic,
            omb_payload_file,
            omb_consumer_backlog_size_gb
        );
        self
    }

    /// Applies defaults and checks limits.
    pub fn resolve(self, default_cores: usize) -> Result<Workload, String> {
        let kind = self.kind.ok_or("no workload kind: give produce, consume or e2e (or `kind` in the file)")?;
        let mut ignored = Vec::new();
        if self.omb_subscriptions_per_topic.is_some_and(|n| n != 1) {
            ignored.push("subscriptionsPerTopic (one subscription per topic)".to_string());
        }
        if self.omb_payload_file.is_some() {
            ignored.push("payloadFile (payloads are random bytes)".to_string());
        }
        if self.omb_consumer_backlog_size_gb.is_some_and(|g| g > 0.0) {
            ignored.push("consumerBacklogSizeGB".to_string());
        }
        let duration_secs = match (self.duration_secs, self.omb_test_duration_minutes) {
            (Some(_), Some(_)) => return Err("give duration_secs or testDurationMinutes, not both".into()),
            (Some(s), None) => Some(s),
            (None, Some(m)) => Some(m * 60.0),
            (None, None) => None,
        };
        let warmup_secs = match (self.warmup_secs, self.omb_warmup_duration_minutes) {
            (Some(_), Some(_)) => return Err("give warmup_secs or warmupDurationMinutes, not both".into()),
            (Some(s), None) => s,
            (None, Some(m)) => m * 60.0,
            (None, None) => 0.0,
        };
        let (duration_secs, message_count) = match (duration_secs, self.message_count) {
            (None, None) => (Some(10.0), None),
            other => other,
        };
        let keyed_from_omb = match self.omb_key_distributor.as_deref() {
            None => None,
            Some("NO_KEY") => Some(false),
            Some("KEY_ROUND_ROBIN" | "RANDOM_NANO") => Some(true),
            Some(other) => return Err(format!("keyDistributor {other:?}: NO_KEY, KEY_ROUND_ROBIN or RANDOM_NANO")),
        };
        let topic_names = self.topic_names;
        let topics = match (&topic_names, self.topics) {
            (Some(names), Some(n)) if names.len() != n => {
                return Err(format!("topics = {n} but {} topic_names given", names.len()))
            }
            (Some(names), _) => names.len(),
            (None, n) => n.unwrap_or(1),
        };
        let w = Workload {
            name: self.name.unwrap_or_else(|| format!("{kind:?}").to_lowercase()),
            kind,
            bootstrap: self.bootstrap.unwrap_or_else(|| "127.0.0.1:9092".into()),
            cores: self.cores.unwrap_or(default_cores),
            topic_names,
            topic_prefix: self.topic_prefix.unwrap_or_else(|| "sluice-bench".into()),
            topics,
            partitions_per_topic: self.partitions_per_topic.unwrap_or(1),
            replication_factor: self.replication_factor.unwrap_or(-1),
            message_size: self.message_size.unwrap_or(MessageSize::Fixed(1024)),
            producers_per_topic: self.producers_per_topic.unwrap_or(1),
            consumers_per_topic: self.consumers_per_topic.unwrap_or(1),
            producer_rate_per_sec: self.producer_rate_per_sec.filter(|r| *r > 0.0),
            duration_secs,
            message_count,
            warmup_secs,
            batch_bytes: self.batch_bytes.unwrap_or(16 * 1024),
            linger_ms: self.linger_ms.unwrap_or(5.0),
            acks: self.acks.unwrap_or(Acks(-1)),
            compression: self.compression.unwrap_or(CompressionCodec::None),
            keyed: self.keyed.or(keyed_from_omb).unwrap_or(false),
            key_space: self.key_space.unwrap_or(10_000),
            key_distribution: match self.key_distribution.as_deref() {
                None => Default::default(),
                Some(text) => super::key_distribution::KeyDistribution::parse(text)?,
            },
            max_in_flight: self.max_in_flight.unwrap_or(5),
            start: self.start.unwrap_or(StartOffset::Earliest),
            group: self.group,
            fetch_max_bytes: self.fetch_max_bytes.unwrap_or(50 << 20),
            partition_fetch_max_bytes: self.partition_fetch_max_bytes.unwrap_or(1 << 20),
            fetch_max_wait_ms: self.fetch_max_wait_ms.unwrap_or(100),
            drain_timeout_secs: self.drain_timeout_secs.unwrap_or(30.0),
            seed: self.seed.unwrap_or(0x5eed),
            payload: self.payload.unwrap_or(PayloadKind::Random),
            transaction: match (self.transactional, self.transaction_commit_ms, self.transaction_commit_messages) {
                (Some(true), ms, messages) => Some(TransactionSettings {
                    commit_interval_ms: ms.unwrap_or(DEFAULT_TRANSACTION_COMMIT_MS),
                    commit_messages: messages,
                    timeout_ms: DEFAULT_TRANSACTION_TIMEOUT_MS,
                }),
                (_, None, None) => None,
                _ => return Err("transaction_commit_ms / transaction_commit_messages need transactional".into()),
            },
            idempotent: self.idempotent.unwrap_or(false) || self.transactional.unwrap_or(false),
            ignored_fields: ignored,
        };
        w.check()?;
        Ok(w)
    }
}

impl Workload {
    fn check(&self) -> Result<(), String> {
        let within = |what: &str, v: usize, lo: usize, hi: usize| {
            if v < lo || v > hi {
                Err(format!("{what} = {v} outside [{lo}, {hi}]"))
            } else {
                Ok(())
            }
        };
        within("cores", self.cores, 1, 1024)?;
        within("topics", self.topics, 1, MAX_TOPICS)?;
        within("partitions_per_topic", self.partitions_per_topic, 1, MAX_PARTITIONS_PER_TOPIC)?;
        if self.kind.produces() {
            within("producers_per_topic", self.producers_per_topic, 1, MAX_CLIENTS_PER_TOPIC)?;
        }
        if self.kind.consumes() {
            within("consumers_per_topic", self.consumers_per_topic, 1, MAX_CLIENTS_PER_TOPIC)?;
        }
        within("message_size", self.message_size.min_bytes(), crate::bench::payload::HEADER_BYTES, MAX_MESSAGE_BYTES)?;
        within("message_size max", self.message_size.max_bytes(), self.message_size.min_bytes(), MAX_MESSAGE_BYTES)?;
        within("batch_bytes", self.batch_bytes, 1, MAX_BATCH_BYTES)?;
        within("max_in_flight", self.max_in_flight, 1, MAX_IN_FLIGHT_LIMIT)?;
        within("partition_fetch_max_bytes", self.partition_fetch_max_bytes, 1024, 256 << 20)?;
        within("fetch_max_bytes", self.fetch_max_bytes, 1024, 256 << 20)?;
        if !(0.0..=60_000.0).contains(&self.linger_ms) {
            return Err(format!("linger_ms = {} outside [0, 60000]", self.linger_ms));
        }
        if let Some(d) = self.duration_secs {
            if !(d > 0.0 && d <= 86_400.0) {
                return Err(format!("duration_secs = {d} outside (0, 86400]"));
            }
        }
        if self.message_count == Some(0) {
            return Err("message_count must be at least 1".into());
        }
        if !(0.0..=3600.0).contains(&self.warmup_secs) {
            return Err(format!("warmup_secs = {} outside [0, 3600]", self.warmup_secs));
        }
        if let Some(r) = self.producer_rate_per_sec {
            if !(r.is_finite() && r <= 1e9) {
                return Err(format!("producer_rate_per_sec = {r} is not a rate"));
            }
        }
        if self.keyed && self.key_space == 0 {
            return Err("key_space must be at least 1 when keyed".into());
        }
        if self.keyed {
            super::key_distribution::KeySampler::new(self.key_distribution, self.key_space)?;
        }
        if let Some(g) = &self.group {
            if !self.kind.consumes() {
                return Err("group applies to consume and e2e workloads".into());
            }
            if g.is_empty() || g.len() > MAX_GROUP_ID_BYTES {
                return Err(format!("group id must be 1 to {MAX_GROUP_ID_BYTES} bytes"));
            }
            if !(0..=MAX_GROUP_FETCH_WAIT_MS).contains(&self.fetch_max_wait_ms) {
                return Err(format!(
                    "fetch_max_wait_ms = {} outside [0, {MAX_GROUP_FETCH_WAIT_MS}] with a group (members heartbeat between fetches)",
                    self.fetch_max_wait_ms
                ));
            }
        }
        if self.idempotent {
            if !self.kind.produces() {
                return Err("idempotent and transactional apply to produce and e2e workloads".into());
            }
            if self.acks != Acks(-1) {
                return Err(
                    "an idempotent or transactional producer needs acks=all (as Kafka's idempotence does)".into()
                );
            }
            within("max_in_flight (idempotent)", self.max_in_flight, 1, MAX_IDEMPOTENT_IN_FLIGHT)?;
        }
        if let Some(t) = &self.transaction {
            if !(t.commit_interval_ms > 0.0 && t.commit_interval_ms <= 60_000.0) {
                return Err(format!("transaction_commit_ms = {} outside (0, 60000]", t.commit_interval_ms));
            }
            if t.commit_messages == Some(0) {
                return Err("transaction_commit_messages must be at least 1".into());
            }
        }
        if self.kind == WorkloadKind::Consume && self.topic_names.is_none() {
            return Err("a consume workload reads existing topics: give topic_names (--topic)".into());
        }
        Ok(())
    }

    /// Topic names of this run: the given ones, or `<prefix>-<run id>-<i>`.
    pub fn topic_names_for_run(&self, run_id: u32) -> Vec<String> {
        match &self.topic_names {
            Some(names) => names.clone(),
            None => (0..self.topics).map(|i| format!("{}-{run_id:08x}-{i}", self.topic_prefix)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_fields_parse_and_resolve() {
        let w = WorkloadFile::parse_toml(
            r#"
            name = "small"
            kind = "e2e"
            topics = 2
            partitions_per_topic = 8
            message_size = { min = 100, max = 200 }
            producer_rate_per_sec = 5000
            duration_secs = 30
            warmup_secs = 5
            acks = "all"
            compression = "lz4"
            keyed = true
            "#,
        )
        .unwrap()
        .resolve(2)
        .unwrap();
        assert_eq!(w.kind, WorkloadKind::E2e);
        assert_eq!((w.topics, w.partitions_per_topic), (2, 8));
        assert_eq!(w.message_size, MessageSize::Uniform { min: 100, max: 200 });
        assert_eq!(w.producer_rate_per_sec, Some(5000.0));
        assert_eq!(w.duration_secs, Some(30.0));
        assert_eq!(w.acks, Acks(-1));
        assert_eq!(w.compression, CompressionCodec::Lz4);
        assert!(w.keyed);
        assert_eq!(w.cores, 2);
    }

    #[test]
    fn omb_fields_map_onto_ours() {
        let w = WorkloadFile::parse_toml(
            r#"
            kind = "e2e"
            topics = 1
            partitionsPerTopic = 16
            messageSize = 1024
            producersPerTopic = 4
            consumerPerSubscription = 2
            subscriptionsPerTopic = 1
            producerRate = 50000
            testDurationMinutes = 15
            warmupDurationMinutes = 1
            keyDistributor = "NO_KEY"
            payloadFile = "payload/payload-1Kb.data"
            consumerBacklogSizeGB = 0
            "#,
        )
        .unwrap()
        .resolve(1)
        .unwrap();
        assert_eq!(w.partitions_per_topic, 16);
        assert_eq!(w.message_size, MessageSize::Fixed(1024));
        assert_eq!((w.producers_per_topic, w.consumers_per_topic), (4, 2));
        assert_eq!(w.producer_rate_per_sec, Some(50000.0));
        assert_eq!(w.duration_secs, Some(900.0));
        assert_eq!(w.warmup_secs, 60.0);
        assert!(!w.keyed);
        assert_eq!(w.ignored_fields, vec!["payloadFile (payloads are random bytes)".to_string()]);
    }

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let file = WorkloadFile::parse_toml("kind = \"produce\"\nbatch_bytes = 1000\nlinger_ms = 1").unwrap();
        let flags = WorkloadFile { batch_bytes: Some(65536), ..Default::default() };
        let w = file.overlay(flags).resolve(1).unwrap();
        assert_eq!(w.batch_bytes, 65536);
        assert_eq!(w.linger_ms, 1.0);
        assert_eq!(w.duration_secs, Some(10.0), "neither duration nor count: 10 s");
        assert_eq!(w.producer_rate_per_sec, None, "no rate: max throughput");
        assert_eq!(w.acks, Acks(-1));
    }

    #[test]
    fn transactional_runs_commit_every_100_ms_by_default_and_need_acks_all() {
        let resolve = |t: &str| WorkloadFile::parse_toml(t).and_then(|f| f.resolve(1));
        let w = resolve("kind = \"e2e\"\ntransactional = true").unwrap();
        assert_eq!(
            w.transaction,
            Some(TransactionSettings { commit_interval_ms: 100.0, commit_messages: None, timeout_ms: 60_000 })
        );
        let w = resolve(
            "kind = \"produce\"\ntransactional = true\ntransaction_commit_ms = 10\ntransaction_commit_messages = 500",
        )
        .unwrap();
        assert_eq!(w.transaction.map(|t| (t.commit_interval_ms, t.commit_messages)), Some((10.0, Some(500))));
        assert_eq!(resolve("kind = \"produce\"").unwrap().transaction, None);
        let err = |t: &str| resolve(t).unwrap_err();
        assert!(err("kind = \"produce\"\ntransactional = true\nacks = 1").contains("acks=all"));
        assert!(err("kind = \"produce\"\ntransactional = true\nmax_in_flight = 6").contains("max_in_flight"));
        assert!(err("kind = \"produce\"\ntransaction_commit_ms = 10").contains("need transactional"));
        assert!(err("kind = \"produce\"\ntransactional = true\ntransaction_commit_ms = 0").contains("outside"));
        assert!(err("kind = \"produce\"\ntransactional = true\ntransaction_commit_messages = 0").contains("at least 1"));
        let consume = "kind = \"consume\"\ntopic_names = [\"t\"]\ntransactional = true";
        assert!(err(consume).contains("produce and e2e"));
        let idempotent = resolve("kind = \"produce\"\nidempotent = true").unwrap();
        assert!(idempotent.idempotent && idempotent.transaction.is_none());
        assert!(err("kind = \"produce\"\nidempotent = true\nacks = 0").contains("acks=all"));
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let err = |t: &str| WorkloadFile::parse_toml(t).and_then(|f| f.resolve(1)).unwrap_err();
        assert!(err("kind = \"produce\"\nbogus = 1").contains("bogus"));
        assert!(err("topics = 1").contains("kind"));
        assert!(err("kind = \"produce\"\nmessage_size = 4").contains("message_size"));
        assert!(err("kind = \"produce\"\nacks = 2").contains("acks"));
        assert!(err("kind = \"produce\"\nduration_secs = 1\ntestDurationMinutes = 1").contains("not both"));
        assert!(err("kind = \"consume\"").contains("topic_names"));
        assert!(err("kind = \"produce\"\nmax_in_flight = 1000").contains("max_in_flight"));
        assert!(err("kind = \"produce\"\ncompression = \"brotli\"").contains("brotli"));
    }

    #[test]
    fn a_group_is_for_consumers_only_and_bounded() {
        let w = WorkloadFile::parse_toml("kind = \"e2e\"\ngroup = \"bench-g\"").unwrap().resolve(1).unwrap();
        assert_eq!(w.group.as_deref(), Some("bench-g"));
        assert_eq!(WorkloadFile::parse_toml("kind = \"e2e\"").unwrap().resolve(1).unwrap().group, None);
        let err = |t: &str| WorkloadFile::parse_toml(t).and_then(|f| f.resolve(1)).unwrap_err();
        assert!(err("kind = \"produce\"\ngroup = \"g\"").contains("consume and e2e"));
        assert!(err("kind = \"e2e\"\ngroup = \"\"").contains("group id"));
        assert!(err("kind = \"e2e\"\ngroup = \"g\"\nfetch_max_wait_ms = 5000").contains("fetch_max_wait_ms"));
    }

    #[test]
    fn sizes_parse_from_flags() {
        assert_eq!("512".parse::<MessageSize>().unwrap(), MessageSize::Fixed(512));
        assert_eq!("100..2000".parse::<MessageSize>().unwrap(), MessageSize::Uniform { min: 100, max: 2000 });
        assert!("x".parse::<MessageSize>().is_err());
        assert_eq!("all".parse::<Acks>().unwrap(), Acks(-1));
    }
}
