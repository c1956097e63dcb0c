//! Transactional offset commits (TxnOffsetCommit, KIP-98/KIP-447): offsets a transaction
//! committed for a group, invisible until the transaction commits and dropped if it aborts.
//!
//! Owns: the pending offsets of every group on this shard, per producer id
//! ([`PendingTxnOffsets`]), Kafka's TxnOffsetCommit member/generation check, and the group
//! side of a transaction's end ([`GroupShard::complete_txn_offsets`], called by the
//! transaction coordinator for each `__consumer_offsets` partition in the transaction). Both
//! steps are written to `__consumer_offsets` before memory changes (`txn_offset` records, then
//! per group a `txn_end` record, preceded on commit by the offsets as plain offset records so
//! that compaction cannot lose them), so replay after a restart gives the same offsets.
//!
//! Must never: make a pending offset visible to OffsetFetch before its `txn_end` commit
//! record is on file.

use std::collections::BTreeMap;

use super::coordinator::{codes, CommittedOffset, Group};
use super::offsets_log::LogRecord;
use super::service::GroupShard;

/// One group's transactional offsets waiting for their transaction's end.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct PendingTxnOffsets {
    by_producer: BTreeMap<i64, BTreeMap<(String, i32), CommittedOffset>>,
}

impl PendingTxnOffsets {
    pub fn from_replay(by_producer: BTreeMap<i64, BTreeMap<(String, i32), CommittedOffset>>) -> PendingTxnOffsets {
        PendingTxnOffsets { by_producer }
    }

    pub fn add(&mut self, producer_id: i64, topic: &str, partition: i32, committed: CommittedOffset) {
        self.by_producer.entry(producer_id).or_default().insert((topic.to_string(), partition), committed);
    }

    /// The producer's offsets, left in place.
    pub fn of_producer(&self, producer_id: i64) -> BTreeMap<(String, i32), CommittedOffset> {
        self.by_producer.get(&producer_id).cloned().unwrap_or_default()
    }

    /// The producer's offsets, removed.
    pub fn take(&mut self, producer_id: i64) -> BTreeMap<(String, i32), CommittedOffset> {
        self.by_producer.remove(&producer_id).unwrap_or_default()
    }

    pub fn has_producer(&self, producer_id: i64) -> bool {
        self.by_producer.contains_key(&producer_id)
    }

    /// Is an offset of this partition waiting for a transaction (OffsetFetch's
    /// UNSTABLE_OFFSET_COMMIT)?
    pub fn is_pending(&self, topic: &str, partition: i32) -> bool {
        let key = (topic.to_string(), partition);
        self.by_producer.values().any(|offsets| offsets.contains_key(&key))
    }

    pub fn is_empty(&self) -> bool {
        self.by_producer.is_empty()
    }

    /// Drops every pending offset of `topic` (the topic was deleted).
    pub fn remove_topic(&mut self, topic: &str) {
        for offsets in self.by_producer.values_mut() {
            offsets.retain(|(t, _), _| t != topic);
        }
    }
}

/// Kafka's check of a TxnOffsetCommit against the group (`handleTxnCommitOffsets`): a member
/// id, if given, must be a member; a generation, if given, must be the current one. Without
/// either (a producer outside group management) any state is accepted.
pub fn validate_txn_offset_commit(group: Option<&Group>, member_id: &str, generation_id: i32) -> Result<(), i16> {
    let Some(group) = group else {
        return if generation_id >= 0 { Err(codes::ILLEGAL_GENERATION) } else { Ok(()) };
    };
    if !member_id.is_empty() && !group.members().any(|m| m.member_id == member_id) {
        return Err(codes::UNKNOWN_MEMBER_ID);
    }
    if generation_id >= 0 && generation_id != group.generation_id() {
        return Err(codes::ILLEGAL_GENERATION);
    }
    Ok(())
}

