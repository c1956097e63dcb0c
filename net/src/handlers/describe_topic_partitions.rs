//! DescribeTopicPartitions (API 75, KIP-966): topics with their partitions' leaders, epochs,
//! replicas and ISR, as Metadata has them, paginated by partitions (Kafka 3.8+ admin clients
//! describe topics with it).
//!
//! Kafka's rules (`DescribeTopicPartitionsRequestHandler`, `describeTopicResponse`): the topics
//! requested (none: every topic the principal may DESCRIBE, silently filtered) at or after the
//! cursor's topic, in name order; at most `min(response_partition_limit, 2000)` (at least 1)
//! partitions in all, the cursor's topic from the cursor's partition. A topic cut short, or the
//! first topic that no longer fits, is named with its next partition in `next_cursor`. A
//! requested topic that does not exist is answered UNKNOWN_TOPIC_OR_PARTITION (or
//! INVALID_TOPIC_EXCEPTION for a bad name) without using the budget; one the principal may not
//! DESCRIBE, TOPIC_AUTHORIZATION_FAILED after the others (whether it exists is not disclosed);
//! a cursor naming a topic outside the requested ones answers every requested topic
//! INVALID_REQUEST. `topic_authorized_operations` is always filled in (Kafka does).
//!
//! Must never: name, count or page through a topic the principal may not DESCRIBE.

use std::rc::Rc;

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::handlers::codes;
use crate::shard_context::ShardContext;
use crate::topic_name::{is_internal, validate_topic_name};

/// Kafka's `max.request.partition.size.limit` default: the most partitions one response holds.
pub const MAX_RESPONSE_PARTITIONS: i32 = 2000;

/// Kafka's LEADER_NOT_AVAILABLE.
const LEADER_NOT_AVAILABLE: i16 = 5;

/// What the handler needs to know of the principal: may it DESCRIBE a topic, and the bitfield
/// of its operations on one (`topic_authorized_operations`).
pub struct TopicAccess<'a> {
    pub may_describe: &'a dyn Fn(&str) -> bool,
    pub authorized_operations: &'a dyn Fn(&str) -> i32,
}

pub fn handle(
    ctx: &Rc<ShardContext>,
    request: DescribeTopicPartitionsRequest,
    _version: i16,
    access: &TopicAccess<'_>,
) -> DescribeTopicPartitionsResponse {
    let cursor_topic = request.cursor.as_ref().map(|c| c.topic_name.0.to_string());
    let cursor_start = request.cursor.as_ref().map_or(0, |c| c.partition_index.max(0));
    let after_cursor = |name: &str| cursor_topic.as_deref().is_none_or(|c| name >= c);
    let list_all = request.topics.is_empty();
    let mut names: Vec<String> = if list_all {
        ctx.image.borrow().topics.keys().filter(|n| after_cursor(n)).cloned().collect()
    } else {
        request.topics.iter().map(|t| t.name.0.to_string()).filter(|n| after_cursor(n)).collect()
    };
    names.sort_unstable();
    names.dedup();
    if let (Some(cursor), false) = (&cursor_topic, list_all) {
        if !names.contains(cursor) {
            let topics = request.topics.iter().map(|t| error_topic(t.name.0.to_string(), codes::INVALID_REQUEST));
            return DescribeTopicPartitionsResponse::default().with_topics(topics.collect());
        }
    }
    let (authorized, refused): (Vec<String>, Vec<String>) = names.into_iter().partition(|n| (access.may_describe)(n));

    let mut remaining = request.response_partition_limit.clamp(1, MAX_RESPONSE_PARTITIONS);
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in authorized {
        if remaining == 0 {
            next_cursor = Some(Cursor::default().with_topic_name(topic_name(&name)).with_partition_index(0));
            break;
        }
        let meta = ctx.image.borrow().topic(&name).cloned();
        let Some(meta) = meta else {
            if !list_all {
                let code = if validate_topic_name(&name).is_ok() {
                    codes::UNKNOWN_TOPIC_OR_PARTITION
                } else {
                    codes::INVALID_TOPIC_EXCEPTION
                };
                topics.push(error_topic(name, code));
            }
            continue;
        };
        let start = if cursor_topic.as_deref() == Some(name.as_str()) { cursor_start } else { 0 };
        let end = meta.partitions.min(start.saturating_add(remaining)).max(start);
        let partitions: Vec<_> = (start..end).map(|p| partition_entry(ctx, &name, p)).collect();
        remaining -= end - start;
        let cut_short = end < meta.partitions;
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_error_code(codes::NONE)
                .with_name(Some(topic_name(&name)))
                .with_topic_id(Uuid::from_bytes(meta.id))
                .with_is_internal(is_internal(&name))
                .with_partitions(partitions)
                .with_topic_authorized_operations((access.authorized_operations)(&name)),
        );
        if cut_short {
            next_cursor = Some(Cursor::default().with_topic_name(topic_name(&name)).with_partition_index(end));
            break;
        }
    }
    if !list_all {
        topics.extend(refused.into_iter().map(|n| error_topic(n, codes::TOPIC_AUTHORIZATION_FAILED)));
    }
    DescribeTopicPartitionsResponse::default()
        .with_throttle_time_ms(0)
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn error_topic(name: String, code: i16) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(code)
        .with_is_internal(is_internal(&name))
        .with_name(Some(TopicName(StrBytes::from_string(name))))
        .with_topic_id(Uuid::nil())
        .with_partitions(vec![])
}

/// A partition as Metadata describes it (leader, epoch, replicas, ISR, offline replicas); no
/// eligible leader replicas (KIP-966's ELR is not implemented: null, as from a Kafka without it).
fn partition_entry(ctx: &ShardContext, topic: &str, partition: i32) -> DescribeTopicPartitionsResponsePartition {
    let replica = ctx.replica_state(topic, partition);
    let error = if replica.leader_id < 0 { LEADER_NOT_AVAILABLE } else { codes::NONE };
    let offline = crate::handlers::metadata::offline_replicas(ctx, &replica.replicas);
    DescribeTopicPartitionsResponsePartition::default()
        .with_error_code(error)
        .with_partition_index(partition)
        .with_leader_id(BrokerId(replica.leader_id))
        .with_leader_epoch(replica.leader_epoch)
        .with_replica_nodes(replica.replicas.iter().map(|r| BrokerId(*r)).collect())
        .with_isr_nodes(replica.in_sync_replicas.iter().map(|r| BrokerId(*r)).collect())
        .with_eligible_leader_replicas(None)
        .with_last_known_elr(None)
        .with_offline_replicas(offline)
}
