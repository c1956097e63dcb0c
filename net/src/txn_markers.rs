//! Writing transaction markers: the partition side of ending a transaction. The transaction
//! coordinator (EndTxn, a fenced or timed-out producer) and the WriteTxnMarkers API call
//! [`write_txn_markers`]; it writes one commit or abort control batch into each listed
//! partition, on the partition's owner shard like a produce, and answers per partition.
//!
//! Owns: routing markers to partitions and turning each outcome into Kafka's error code.
//! Must never: write a marker into a partition of another broker's, or answer a partition
//! before its marker is durable.

use std::rc::Rc;

use futures::future::join_all;
use sluice_engine::error_code::ErrorCode;

use crate::shard_context::ShardContext;

/// Writes one commit (`commit`) or abort marker for the producer into each of `partitions`
/// (topic, partition) — `__consumer_offsets` partitions included — concurrently, and answers
/// per partition once its marker is durable: NONE, UNKNOWN_TOPIC_OR_PARTITION (no such partition
/// here), NOT_LEADER_OR_FOLLOWER (another broker leads it), INVALID_PRODUCER_EPOCH (an epoch older than the partition knows for the producer),
/// TRANSACTION_COORDINATOR_FENCED (an older coordinator epoch), or the append's storage error.
pub async fn write_txn_markers(
    ctx: &Rc<ShardContext>,
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    commit: bool,
    partitions: Vec<(String, i32)>,
) -> Vec<((String, i32), ErrorCode)> {
    let writes = partitions.into_iter().map(|(topic, partition)| {
        let ctx = ctx.clone();
        async move {
            let replica = ctx.replica_state(&topic, partition);
            if replica.leader_id != ctx.config.node_id {
                return ((topic, partition), ErrorCode::NOT_LEADER_OR_FOLLOWER);
            }
            let leader_epoch = replica.leader_epoch;
            let outcome = ctx
                .on_partition(&topic, partition, move |log| async move {
                    log.append_txn_marker(producer_id, producer_epoch, coordinator_epoch, commit, leader_epoch)
                        .await
                        .map(|_| ())
                        .map_err(|e| (e.error_code(), e.to_string()))
                })
                .await;
            let code = match outcome {
                None => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                Some(Ok(())) => ErrorCode::NONE,
                Some(Err((code, message))) => {
                    sluice_engine::info_limited!(
                        %topic, partition, producer_id, producer_epoch, coordinator_epoch, %code, %message,
                        "transaction marker refused"
                    );
                    code
                }
            };
            ((topic, partition), code)
        }
    });
    join_all(writes).await
}
