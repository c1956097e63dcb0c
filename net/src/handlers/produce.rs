//! Produce: validate and append each partition's record batches on the partition's owner
//! shard, all partitions concurrently; per-partition errors with Kafka's codes. acks=0 gets no
//! response; acks=-1 requires `min.insync.replicas` ≤ the in-sync replicas (one, on a single
//! node) or fails with NOT_ENOUGH_REPLICAS, like Kafka.

use std::rc::Rc;

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use crate::handlers::{codes, str_bytes, LEADER_EPOCH};
use crate::shard_context::ShardContext;

/// In-sync replicas of every partition on a single node.
const IN_SYNC_REPLICAS: i32 = 1;

pub async fn handle(ctx: &Rc<ShardContext>, request: ProduceRequest, _version: i16) -> Option<ProduceResponse> {
    let acks = request.acks;
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        let meta = ctx.image.borrow().topic(&name).cloned();
        let config = ctx.image.borrow().log_config(&name, &ctx.config.default_log_config);
        let partitions = topic.partition_data.into_iter().map(|p| {
            let name = name.clone();
            let meta = meta.clone();
            let min_insync = config.as_ref().map_or(1, |c| c.min_insync_replicas);
            async move {
                let index = p.index;
                let error = |code: i16, message: Option<String>| {
                    PartitionProduceResponse::default()
                        .with_index(index)
                        .with_error_code(code)
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(-1)
                        .with_error_message(message.map(str_bytes))
                };
                if !matches!(acks, -1..=1) {
                    return error(codes::INVALID_REQUIRED_ACKS, None);
                }
                let Some(meta) = meta else { return error(codes::UNKNOWN_TOPIC_OR_PARTITION, None) };
                if index < 0 || index >= meta.partitions {
                    return error(codes::UNKNOWN_TOPIC_OR_PARTITION, None);
                }
                if acks == -1 && min_insync > IN_SYNC_REPLICAS {
                    let message = format!("in-sync replicas {IN_SYNC_REPLICAS} below min.insync.replicas {min_insync}");
                    return error(codes::NOT_ENOUGH_REPLICAS, Some(message));
                }
                let records: Bytes = p.records.unwrap_or_default();
                let ctx = ShardContext::current();
                let topic_for_log = name.clone();
                let result = ctx
                    .on_partition(&name, index, move |log| async move {
                        log.append(&records, LEADER_EPOCH).await.map_err(|e| (e.error_code().0, e.to_string()))
                    })
                    .await;
                match result {
                    None => error(codes::UNKNOWN_TOPIC_OR_PARTITION, None),
                    Some(Ok(info)) => PartitionProduceResponse::default()
                        .with_index(index)
                        .with_error_code(codes::NONE)
                        .with_base_offset(info.base_offset)
                        .with_log_append_time_ms(info.log_append_time_ms)
                        .with_log_start_offset(info.log_start_offset),
                    Some(Err((code, message))) => {
                        tracing::info!(topic = %topic_for_log, partition = index, code, %message, "produce refused");
                        error(code, Some(message))
                    }
                }
            }
        });
        let partition_responses = join_all(partitions).await;
        topics
            .push(TopicProduceResponse::default().with_name(topic.name).with_partition_responses(partition_responses));
    }
    if acks == 0 {
        return None;
    }
    Some(ProduceResponse::default().with_responses(topics).with_throttle_time_ms(0))
}
