//! What a partition's leader knows of its followers, and the decisions that follow from it:
//! the high watermark, and when to propose shrinking or expanding the in-sync replicas (Kafka's
//! `Partition.maybeShrinkIsr` / `maybeExpandIsr` and `Replica.updateFetchState`).
//!
//! Owns: per follower, its log end offset (the offset it last fetched from) and its last
//! caught-up time; the ISR proposal in flight (at most one per partition, Kafka's
//! `PendingShrinkIsr` / `PendingExpandIsr`). Pure: time and offsets are inputs, the caller
//! submits proposals (AlterPartition) and applies the high watermark.
//!
//! Must never: do I/O or read a clock, count a replica outside the replica set, propose an ISR
//! without the leader, or have two proposals in flight for one partition.

use std::collections::BTreeMap;

use sluice_engine::replica_state::ReplicaState;

/// Kafka's `replica.lag.time.max.ms` default: a follower not caught up for this long leaves
/// the ISR.
pub const DEFAULT_REPLICA_LAG_TIME_MAX_MS: i64 = 30_000;

/// One follower as its leader sees it (Kafka's `ReplicaState` of a remote replica).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Follower {
    /// The offset it last fetched from: everything below is in its log (`None`: no fetch yet
    /// in this leadership).
    pub log_end_offset: Option<i64>,
    /// The last time its log reached the leader's log end (as of a fetch of it), in ms.
    pub last_caught_up_time_ms: i64,
    /// The time and the leader's log end offset of its previous fetch.
    last_fetch_time_ms: i64,
    last_fetch_leader_log_end_offset: i64,
}

/// An ISR change proposed to the controller and not answered yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsrProposal {
    pub isr: Vec<i32>,
    /// The partition epoch it was proposed from (the controller refuses a stale one).
    pub partition_epoch: i32,
}

/// The leader's view of one partition's followers. See the module docs.
#[derive(Clone, Debug)]
pub struct FollowerProgress {
    state: ReplicaState,
    /// Where the current leader epoch starts in the leader's log: a follower rejoins the ISR
    /// only once it holds that (Kafka: `leaderEpochStartOffsetOpt`).
    leader_epoch_start_offset: i64,
    followers: BTreeMap<i32, Follower>,
    pending: Option<IsrProposal>,
}

impl FollowerProgress {
    /// A leadership starting at `now_ms`: followers in the ISR count as caught up now (they
    /// get `replica.lag.time.max.ms` to fetch), the others as never.
    pub fn new(state: ReplicaState, leader_epoch_start_offset: i64, now_ms: i64) -> FollowerProgress {
        let followers = state
            .replicas
            .iter()
            .filter(|r| **r != state.leader_id)
            .map(|&r| {
                let caught_up = if state.in_sync_replicas.contains(&r) { now_ms } else { 0 };
                let follower = Follower {
                    log_end_offset: None,
                    last_caught_up_time_ms: caught_up,
                    last_fetch_time_ms: 0,
                    last_fetch_leader_log_end_offset: 0,
                };
                (r, follower)
            })
            .collect();
        FollowerProgress { state, leader_epoch_start_offset, followers, pending: None }
    }

    pub fn state(&self) -> &ReplicaState {
        &self.state
    }

    pub fn follower(&self, replica_id: i32) -> Option<&Follower> {
        self.followers.get(&replica_id)
    }

    pub fn pending(&self) -> Option<&IsrProposal> {
        self.pending.as_ref()
    }

