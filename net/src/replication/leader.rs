//! The leader's side on its shard: a follower's fetch is recorded and moves the high watermark,
//! so do the leader's own durable appends; the ISR is checked periodically (shrink) and on
//! fetches (expand), and changes are proposed to the controller (AlterPartition), one in
//! flight per partition. The decisions are [`FollowerProgress`]'s; this applies them.
//!
//! Owns: [`LeaderPartition`] (the progress and the task that follows the durable offset).
//! Must never: move the high watermark of a partition it does not lead, hold a borrow of the
//! shard's replication state across an await, or block.

use std::rc::Rc;
use std::time::Duration;

use sluice_engine::clock::now_ms;
use sluice_engine::replica_state::ReplicaState;
use sluice_engine::watermark::Watermark;
use sluice_engine::PartitionLog;

use super::follower_progress::{FollowerProgress, IsrProposal};
use super::read_replica::{self, ReplicaSelector, ReplicaView};
use super::{counters, with_shard, PartitionKey};
use crate::metadata_image::{codes, MetadataCommand};
use crate::shard_context::ShardContext;

/// Shortest and longest interval of the periodic ISR check (Kafka: `replica.lag.time.max.ms`
/// / 2).
const ISR_CHECK_MIN_MS: u64 = 10;
const ISR_CHECK_MAX_MS: u64 = 15_000;

/// One partition this shard leads.
pub struct LeaderPartition {
    pub progress: FollowerProgress,
    pub log: Rc<PartitionLog>,
    /// Moves the high watermark as the leader's own durable offset advances; dropped (and so
    /// cancelled) with the leadership.
    _follow_durable: glommio::Task<()>,
    /// Reaches 1 when the leadership ends (acks=all produces waiting on it fail then).
    ended: Rc<Watermark>,
}

impl Drop for LeaderPartition {
    fn drop(&mut self) {
        self.ended.advance(1);
    }
}

/// What an acks=all produce waiting for the high watermark also waits on: the end of this
/// shard's leadership of the partition (`None`: it does not lead it now).
pub fn leadership_ended(topic: &str, partition: i32) -> Option<Rc<Watermark>> {
    with_shard(|shard| shard.leaders.get(&(topic.to_string(), partition)).map(|l| l.ended.clone()))
}

impl LeaderPartition {
    /// A leadership of `log` in `state` starting now.
    pub fn new(key: &PartitionKey, log: Rc<PartitionLog>, state: ReplicaState) -> LeaderPartition {
        let start = log.epoch_start_offset(state.leader_epoch).unwrap_or_else(|| log.log_end_offset());
        let progress = FollowerProgress::new(state, start, now_ms());
        let follow_durable = glommio::spawn_local(follow_durable_offset(key.clone(), log.clone()));
        LeaderPartition { progress, log, _follow_durable: follow_durable, ended: Watermark::new(0) }
    }

    /// Applies the HW rule to the log; returns the new high watermark.
    pub fn update_high_watermark(&self) -> i64 {
        let hw = self.progress.high_watermark(self.log.high_watermark(), self.log.durable_offset());
        self.log.set_high_watermark(hw);
        self.log.high_watermark()
    }
}

