//! A group's committed offsets: read (OffsetFetch) and write (OffsetCommit), on the group's
//! coordinator. Shared by `group describe`, `group reset-offsets` and the console consumer.
//!
//! Owns: the retry while a coordinator loads or moves, and the "no commit" sentinel (-1) turned
//! into absence. Must never: report a partition as committed when its error code is not 0, or
//! retry without a deadline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetFetchRequest};
use sluice_engine::error_code::codes;

use crate::error::{kafka_error, CliResult};
use crate::session::{s, topic_name, Session};

const RETRY_DEADLINE: Duration = Duration::from_secs(30);
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// Topic → partition → offset.
pub type TopicOffsets = BTreeMap<String, BTreeMap<i32, i64>>;

fn coordinator_moving(code: i16) -> bool {
    matches!(code, codes::COORDINATOR_LOAD_IN_PROGRESS | codes::COORDINATOR_NOT_AVAILABLE | codes::NOT_COORDINATOR)
}

/// The committed offsets of `group` (partitions without a commit are absent). `topics`: the
/// partitions to read, or `None` for every partition the group has committed.
pub fn fetch_committed(
    session: &mut Session,
    group: &str,
    topics: Option<&BTreeMap<String, Vec<i32>>>,
) -> CliResult<TopicOffsets> {
    let request = OffsetFetchRequest::default().with_group_id(GroupId(s(group))).with_topics(topics.map(|ts| {
        ts.iter()
            .map(|(t, ps)| {
                OffsetFetchRequestTopic::default().with_name(topic_name(t)).with_partition_indexes(ps.clone())
            })
            .collect()
    }));
    let deadline = Instant::now() + RETRY_DEADLINE;
    'attempt: loop {
        let response = session.coordinator(group)?.call(&request)?;
        let retry = |code: i16| coordinator_moving(code) && Instant::now() < deadline;
        if response.error_code != 0 {
            if retry(response.error_code) {
                std::thread::sleep(RETRY_BACKOFF);
                continue 'attempt;
            }
            return Err(kafka_error(&format!("read the offsets of group '{group}'"), response.error_code, None));
        }
        let mut out = TopicOffsets::new();
        for t in &response.topics {
            for p in &t.partitions {
                if p.error_code != 0 {
                    if retry(p.error_code) {
                        std::thread::sleep(RETRY_BACKOFF);
                        continue 'attempt;
                    }
                    if p.error_code == codes::UNKNOWN_TOPIC_OR_PARTITION {
                        continue; // nothing committed for a partition the broker does not know
                    }
                    return Err(kafka_error(
                        &format!("read the offset of group '{group}' on {}/{}", t.name.0.as_str(), p.partition_index),
                        p.error_code,
                        None,
                    ));
                }
                if p.committed_offset >= 0 {
                    out.entry(t.name.0.to_string()).or_default().insert(p.partition_index, p.committed_offset);
                }
            }
        }
        return Ok(out);
    }
}

/// Who commits: a member of the current generation, or nobody (an admin commit: generation -1
/// and no member id, which Kafka accepts only while the group has no members).
#[derive(Clone, Copy, Debug)]
pub enum Committer<'a> {
    Member { member_id: &'a str, generation_id: i32 },
    Admin,
}

/// Commits `offsets` for `group`. Returns the first partition error code (0 when every
/// partition was committed) so a member can rejoin on REBALANCE_IN_PROGRESS and friends;
/// coordinator moves are retried here.
pub fn commit(session: &mut Session, group: &str, committer: Committer, offsets: &TopicOffsets) -> CliResult<i16> {
    let (member_id, generation_id) = match committer {
        Committer::Member { member_id, generation_id } => (member_id, generation_id),
        Committer::Admin => ("", -1),
    };
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation_id)
        .with_member_id(s(member_id))
        .with_topics(
            offsets
                .iter()
                .map(|(t, ps)| {
                    OffsetCommitRequestTopic::default().with_name(topic_name(t)).with_partitions(
                        ps.iter()
                            .map(|(p, o)| {
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(*o)
                                    .with_committed_metadata(Some(s("")))
                            })
                            .collect(),
                    )
                })
                .collect(),
        );
    let deadline = Instant::now() + RETRY_DEADLINE;
    loop {
        let response = session.coordinator(group)?.call(&request)?;
        let code = response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .find(|c| *c != 0)
            .unwrap_or(0);
        if coordinator_moving(code) && Instant::now() < deadline {
            std::thread::sleep(RETRY_BACKOFF);
            continue;
        }
        return Ok(code);
    }
}
