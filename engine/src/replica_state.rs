//! What a broker knows of one partition's replication, and the rules that follow from it: the
//! leader epoch (and Kafka's check of a client's epoch), the replica set and the in-sync
//! replicas, the high-watermark rule, and what an acks setting must wait for. A single node is
//! the one-replica case ([`ReplicaState::single_node`]); replication changes these values and
//! nothing else has to know.
//!
//! Owns: the rules, as pure functions of the state (time and offsets are inputs). Must never:
//! do I/O, or be consulted for a partition's data (that is the partition log's).

use crate::error_code::{ApiError, ErrorCode};

/// One partition's replication state as this broker sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaState {
    pub leader_id: i32,
    pub leader_epoch: i32,
    /// Every replica, the leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas (the leader is always one of them while it leads).
    pub in_sync_replicas: Vec<i32>,
}

/// What a produce must wait for before it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckTarget {
    /// acks=0: nothing (no response).
    None,
    /// acks=1: the leader's own durable append.
    Leader,
    /// acks=all: every in-sync replica has the append (the high watermark passes it).
    AllInSync,
}

impl ReplicaState {
    /// The one-node case: this node leads every partition at epoch 0 and is its only replica.
    pub fn single_node(node_id: i32) -> ReplicaState {
        ReplicaState { leader_id: node_id, leader_epoch: 0, replicas: vec![node_id], in_sync_replicas: vec![node_id] }
    }

    /// Kafka's check of a request's `current_leader_epoch` (-1: the client does not know it).
    pub fn check_leader_epoch(&self, requested_epoch: i32) -> ErrorCode {
        match requested_epoch {
            -1 => ErrorCode::NONE,
            e if e == self.leader_epoch => ErrorCode::NONE,
            e if e > self.leader_epoch => ErrorCode::UNKNOWN_LEADER_EPOCH,
            _ => ErrorCode::FENCED_LEADER_EPOCH,
        }
    }

    /// What a produce with `acks` waits for, or why it is refused before appending: an invalid
    /// acks value, or acks=all with fewer in-sync replicas than `min.insync.replicas`.
    pub fn ack_target(&self, acks: i16, min_insync_replicas: i32) -> Result<AckTarget, ApiError> {
        match acks {
            0 => Ok(AckTarget::None),
            1 => Ok(AckTarget::Leader),
            -1 => {
                let in_sync = self.in_sync_replicas.len() as i32;
                if in_sync < min_insync_replicas {
                    let message = format!("in-sync replicas {in_sync} below min.insync.replicas {min_insync_replicas}");
                    return Err(ApiError::new(ErrorCode::NOT_ENOUGH_REPLICAS, message));
                }
                Ok(AckTarget::AllInSync)
            }
            _ => Err(ErrorCode::INVALID_REQUIRED_ACKS.into()),
        }
    }

    /// The high-watermark rule: the smallest log end offset among the in-sync replicas, the
    /// leader's counted as its durable offset (what a crash of the leader cannot take back).
    /// `follower_log_end` gives a follower's last fetched log end offset (`None`: unknown, which
    /// holds the high watermark where it is). Never below `current` (it does not move back).
    pub fn high_watermark(
        &self,
        current: i64,
        leader_durable_offset: i64,
        follower_log_end: impl Fn(i32) -> Option<i64>,
    ) -> i64 {
        let mut hw = leader_durable_offset;
        for &replica in self.in_sync_replicas.iter().filter(|r| **r != self.leader_id) {
            match follower_log_end(replica) {
                Some(end) => hw = hw.min(end),
                None => return current,
            }
        }
        hw.max(current)
    }

    /// The epoch and end offset of `requested_epoch` for a log whose epoch cache is still
    /// empty (no batch yet): Kafka's `endOffsetFor` on a fresh leader.
    pub fn end_offset_for_epoch_of_empty_log(&self, requested_epoch: i32, log_end_offset: i64) -> (i32, i64) {
        const UNDEFINED_EPOCH: i32 = -1;
        const UNDEFINED_OFFSET: i64 = -1;
        match requested_epoch {
            UNDEFINED_EPOCH => (UNDEFINED_EPOCH, UNDEFINED_OFFSET),
            e if e == self.leader_epoch => (self.leader_epoch, log_end_offset),
            e if e > self.leader_epoch => (UNDEFINED_EPOCH, UNDEFINED_OFFSET),
            e => (e, log_end_offset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_node_leads_at_epoch_zero_and_is_its_own_isr() {
        let state = ReplicaState::single_node(7);
        assert_eq!(state.check_leader_epoch(-1), ErrorCode::NONE);
        assert_eq!(state.check_leader_epoch(0), ErrorCode::NONE);
        assert_eq!(state.check_leader_epoch(1), ErrorCode::UNKNOWN_LEADER_EPOCH);
        assert_eq!(state.ack_target(-1, 1), Ok(AckTarget::AllInSync));
        assert_eq!(state.ack_target(-1, 2).unwrap_err().code, ErrorCode::NOT_ENOUGH_REPLICAS);
        assert_eq!(state.ack_target(0, 3), Ok(AckTarget::None), "min.insync.replicas is for acks=all only");
        assert_eq!(state.ack_target(2, 1).unwrap_err().code, ErrorCode::INVALID_REQUIRED_ACKS);
        assert_eq!(state.high_watermark(5, 9, |_| None), 9, "one replica: the durable offset");
    }

    #[test]
    fn the_high_watermark_is_the_slowest_in_sync_replica_and_never_moves_back() {
        let state =
            ReplicaState { leader_id: 1, leader_epoch: 3, replicas: vec![1, 2, 3], in_sync_replicas: vec![1, 2] };
        let ends = |r: i32| match r {
            2 => Some(40),
            3 => Some(10), // not in sync: ignored
            _ => None,
        };
        assert_eq!(state.high_watermark(0, 50, ends), 40);
        assert_eq!(state.high_watermark(45, 50, ends), 45, "never backwards");
        assert_eq!(state.high_watermark(20, 50, |_| None), 20, "an unknown follower holds it");
        assert_eq!(state.check_leader_epoch(2), ErrorCode::FENCED_LEADER_EPOCH);
    }

    #[test]
    fn end_offset_of_an_empty_log_follows_kafka() {
        let state = ReplicaState::single_node(1);
        assert_eq!(state.end_offset_for_epoch_of_empty_log(-1, 5), (-1, -1));
        assert_eq!(state.end_offset_for_epoch_of_empty_log(0, 5), (0, 5));
        assert_eq!(state.end_offset_for_epoch_of_empty_log(3, 5), (-1, -1));
        assert_eq!(state.end_offset_for_epoch_of_empty_log(-2, 5), (-2, 5), "an older epoch ends at the log end");
    }
}