/// Waits for the durable offset to move and moves the high watermark with it.
async fn follow_durable_offset(key: PartitionKey, log: Rc<PartitionLog>) {
    let durable = log.durable_watermark();
    loop {
        let seen = durable.get();
        if durable.wait_for(seen + 1).await.is_err() {
            // A failed write: the shard cuts the log back and clears the failure; look again.
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        if log.is_closed() {
            return;
        }
        with_shard(|shard| {
            if let Some(leader) = shard.leaders.get(&key) {
                leader.update_high_watermark();
            }
        });
    }
}

/// Why a follower's fetch of a partition is refused (Kafka's error code).
pub type FetchRefusal = i16;

/// A follower's fetch at `fetch_offset` of a partition this shard leads in `state` (called on
/// the owner shard, before reading): records its progress, moves the high watermark and
/// proposes an ISR expansion it earned.
pub fn on_follower_fetch(
    log: &Rc<PartitionLog>,
    state: &Rc<ReplicaState>,
    replica_id: i32,
    fetch_offset: i64,
) -> Result<(), FetchRefusal> {
    let ctx = ShardContext::current();
    let single_node = Rc::ptr_eq(state, &ctx.single_node_replica_state);
    if single_node || replica_id == state.leader_id || !state.replicas.contains(&replica_id) {
        return Err(codes::NOT_LEADER_OR_FOLLOWER); // not a follower of this partition
    }
    if state.leader_id != ctx.config.node_id {
        // Leadership moved between the request's check and this read on the owner shard.
        return Err(codes::NOT_LEADER_OR_FOLLOWER);
    }
    let key = (log.topic().to_string(), log.partition());
    let now = now_ms();
    let lag_time_max_ms = ctx.config.replication.lag_time_max_ms;
    let proposal = with_shard(|shard| {
        let leader = ensure_leader(shard, &key, log, state);
        let log_end = log.log_end_offset();
        if fetch_offset > log_end {
            return Ok(None); // the read answers OFFSET_OUT_OF_RANGE
        }
        if !leader.progress.record_fetch(replica_id, fetch_offset, log_end, now) {
            return Err(codes::NOT_LEADER_OR_FOLLOWER);
        }
        let hw = leader.update_high_watermark();
        Ok(leader
            .progress
            .propose_isr_change(hw, log_end, lag_time_max_ms, now)
            .map(|p| (p, leader.progress.state().clone())))
    })?;
    if let Some((proposal, state)) = proposal {
        submit(key, proposal, state);
    }
    Ok(())
}

/// KIP-392: the replica other than this leader that a consumer in `client_rack` should read
/// `log`'s partition from at `fetch_offset` (`None`: this leader answers), by
/// `replica.selector.class` over the followers' progress as this leader recorded it.
pub fn preferred_read_replica(log: &PartitionLog, client_rack: &str, fetch_offset: i64) -> Option<i32> {
    let ctx = ShardContext::current();
    let selector = ctx.config.replication.selector;
    if selector == ReplicaSelector::Leader || client_rack.is_empty() {
        return None;
    }
    let key = (log.topic().to_string(), log.partition());
    let now = now_ms();
    let image = ctx.image.borrow();
    let rack_of = |id: i32| image.brokers.get(&id).and_then(|b| b.rack.clone());
    let (leader_id, views) = with_shard(|shard| {
        let progress = &shard.leaders.get(&key)?.progress;
        let state = progress.state();
        let view = |id: i32| {
            if id == state.leader_id {
                let log_end_offset = log.log_end_offset();
                return ReplicaView {
                    broker_id: id,
                    rack: rack_of(id),
                    log_end_offset,
                    time_since_caught_up_ms: 0,
                    in_sync: true,
                };
            }
            let follower = progress.follower(id);
            ReplicaView {
                broker_id: id,
                rack: rack_of(id),
                log_end_offset: follower.and_then(|f| f.log_end_offset).unwrap_or(-1),
                time_since_caught_up_ms: follower.map_or(i64::MAX, |f| now.saturating_sub(f.last_caught_up_time_ms)),
                in_sync: state.in_sync_replicas.contains(&id),
            }
        };
        Some((state.leader_id, state.replicas.iter().map(|&id| view(id)).collect::<Vec<_>>()))
    })?;
    read_replica::preferred_read_replica(selector, client_rack, leader_id, fetch_offset, &views)
}

/// The leader state of `key`, created for a leadership the image gives this node and the
/// shard has not set up yet (a fetch may come before the reconcile after a command).
fn ensure_leader<'a>(
    shard: &'a mut super::ShardReplication,
    key: &PartitionKey,
    log: &Rc<PartitionLog>,
    state: &Rc<ReplicaState>,
) -> &'a mut LeaderPartition {
    let current = shard.leaders.get(key).map(|l| l.progress.state().leader_epoch);
    if current != Some(state.leader_epoch) {
        log.set_high_watermark_follows_durable_end(false);
        let leader = LeaderPartition::new(key, log.clone(), (**state).clone());
        counters::add_under_replicated(
            i64::from(leader.progress.is_under_replicated())
                - i64::from(shard.leaders.get(key).is_some_and(|l| l.progress.is_under_replicated())),
        );
        shard.leaders.insert(key.clone(), leader);
        ensure_isr_check(shard);
    }
    shard.leaders.get_mut(key).expect("inserted")
}

