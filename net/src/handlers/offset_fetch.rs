//! OffsetFetch (v1–v9; several groups per request from v8): committed offset, leader epoch and
//! metadata per partition, -1 where nothing is committed. Commits are applied only once on
//! file; offsets a transaction committed stay invisible until it commits, and with
//! `require_stable` (v7+) a partition with such a pending offset answers UNSTABLE_OFFSET_COMMIT
//! (retriable), like Kafka, instead of the older stable offset. v9 members of a consumer-protocol
//! group name their member epoch: UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH (KIP-848).

use std::rc::Rc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};

use crate::group::codes;
use crate::group::coordinator::CommittedOffset;
use crate::group::service::on_group_shard;
use crate::handlers::str_bytes;
use crate::shard_context::ShardContext;

/// (topic, [(partition, committed, error)]).
type TopicOffsets = Vec<(String, Vec<(i32, Option<CommittedOffset>, i16)>)>;

/// A group's offsets, or a group-level error.
type GroupOffsets = Result<TopicOffsets, i16>;

/// The committed offsets of `group_id`: of `topics` (None = every committed partition).
/// `require_stable`: UNSTABLE_OFFSET_COMMIT where a transaction's offset is pending.
pub async fn fetch(
    ctx: &ShardContext,
    group_id: String,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
    member: Option<(Option<String>, i32)>,
) -> GroupOffsets {
    if group_id.is_empty() {
        return Err(codes::INVALID_GROUP_ID);
    }
    let gid = group_id.clone();
    on_group_shard(ctx, &group_id, move |groups| async move {
        if let Some((member_id, member_epoch)) = &member {
            groups.validate_offset_fetch(&gid, member_id.as_deref(), *member_epoch)?;
        }
        let answer = groups.with_group(&gid, false, |g| match &topics {
            Some(topics) => topics
                .iter()
                .map(|(t, ps)| (t.clone(), ps.iter().map(|p| (*p, g.committed(t, *p).cloned(), codes::NONE)).collect()))
                .collect(),
            None => {
                let mut out: TopicOffsets = Vec::new();
                for ((t, p), c) in g.offsets() {
                    match out.last_mut() {
                        Some((name, ps)) if name == t => ps.push((*p, Some(c.clone()), codes::NONE)),
                        _ => out.push((t.clone(), vec![(*p, Some(c.clone()), codes::NONE)])),
                    }
                }
                out
            }
        });
        let mut answer = answer.unwrap_or_else(|| match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(t, ps)| (t, ps.into_iter().map(|p| (p, None, codes::NONE)).collect()))
                .collect(),
            None => Vec::new(),
        });
        if require_stable {
            for (t, ps) in &mut answer {
                for (p, committed, error) in ps.iter_mut() {
                    if groups.has_pending_txn_offset(&gid, t, *p) {
                        *committed = None;
                        *error = codes::UNSTABLE_OFFSET_COMMIT;
                    }
                }
            }
        }
        Ok(answer)
    })
    .await
    .unwrap_or_else(Err)
}

pub async fn handle(ctx: &Rc<ShardContext>, request: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    let response = OffsetFetchResponse::default().with_throttle_time_ms(0);
    if version >= 8 {
        let mut groups = Vec::with_capacity(request.groups.len());
        for g in request.groups {
            let topics =
                g.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
            let member = (version >= 9).then(|| (g.member_id.as_ref().map(|m| m.to_string()), g.member_epoch));
            let answer = fetch(ctx, g.group_id.0.to_string(), topics, request.require_stable, member).await;
            let (error, topics) = match answer {
                Ok(t) => (codes::NONE, t),
                Err(e) => (e, Vec::new()),
            };
            let topics = topics
                .into_iter()
                .map(|(t, ps)| {
                    OffsetFetchResponseTopics::default().with_name(TopicName(str_bytes(t))).with_partitions(
                        ps.into_iter()
                            .map(|(p, c, error)| {
                                let (offset, epoch, metadata) =
                                    c.map_or((-1, -1, String::new()), |c| (c.offset, c.leader_epoch, c.metadata));
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(p)
                                    .with_error_code(error)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(epoch)
                                    .with_metadata(Some(str_bytes(metadata)))
                            })
                            .collect(),
                    )
                })
                .collect();
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_error_code(error)
                    .with_topics(topics),
            );
        }
        return response.with_groups(groups);
    }
    let topics = request.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
    let require_stable = version >= 7 && request.require_stable;
    let (error, topics) = match fetch(ctx, request.group_id.0.to_string(), topics, require_stable, None).await {
        Ok(t) => (codes::NONE, t),
        Err(e) => (e, Vec::new()),
    };
    let topics = topics
        .into_iter()
        .map(|(t, ps)| {
            OffsetFetchResponseTopic::default().with_name(TopicName(str_bytes(t))).with_partitions(
                ps.into_iter()
                    .map(|(p, c, error)| {
                        let (offset, epoch, metadata) =
                            c.map_or((-1, -1, String::new()), |c| (c.offset, c.leader_epoch, c.metadata));
                        let part = OffsetFetchResponsePartition::default()
                            .with_partition_index(p)
                            .with_error_code(error)
                            .with_committed_offset(offset)
                            .with_metadata(Some(str_bytes(metadata)));
                        if version >= 5 {
                            part.with_committed_leader_epoch(epoch)
                        } else {
                            part
                        }
                    })
                    .collect(),
            )
        })
        .collect();
    let response = response.with_topics(topics);
    if version >= 2 {
        response.with_error_code(error)
    } else {
        response
    }
}
