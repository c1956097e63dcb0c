//! The storage side of the broker's internal topics (`__consumer_offsets`,
//! `__transaction_state`): their log config, appending key/value records on the partition's
//! owner shard, and reading a partition back from its start when its coordinator loads it. On
//! a single node they live outside the metadata image; in a cluster they are replicated topics
//! of it (created by [`crate::controller::ensure_internal_topic`]), led like any other.
//!
//! Owns: the mechanics shared by [`crate::group::offsets_log`] and [`crate::txn::state_log`]
//! (each owns its own record format). Must never: take a client's Produce (the Produce handler
//! refuses internal topics), append to a partition this node does not lead, or run on a shard
//! other than the owner.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::Either;
use sluice_engine::batch::build_batch;
use sluice_engine::log_config::LogConfig;
use sluice_engine::{PartitionLog, ReadBound};

use crate::shard_context::ShardContext;

/// Kafka's `offsets.topic.segment.bytes` and `transaction.state.log.segment.bytes` default:
/// internal topics roll (and so get cleaned) well before a 1 GiB default segment fills.
pub const INTERNAL_TOPIC_MAX_SEGMENT_BYTES: i32 = 100 * 1024 * 1024;

/// The log config of an internal topic: compacted (the latest record of each key is its
/// state), no time or size retention, segments of at most [`INTERNAL_TOPIC_MAX_SEGMENT_BYTES`].
pub fn internal_topic_log_config(defaults: &LogConfig) -> LogConfig {
    let mut config = defaults.clone();
    config.retention_ms = -1;
    config.retention_bytes = -1;
    config.cleanup_policy = vec![sluice_engine::log_config::CleanupPolicy::Compact];
    config.segment_bytes = config.segment_bytes.min(INTERNAL_TOPIC_MAX_SEGMENT_BYTES);
    config
}

/// Longest an internal append waits for the in-sync replicas to have it (Kafka's
/// `offsets.commit.timeout.ms` default).
pub const INTERNAL_APPEND_REPLICATION_TIMEOUT_MS: u64 = 5_000;

/// Appends `records` (key, value; `None` = tombstone) as one batch to `topic`-`partition` on
/// this shard, creating the partition on first use on a single node, and returns once the
/// batch is on file — and, when the partition has other replicas, once every in-sync replica
/// has it (the high watermark passed it: Kafka writes its internal topics with acks=all).
/// Refused when this node does not lead the partition. `creating` serializes first-use
/// creation of a partition on this shard: two concurrent appends must not both open the same
/// new directory.
pub async fn append(
    ctx: &ShardContext,
    creating: &glommio::sync::Semaphore,
    topic: &str,
    partition: i32,
    records: &[(Vec<u8>, Option<Vec<u8>>)],
) -> Result<(), String> {
    if records.is_empty() {
        return Ok(());
    }
    let Some(leader_epoch) = ctx.internal_leadership(topic, partition) else {
        return Err(format!("{topic}-{partition}: this node is not its leader"));
    };
    let storage = &ctx.storage;
    let log = match storage.partition(topic, partition) {
        Some(log) => log,
        None if ctx.is_clustered() => return Err(format!("{topic}-{partition}: no replica on this node yet")),
        None => {
            let _permit = creating.acquire_permit(1).await.map_err(|e| e.to_string())?;
            match storage.partition(topic, partition) {
                Some(log) => log,
                None => storage
                    .create_partition(topic, partition, internal_topic_log_config(&ctx.config.default_log_config))
                    .await
                    .map_err(|e| e.to_string())?,
            }
        }
    };
    let specs: Vec<_> = records.iter().map(|(k, v)| (Some(k.as_slice()), v.as_deref(), &[][..])).collect();
    let batch = build_batch(0, &specs, sluice_engine::clock::now_ms());
    let appended = log.append(&batch, leader_epoch).await.map_err(|e| e.to_string())?;
    if ctx.replica_state(topic, partition).replicas.len() > 1 {
        let replicated = log.high_watermark_watermark().wait_for(appended.last_offset as u64 + 1);
        let timeout = glommio::timer::sleep(Duration::from_millis(INTERNAL_APPEND_REPLICATION_TIMEOUT_MS));
        futures::pin_mut!(replicated, timeout);
        match futures::future::select(replicated, timeout).await {
            Either::Left((Ok(()), _)) => {}
            Either::Left((Err(_), _)) => return Err(format!("{topic}-{partition}: the log failed")),
            Either::Right(_) => return Err(format!("{topic}-{partition}: not replicated in time")),
        }
    }
    Ok(())
}

/// Reads one partition from its start and hands every record's (offset, key, value) to `f`,
/// in offset order.
pub async fn replay(
    log: &Rc<PartitionLog>,
    mut f: impl FnMut(i64, Option<&[u8]>, Option<&[u8]>),
) -> Result<(), String> {
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let read = log.read(offset, 1 << 20, ReadBound::LogEnd, true).await.map_err(|e| e.to_string())?;
        if read.is_empty() {
            break;
        }
        let mut bytes = Bytes::from(read.to_vec().await.map_err(|e| e.to_string())?);
        let mut next = offset;
        while !bytes.is_empty() {
            let set = match kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes) {
                Ok(set) => set,
                Err(_) => break, // a partial batch at the end of the read
            };
            for record in set.records {
                next = next.max(record.offset + 1);
                if record.offset < offset || record.control {
                    continue;
                }
                f(record.offset, record.key.as_deref(), record.value.as_deref());
            }
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    Ok(())
}
