//! Consumer-group settings: Kafka's broker config names, bounds checked by the broker's config
//! parser, and Kafka's defaults. Plain data; owns nothing mutable.

/// Group settings (Kafka broker config names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms` (Kafka default 6000).
    pub min_session_timeout_ms: u64,
    /// `group.max.session.timeout.ms` (Kafka default 1800000).
    pub max_session_timeout_ms: u64,
    /// `group.max.size`. Kafka's default is unbounded; sluice bounds memory with 1000.
    pub max_size: usize,
    /// `group.initial.rebalance.delay.ms` (Kafka default 3000).
    pub initial_rebalance_delay_ms: u64,
    /// How long a new member may wait in a join before it is dropped (Kafka: 5 minutes).
    pub new_member_join_timeout_ms: u64,
    /// `offsets.topic.num.partitions` (Kafka default 50).
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor` (Kafka default 3): a cluster creates
    /// `__consumer_offsets` once this many brokers are up.
    pub offsets_topic_replication_factor: i16,
    /// `offsets.retention.minutes` (Kafka default 10080 = 7 days), in ms.
    pub offsets_retention_ms: u64,
    /// `offsets.retention.check.interval.ms` (Kafka default 600000).
    pub offsets_retention_check_interval_ms: u64,
    /// `offset.metadata.max.bytes` (Kafka default 4096).
    pub offset_metadata_max_bytes: usize,
    /// `group.coordinator.rebalance.protocols` contains `consumer` (Kafka default
    /// `classic,consumer`): ConsumerGroupHeartbeat and ConsumerGroupDescribe are advertised.
    pub consumer_protocol_enabled: bool,
    /// `group.consumer.*`: groups of the consumer protocol (KIP-848).
    pub consumer: ConsumerGroupConfig,
}

/// A server-side assignor of the consumer protocol (`group.consumer.assignors`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignorName {
    Uniform,
    Range,
}

impl AssignorName {
    /// Kafka's name (ConsumerGroupHeartbeat `server_assignor`, ConsumerGroupDescribe).
    pub fn name(self) -> &'static str {
        match self {
            AssignorName::Uniform => "uniform",
            AssignorName::Range => "range",
        }
    }

    /// A name or Kafka's class name of an assignor.
    pub fn parse(name: &str) -> Option<AssignorName> {
        match name.trim() {
            "uniform" | "org.apache.kafka.coordinator.group.assignor.UniformAssignor" => Some(AssignorName::Uniform),
            "range" | "org.apache.kafka.coordinator.group.assignor.RangeAssignor" => Some(AssignorName::Range),
            _ => None,
        }
    }
}

/// Consumer-protocol group settings (Kafka's `group.consumer.*` names and defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerGroupConfig {
    /// `group.consumer.session.timeout.ms` (Kafka default 45000).
    pub session_timeout_ms: u64,
    /// `group.consumer.min.session.timeout.ms` (Kafka default 45000).
    pub min_session_timeout_ms: u64,
    /// `group.consumer.max.session.timeout.ms` (Kafka default 60000).
    pub max_session_timeout_ms: u64,
    /// `group.consumer.heartbeat.interval.ms` (Kafka default 5000).
    pub heartbeat_interval_ms: u64,
    /// `group.consumer.min.heartbeat.interval.ms` (Kafka default 5000).
    pub min_heartbeat_interval_ms: u64,
    /// `group.consumer.max.heartbeat.interval.ms` (Kafka default 15000).
    pub max_heartbeat_interval_ms: u64,
    /// `group.consumer.max.size`. Kafka's default is unbounded; sluice bounds memory with 1000.
    pub max_size: usize,
    /// `group.consumer.assignors` (Kafka default `uniform,range`): the first is the default.
    pub assignors: Vec<AssignorName>,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        ConsumerGroupConfig {
            session_timeout_ms: 45_000,
            min_session_timeout_ms: 45_000,
            max_session_timeout_ms: 60_000,
            heartbeat_interval_ms: 5_000,
            min_heartbeat_interval_ms: 5_000,
            max_heartbeat_interval_ms: 15_000,
            max_size: 1000,
            assignors: vec![AssignorName::Uniform, AssignorName::Range],
        }
    }
}

impl ConsumerGroupConfig {
    /// Kafka's cross-setting checks (run once every setting is read).
    pub fn validate(&self) -> Result<(), String> {
        let within = |v: u64, min: u64, max: u64| min <= v && v <= max;
        if !within(self.session_timeout_ms, self.min_session_timeout_ms, self.max_session_timeout_ms) {
            return Err("group.consumer.session.timeout.ms must be between group.consumer.min.session.timeout.ms and group.consumer.max.session.timeout.ms".into());
        }
        if !within(self.heartbeat_interval_ms, self.min_heartbeat_interval_ms, self.max_heartbeat_interval_ms) {
            return Err("group.consumer.heartbeat.interval.ms must be between group.consumer.min.heartbeat.interval.ms and group.consumer.max.heartbeat.interval.ms".into());
        }
        if self.heartbeat_interval_ms >= self.session_timeout_ms {
            return Err(
                "group.consumer.heartbeat.interval.ms must be less than group.consumer.session.timeout.ms".into()
            );
        }
        if self.assignors.is_empty() {
            return Err("group.consumer.assignors must name at least one assignor".into());
        }
        Ok(())
    }

    /// The assignor a group uses when its members name none.
    pub fn default_assignor(&self) -> AssignorName {
        self.assignors.first().copied().unwrap_or(AssignorName::Uniform)
    }
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            max_size: 1000,
            initial_rebalance_delay_ms: 3_000,
            new_member_join_timeout_ms: 300_000,
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 3,
            offsets_retention_ms: 10_080 * 60_000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            consumer_protocol_enabled: true,
            consumer: ConsumerGroupConfig::default(),
        }
    }
}
