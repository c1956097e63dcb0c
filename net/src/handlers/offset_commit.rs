//! OffsetCommit (v2–v9): generation and member checks on the group's coordinator shard
//! (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID, REBALANCE_IN_PROGRESS; for a
//! consumer-protocol group the member epoch: STALE_MEMBER_EPOCH, FENCED_MEMBER_EPOCH), then
//! the commits are appended to `__consumer_offsets` and acknowledged once on file.

use std::rc::Rc;

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::protocol::StrBytes;

use crate::group::coordinator::CommittedOffset;
use crate::group::service::{now_ms, on_group_shard};
use crate::group::{codes, opt_string};
use crate::shard_context::ShardContext;

/// One partition of an OffsetCommit or TxnOffsetCommit as the broker checks it: the partition
/// exists (`partitions`: the topic's partition count, `None` for an unknown topic) and the
/// metadata fits `offset.metadata.max.bytes`; then the offset to commit.
pub fn checked_commit(
    partitions: Option<i32>,
    partition_index: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: Option<&StrBytes>,
    max_metadata_bytes: usize,
    commit_timestamp_ms: u64,
) -> Result<CommittedOffset, i16> {
    let metadata = metadata.map(|m| m.to_string()).unwrap_or_default();
    if partitions.is_none_or(|n| partition_index < 0 || partition_index >= n) {
        Err(codes::UNKNOWN_TOPIC_OR_PARTITION)
    } else if metadata.len() > max_metadata_bytes {
        Err(codes::OFFSET_METADATA_TOO_LARGE)
    } else {
        Ok(CommittedOffset { offset, leader_epoch, metadata, commit_timestamp_ms })
    }
}

pub async fn handle(ctx: &Rc<ShardContext>, request: OffsetCommitRequest, version: i16) -> OffsetCommitResponse {
    let group_id = request.group_id.0.to_string();
    let max_metadata = ctx.config.group.offset_metadata_max_bytes;
    let now = now_ms();
    // (topic, partition, error or the commit)
    let mut answers: Vec<(String, i32, Result<CommittedOffset, i16>)> = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let partitions = ctx.image.borrow().topic(&name).map(|t| t.partitions);
        for p in &topic.partitions {
            let answer = if group_id.is_empty() {
                Err(codes::INVALID_GROUP_ID)
            } else {
                let leader_epoch = if version >= 6 { p.committed_leader_epoch } else { -1 };
                let metadata = p.committed_metadata.as_ref();
                checked_commit(
                    partitions,
                    p.partition_index,
                    p.committed_offset,
                    leader_epoch,
                    metadata,
                    max_metadata,
                    now,
                )
            };
            answers.push((name.clone(), p.partition_index, answer));
        }
    }
    let commits: Vec<(String, i32, CommittedOffset)> =
        answers.iter().filter_map(|(t, p, a)| a.as_ref().ok().map(|c| (t.clone(), *p, c.clone()))).collect();
    let outcome = if commits.is_empty() && !group_id.is_empty() && !answers.is_empty() {
        Ok(())
    } else if group_id.is_empty() {
        Err(codes::INVALID_GROUP_ID)
    } else {
        let member_id = request.member_id.to_string();
        let instance_id = opt_string(&request.group_instance_id);
        let generation_id = request.generation_id_or_member_epoch;
        // v9+ names a missing group; older versions say ILLEGAL_GENERATION (Kafka 4.x).
        let missing = if version >= 9 { codes::GROUP_ID_NOT_FOUND } else { codes::ILLEGAL_GENERATION };
        let gid = group_id.clone();
        on_group_shard(ctx, &group_id, move |groups| async move {
            groups.commit(&gid, &member_id, instance_id.as_deref(), generation_id, missing, version, commits).await
        })
        .await
        .unwrap_or_else(Err)
    };
    let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
    for (topic, partition, answer) in answers {
        let error = match (answer, outcome) {
            (Err(code), _) => code,
            (Ok(_), Err(code)) => code,
            (Ok(_), Ok(())) => codes::NONE,
        };
        let p = OffsetCommitResponsePartition::default().with_partition_index(partition).with_error_code(error);
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == topic => t.partitions.push(p),
            _ => topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(kafka_protocol::messages::TopicName(crate::handlers::str_bytes(topic)))
                    .with_partitions(vec![p]),
            ),
        }
    }
    OffsetCommitResponse::default().with_throttle_time_ms(0).with_topics(topics)
}
