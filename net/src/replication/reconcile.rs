//! Turns the metadata image into this shard's replication roles, after every applied metadata
//! command and once at start-up: for each partition of a replicated topic this shard holds,
//! lead it (track followers from the committed state), follow it (fetch from its leader at its
//! epoch), or neither. Topics without assignments are single-node: their high watermark
//! follows the durable end, as it always did.
//!
//! Owns: the transitions. Must never: await (it runs inside `apply_on_shard`, synchronously;
//! a new leader's epoch checkpoint is written by a task it spawns), or do more than compare
//! when nothing changed.

use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;

use sluice_engine::clock::now_ms;
use sluice_engine::partition_log::PartitionLog;

use super::fetcher::{FetchedPartition, FetcherHandle};
use super::leader::{ensure_isr_check, LeaderPartition};
use super::{counters, with_shard, PartitionKey};
use crate::shard_context::ShardContext;

/// Brings this shard's leaders and fetchers in line with its image.
pub fn reconcile(ctx: &ShardContext) {
    let node_id = ctx.config.node_id;
    let now = now_ms();
    let mut led: HashSet<PartitionKey> = HashSet::new();
    // Follower partitions by leader id.
    let mut followed: BTreeMap<i32, BTreeMap<PartitionKey, FetchedPartition>> = BTreeMap::new();
    // Partitions this shard starts leading, with their new leader epoch.
    let mut new_epochs: Vec<(Rc<PartitionLog>, i32)> = Vec::new();
    let replicated: HashSet<String> = {
        let image = ctx.image.borrow();
        image.topics.iter().filter(|(_, t)| !t.assignments.is_empty()).map(|(n, _)| n.clone()).collect()
    };
    with_shard(|shard| {
        let mut under_replicated_delta = 0i64;
        for log in ctx.storage.partitions() {
            if !replicated.contains(log.topic()) {
                log.set_high_watermark_follows_durable_end(true);
                continue;
            }
            let key: PartitionKey = (log.topic().to_string(), log.partition());
            let state = ctx.replica_state(&key.0, key.1);
            if !state.replicas.contains(&node_id) {
                continue; // not a replica (any more): neither lead nor follow
            }
            log.set_high_watermark_follows_durable_end(false);
            if state.leader_id == node_id {
                led.insert(key.clone());
                match shard.leaders.get_mut(&key) {
                    Some(leader) if leader.progress.state().leader_epoch == state.leader_epoch => {
                        let before = leader.progress.is_under_replicated();
                        leader.progress.update_state((*state).clone(), now);
                        under_replicated_delta += i64::from(leader.progress.is_under_replicated()) - i64::from(before);
                        leader.update_high_watermark();
                    }
                    existing => {
                        let before = existing.is_some_and(|l| l.progress.is_under_replicated());
                        new_epochs.push((log.clone(), state.leader_epoch));
                        let leader = LeaderPartition::new(&key, log.clone(), (*state).clone());
                        under_replicated_delta += i64::from(leader.progress.is_under_replicated()) - i64::from(before);
                        shard.leaders.insert(key, leader);
                    }
                }
            } else if state.leader_id >= 0 {
                let partition = FetchedPartition::new(log.clone(), state.leader_epoch);
                followed.entry(state.leader_id).or_default().insert(key, partition);
            }
        }
        shard.leaders.retain(|key, leader| {
            let keep = led.contains(key);
            if !keep && leader.progress.is_under_replicated() {
                under_replicated_delta -= 1;
            }
            keep
        });
        counters::add_under_replicated(under_replicated_delta);
        if !shard.leaders.is_empty() {
            ensure_isr_check(shard);
        }
        // Fetchers: one per leader broker with partitions to follow.
        shard.fetchers.retain(|leader_id, _| followed.contains_key(leader_id));
        for (leader_id, partitions) in followed {
            match shard.fetchers.get(&leader_id) {
                Some(fetcher) => fetcher.set_partitions(partitions),
                None => {
                    let fetcher = FetcherHandle::start(leader_id, partitions);
                    shard.fetchers.insert(leader_id, fetcher);
                }
            }
        }
    });
    // A new leader's epoch starts at its log end now, not in the epoch's first produce request
    // (Kafka's makeLeader): recording it writes the epoch checkpoint, which is I/O, so it runs
    // in a task of its own (spawned after the shard's state is released).
    for (log, epoch) in new_epochs {
        glommio::spawn_local(async move {
            if let Err(e) = log.assign_leader_epoch(epoch).await {
                sluice_engine::error_limited!(topic = log.topic(), partition = log.partition(), error = %e, "recording the leader epoch failed");
            }
        })
        .detach();
    }
}

/// Whether this shard follows `key` now (tests, tools).
pub fn is_following(key: &PartitionKey) -> bool {
    with_shard(|shard| shard.fetchers.values().any(|f| f.follows(key)))
}

/// Whether this shard leads `key` now (tests, tools).
pub fn is_leading(key: &PartitionKey) -> bool {
    with_shard(|shard| shard.leaders.contains_key(key))
}
