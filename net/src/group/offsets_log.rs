//! The internal `__consumer_offsets` log: which partition holds a group, the record format of
//! committed offsets, classic group metadata and consumer-protocol groups (epochs, members,
//! target assignments), and replay at start-up.
//!
//! Owns: the key/value encoding (JSON, versioned by a `"v"` field; a null value is a
//! tombstone), appending through the storage engine on the group's owner shard (the caller
//! acknowledges only after [`append`] returns: the batch is on file), and reading a
//! partition back into [`Replayed`] state. The log is partitioned like Kafka's: partition =
//! `abs(javaHashCode(group_id)) % offsets.topic.num.partitions`.
//!
//! Must never: be reachable through Produce/Fetch of clients (the topic is not in the metadata
//! image), or run on a shard other than the partition's owner.

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sluice_engine::log_config::LogConfig;
use sluice_engine::PartitionLog;

use crate::shard_context::ShardContext;

use crate::internal_topic;

use super::consumer_group::changes::{Changes, GroupRecord};
use super::consumer_group::{Assignment, ConsumerMember, MemberState, TopicInfo};
use super::coordinator::{CommittedOffset, Member};

/// Kafka's name for the internal topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Java's `String.hashCode` (UTF-16 code units).
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The `__consumer_offsets` partition that holds `group_id` (Kafka's `partitionFor`).
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    assert!(partitions > 0, "offsets.topic.num.partitions must be positive");
    let h = java_string_hash(group_id);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions
}

/// The log config of the internal topic (see [`internal_topic::internal_topic_log_config`]).
pub fn offsets_topic_log_config(defaults: &LogConfig) -> LogConfig {
    internal_topic::internal_topic_log_config(defaults)
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "k")]
pub enum RecordKey {
    /// A committed offset.
    #[serde(rename = "offset")]
    Offset { v: u8, group: String, topic: String, partition: i32 },
    /// A group's membership.
    #[serde(rename = "group")]
    Group { v: u8, group: String },
    /// An offset committed by a transaction (TxnOffsetCommit): visible once a [`RecordKey::TxnEnd`]
    /// of the same group and producer says the transaction committed, dropped if it aborted.
    #[serde(rename = "txn_offset")]
    TxnOffset { v: u8, group: String, producer_id: i64, topic: String, partition: i32 },
    /// The end of a producer's transaction for a group's offsets (value: [`TxnEndValue`]).
    #[serde(rename = "txn_end")]
    TxnEnd { v: u8, group: String, producer_id: i64 },
    /// A consumer-protocol group's epochs (Kafka's ConsumerGroupMetadata and
    /// TargetAssignmentMetadata records); a tombstone deletes the group.
    #[serde(rename = "cg")]
    ConsumerGroup { v: u8, group: String },
    /// One consumer-protocol member: subscription, epochs, current assignment (Kafka's
    /// MemberMetadata and CurrentMemberAssignment records).
    #[serde(rename = "cg_member")]
    ConsumerMember { v: u8, group: String, member: String },
    /// One member's target assignment (Kafka's TargetAssignmentMember record).
    #[serde(rename = "cg_target")]
    ConsumerTarget { v: u8, group: String, member: String },
}

/// Partitions by topic id, as written.
pub type AssignmentValue = Vec<([u8; 16], Vec<i32>)>;

fn assignment_value(a: &Assignment) -> AssignmentValue {
    a.iter().map(|(t, ps)| (*t, ps.iter().copied().collect())).collect()
}

