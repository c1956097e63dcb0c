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
    /// Kafka's partition epoch: bumped by every change of leader, replicas or ISR; an ISR
    /// change a leader proposes (AlterPartition) names the epoch it starts from.
    pub partition_epoch: i32,
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
        ReplicaState {
            leader_id: node_id,
            leader_epoch: 0,
            replicas: vec![node_id],
            in_sync_replicas: vec![node_id],
            partition_epoch: 0,
        }
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

/// The last stable offset (KIP-98): read_committed consumers read below it. It is the first
/// offset of the oldest open transaction, but never past the high watermark (Kafka's
/// `UnifiedLog.lastStableOffset`). `first_unstable_offset`: `None` when no transaction is open.
pub fn last_stable_offset(first_unstable_offset: Option<i64>, high_watermark: i64) -> i64 {
    first_unstable_offset.map_or(high_watermark, |first| first.min(high_watermark))
}

/// What holds a partition's last stable offset back (Kafka's `ProducerStateManager`
/// `ongoingTxns` and `unreplicatedTxns`): the first offset of the oldest open transaction, and
/// transactions whose marker the high watermark has not passed yet — until it does, a crash
/// or a new leader may lose the marker, so their records are not stable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnstableOffsets {
    /// First offset of the oldest open transaction.
    pub oldest_open: Option<i64>,
    /// Completed transactions above the high watermark: marker offset → first offset.
    unreplicated: std::collections::BTreeMap<i64, i64>,
}

impl UnstableOffsets {
    /// A marker at `marker_offset` closed the transaction that began at `first_offset`.
    pub fn completed(&mut self, first_offset: i64, marker_offset: i64) {
        self.unreplicated.insert(marker_offset, first_offset);
    }

    /// Forgets every unreplicated transaction (truncation: what remains is all durable).
    pub fn clear_unreplicated(&mut self) {
        self.unreplicated.clear();
    }

    /// The last stable offset for `high_watermark`, forgetting the completed transactions
    /// whose marker it passed.
    pub fn last_stable_offset(&mut self, high_watermark: i64) -> i64 {
        while let Some((&marker, _)) = self.unreplicated.first_key_value() {
            if marker >= high_watermark {
                break;
            }
            self.unreplicated.pop_first();
        }
        let unreplicated = self.unreplicated.values().min().copied();
        let first_unstable = match (self.oldest_open, unreplicated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        last_stable_offset(first_unstable, high_watermark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_stable_offset_is_the_oldest_open_transaction_bounded_by_the_high_watermark() {
        assert_eq!(last_stable_offset(None, 10), 10);
        assert_eq!(last_stable_offset(Some(4), 10), 4);
        assert_eq!(last_stable_offset(Some(12), 10), 10, "a transaction opened above the HW");
        assert_eq!(last_stable_offset(Some(10), 10), 10);
    }

    #[test]
    fn a_completed_transaction_is_unstable_until_the_high_watermark_passes_its_marker() {
        let mut u = UnstableOffsets { oldest_open: Some(20), ..Default::default() };
        u.completed(5, 15);
        assert_eq!(u.last_stable_offset(15), 5, "the marker at 15 is not below the HW yet");
        assert_eq!(u.last_stable_offset(16), 16);
        assert_eq!(u.last_stable_offset(30), 20, "the open transaction at 20");
        u.oldest_open = None;
        u.completed(40, 41);
        u.clear_unreplicated();
        assert_eq!(u.last_stable_offset(41), 41);
    }

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
        let state = ReplicaState {
            leader_id: 1,
            leader_epoch: 3,
            replicas: vec![1, 2, 3],
            in_sync_replicas: vec![1, 2],
            partition_epoch: 5,
        };
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

    proptest::proptest! {
        /// Against a model: the LSO is the smallest first offset among open transactions and
        /// completed ones whose marker is at or above the HW, bounded by the HW; it never moves
        /// back while the HW only grows.
        #[test]
        fn unstable_offsets_follow_a_model(ops in proptest::collection::vec((0u8..3, 0i64..5), 1..80)) {
            let mut u = UnstableOffsets::default();
            let mut open: Option<i64> = None;
            let mut completed: Vec<(i64, i64)> = Vec::new();
            let (mut end, mut hw, mut last) = (0i64, 0i64, 0i64);
            for (op, n) in ops {
                match op {
                    0 => { open.get_or_insert(end); end += 1 + n; } // a transactional append
                    1 => { // a marker closes the open transaction (or an empty one at itself)
                        let first = open.take().unwrap_or(end);
                        u.completed(first, end);
                        completed.push((first, end));
                        end += 1;
                    }
                    _ => hw = (hw + n).min(end), // the HW moves towards the end
                }
                u.oldest_open = open;
                let model = completed.iter().filter(|(_, m)| *m >= hw).map(|(f, _)| *f).chain(open).min();
                let lso = u.last_stable_offset(hw);
                proptest::prop_assert_eq!(lso, model.map_or(hw, |f| f.min(hw)));
                proptest::prop_assert!(lso >= last, "moved back from {} to {}", last, lso);
                last = lso;
            }
        }
    }
}
