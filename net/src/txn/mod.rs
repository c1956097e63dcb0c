//! Transactions (KIP-98, KIP-447): the transaction coordinator.
//!
//! Owns: the sans-I/O state machine of one transactional id ([`coordinator`]), the
//! `__transaction_state` log format and replay ([`state_log`]), and the per-shard glommio edge
//! that runs every transactional id on the shard owning its state partition ([`service`]).
//! The request handlers in `crate::handlers` decode requests, route them with
//! [`service::on_txn_shard`] and encode responses. Commit/abort markers are written through
//! [`crate::txn_markers::write_txn_markers`] (data partitions) and the group coordinator
//! ([`crate::group::service::GroupShard::complete_txn_offsets`], `__consumer_offsets`
//! partitions), from the service only.
//!
//! Must never: keep a transactional id on two shards, answer a state change before its record
//! is on file, or share transaction state between shards.

pub mod coordinator;
pub mod produce_check;
pub mod service;
pub mod state_log;

/// Kafka error codes (the engine's one table, `sluice_engine::error_code`).
pub mod codes {
    pub use sluice_engine::error_code::codes::*;
}

/// PRODUCER_FENCED as a client of `version` understands it: versions before `first_version`
/// (KIP-588) only know INVALID_PRODUCER_EPOCH, which Kafka answers them instead.
pub fn fenced_for_version(code: i16, version: i16, first_version: i16) -> i16 {
    if code == codes::PRODUCER_FENCED && version < first_version {
        codes::INVALID_PRODUCER_EPOCH
    } else {
        code
    }
}

/// Transaction coordinator settings (Kafka broker config names and defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnConfig {
    /// `transaction.state.log.num.partitions` (Kafka default 50).
    pub state_log_num_partitions: i32,
    /// `transaction.state.log.replication.factor` (Kafka default 3): a cluster creates
    /// `__transaction_state` once this many brokers are up.
    pub state_log_replication_factor: i16,
    /// `transaction.max.timeout.ms` (Kafka default 900000 = 15 minutes): a producer asking for
    /// a longer `transaction.timeout.ms` gets INVALID_TRANSACTION_TIMEOUT.
    pub max_timeout_ms: u64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms` (Kafka default 10000):
    /// how often the coordinator looks for transactions older than their timeout.
    pub abort_timed_out_interval_ms: u64,
    /// `transactional.id.expiration.ms` (Kafka default 604800000 = 7 days): an id with no
    /// open transaction and no update for this long is forgotten.
    pub id_expiration_ms: u64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms` (Kafka default 3600000).
    pub remove_expired_interval_ms: u64,
    /// A fault point for tests, never a setting (`SLUICE_FAULT_TXN_HOLD_MARKERS`, read by the
    /// binary's `fault_points`): ending transactions stay in PrepareCommit/PrepareAbort with
    /// their markers unwritten, so a test can crash the broker exactly there.
    pub hold_markers: bool,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            state_log_num_partitions: 50,
            state_log_replication_factor: 3,
            max_timeout_ms: 900_000,
            abort_timed_out_interval_ms: 10_000,
            id_expiration_ms: 604_800_000,
            remove_expired_interval_ms: 3_600_000,
            hold_markers: false,
        }
    }
}
