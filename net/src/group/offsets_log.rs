//! The internal `__consumer_offsets` log: which partition holds a group, the record format of
//! committed offsets and group metadata, and replay at start-up.
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
use sluice_engine::batch::build_batch;
use sluice_engine::log_config::LogConfig;
use sluice_engine::{PartitionLog, ReadBound, ShardStorage};

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

/// The log config of the internal topic: kept until deleted (no time or size retention; there
/// is no compaction yet, so tombstones and superseded commits stay on disk).
pub fn offsets_topic_log_config(defaults: &LogConfig) -> LogConfig {
    let mut config = defaults.clone();
    config.retention_ms = -1;
    config.retention_bytes = -1;
    config.cleanup_policy = Vec::new();
    config
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
    storage: &Rc<ShardStorage>,
    creating: &glommio::sync::Semaphore,
    defaults: &LogConfig,
    partition: i32,
    records: &[LogRecord],
) -> Result<(), String> {
    if records.is_empty() {
        return Ok(());
    }
    let log = match storage.partition(OFFSETS_TOPIC, partition) {
        Some(log) => log,
        None => {
            let _permit = creating.acquire_permit(1).await.map_err(|e| e.to_string())?;
            match storage.partition(OFFSETS_TOPIC, partition) {
                Some(log) => log,
                None => storage
                    .create_partition(OFFSETS_TOPIC, partition, offsets_topic_log_config(defaults))
                    .await
                    .map_err(|e| e.to_string())?,
            }
        }
    };
    let keys: Vec<Vec<u8>> = records.iter().map(|r| serde_json::to_vec(&r.key).expect("serializes")).collect();
    let specs: Vec<_> =
        records.iter().zip(&keys).map(|(r, k)| (Some(k.as_slice()), r.value.as_deref(), &[][..])).collect();
    let batch = build_batch(0, &specs, sluice_engine::clock::now_ms());
    log.append(&batch, 0).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// A group as the log left it.
#[derive(Default, Debug)]
pub struct Replayed {
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    pub group: Option<GroupValue>,
}

/// Reads one partition of the internal topic from its start and folds the records (later
/// records win, tombstones delete) into per-group state.
pub async fn replay(log: &Rc<PartitionLog>) -> Result<BTreeMap<String, Replayed>, String> {
    let mut groups: BTreeMap<String, Replayed> = BTreeMap::new();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let read = log.read(offset, 1 << 20, ReadBound::LogEnd, true).await.map_err(|e| e.to_string())?;
        if read.is_empty() {
            break;
        }
        let mut bytes = Bytes::from(read.to_vec().await.map_err(|e| e.to_string())?);
        let mut next = offset;
        while !bytes.is_empty() {
            let set = match kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes) {
                Ok(set) => set,
                Err(_) => break, // a partial batch at the end of the read
            };
            for record in set.records {
                next = next.max(record.offset + 1);
                if record.offset < offset {
                    continue;
                }
                let Some(key) = record.key.as_ref().and_then(|k| serde_json::from_slice::<RecordKey>(k).ok()) else {
                    sluice_engine::warn_limited!(
                        partition = log.partition(),
                        offset = record.offset,
                        "unreadable key in {OFFSETS_TOPIC}"
                    );
                    continue;
                };
                apply_record(&mut groups, key, record.value.as_deref());
            }
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    Ok(groups)
}

fn apply_record(groups: &mut BTreeMap<String, Replayed>, key: RecordKey, value: Option<&[u8]>) {
    match key {
        RecordKey::Offset { group, topic, partition, .. } => {
            let entry = groups.entry(group).or_default();
            match value.and_then(|v| serde_json::from_slice::<OffsetValue>(v).ok()) {
                Some(v) => {
                    entry.offsets.insert(
                        (topic, partition),
                        CommittedOffset {
                            offset: v.offset,
                            leader_epoch: v.leader_epoch,
                            metadata: v.metadata,
                            commit_timestamp_ms: v.commit_timestamp_ms,
                        },
                    );
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
}
