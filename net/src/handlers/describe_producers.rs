//! DescribeProducers (v0, KIP-664): the producers a partition tracks — id, epoch, last
//! sequence, last timestamp, coordinator epoch and the first offset of the open transaction —
//! read on the partition's owner shard, as Kafka's `ReplicaManager.activeProducerState`
//! answers for a leader. Unknown partitions get UNKNOWN_TOPIC_OR_PARTITION.
//!
//! Owns: the request/response mapping. Must never: change producer state.

use std::rc::Rc;

use futures::future::join_all;
use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use crate::handlers::codes;
use crate::shard_context::ShardContext;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: DescribeProducersRequest,
    _version: i16,
) -> DescribeProducersResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let partition_count = ctx.image.borrow().topic(&name).map(|t| t.partitions);
        let partitions = topic.partition_indexes.into_iter().map(|index| {
            let name = name.clone();
            let ctx = ctx.clone();
            async move {
                let unknown = || {
                    PartitionResponse::default()
                        .with_partition_index(index)
                        .with_error_code(codes::UNKNOWN_TOPIC_OR_PARTITION)
                };
                if partition_count.is_none_or(|n| index < 0 || index >= n) {
                    return unknown();
                }
                let producers = ctx.on_partition(&name, index, |log| async move { log.active_producers() }).await;
                let Some(producers) = producers else { return unknown() };
                let states = producers
                    .into_iter()
                    .map(|(producer_id, entry)| {
                        ProducerState::default()
                            .with_producer_id(ProducerId(producer_id))
                            .with_producer_epoch(i32::from(entry.epoch))
                            .with_last_sequence(entry.batches.back().map_or(-1, |b| b.last_sequence))
                            .with_last_timestamp(entry.last_timestamp_ms)
                            .with_coordinator_epoch(entry.coordinator_epoch)
                            .with_current_txn_start_offset(entry.current_txn_first_offset.unwrap_or(-1))
                    })
                    .collect();
                PartitionResponse::default()
                    .with_partition_index(index)
                    .with_error_code(codes::NONE)
                    .with_active_producers(states)
            }
        });
        let partitions = join_all(partitions).await;
        topics.push(TopicResponse::default().with_name(topic.name).with_partitions(partitions));
    }
    DescribeProducersResponse::default().with_throttle_time_ms(0).with_topics(topics)
}