    /// A new committed state of the same leadership (same leader and epoch: an ISR or replica
    /// change). A proposal from an older partition epoch is settled by it; followers keep
    /// their progress, new replicas start unknown, removed ones are forgotten.
    pub fn update_state(&mut self, state: ReplicaState, now_ms: i64) {
        assert_eq!(
            (state.leader_id, state.leader_epoch),
            (self.state.leader_id, self.state.leader_epoch),
            "a new leadership needs a new FollowerProgress"
        );
        if self.pending.as_ref().is_some_and(|p| p.partition_epoch < state.partition_epoch) {
            self.pending = None;
        }
        self.followers.retain(|r, _| state.replicas.contains(r));
        for &r in state.replicas.iter().filter(|r| **r != state.leader_id) {
            self.followers.entry(r).or_insert(Follower {
                log_end_offset: None,
                last_caught_up_time_ms: if state.in_sync_replicas.contains(&r) { now_ms } else { 0 },
                last_fetch_time_ms: 0,
                last_fetch_leader_log_end_offset: 0,
            });
        }
        self.state = state;
    }

    /// A fetch from `replica_id` at `fetch_offset` when the leader's log ended at
    /// `leader_log_end_offset` (Kafka's `updateFetchState`): it is caught up as of now if it
    /// reached the leader's end, or as of its previous fetch if it reached what the leader's
    /// end was then. Returns false for a replica that is not a follower of this partition.
    pub fn record_fetch(
        &mut self,
        replica_id: i32,
        fetch_offset: i64,
        leader_log_end_offset: i64,
        now_ms: i64,
    ) -> bool {
        let Some(follower) = self.followers.get_mut(&replica_id) else { return false };
        if fetch_offset >= leader_log_end_offset {
            follower.last_caught_up_time_ms = follower.last_caught_up_time_ms.max(now_ms);
        } else if fetch_offset >= follower.last_fetch_leader_log_end_offset {
            follower.last_caught_up_time_ms = follower.last_caught_up_time_ms.max(follower.last_fetch_time_ms);
        }
        follower.log_end_offset = Some(fetch_offset);
        follower.last_fetch_leader_log_end_offset = leader_log_end_offset;
        follower.last_fetch_time_ms = now_ms;
        true
    }

