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
        }
    }
}
