//! OffsetForLeaderEpoch (v2–4): for each partition, the largest leader epoch ≤ the requested one
//! and the offset where it ends (`PartitionLog::end_offset_for_epoch`, Kafka's
//! `LeaderEpochFileCache.endOffsetFor`), after Kafka's `current_leader_epoch` check
//! (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH); unknown partitions give
//! UNKNOWN_TOPIC_OR_PARTITION with epoch and offset -1.
//!
//! A Kafka leader writes its epoch's start into the epoch cache when it becomes leader; sluice's
//! does too (at the partition's creation, or in a task `reconcile` spawns), so for a moment, or
//! if that write failed, the epoch has no entry yet. Such a partition answers as if the cache
//! held (the leader epoch, log end offset), as Kafka's leader would.
//!
//! Owns: the request/response mapping. Must never: change a log.

use std::rc::Rc;

use futures::future::join_all;
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::handlers::{check_leader_epoch, codes};
use crate::shard_context::ShardContext;
use sluice_engine::replica_state::ReplicaState;

/// Kafka's UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET.
const UNDEFINED_EPOCH: i32 = -1;
const UNDEFINED_OFFSET: i64 = -1;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.topic.0.to_string();
        let partition_count = ctx.image.borrow().topic(&name).map(|t| t.partitions);
        let futures = topic.partitions.into_iter().map(|p| {
            let name = name.clone();
            let ctx = ctx.clone();
            async move {
                let index = p.partition;
                let base = EpochEndOffset::default()
                    .with_partition(index)
                    .with_leader_epoch(UNDEFINED_EPOCH)
                    .with_end_offset(UNDEFINED_OFFSET);
                if partition_count.is_none_or(|n| index < 0 || index >= n) {
                    return base.with_error_code(codes::UNKNOWN_TOPIC_OR_PARTITION);
                }
                let epoch_error = check_leader_epoch(&ctx, &name, index, p.current_leader_epoch);
                if epoch_error != codes::NONE {
                    return base.with_error_code(epoch_error);
                }
                let requested = p.leader_epoch;
                // An owned copy: the closure runs on the partition's shard.
                let replica = ReplicaState::clone(&ctx.replica_state(&name, index));
                let answer = ctx
                    .on_partition(&name, index, move |log| async move {
                        if log.latest_epoch().is_none() {
                            replica.end_offset_for_epoch_of_empty_log(requested, log.log_end_offset())
                        } else {
                            log.end_offset_for_epoch(requested)
                        }
                    })
                    .await;
                match answer {
                    None => base.with_error_code(codes::UNKNOWN_TOPIC_OR_PARTITION),
                    Some((epoch, offset)) => {
                        base.with_error_code(codes::NONE).with_leader_epoch(epoch).with_end_offset(offset)
                    }
                }
            }
        });
        let partitions = join_all(futures).await;
        topics.push(OffsetForLeaderTopicResult::default().with_topic(topic.topic).with_partitions(partitions));
    }
    OffsetForLeaderEpochResponse::default().with_throttle_time_ms(0).with_topics(topics)
}