    /// The ISR the high watermark counts: the committed one plus what a pending expansion
    /// adds, and still holding what a pending shrink removes (Kafka's "maximal ISR": a
    /// shrink takes effect only once committed, an expansion as soon as it is proposed).
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut isr = self.state.in_sync_replicas.clone();
        if let Some(p) = &self.pending {
            for r in &p.isr {
                if !isr.contains(r) {
                    isr.push(*r);
                }
            }
        }
        isr
    }

    /// The high watermark: the smallest log end offset in the maximal ISR, the leader's
    /// counted at its durable offset; never below `current`.
    pub fn high_watermark(&self, current: i64, leader_durable_offset: i64) -> i64 {
        let state = ReplicaState { in_sync_replicas: self.maximal_isr(), ..self.state.clone() };
        state.high_watermark(current, leader_durable_offset, |r| self.followers.get(&r).and_then(|f| f.log_end_offset))
    }

    /// The ISR change to propose now, if any, marked in flight: first a shrink (followers in
    /// the ISR not caught up for `lag_time_max_ms`, unless at the leader's end), else an
    /// expansion (followers out of it whose log end reached the high watermark and the start
    /// of the current leader epoch). Nothing while a proposal is in flight.
    pub fn propose_isr_change(
        &mut self,
        high_watermark: i64,
        leader_log_end_offset: i64,
        lag_time_max_ms: i64,
        now_ms: i64,
    ) -> Option<IsrProposal> {
        let isr = &self.state.in_sync_replicas;
        if self.pending.is_some() || !isr.contains(&self.state.leader_id) {
            // One proposal at a time; and a committed ISR without its leader is the
            // controller's to fix (every proposal must hold the leader).
            return None;
        }
        let out_of_sync: Vec<i32> = isr
            .iter()
            .copied()
            .filter(|r| *r != self.state.leader_id)
            .filter(|r| {
                self.followers.get(r).is_some_and(|f| {
                    f.log_end_offset != Some(leader_log_end_offset)
                        && now_ms.saturating_sub(f.last_caught_up_time_ms) > lag_time_max_ms
                })
            })
            .collect();
        let proposed: Vec<i32> = if !out_of_sync.is_empty() {
            isr.iter().copied().filter(|r| !out_of_sync.contains(r)).collect()
        } else {
            let joining: Vec<i32> = self
                .followers
                .iter()
                .filter(|(r, _)| !isr.contains(r))
                .filter(|(_, f)| {
                    f.log_end_offset.is_some_and(|end| end >= high_watermark && end >= self.leader_epoch_start_offset)
                })
                .map(|(r, _)| *r)
                .collect();
            if joining.is_empty() {
                return None;
            }
            isr.iter().copied().chain(joining).collect()
        };
        assert!(proposed.contains(&self.state.leader_id), "an ISR proposal without its leader: {proposed:?}");
        let proposal = IsrProposal { isr: proposed, partition_epoch: self.state.partition_epoch };
        self.pending = Some(proposal.clone());
        Some(proposal)
    }

    /// The controller answered the proposal in flight without a new state reaching us yet
    /// (refused, or the submission failed): another may be proposed.
    pub fn proposal_finished(&mut self) {
        self.pending = None;
    }

    /// Fewer in-sync replicas than replicas (Kafka's `UnderReplicatedPartitions`).
    pub fn is_under_replicated(&self) -> bool {
        self.state.in_sync_replicas.len() < self.state.replicas.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(isr: &[i32], partition_epoch: i32) -> ReplicaState {
        ReplicaState {
            leader_id: 1,
            leader_epoch: 4,
            replicas: vec![1, 2, 3],
            in_sync_replicas: isr.to_vec(),
            partition_epoch,
        }
    }

    #[test]
    fn a_follower_that_stops_fetching_leaves_the_isr_after_the_lag_time() {
        let mut p = FollowerProgress::new(state(&[1, 2, 3], 0), 0, 1_000);
        assert_eq!(p.high_watermark(0, 10), 0, "unknown followers hold the HW");
        p.record_fetch(2, 10, 10, 1_100);
        p.record_fetch(3, 4, 10, 1_100);
        assert_eq!(p.high_watermark(0, 10), 4);
        assert_eq!(p.propose_isr_change(4, 10, 500, 1_400), None, "3 is within the lag time");
        let shrink = p.propose_isr_change(4, 10, 500, 1_600).expect("3 lags");
        assert_eq!(shrink, IsrProposal { isr: vec![1, 2], partition_epoch: 0 });
        assert_eq!(p.propose_isr_change(4, 10, 500, 1_700), None, "one proposal in flight");
        assert_eq!(p.high_watermark(0, 10), 4, "a pending shrink still counts 3");
        p.update_state(state(&[1, 2], 1), 1_700);
        assert_eq!(p.pending(), None);
        assert_eq!(p.high_watermark(4, 10), 10);
        assert!(p.is_under_replicated());
    }

    #[test]
    fn a_follower_rejoins_once_it_reaches_the_high_watermark_and_the_epoch_start() {
        let mut p = FollowerProgress::new(state(&[1, 2], 3), 50, 0);
        p.record_fetch(2, 60, 60, 10);
        p.record_fetch(3, 40, 60, 10);
        assert_eq!(p.propose_isr_change(60, 60, 30_000, 20), None, "3 is below the HW");
        p.record_fetch(3, 60, 60, 30);
        let expand = p.propose_isr_change(60, 60, 30_000, 40).unwrap();
        assert_eq!(expand.isr, vec![1, 2, 3]);
        assert_eq!(p.maximal_isr(), vec![1, 2, 3], "a pending expansion counts at once");
        p.proposal_finished();
        assert_eq!(p.propose_isr_change(60, 60, 30_000, 40).unwrap().isr, vec![1, 2, 3]);
    }

    #[test]
    fn nothing_is_proposed_from_an_isr_without_its_leader() {
        let mut p = FollowerProgress::new(state(&[2, 3], 0), 0, 0);
        p.record_fetch(2, 0, 10, 1);
        assert_eq!(p.propose_isr_change(0, 10, 100, 1_000_000), None);
    }

    #[test]
    fn a_follower_below_the_epoch_start_does_not_rejoin() {
        let mut p = FollowerProgress::new(state(&[1], 0), 100, 0);
        p.record_fetch(2, 90, 100, 1);
        assert_eq!(p.propose_isr_change(80, 100, 30_000, 2), None);
    }

    #[test]
    fn caught_up_time_follows_kafkas_update_fetch_state() {
        let mut p = FollowerProgress::new(state(&[1, 2, 3], 0), 0, 0);
        p.record_fetch(2, 0, 100, 1_000); // behind
        assert_eq!(p.follower(2).unwrap().last_caught_up_time_ms, 0);
        p.record_fetch(2, 100, 150, 2_000); // reached what the end was at its previous fetch
        assert_eq!(p.follower(2).unwrap().last_caught_up_time_ms, 1_000);
        p.record_fetch(2, 150, 150, 3_000); // at the end
        assert_eq!(p.follower(2).unwrap().last_caught_up_time_ms, 3_000);
        assert!(!p.record_fetch(9, 0, 0, 0), "not a replica");
        assert!(!p.record_fetch(1, 0, 0, 0), "the leader is not its own follower");
    }

    proptest::proptest! {
        /// Random fetches, appends, time and committed proposals: the HW never moves back,
        /// never passes the leader's durable offset or an ISR member's log end; a proposal
        /// always holds the leader and only replicas, and at most one is in flight; a follower
        /// fetching at the leader's end is never shrunk.
        #[test]
        fn leader_decisions_keep_their_invariants(ops in proptest::collection::vec((0u8..5, 0i64..40), 1..200)) {
            let mut st = state(&[1, 2, 3], 0);
            let mut p = FollowerProgress::new(st.clone(), 0, 0);
            let (mut now, mut leader_end, mut hw) = (0i64, 0i64, 0i64);
            let mut ends = BTreeMap::from([(2, 0i64), (3, 0i64)]);
            for (op, n) in ops {
                match op {
                    0 => leader_end += n, // appends (durable at once here)
                    1 | 2 => { // follower 2 or 3 fetches, moving towards the end
                        let r = if op == 1 { 2 } else { 3 };
                        let end = ends.get_mut(&r).unwrap();
                        *end = (*end + n).min(leader_end);
                        p.record_fetch(r, *end, leader_end, now);
                    }
                    3 => now += n * 100,
                    _ => { // propose; the controller commits it
                        if let Some(prop) = p.propose_isr_change(hw, leader_end, 1_000, now) {
                            proptest::prop_assert!(prop.isr.contains(&1));
                            proptest::prop_assert!(prop.isr.iter().all(|r| st.replicas.contains(r)));
                            proptest::prop_assert!(p.propose_isr_change(hw, leader_end, 1_000, now).is_none());
                            for r in [2, 3] {
                                let at_end = p.follower(r).unwrap().log_end_offset == Some(leader_end);
                                if at_end && st.in_sync_replicas.contains(&r) {
                                    proptest::prop_assert!(prop.isr.contains(&r), "shrunk a caught-up follower");
                                }
                            }
                            st = ReplicaState { in_sync_replicas: prop.isr, partition_epoch: st.partition_epoch + 1, ..st };
                            p.update_state(st.clone(), now);
                        }
                    }
                }
                let new_hw = p.high_watermark(hw, leader_end);
                proptest::prop_assert!(new_hw >= hw);
                proptest::prop_assert!(new_hw <= leader_end);
                for r in p.maximal_isr().into_iter().filter(|r| *r != 1) {
                    if let Some(end) = p.follower(r).and_then(|f| f.log_end_offset) {
                        proptest::prop_assert!(new_hw <= end.max(hw), "HW {} past follower {} at {}", new_hw, r, end);
                    }
                }
                hw = new_hw;
            }
        }
    }
}
