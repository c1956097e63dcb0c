//! Everything a shard's request handlers reach: its storage, its replica of the metadata image,
//! the shard mesh and the broker config. Installed once per shard thread.
//!
//! Owns: the per-shard, `!Send` context and helpers to run work on a partition's owner shard.
//! Must never: be touched from another thread (other shards reach it only through
//! [`ShardMesh::call`], which runs a closure *on* this shard).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use glommio::sync::Semaphore;
use sluice_engine::replica_state::ReplicaState;
use sluice_engine::shard::ShardMesh;
use sluice_engine::{owner_shard, PartitionLog, ShardStorage};

use crate::broker_config::BrokerConfig;
use crate::metadata_image::MetadataImage;

pub struct ShardContext {
    pub shard: usize,
    pub mesh: ShardMesh,
    pub storage: Rc<ShardStorage>,
    pub image: RefCell<MetadataImage>,
    pub config: Arc<BrokerConfig>,
    /// Serializes metadata commands (used on the controller shard only).
    pub controller_lock: Semaphore,
    /// The replica state every partition has on a single node, built once
    /// (`ReplicaState::single_node(config.node_id)`): [`ShardContext::replica_state`] is asked
    /// on every produced and fetched partition, so it must not allocate.
    pub single_node_replica_state: Rc<ReplicaState>,
    /// The replication state of every partition of a replicated topic (one whose image entry
    /// has assignments), by topic then partition index: rebuilt from the image after every
    /// applied metadata command ([`ShardContext::refresh_replica_states`]). Topics without
    /// assignments are single-node ones.
    pub replica_states: RefCell<HashMap<String, Vec<Rc<ReplicaState>>>>,
    /// This shard's incremental fetch sessions (KIP-227; [`crate::fetch_session`]).
    pub fetch_sessions: RefCell<crate::fetch_session::cache::FetchSessionCache>,
}

thread_local! {
    static CONTEXT: RefCell<Option<Rc<ShardContext>>> = const { RefCell::new(None) };
}

impl ShardContext {
    pub fn install(ctx: Rc<ShardContext>) {
        CONTEXT.with(|c| *c.borrow_mut() = Some(ctx));
    }

    /// The context of the calling shard. Panics off a shard thread (a programming error).
    pub fn current() -> Rc<ShardContext> {
        CONTEXT.with(|c| c.borrow().clone()).expect("no shard context on this thread")
    }

    /// An empty fetch session cache for shard `shard` of `shard_count`, with its share of the
    /// broker's slots.
    pub fn new_fetch_sessions(
        config: crate::fetch_session::cache::FetchSessionConfig,
        shard: usize,
        shard_count: usize,
    ) -> RefCell<crate::fetch_session::cache::FetchSessionCache> {
        let mut seed = [0u8; 8];
        // Ids need not be secret, only spread: fall back to the clock.
        if getrandom::getrandom(&mut seed).is_err() {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            seed = (nanos.as_nanos() as u64 ^ shard as u64).to_le_bytes();
        }
        RefCell::new(crate::fetch_session::cache::FetchSessionCache::new(
            config,
            shard,
            shard_count,
            u64::from_le_bytes(seed),
        ))
    }

    pub fn try_current() -> Option<Rc<ShardContext>> {
        CONTEXT.with(|c| c.borrow().clone())
    }

    /// A partition's replication state as this broker sees it: on a single node it leads every
    /// partition at epoch 0 and is the only replica. Handlers take leader epochs, replica sets,
    /// ISRs and acknowledgement rules from here only (the replication issue fills it from the
    /// cluster metadata).
    pub fn replica_state(&self, topic: &str, partition: i32) -> Rc<ReplicaState> {
        let states = self.replica_states.borrow();
        let assigned = states.get(topic).and_then(|t| usize::try_from(partition).ok().and_then(|p| t.get(p)));
        match assigned {
            Some(state) => state.clone(),
            None => self.single_node_replica_state.clone(),
        }
    }