impl GroupShard {
    /// TxnOffsetCommit on this shard: checks the member, writes the offsets as pending
    /// (`txn_offset` records) and holds them until the transaction ends.
    pub async fn txn_commit(
        &self,
        group_id: &str,
        producer_id: i64,
        member_id: &str,
        generation_id: i32,
        commits: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<(), i16> {
        let checked =
            self.with_group(group_id, false, |g| validate_txn_offset_commit(Some(g), member_id, generation_id));
        checked.unwrap_or_else(|| validate_txn_offset_commit(None, member_id, generation_id))?;
        let records: Vec<LogRecord> =
            commits.iter().map(|(t, p, c)| LogRecord::txn_offset(group_id, producer_id, t, *p, c)).collect();
        if let Err(e) = self.append(group_id, &records).await {
            sluice_engine::warn_limited!(group = group_id, error = %e, "transactional offset commit not written");
            return Err(codes::COORDINATOR_NOT_AVAILABLE);
        }
        let mut pending = self.txn_offsets.borrow_mut();
        let offsets = pending.entry(group_id.to_string()).or_default();
        for (topic, partition, committed) in commits {
            offsets.add(producer_id, &topic, partition, committed);
        }
        Ok(())
    }

    /// The transaction of `producer_id` ended: for every group of `offsets_partition` with
    /// offsets pending from it, write its `txn_end` record, then apply the offsets (commit) or
    /// drop them (abort). Idempotent: a second call finds nothing pending.
    pub async fn complete_txn_offsets(
        &self,
        offsets_partition: i32,
        producer_id: i64,
        commit: bool,
    ) -> Result<(), i16> {
        let groups: Vec<String> = self
            .txn_offsets
            .borrow()
            .iter()
            .filter(|(g, p)| p.has_producer(producer_id) && self.partition_of(g) == offsets_partition)
            .map(|(g, _)| g.clone())
            .collect();
        for group_id in groups {
            // A commit also writes the offsets as plain offset records, before its `txn_end`:
            // `__consumer_offsets` is compacted, and a later transaction of the same producer
            // supersedes this one's `txn_offset` records (same keys) while its `txn_end` may
            // stay — replay must not depend on them.
            let mut records: Vec<LogRecord> = if commit {
                let pending = self.txn_offsets.borrow().get(&group_id).map(|p| p.of_producer(producer_id));
                pending
                    .unwrap_or_default()
                    .iter()
                    .map(|((topic, partition), committed)| {
                        LogRecord::offset(&group_id, topic, *partition, Some(committed))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            records.push(LogRecord::txn_end(&group_id, producer_id, commit));
            if let Err(e) = self.append(&group_id, &records).await {
                sluice_engine::warn_limited!(group = %group_id, error = %e, "transaction end of offsets not written");
                return Err(codes::COORDINATOR_NOT_AVAILABLE);
            }
            let offsets = {
                let mut pending = self.txn_offsets.borrow_mut();
                let Some(p) = pending.get_mut(&group_id) else { continue };
                let offsets = p.take(producer_id);
                if p.is_empty() {
                    pending.remove(&group_id);
                }
                offsets
            };
            if commit {
                self.with_group(&group_id, true, |g| {
                    for ((topic, partition), committed) in offsets {
                        g.apply_commit(&topic, partition, committed);
                    }
                });
            }
        }
        Ok(())
    }

    /// Is an offset of `group_id`'s partition waiting for a transaction?
    pub fn has_pending_txn_offset(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        self.txn_offsets.borrow().get(group_id).is_some_and(|p| p.is_pending(topic, partition))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(offset: i64) -> CommittedOffset {
        CommittedOffset { offset, leader_epoch: -1, metadata: String::new(), commit_timestamp_ms: 1 }
    }

    #[test]
    fn pending_offsets_are_kept_per_producer() {
        let mut p = PendingTxnOffsets::default();
        p.add(1, "t", 0, c(5));
        p.add(2, "t", 1, c(6));
        assert!(p.is_pending("t", 0) && p.is_pending("t", 1) && !p.is_pending("t", 2));
        assert_eq!(p.take(1).into_iter().collect::<Vec<_>>(), vec![(("t".to_string(), 0), c(5))]);
        assert!(!p.has_producer(1) && p.has_producer(2));
        assert!(p.take(1).is_empty());
        p.take(2);
        assert!(p.is_empty());
    }

    #[test]
    fn txn_offset_commit_checks_member_and_generation_only_when_given() {
        assert_eq!(validate_txn_offset_commit(None, "", -1), Ok(()));
        assert_eq!(validate_txn_offset_commit(None, "", 3), Err(codes::ILLEGAL_GENERATION));
        let g = Group::new("g", 0);
        assert_eq!(validate_txn_offset_commit(Some(&g), "", -1), Ok(()));
        assert_eq!(validate_txn_offset_commit(Some(&g), "m-1", -1), Err(codes::UNKNOWN_MEMBER_ID));
        assert_eq!(validate_txn_offset_commit(Some(&g), "", 4), Err(codes::ILLEGAL_GENERATION));
        assert_eq!(validate_txn_offset_commit(Some(&g), "", g.generation_id()), Ok(()));
    }
}
