//! Broker-wide settings the protocol layer needs (Kafka names in comments). Plain data, `Send`
//! and `Sync`, shared by every shard behind an `Arc`. Owns nothing mutable; must never grow
//! per-shard state.

use std::path::PathBuf;

use sluice_engine::log_config::LogConfig;

/// `sluice.fetch.readahead.bytes` by default (see `tuning/results/consume-readahead`).
pub const DEFAULT_FETCH_READAHEAD_BYTES: u64 = 4 << 20;

#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// `node.id`.
    pub node_id: i32,
    /// Host and port of the inter-broker listener (`advertised.listeners`): what a clustered
    /// node registers for replication, and what Metadata answers on a listener not in
    /// `advertised_listeners`.
    pub advertised_host: String,
    pub advertised_port: i32,
    /// Every client listener's advertised endpoint (empty: the one above, for `--listen`).
    pub advertised_listeners: Vec<crate::metadata_image::ListenerEndpoint>,
    /// `socket.request.max.bytes` (Kafka default 100 MiB).
    pub max_request_bytes: usize,
    /// `auto.create.topics.enable` (default true).
    pub auto_create_topics: bool,
    /// `num.partitions` for auto-created topics (default 1).
    pub num_partitions: i32,
    /// `default.replication.factor` (default 1).
    pub default_replication_factor: i16,
    /// Topic defaults (`log.*` broker settings).
    pub default_log_config: LogConfig,
    pub data_dir: PathBuf,
    /// Longest a Fetch may wait (`fetch.max.wait.ms` is the client's; this caps it).
    pub max_fetch_wait_ms: i32,
    /// `sluice.fetch.sendfile`: serve fetched data that is on disk (not in the tail cache) with
    /// `sendfile(2)` from the page cache instead of a direct read and a copy.
    pub fetch_sendfile: bool,
    /// `sluice.fetch.readahead.bytes`: with `sendfile`, how far past a fetch's range the page
    /// cache is asked to read ahead (`POSIX_FADV_WILLNEED`), so a sequential consumer's next
    /// fetches find their bytes in memory. Segments are written with direct I/O, which leaves
    /// the page cache cold. 0 turns it off.
    pub fetch_readahead_bytes: u64,
    /// Incremental fetch sessions (KIP-227): `max.incremental.fetch.session.cache.slots` (whole
    /// broker, split across shards) and `min.incremental.fetch.session.eviction.ms`.
    pub fetch_sessions: crate::fetch_session::cache::FetchSessionConfig,
    /// `sluice.ack.on`: `written` (default) acknowledges a produce once its bytes are on file
    /// (a process crash loses no acked record, like Kafka); `buffered` acknowledges once they
    /// are in the write-behind buffer (faster, but a process crash can lose acked records that
    /// were not written yet). The topic's flush policy applies in both modes.
    pub ack_when_written: bool,
    /// `sluice.produce.discard`: acknowledge every produce to a known partition without
    /// validating or storing it (base offset 0; fetches see nothing). Only for measuring a client's ceiling — the
    /// "discard-everything broker" of tuning/ and `sluice bench`. Default false; logged loudly.
    pub produce_discard: bool,
    /// Consumer-group settings (`group.*`, `offsets.*`).
    pub group: crate::group::GroupConfig,
    /// Transaction coordinator settings (`transaction.*`, `transactional.id.*`).
    pub txn: crate::txn::TxnConfig,
    /// Data replication settings (`replica.*`).
    pub replication: crate::replication::config::ReplicationConfig,
    /// Authentication and authorization settings (`sasl.*`, `authorizer.class.name`, …).
    pub security: crate::security::SecurityConfig,
    /// Client quota windows (`quota.window.num`, `quota.window.size.seconds`).
    pub quota: crate::quota::QuotaConfig,
    /// `max.connections` split across shards: more are accepted and closed at once. Below the
    /// open-files limit so connections cannot take the descriptors segment files need.
    pub max_connections_per_shard: usize,
    /// The cluster metadata quorum this node is part of (`controller.quorum.voters` with more
    /// than one voter, or `process.roles=broker`); `None` is the one-node embedded controller
    /// of `metadata.json`.
    pub quorum: Option<std::sync::Arc<crate::controller_quorum::QuorumConfig>>,
}

impl BrokerConfig {
    /// The advertised endpoint of this node's listener `listener`.
    pub fn advertised_endpoint(&self, listener: &str) -> (String, i32) {
        match self.advertised_listeners.iter().find(|l| l.name == listener) {
            Some(l) => (l.host.clone(), l.port),
            None => (self.advertised_host.clone(), self.advertised_port),
        }
    }

    pub fn new(data_dir: PathBuf, advertised_host: String, advertised_port: i32) -> BrokerConfig {
        BrokerConfig {
            node_id: 1,
            advertised_host,
            advertised_port,
            advertised_listeners: Vec::new(),
            max_request_bytes: 100 * 1024 * 1024,
            auto_create_topics: true,
            num_partitions: 1,
            default_replication_factor: 1,
            default_log_config: LogConfig::default(),
            data_dir,
            max_fetch_wait_ms: 30_000,
            fetch_sendfile: true,
            fetch_readahead_bytes: DEFAULT_FETCH_READAHEAD_BYTES,
            fetch_sessions: Default::default(),
            ack_when_written: true,
            produce_discard: false,
            group: crate::group::GroupConfig::default(),
            txn: crate::txn::TxnConfig::default(),
            replication: crate::replication::config::ReplicationConfig::default(),
            security: crate::security::SecurityConfig::default(),
            quota: crate::quota::QuotaConfig::default(),
            max_connections_per_shard: crate::server::MAX_CONNECTIONS_PER_SHARD,
            quorum: None,
        }
    }
}