fn assignment_from(v: AssignmentValue) -> Assignment {
    v.into_iter().filter(|(_, ps)| !ps.is_empty()).map(|(t, ps)| (t, ps.into_iter().collect())).collect()
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupValue {
    pub v: u8,
    pub group_epoch: i32,
    pub target_epoch: i32,
    pub assignor: Option<String>,
    /// (name, id, partitions) of the subscribed topics (Kafka's PartitionMetadata record).
    #[serde(default)]
    pub subscribed_topics: Vec<(String, [u8; 16], i32)>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMemberValue {
    pub v: u8,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: u64,
    pub server_assignor: Option<String>,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: i8,
    pub assigned: AssignmentValue,
    pub pending_revocation: AssignmentValue,
}

impl ConsumerMemberValue {
    pub fn from_member(m: &ConsumerMember) -> ConsumerMemberValue {
        ConsumerMemberValue {
            v: 0,
            instance_id: m.instance_id.clone(),
            rack_id: m.rack_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            rebalance_timeout_ms: m.rebalance_timeout_ms,
            server_assignor: m.server_assignor.clone(),
            subscribed_topic_names: m.subscribed_topic_names.iter().cloned().collect(),
            subscribed_topic_regex: m.subscribed_topic_regex.clone(),
            member_epoch: m.member_epoch,
            previous_member_epoch: m.previous_member_epoch,
            state: m.state.value(),
            assigned: assignment_value(&m.assigned),
            pending_revocation: assignment_value(&m.pending_revocation),
        }
    }

    pub fn into_member(self, member_id: &str) -> ConsumerMember {
        let mut m = ConsumerMember::new(member_id);
        m.instance_id = self.instance_id;
        m.rack_id = self.rack_id;
        m.client_id = self.client_id;
        m.client_host = self.client_host;
        m.rebalance_timeout_ms = self.rebalance_timeout_ms;
        m.server_assignor = self.server_assignor;
        m.subscribed_topic_names = self.subscribed_topic_names.into_iter().collect();
        m.subscribed_topic_regex = self.subscribed_topic_regex;
        m.member_epoch = self.member_epoch;
        m.previous_member_epoch = self.previous_member_epoch;
        m.state = MemberState::from_value(self.state);
        m.assigned = assignment_from(self.assigned);
        m.pending_revocation = assignment_from(self.pending_revocation);
        m
    }
}

/// A consumer-protocol group as the log left it.
#[derive(Default, Debug)]
pub struct ReplayedConsumerGroup {
    pub group: Option<ConsumerGroupValue>,
    pub members: BTreeMap<String, ConsumerMemberValue>,
    pub targets: BTreeMap<String, AssignmentValue>,
}

impl ReplayedConsumerGroup {
    /// The group's record, members and targets (`None` if its group record is gone).
    pub fn into_parts(self) -> Option<(GroupRecord, Vec<ConsumerMember>, BTreeMap<String, Assignment>)> {
        let g = self.group?;
        let record = GroupRecord {
            group_epoch: g.group_epoch,
            target_epoch: g.target_epoch,
            assignor: g.assignor,
            subscribed_topics: g
                .subscribed_topics
                .into_iter()
                .map(|(name, id, partitions)| (name, TopicInfo { id, partitions }))
                .collect(),
        };
        let members = self.members.into_iter().map(|(id, m)| m.into_member(&id)).collect();
        let targets = self.targets.into_iter().map(|(id, t)| (id, assignment_from(t))).collect();
        Some((record, members, targets))
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TxnEndValue {
    pub v: u8,
    pub commit: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub v: u8,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    pub protocols: Vec<(String, Vec<u8>)>,
    pub assignment: Vec<u8>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub v: u8,
    pub protocol_type: Option<String>,
    pub generation_id: i32,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    pub members: Vec<MemberValue>,
}

impl MemberValue {
    pub fn from_member(m: &Member) -> MemberValue {
        MemberValue {
            member_id: m.member_id.clone(),
            instance_id: m.instance_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            session_timeout_ms: m.session_timeout_ms,
            rebalance_timeout_ms: m.rebalance_timeout_ms,
            protocols: m.protocols.iter().map(|(n, b)| (n.clone(), b.to_vec())).collect(),
            assignment: m.assignment.to_vec(),
        }
    }

    pub fn into_member(self) -> Member {
        Member {
            member_id: self.member_id,
            instance_id: self.instance_id,
            client_id: self.client_id,
            client_host: self.client_host,
            session_timeout_ms: self.session_timeout_ms,
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            protocols: self.protocols.into_iter().map(|(n, b)| (n, Bytes::from(b))).collect(),
            assignment: Bytes::from(self.assignment),
            awaiting_join: false,
            awaiting_sync: false,
            is_new: false,
            last_heartbeat_ms: 0,
        }
    }
}

/// One record to append: key and value (None = tombstone).
pub struct LogRecord {
    pub key: RecordKey,
    pub value: Option<Vec<u8>>,
}

impl LogRecord {
    pub fn offset(group: &str, topic: &str, partition: i32, value: Option<&CommittedOffset>) -> LogRecord {
        LogRecord {
            key: RecordKey::Offset { v: 0, group: group.into(), topic: topic.into(), partition },
            value: value.map(|c| {
                serde_json::to_vec(&OffsetValue {
                    v: 0,
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.clone(),
                    commit_timestamp_ms: c.commit_timestamp_ms,
                })
                .expect("serializes")
            }),
        }
    }

    pub fn txn_offset(group: &str, producer_id: i64, topic: &str, partition: i32, c: &CommittedOffset) -> LogRecord {
        let plain = LogRecord::offset(group, topic, partition, Some(c));
        LogRecord {
            key: RecordKey::TxnOffset { v: 0, group: group.into(), producer_id, topic: topic.into(), partition },
            value: plain.value,
        }
    }

    pub fn txn_end(group: &str, producer_id: i64, commit: bool) -> LogRecord {
        LogRecord {
            key: RecordKey::TxnEnd { v: 0, group: group.into(), producer_id },
            value: Some(serde_json::to_vec(&TxnEndValue { v: 0, commit }).expect("serializes")),
        }
    }

    /// The records of a consumer group's changes, in an order whose every prefix is a
    /// consistent state: members first (a member giving up partitions is written before the
    /// one taking them, as they changed), then targets, then the group's epochs.
    pub fn consumer_group_changes(group: &str, changes: &Changes) -> Vec<LogRecord> {
        let mut out = Vec::new();
        for (member, m) in &changes.members {
            out.push(LogRecord {
                key: RecordKey::ConsumerMember { v: 0, group: group.into(), member: member.clone() },
                value: m
                    .as_ref()
                    .map(|m| serde_json::to_vec(&ConsumerMemberValue::from_member(m)).expect("serializes")),
            });
        }
        for (member, t) in &changes.targets {
            out.push(LogRecord {
                key: RecordKey::ConsumerTarget { v: 0, group: group.into(), member: member.clone() },
                value: t.as_ref().map(|t| serde_json::to_vec(&assignment_value(t)).expect("serializes")),
            });
        }
        if let Some(g) = &changes.group {
            let value = ConsumerGroupValue {
                v: 0,
                group_epoch: g.group_epoch,
                target_epoch: g.target_epoch,
                assignor: g.assignor.clone(),
                subscribed_topics: g.subscribed_topics.iter().map(|(n, t)| (n.clone(), t.id, t.partitions)).collect(),
            };
            out.push(LogRecord {
                key: RecordKey::ConsumerGroup { v: 0, group: group.into() },
                value: Some(serde_json::to_vec(&value).expect("serializes")),
            });
        }
        out
    }

    /// Deletes a consumer group's record (its members' and targets' go with
    /// [`LogRecord::consumer_group_changes`] of its tombstones).
    pub fn consumer_group_tombstone(group: &str) -> LogRecord {
        LogRecord { key: RecordKey::ConsumerGroup { v: 0, group: group.into() }, value: None }
    }

    pub fn group(group: &str, value: Option<&GroupValue>) -> LogRecord {
        LogRecord {
            key: RecordKey::Group { v: 0, group: group.into() },
            value: value.map(|g| serde_json::to_vec(g).expect("serializes")),
        }
    }
}

/// Appends `records` as one batch to the group's partition on this shard (creating the
/// partition on first use) and returns once the batch is on file.
/// `creating` serializes first-use creation of a partition on this shard: two concurrent
/// appends (a commit and a group record) must not both open the same new directory.
pub async fn append(
    ctx: &ShardContext,
    creating: &glommio::sync::Semaphore,
    partition: i32,
    records: &[LogRecord],
) -> Result<(), String> {
    let records: Vec<(Vec<u8>, Option<Vec<u8>>)> =
        records.iter().map(|r| (serde_json::to_vec(&r.key).expect("serializes"), r.value.clone())).collect();
    internal_topic::append(ctx, creating, OFFSETS_TOPIC, partition, &records).await
}

/// A group as the log left it.
#[derive(Default, Debug)]
pub struct Replayed {
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    pub group: Option<GroupValue>,
    /// Transactional offsets whose transaction had not ended, per producer id.
    pub pending_txn: BTreeMap<i64, BTreeMap<(String, i32), CommittedOffset>>,
    /// The consumer-protocol group of this id, if it has records.
    pub consumer: ReplayedConsumerGroup,
}

/// Reads one partition of the internal topic from its start and folds the records (later
/// records win, tombstones delete, a transaction's end applies or drops its offsets) into
/// per-group state.
pub async fn replay(log: &Rc<PartitionLog>) -> Result<BTreeMap<String, Replayed>, String> {
    let mut groups: BTreeMap<String, Replayed> = BTreeMap::new();
    internal_topic::replay(log, |offset, key, value| {
        let Some(key) = key.and_then(|k| serde_json::from_slice::<RecordKey>(k).ok()) else {
            sluice_engine::warn_limited!(partition = log.partition(), offset, "unreadable key in {OFFSETS_TOPIC}");
            return;
        };
        apply_record(&mut groups, key, value);
    })
    .await?;
    Ok(groups)
}

fn decode_offset(value: &[u8]) -> Option<CommittedOffset> {
    let v = serde_json::from_slice::<OffsetValue>(value).ok()?;
    Some(CommittedOffset {
        offset: v.offset,
        leader_epoch: v.leader_epoch,
        metadata: v.metadata,
        commit_timestamp_ms: v.commit_timestamp_ms,
    })
}

fn apply_record(groups: &mut BTreeMap<String, Replayed>, key: RecordKey, value: Option<&[u8]>) {
    match key {
        RecordKey::Offset { group, topic, partition, .. } => {
            let entry = groups.entry(group).or_default();
            match value.and_then(decode_offset) {
                Some(committed) => {
                    entry.offsets.insert((topic, partition), committed);
                }
                None => {
                    entry.offsets.remove(&(topic, partition));
                }
            }
        }
        RecordKey::Group { group, .. } => {
            let entry = groups.entry(group).or_default();
            entry.group = value.and_then(|v| serde_json::from_slice::<GroupValue>(v).ok());
        }
        RecordKey::TxnOffset { group, producer_id, topic, partition, .. } => {
            if let Some(committed) = value.and_then(decode_offset) {
                let entry = groups.entry(group).or_default();
                entry.pending_txn.entry(producer_id).or_default().insert((topic, partition), committed);
            }
        }
        RecordKey::TxnEnd { group, producer_id, .. } => {
            let entry = groups.entry(group).or_default();
            let pending = entry.pending_txn.remove(&producer_id).unwrap_or_default();
            let commit = value.and_then(|v| serde_json::from_slice::<TxnEndValue>(v).ok()).is_some_and(|v| v.commit);
            if commit {
                entry.offsets.extend(pending);
            }
        }
        RecordKey::ConsumerGroup { group, .. } => {
            let entry = groups.entry(group).or_default();
            match value.and_then(|v| serde_json::from_slice::<ConsumerGroupValue>(v).ok()) {
                Some(g) => entry.consumer.group = Some(g),
                None => entry.consumer = ReplayedConsumerGroup::default(),
            }
        }
        RecordKey::ConsumerMember { group, member, .. } => {
            let entry = groups.entry(group).or_default();
            match value.and_then(|v| serde_json::from_slice::<ConsumerMemberValue>(v).ok()) {
                Some(m) => {
                    entry.consumer.members.insert(member, m);
                }
                None => {
                    entry.consumer.members.remove(&member);
                }
            }
        }
        RecordKey::ConsumerTarget { group, member, .. } => {
            let entry = groups.entry(group).or_default();
            match value.and_then(|v| serde_json::from_slice::<AssignmentValue>(v).ok()) {
                Some(t) => {
                    entry.consumer.targets.insert(member, t);
                }
                None => {
                    entry.consumer.targets.remove(&member);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_matches_kafka() {
        // Java: "my-group".hashCode() == 1,345,059,563 (checked by hand in jshell).
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("ab"), 97 * 31 + 98);
        for g in ["", "g", "my-group", "ünïcode"] {
            let p = partition_for(g, 50);
            assert!((0..50).contains(&p));
        }
        // A hash of i32::MIN maps to 0, like Kafka's Utils.abs.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
    }

    #[test]
    fn replay_folds_commits_and_tombstones() {
        let mut groups = BTreeMap::new();
        let c = |o| CommittedOffset { offset: o, leader_epoch: -1, metadata: "m".into(), commit_timestamp_ms: 1 };
        for r in [
            LogRecord::offset("g", "t", 0, Some(&c(5))),
            LogRecord::offset("g", "t", 1, Some(&c(7))),
            LogRecord::offset("g", "t", 0, Some(&c(9))),
            LogRecord::offset("g", "t", 1, None),
        ] {
            apply_record(&mut groups, r.key, r.value.as_deref());
        }
        let g = &groups["g"];
        assert_eq!(g.offsets.len(), 1);
        assert_eq!(g.offsets[&("t".to_string(), 0)].offset, 9);
        assert_eq!(g.offsets[&("t".to_string(), 0)].metadata, "m");
    }

    #[test]
    fn replay_applies_committed_transactional_offsets_and_drops_aborted_ones() {
        let mut groups = BTreeMap::new();
        let c = |o| CommittedOffset { offset: o, leader_epoch: -1, metadata: String::new(), commit_timestamp_ms: 1 };
        for r in [
            LogRecord::offset("g", "t", 0, Some(&c(1))),
            LogRecord::txn_offset("g", 7, "t", 0, &c(10)),
            LogRecord::txn_offset("g", 8, "t", 1, &c(20)),
            LogRecord::txn_offset("g", 9, "t", 2, &c(30)),
            LogRecord::txn_end("g", 8, false),
            LogRecord::txn_end("g", 7, true),
        ] {
            apply_record(&mut groups, r.key, r.value.as_deref());
        }
        let g = &groups["g"];
        assert_eq!(g.offsets[&("t".to_string(), 0)].offset, 10, "producer 7 committed");
        assert!(!g.offsets.contains_key(&("t".to_string(), 1)), "producer 8 aborted");
        assert_eq!(g.pending_txn.keys().copied().collect::<Vec<_>>(), vec![9], "producer 9 still open");
    }

    #[test]
    fn a_consumer_group_survives_replay_with_its_epochs_and_assignments() {
        use crate::group::config::ConsumerGroupConfig;
        use crate::group::consumer_group::{ConsumerGroup, HeartbeatRequest, TopicInfo, TopicsImage};
        let cfg = ConsumerGroupConfig::default();
        let topics = TopicsImage {
            version: 1,
            topics: [("t".to_string(), TopicInfo { id: [1; 16], partitions: 4 })].into_iter().collect(),
        };
        let join = |m: &str| HeartbeatRequest {
            member_id: m.into(),
            rebalance_timeout_ms: 1000,
            subscribed_topic_names: Some(vec!["t".into()]),
            owned: Some(Assignment::new()),
            instance_id: (m == "b").then(|| "ib".to_string()),
            ..Default::default()
        };
        let mut g = ConsumerGroup::new("g");
        let mut log = BTreeMap::new();
        let mut write = |g: &mut ConsumerGroup| {
            for r in LogRecord::consumer_group_changes("g", &g.take_changes()) {
                apply_record(&mut log, r.key, r.value.as_deref());
            }
        };
        g.heartbeat(0, &cfg, &topics, join("a"));
        write(&mut g);
        assert!(g.take_changes().is_empty(), "nothing new to write");
        g.heartbeat(1, &cfg, &topics, join("b"));
        write(&mut g);
        g.heartbeat(2, &cfg, &topics, join("c"));
        g.remove_member(3, &cfg, &topics, "c", crate::group::consumer_group::Removal::Left);
        write(&mut g);
        let (record, members, targets) = log.remove("g").unwrap().consumer.into_parts().unwrap();
        let restored = ConsumerGroup::restore("g", 10, &cfg, &topics, record, members, targets);
        assert_eq!(restored.group_epoch(), g.group_epoch());
        assert_eq!(restored.target_epoch(), g.target_epoch());
        assert_eq!(restored.member_count(), 2);
        for m in g.members() {
            let r = restored.member(&m.member_id).unwrap();
            assert_eq!((r.member_epoch, &r.assigned, &r.instance_id), (m.member_epoch, &m.assigned, &m.instance_id));
            assert_eq!(restored.target_of(&m.member_id), g.target_of(&m.member_id));
        }
        assert!(restored.check_invariants());
        // A topic that grew while the group was not loaded: a new epoch and target on load.
        let (record, members, targets) = {
            let mut log = BTreeMap::new();
            let mut g2 = g.clone();
            g2.take_tombstones();
            for r in LogRecord::consumer_group_changes("g", &g2.take_changes()) {
                apply_record(&mut log, r.key, r.value.as_deref());
            }
            log.remove("g").unwrap().consumer.into_parts().unwrap()
        };
        let mut grown = topics.clone();
        grown.version = 2;
        grown.topics.get_mut("t").unwrap().partitions = 6;
        let moved = ConsumerGroup::restore("g", 10, &cfg, &grown, record, members, targets);
        assert_eq!(moved.group_epoch(), g.group_epoch() + 1);
        assert_eq!(moved.target_epoch(), moved.group_epoch());
        let targeted: usize = moved
            .members()
            .map(|m| moved.target_of(&m.member_id).unwrap().values().map(|p| p.len()).sum::<usize>())
            .sum();
        assert_eq!(targeted, 6);
        assert!(moved.check_invariants());
        // Deleting writes tombstones: nothing is left to restore.
        let mut g = restored;
        let mut log = BTreeMap::new();
        for r in LogRecord::consumer_group_changes("g", &g.take_tombstones())
            .into_iter()
            .chain([LogRecord::consumer_group_tombstone("g")])
        {
            apply_record(&mut log, r.key, r.value.as_deref());
        }
        assert!(log.remove("g").unwrap().consumer.into_parts().is_none());
    }
}