    /// Whether this node is one of a cluster (it has a controller quorum to follow).
    pub fn is_clustered(&self) -> bool {
        self.config.quorum.is_some()
    }

    /// The leader epoch at which this node leads partition `partition` of an internal topic
    /// (`__consumer_offsets`, `__transaction_state`), or `None` if it does not: the coordinator
    /// of the groups or transactional ids hashed to that partition is its leader. On a single
    /// node it leads every one at epoch 0; in a cluster only what the image says, and nothing
    /// before the topic is in the image (no two nodes may coordinate the same group).
    pub fn internal_leadership(&self, topic: &str, partition: i32) -> Option<i32> {
        if !self.is_clustered() {
            return Some(0);
        }
        let states = self.replica_states.borrow();
        let state = states.get(topic)?.get(usize::try_from(partition).ok()?)?;
        (state.leader_id == self.config.node_id).then_some(state.leader_epoch)
    }

    /// The partitions `0..partitions` of an internal topic that this shard owns and whose
    /// coordination must change: (partition, leader epoch it is held at, leader epoch it should
    /// be held at) wherever the two differ (see [`ShardContext::internal_leadership`]). What the
    /// group and transaction coordinators' `reconcile` act on.
    pub fn coordination_changes(
        &self,
        topic: &str,
        partitions: i32,
        held: &std::collections::BTreeMap<i32, i32>,
    ) -> Vec<(i32, Option<i32>, Option<i32>)> {
        (0..partitions)
            .filter(|p| self.owner_of(topic, *p) == self.shard)
            .map(|p| (p, held.get(&p).copied(), self.internal_leadership(topic, p)))
            .filter(|(_, held, wanted)| held != wanted)
            .collect()
    }

    /// Acts on [`ShardContext::coordination_changes`]: every partition held at a stale epoch
    /// is dropped first (so a failed load cannot leave a lost partition coordinated here), then
    /// each wanted one is loaded; a load that fails leaves its partition unloaded
    /// (NOT_COORDINATOR) for the next reconcile and is reported with the others.
    pub async fn apply_coordination_changes(
        changes: Vec<(i32, Option<i32>, Option<i32>)>,
        mut unload: impl FnMut(i32),
        mut load: impl AsyncFnMut(i32, i32) -> Result<(), String>,
    ) -> Result<(), String> {
        for (partition, held, _) in &changes {
            if held.is_some() {
                unload(*partition);
            }
        }
        let mut failed = Vec::new();
        for (partition, _, wanted) in changes {
            if let Some(leader_epoch) = wanted {
                if let Err(e) = load(partition, leader_epoch).await {
                    failed.push(format!("partition {partition}: {e}"));
                }
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }

    /// Rebuilds [`ShardContext::replica_states`] from this shard's image.
    pub fn refresh_replica_states(&self) {
        let image = self.image.borrow();
        let states = image
            .topics
            .iter()
            .filter(|(_, t)| !t.assignments.is_empty())
            .map(|(name, t)| (name.clone(), t.assignments.iter().map(|a| Rc::new(a.replica_state())).collect()))
            .collect();
        *self.replica_states.borrow_mut() = states;
    }

    pub fn owner_of(&self, topic: &str, partition: i32) -> usize {
        owner_shard(topic, partition, self.mesh.shard_count())
    }

    /// Runs `f(log)` on the shard that owns the partition; `None` if that shard has no such
    /// partition (unknown topic/partition).
    pub async fn on_partition<R, F, Fut>(&self, topic: &str, partition: i32, f: F) -> Option<R>
    where
        R: Send + 'static,
        F: FnOnce(Rc<PartitionLog>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        let owner = self.owner_of(topic, partition);
        let topic = topic.to_string();
        self.mesh
            .call(owner, move || async move {
                let ctx = ShardContext::current();
                let log = ctx.storage.partition(&topic, partition)?;
                Some(f(log).await)
            })
            .await
            .ok()
            .flatten()
    }
}
