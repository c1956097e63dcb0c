//! sluice storage engine: shard-per-core partition logs on direct I/O.
//!
//! Owns: record-batch validation ([`batch`]), segments and their indexes ([`segment`],
//! [`offset_index`], [`time_index`]), the direct-I/O write-behind ([`segment_writer`]), a
//! partition's log with recovery, retention and durability ([`partition_log`]), the shards and
//! their cross-shard call API ([`shard`]), and each shard's set of partitions
//! ([`shard_storage`]).
//!
//! Must never: speak the Kafka wire protocol beyond the record-batch format (that is `net/`),
//! run a blocking syscall on a shard thread, or share mutable state between shards.

pub mod batch;
pub mod batch_builder;
pub mod checkpoint_file;
pub mod cleaner;
pub mod clock;
pub mod compressed_batch;
pub mod compression;
pub mod crc;
pub mod data_dir_lock;
pub mod error_code;
pub mod iopoll_probe;
pub mod leader_epoch_cache;
pub mod log_config;
pub mod log_limit;
pub mod log_recovery;
pub mod memory_budget;
pub mod offset_index;
pub mod partition_log;
pub mod producer_state;
pub mod reader_cache;
pub mod record_encoding;
pub mod replica_state;
pub mod retention;
pub mod retry_backoff;
pub mod segment;
pub mod segment_file;
pub mod segment_writer;
pub mod shard;
pub mod shard_metrics;
pub mod shard_storage;
pub mod stream_copy;
pub mod tail_cache;
pub mod time_index;
pub mod txn_index;
pub mod txn_marker;
pub mod watermark;

pub use error_code::{ApiError, ErrorCode};
pub use log_config::LogConfig;
pub use partition_log::{AppendError, AppendInfo, LogError, LogOptions, LogRead, PartitionLog, ReadBound};
pub use segment::ReadChunk;
pub use shard::{ShardMesh, ShardPool, ShardPoolConfig};
pub use shard_storage::{owner_shard, ShardStorage, StorageOptions};

// For the rate-limited log macros of [`log_limit`], expanded in other crates.
#[doc(hidden)]
pub use tracing as __tracing;
