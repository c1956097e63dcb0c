//! TxnOffsetCommit (v0–v5): offsets committed inside a transaction. The group's
//! `__consumer_offsets` partition must be in the producer's open transaction (added by
//! AddOffsetsToTxn; checked with the coordinator's verify-only form, KIP-890), the member and
//! generation must match if given (KIP-447), then the offsets are written as pending on the
//! group's shard and become visible only when the transaction commits
//! ([`crate::group::pending_txn_offsets`]).

use std::rc::Rc;

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TopicName, TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use crate::group::coordinator::CommittedOffset;
use crate::group::offsets_log::{partition_for, OFFSETS_TOPIC};
use crate::group::service::{now_ms, on_group_shard};
use crate::handlers::offset_commit::checked_commit;
use crate::handlers::str_bytes;
use crate::shard_context::ShardContext;
use crate::txn::service::on_txn_shard;
use crate::txn::{codes, fenced_for_version};

/// The first TxnOffsetCommit version that knows PRODUCER_FENCED (KIP-588).
const FIRST_VERSION_WITH_PRODUCER_FENCED: i16 = 2;

/// The error for the whole request, if any: is the group's offsets partition in the
/// transaction, and does the group accept the commit.
async fn commit(
    ctx: &ShardContext,
    request: &TxnOffsetCommitRequest,
    group_id: &str,
    commits: Vec<(String, i32, CommittedOffset)>,
) -> Result<(), i16> {
    let txn_id = request.transactional_id.0.to_string();
    if txn_id.is_empty() {
        return Err(codes::INVALID_REQUEST);
    }
    let (pid, epoch) = (request.producer_id.0, request.producer_epoch);
    let partition = (OFFSETS_TOPIC.to_string(), partition_for(group_id, ctx.config.group.offsets_topic_num_partitions));
    let id = txn_id.clone();
    let verified = on_txn_shard(ctx, &txn_id, move |txns| async move {
        txns.add_partitions(&id, pid, epoch, vec![partition], true).await
    })
    .await
    .and_then(|r| r)?;
    if let Some((_, code)) = verified.into_iter().find(|(_, code)| *code != codes::NONE) {
        return Err(code);
    }
    let member_id = request.member_id.to_string();
    let generation_id = request.generation_id;
    let gid = group_id.to_string();
    on_group_shard(ctx, group_id, move |groups| async move {
        groups.txn_commit(&gid, pid, &member_id, generation_id, commits).await
    })
    .await
    .and_then(|r| r)
}

pub async fn handle(ctx: &Rc<ShardContext>, request: TxnOffsetCommitRequest, version: i16) -> TxnOffsetCommitResponse {
    let group_id = request.group_id.0.to_string();
    let max_metadata = ctx.config.group.offset_metadata_max_bytes;
    let now = now_ms();
    let mut answers: Vec<(String, i32, Result<CommittedOffset, i16>)> = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let partitions = ctx.image.borrow().topic(&name).map(|t| t.partitions);
        for p in &topic.partitions {
            let leader_epoch = if version >= 2 { p.committed_leader_epoch } else { -1 };
            let metadata = p.committed_metadata.as_ref();
            let answer = checked_commit(
                partitions,
                p.partition_index,
                p.committed_offset,
                leader_epoch,
                metadata,
                max_metadata,
                now,
            );
            answers.push((name.clone(), p.partition_index, answer));
        }
    }
    let commits: Vec<(String, i32, CommittedOffset)> =
        answers.iter().filter_map(|(t, p, a)| a.as_ref().ok().map(|c| (t.clone(), *p, c.clone()))).collect();
    let outcome = if group_id.is_empty() {
        Err(codes::INVALID_GROUP_ID)
    } else if commits.is_empty() {
        Ok(())
    } else {
        commit(ctx, &request, &group_id, commits).await
    };
    let mut topics: Vec<TxnOffsetCommitResponseTopic> = Vec::new();
    for (topic, partition, answer) in answers {
        let code = match (answer, outcome) {
            (Err(code), _) | (Ok(_), Err(code)) => code,
            (Ok(_), Ok(())) => codes::NONE,
        };
        let code = fenced_for_version(code, version, FIRST_VERSION_WITH_PRODUCER_FENCED);
        let p = TxnOffsetCommitResponsePartition::default().with_partition_index(partition).with_error_code(code);
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == topic => t.partitions.push(p),
            _ => topics.push(
                TxnOffsetCommitResponseTopic::default().with_name(TopicName(str_bytes(topic))).with_partitions(vec![p]),
            ),
        }
    }
    TxnOffsetCommitResponse::default().with_throttle_time_ms(0).with_topics(topics)
}
