//! DeleteRecords (v0–2): move each partition's log start offset up to the requested offset
//! (-1 = the high watermark) on the partition's owner shard, all partitions concurrently, and
//! answer the new low watermark — Kafka's `ReplicaManager.deleteRecords` /
//! `Partition.deleteRecordsOnLeader` (on the leader only: NOT_LEADER_OR_FOLLOWER elsewhere;
//! followers follow the leader's log start as they fetch, and the answer does not wait for
//! them, unlike Kafka's delayed DeleteRecords). Internal topics give
//! INVALID_TOPIC_EXCEPTION, unknown partitions UNKNOWN_TOPIC_OR_PARTITION, a topic whose
//! `cleanup.policy` lacks `delete` POLICY_VIOLATION, an offset below 0 or past the high
//! watermark OFFSET_OUT_OF_RANGE; failed partitions report low watermark -1.
//!
//! Owns: the request/response mapping. Must never: move a log start offset other than through
//! `PartitionLog::delete_records_before` on the owner shard.

use std::rc::Rc;

use futures::future::join_all;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::handlers::codes;
use crate::handlers::config_resources::admin_codes;
use crate::shard_context::ShardContext;
use crate::topic_name::is_internal;

pub async fn handle(ctx: &Rc<ShardContext>, request: DeleteRecordsRequest, _version: i16) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let partition_count = ctx.image.borrow().topic(&name).map(|t| t.partitions);
        let futures = topic.partitions.into_iter().map(|p| {
            let name = name.clone();
            let ctx = ctx.clone();
            async move {
                let index = p.partition_index;
                let failed = |code: i16| {
                    DeleteRecordsPartitionResult::default()
                        .with_partition_index(index)
                        .with_low_watermark(-1)
                        .with_error_code(code)
                };
                if is_internal(&name) {
                    return failed(codes::INVALID_TOPIC_EXCEPTION);
                }
                if partition_count.is_none_or(|n| index < 0 || index >= n) {
                    return failed(codes::UNKNOWN_TOPIC_OR_PARTITION);
                }
                let not_leader = crate::handlers::check_leader_epoch(&ctx, &name, index, -1);
                if not_leader != codes::NONE {
                    return failed(not_leader);
                }
                let offset = p.offset;
                let outcome = ctx
                    .on_partition(&name, index, move |log| async move {
                        if !log.config().cleanup_policy_delete() {
                            return Err(admin_codes::POLICY_VIOLATION);
                        }
                        log.delete_records_before(offset).await.map_err(|e| e.error_code().0)
                    })
                    .await;
                match outcome {
                    None => failed(codes::UNKNOWN_TOPIC_OR_PARTITION),
                    Some(Err(code)) => {
                        tracing::info!(topic = %name, partition = index, offset, code, "DeleteRecords refused");
                        failed(code)
                    }
                    Some(Ok(low_watermark)) => DeleteRecordsPartitionResult::default()
                        .with_partition_index(index)
                        .with_low_watermark(low_watermark)
                        .with_error_code(codes::NONE),
                }
            }
        });
        let partitions = join_all(futures).await;
        topics.push(DeleteRecordsTopicResult::default().with_name(topic.name).with_partitions(partitions));
    }
    DeleteRecordsResponse::default().with_throttle_time_ms(0).with_topics(topics)
}