/// Starts this shard's periodic ISR check if it is not running.
pub(super) fn ensure_isr_check(shard: &mut super::ShardReplication) {
    if shard.isr_check.is_none() {
        shard.isr_check = Some(glommio::spawn_local(check_isr_periodically()));
    }
}

/// Every `replica.lag.time.max.ms / 2`: each led partition's HW, and a shrink of followers
/// that fell behind.
async fn check_isr_periodically() {
    let ctx = ShardContext::current();
    let lag_time_max_ms = ctx.config.replication.lag_time_max_ms;
    let interval =
        Duration::from_millis(((lag_time_max_ms / 2).max(0) as u64).clamp(ISR_CHECK_MIN_MS, ISR_CHECK_MAX_MS));
    loop {
        glommio::timer::sleep(interval).await;
        let now = now_ms();
        let proposals: Vec<(PartitionKey, IsrProposal, ReplicaState)> = with_shard(|shard| {
            shard
                .leaders
                .iter_mut()
                .filter_map(|(key, leader)| {
                    let hw = leader.update_high_watermark();
                    let log_end = leader.log.log_end_offset();
                    let proposal = leader.progress.propose_isr_change(hw, log_end, lag_time_max_ms, now)?;
                    Some((key.clone(), proposal, leader.progress.state().clone()))
                })
                .collect()
        });
        for (key, proposal, state) in proposals {
            submit(key, proposal, state);
        }
    }
}

/// Proposes an ISR change to the controller (Kafka's AlterPartition) in the background; when
/// it is answered the partition may propose again (a committed change reached this shard's
/// reconcile before `submit` returns).
fn submit(key: PartitionKey, proposal: IsrProposal, state: ReplicaState) {
    glommio::spawn_local(async move {
        let shrink = proposal.isr.len() < state.in_sync_replicas.len();
        // A fenced (or unknown) broker cannot join the ISR (Kafka's isReplicaIsrEligible): the
        // controller would refuse it, each refusal a committed log entry.
        let ineligible = {
            let ctx = ShardContext::current();
            let image = ctx.image.borrow();
            proposal
                .isr
                .iter()
                .any(|r| !state.in_sync_replicas.contains(r) && image.brokers.get(r).is_none_or(|b| b.fenced))
        };
        let accepted = if ineligible { false } else { submit_alter_partition(&key, &proposal, &state, shrink).await };
        if !accepted {
            // Not again at the very next fetch.
            glommio::timer::sleep(Duration::from_millis(REFUSED_PROPOSAL_BACKOFF_MS)).await;
        }
        with_shard(|shard| {
            if let Some(leader) = shard.leaders.get_mut(&key) {
                if leader.progress.pending() == Some(&proposal) {
                    leader.progress.proposal_finished();
                }
            }
        });
    })
    .detach();
}

/// How long a leader waits after an ISR proposal that was refused or not sent before it may
/// propose again.
const REFUSED_PROPOSAL_BACKOFF_MS: u64 = 1_000;

/// Sends an ISR change to the controller; whether it was committed.
async fn submit_alter_partition(
    key: &PartitionKey,
    proposal: &IsrProposal,
    state: &ReplicaState,
    shrink: bool,
) -> bool {
    let command = MetadataCommand::AlterPartition {
        topic: key.0.clone(),
        partition: key.1,
        leader_id: state.leader_id,
        leader_epoch: state.leader_epoch,
        partition_epoch: proposal.partition_epoch,
        isr: proposal.isr.clone(),
    };
    match crate::controller::submit(command).await {
        Ok(()) => {
            if shrink {
                counters::isr_shrunk();
            } else {
                counters::isr_expanded();
            }
            tracing::info!(topic = %key.0, partition = key.1, isr = ?proposal.isr, "ISR changed");
            true
        }
        Err(e) => {
            sluice_engine::warn_limited!(topic = %key.0, partition = key.1, isr = ?proposal.isr, error = ?e, "ISR change refused");
            false
        }
    }
}
