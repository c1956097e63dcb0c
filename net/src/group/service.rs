//! The glommio edge of the group coordinator on one shard: the shard's classic [`Group`]s and
//! consumer-protocol [`ConsumerGroup`]s (KIP-848; a group id is one or the other), the
//! JoinGroup/SyncGroup requests waiting for a rebalance, the timer that drives deadlines,
//! writes to the `__consumer_offsets` log (consumer-group records through one ordered queue),
//! and replay at start-up.
//!
//! Owns: every group whose `__consumer_offsets` partition this shard owns and this node leads
//! (requests for a group run here, sent by [`on_group_shard`] through the shard mesh), and the
//! mapping from [`GroupEvent`]s to waiting responses. A partition's groups are loaded from its
//! log when this node becomes its leader and dropped when it stops leading
//! ([`GroupShard::reconcile`]): the coordinator moves with the partition's leadership. On a
//! single node every partition is led from the start.
//!
//! Must never: hold a `RefCell` borrow across an `.await`, touch another shard's groups, answer
//! for a partition it does not lead (NOT_COORDINATOR), or acknowledge a commit before its
//! record is on file.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use sluice_engine::shard::ShardGone;

use super::consumer_group::{
    ConsumerGroup, ConsumerGroupEvent, HeartbeatRequest as ConsumerHeartbeat,
    HeartbeatResponse as ConsumerHeartbeatResponse, TopicInfo, TopicsImage,
};
use super::coordinator::{
    codes, CommittedOffset, Group, GroupConfig, GroupEvent, JoinRequest, JoinResult, Reply, SyncResult,
};
use super::offsets_log::{self, partition_for, GroupValue, LogRecord, MemberValue, OFFSETS_TOPIC};
use super::pending_txn_offsets::PendingTxnOffsets;
use crate::shard_context::ShardContext;

/// How often the timer looks for due deadlines (sessions, rebalances, initial delay).
pub const TICK_INTERVAL_MS: u64 = 50;

type MemberKey = (String, String);

/// One shard's groups. See the module docs.
pub struct GroupShard {
    pub config: GroupConfig,
    groups: RefCell<HashMap<String, Group>>,
    /// Consumer-protocol (KIP-848) groups. A group id is a consumer group while it has an
    /// entry here; its committed offsets stay in `groups` (an Empty classic group that only
    /// holds offsets). The two never both have members.
    consumer_groups: RefCell<HashMap<String, ConsumerGroup>>,
    /// The topics consumer groups subscribe to, rebuilt when the metadata image changes.
    topics: RefCell<Rc<TopicsImage>>,
    join_waiters: RefCell<HashMap<MemberKey, oneshot::Sender<JoinResult>>>,
    sync_waiters: RefCell<HashMap<MemberKey, oneshot::Sender<SyncResult>>>,
    /// Groups that have a group record in the log (deleting them writes a tombstone).
    persisted: RefCell<HashSet<String>>,
    /// Transactional offsets waiting for their transaction's end, per group
    /// (see [`super::pending_txn_offsets`]).
    pub(crate) txn_offsets: RefCell<HashMap<String, PendingTxnOffsets>>,
    /// Consumer-group records are written in the order their changes happened: one queue,
    /// drained by one writer at a time ([`ConsumerWrites`]).
    consumer_writes: Rc<ConsumerWrites>,
    /// Serializes creation of this shard's `__consumer_offsets` partitions on first use.
    creating_partition: Rc<glommio::sync::Semaphore>,
    /// The `__consumer_offsets` partitions this shard coordinates, with the leader epoch it
    /// loaded them at; and those being loaded.
    coordinated: RefCell<BTreeMap<i32, i32>>,
    loading: RefCell<HashSet<i32>>,
    /// One [`GroupShard::reconcile`] at a time.
    reconciling: glommio::sync::Semaphore,
    ctx: Rc<ShardContext>,
}

/// Resolves once a queued batch of consumer-group records is on file (or failed).
type Written = oneshot::Receiver<Result<(), String>>;

/// Consumer-group record batches waiting to be written, in the order their changes were made
/// (a later batch may overwrite an earlier one's keys, so the order is the log's); each batch
/// tells its waiter, if any, once it is on file.
#[derive(Default)]
pub struct ConsumerWrites {
    queue: RefCell<std::collections::VecDeque<ConsumerWrite>>,
    writing: std::cell::Cell<bool>,
}

struct ConsumerWrite {
    group_id: String,
    partition: i32,
    records: Vec<LogRecord>,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// Whether a shard answers for a `__consumer_offsets` partition's groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coordination {
    Coordinating,
    Loading,
    NotCoordinator,
}

thread_local! {
    static GROUP_SHARD: RefCell<Option<Rc<GroupShard>>> = const { RefCell::new(None) };
}

/// Milliseconds since the Unix epoch (commit timestamps survive restarts).
pub fn now_ms() -> u64 {
    sluice_engine::clock::now_ms().max(0) as u64
}

/// The shard that coordinates `group_id`.
pub fn coordinator_shard(ctx: &ShardContext, group_id: &str) -> usize {
    let partition = partition_for(group_id, ctx.config.group.offsets_topic_num_partitions);
    ctx.owner_of(OFFSETS_TOPIC, partition)
}

/// Runs `f` with the group shard that owns `__consumer_offsets` partition `partition` (errors
/// as [`on_group_shard`]).
pub async fn on_offsets_partition_shard<R, F, Fut>(ctx: &ShardContext, partition: i32, f: F) -> Result<R, i16>
where
    R: Send + 'static,
    F: FnOnce(Rc<GroupShard>) -> Fut + Send + 'static,
    Fut: Future<Output = R> + 'static,
{
    let shard = ctx.owner_of(OFFSETS_TOPIC, partition);
    let answer = ctx
        .mesh
        .call(shard, move || async move {
            match GroupShard::try_current() {
                Some(groups) => match groups.coordination(partition) {
                    Coordination::Coordinating => Ok(f(groups).await),
                    Coordination::Loading => Err(codes::COORDINATOR_LOAD_IN_PROGRESS),
                    Coordination::NotCoordinator => Err(codes::NOT_COORDINATOR),
                },
                None => Err(codes::COORDINATOR_LOAD_IN_PROGRESS),
            }
        })
        .await;
    answer.map_err(|_: ShardGone| codes::COORDINATOR_NOT_AVAILABLE).and_then(|r| r)
}

/// Runs `f` with the group shard that owns `group_id`. Errors: COORDINATOR_LOAD_IN_PROGRESS
/// while that shard is still replaying the group's offsets partition (shards start serving
/// independently), NOT_COORDINATOR when this node does not lead that partition,
/// COORDINATOR_NOT_AVAILABLE if the shard is gone.
pub async fn on_group_shard<R, F, Fut>(ctx: &ShardContext, group_id: &str, f: F) -> Result<R, i16>
where
    R: Send + 'static,
    F: FnOnce(Rc<GroupShard>) -> Fut + Send + 'static,
    Fut: Future<Output = R> + 'static,
{
    let partition = partition_for(group_id, ctx.config.group.offsets_topic_num_partitions);
    on_offsets_partition_shard(ctx, partition, f).await
}

impl GroupShard {
    /// This shard's coordinator, once [`GroupShard::start`] has replayed its log.
    pub fn try_current() -> Option<Rc<GroupShard>> {
        GROUP_SHARD.with(|g| g.borrow().clone())
    }

    /// Installs the shard's coordinator, loads the `__consumer_offsets` partitions this node
    /// leads ([`GroupShard::reconcile`]) and starts its timer. Runs before the shard serves
    /// requests.
    pub async fn start(ctx: Rc<ShardContext>) -> Result<(), String> {
        let config = ctx.config.group.clone();
        let shard = Rc::new(GroupShard {
            config,
            groups: RefCell::new(HashMap::new()),
            consumer_groups: RefCell::new(HashMap::new()),
            topics: RefCell::new(Rc::new(TopicsImage { version: u64::MAX, ..TopicsImage::default() })),
            join_waiters: RefCell::new(HashMap::new()),
            sync_waiters: RefCell::new(HashMap::new()),
            persisted: RefCell::new(HashSet::new()),
            txn_offsets: RefCell::new(HashMap::new()),
            creating_partition: Rc::new(glommio::sync::Semaphore::new(1)),
            consumer_writes: Rc::new(ConsumerWrites::default()),
            coordinated: RefCell::new(BTreeMap::new()),
            loading: RefCell::new(HashSet::new()),
            reconciling: glommio::sync::Semaphore::new(1),
            ctx: ctx.clone(),
        });
        GROUP_SHARD.with(|g| *g.borrow_mut() = Some(shard.clone()));
        shard.reconcile().await?;
        glommio::spawn_local(shard.clone().run_timer()).detach();
        Ok(())
    }

    /// Whether this shard answers for `partition`'s groups now.
    pub fn coordination(&self, partition: i32) -> Coordination {
        if self.loading.borrow().contains(&partition) {
            Coordination::Loading
        } else if self.coordinated.borrow().contains_key(&partition) {
            Coordination::Coordinating
        } else {
            Coordination::NotCoordinator
        }
    }

    /// Brings the coordinated partitions in line with leadership: loads each of this shard's
    /// `__consumer_offsets` partitions this node now leads (again, if its leader epoch moved:
    /// another leader may have written in between), drops the groups of those it no longer
    /// leads. Called at start-up and after every applied metadata command; cheap when nothing
    /// changed.
    pub async fn reconcile(self: &Rc<Self>) -> Result<(), String> {
        let _one_at_a_time = self.reconciling.acquire_permit(1).await.map_err(|e| e.to_string())?;
        let changes = self.ctx.coordination_changes(
            OFFSETS_TOPIC,
            self.config.offsets_topic_num_partitions,
            &self.coordinated.borrow(),
        );
        ShardContext::apply_coordination_changes(
            changes,
            |p| self.unload(p),
            async |p, epoch| self.load(p, epoch).await,
        )
        .await
    }

    /// Replays one partition's log (if this node has it) into its groups.
    async fn load(&self, partition: i32, leader_epoch: i32) -> Result<(), String> {
        self.loading.borrow_mut().insert(partition);
        let loaded = self.replay_partition(partition).await;
        self.loading.borrow_mut().remove(&partition);
        let (groups, offsets) = loaded?;
        self.coordinated.borrow_mut().insert(partition, leader_epoch);
        if groups + offsets > 0 || self.ctx.is_clustered() {
            tracing::info!(shard = self.ctx.shard, partition, leader_epoch, groups, offsets, "consumer groups loaded");
        }
        Ok(())
    }

    /// Returns the counts of groups and offsets loaded.
    async fn replay_partition(&self, partition: i32) -> Result<(usize, usize), String> {
        let Some(log) = self.ctx.storage.partition(OFFSETS_TOPIC, partition) else { return Ok((0, 0)) };
        let now = now_ms();
        let (mut loaded_groups, mut loaded_offsets) = (0usize, 0usize);
        for (id, replayed) in offsets_log::replay(&log).await? {
            let mut group = match replayed.group {
                Some(g) => {
                    self.persisted.borrow_mut().insert(id.clone());
                    let members = g.members.into_iter().map(MemberValue::into_member).collect();
                    Group::restore(&id, now, g.generation_id, g.protocol_type, g.protocol_name, g.leader_id, members)
                }
                None => Group::new(&id, now),
            };
            if let Some((record, members, targets)) = replayed.consumer.into_parts() {
                let topics = self.topics_image();
                let restored =
                    ConsumerGroup::restore(&id, now, &self.config.consumer, &topics, record, members, targets);
                self.consumer_groups.borrow_mut().insert(id.clone(), restored);
                loaded_groups += 1;
            }
            if !replayed.pending_txn.is_empty() {
                self.txn_offsets.borrow_mut().insert(id.clone(), PendingTxnOffsets::from_replay(replayed.pending_txn));
            }
            for ((topic, partition), committed) in replayed.offsets {
                group.apply_commit(&topic, partition, committed);
                loaded_offsets += 1;
            }
            if !group.is_disposable() {
                loaded_groups += 1;
                self.groups.borrow_mut().insert(id, group);
            }
        }
        Ok((loaded_groups, loaded_offsets))
    }

    /// Drops the groups of a partition this node no longer leads; their waiting members are
    /// answered (and find the new coordinator when they retry).
    fn unload(&self, partition: i32) {
        self.coordinated.borrow_mut().remove(&partition);
        let mine = |id: &str| self.partition_of(id) == partition;
        let dropped: Vec<String> = self.groups.borrow().keys().filter(|id| mine(id)).cloned().collect();
        {
            let mut groups = self.groups.borrow_mut();
            for id in &dropped {
                groups.remove(id);
            }
        }
        self.consumer_groups.borrow_mut().retain(|id, _| !mine(id));
        self.persisted.borrow_mut().retain(|id| !mine(id));
        self.txn_offsets.borrow_mut().retain(|id, _| !mine(id));
        self.join_waiters.borrow_mut().retain(|(id, _), _| !mine(id));
        self.sync_waiters.borrow_mut().retain(|(id, _), _| !mine(id));
        tracing::info!(
            shard = self.ctx.shard,
            partition,
            groups = dropped.len(),
            "consumer groups unloaded: not the leader"
        );
    }

    /// A fresh member id: `client_id-<uuid>` like Kafka.
    pub fn new_member_id(&self, client_id: &str) -> String {
        format!("{client_id}-{}", uuid::Uuid::new_v4())
    }

    /// Runs `f` on the group, creating it (Empty) if `create`. `None` if it does not exist.
    pub fn with_group<R>(&self, group_id: &str, create: bool, f: impl FnOnce(&mut Group) -> R) -> Option<R> {
        let (result, events) = {
            let mut groups = self.groups.borrow_mut();
            if create && !groups.contains_key(group_id) {
                groups.insert(group_id.to_string(), Group::new(group_id, now_ms()));
            }
            let group = groups.get_mut(group_id)?;
            let result = f(group);
            debug_assert!(group.check_invariants(), "group {group_id} broke an invariant");
            (result, group.take_events())
        };
        self.handle_events(group_id, events);
        Some(result)
    }

    /// Read-only view of every group.
    pub fn for_each_group(&self, mut f: impl FnMut(&Group)) {
        for g in self.groups.borrow().values() {
            f(g);
        }
    }

    fn handle_events(&self, group_id: &str, events: Vec<GroupEvent>) {
        for event in events {
            match event {
                GroupEvent::Join { member_id, result } => {
                    if let Some(tx) = self.join_waiters.borrow_mut().remove(&(group_id.to_string(), member_id)) {
                        let _ = tx.send(result);
                    }
                }
                GroupEvent::Sync { member_id, result } => {
                    if let Some(tx) = self.sync_waiters.borrow_mut().remove(&(group_id.to_string(), member_id)) {
                        let _ = tx.send(result);
                    }
                }
                GroupEvent::Persist => self.persist_group(group_id),
                GroupEvent::Stabilized { generation_id, member_count, rebalance_ms, since_joined_ms } => {
                    tracing::info!(
                        group = group_id,
                        generation_id,
                        members = member_count,
                        rebalance_ms,
                        since_joined_ms,
                        "group rebalanced"
                    );
                }
            }
        }
    }

    fn group_value(&self, group_id: &str) -> Option<GroupValue> {
        let groups = self.groups.borrow();
        let g = groups.get(group_id)?;
        Some(GroupValue {
            v: 0,
            protocol_type: g.protocol_type().map(str::to_string),
            generation_id: g.generation_id(),
            protocol_name: g.protocol_name().map(str::to_string),
            leader_id: g.leader_id().map(str::to_string),
            members: g.members().map(MemberValue::from_member).collect(),
        })
    }

    /// Writes the group's membership record in the background (membership is advisory:
    /// members rejoin if it is lost; offsets are what must be durable).
    fn persist_group(&self, group_id: &str) {
        let Some(value) = self.group_value(group_id) else { return };
        self.persisted.borrow_mut().insert(group_id.to_string());
        let record = LogRecord::group(group_id, Some(&value));
        let partition = self.partition_of(group_id);
        let ctx = self.ctx.clone();
        let creating = self.creating_partition.clone();
        let group_id = group_id.to_string();
        glommio::spawn_local(async move {
            if let Err(e) = offsets_log::append(&ctx, &creating, partition, &[record]).await {
                sluice_engine::warn_limited!(group = %group_id, error = %e, "could not persist group metadata");
            }
        })
        .detach();
    }

    pub fn partition_of(&self, group_id: &str) -> i32 {
        partition_for(group_id, self.config.offsets_topic_num_partitions)
    }

    /// Appends records of `group_id`'s partition; returns once they are on file.
    pub async fn append(&self, group_id: &str, records: &[LogRecord]) -> Result<(), String> {
        let partition = self.partition_of(group_id);
        offsets_log::append(&self.ctx, &self.creating_partition, partition, records).await
    }

    /// JoinGroup on this shard; waits for the rebalance when the member must.
    pub async fn join(self: &Rc<Self>, group_id: &str, req: JoinRequest) -> JoinResult {
        let now = now_ms();
        let fallback_member = req.member_id.clone();
        if let Some(code) = self.take_over_from_consumer_group(group_id) {
            return JoinResult::error(code, &fallback_member);
        }
        let (reply, events) = {
            let mut groups = self.groups.borrow_mut();
            let group = groups.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id, now));
            let reply = group.join(now, &self.config, req);
            debug_assert!(group.check_invariants());
            (reply, group.take_events())
        };
        let waiter = match reply {
            Reply::Now(result) => {
                self.handle_events(group_id, events);
                // A refused first join must not leave an empty group behind.
                let disposable = self.groups.borrow().get(group_id).is_some_and(Group::is_disposable);
                if disposable && !self.persisted.borrow().contains(group_id) {
                    self.groups.borrow_mut().remove(group_id);
                }
                return result;
            }
            Reply::Pending { member_id } => {
                let (tx, rx) = oneshot::channel();
                self.join_waiters.borrow_mut().insert((group_id.to_string(), member_id), tx);
                rx
            }
        };
        self.handle_events(group_id, events);
        // A waiter replaced by the same member's newer JoinGroup is told to rejoin.
        waiter.await.unwrap_or_else(|_| JoinResult::error(codes::REBALANCE_IN_PROGRESS, &fallback_member))
    }

    /// SyncGroup on this shard; a follower waits for the leader's assignment.
    #[allow(clippy::too_many_arguments)]
    pub async fn sync(
        self: &Rc<Self>,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, bytes::Bytes)>,
    ) -> SyncResult {
        let now = now_ms();
        let (reply, events) = {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(group_id) else { return SyncResult::error(codes::UNKNOWN_MEMBER_ID) };
            let reply =
                group.sync(now, member_id, instance_id, generation_id, protocol_type, protocol_name, assignments);
            (reply, group.take_events())
        };
        let waiter = match reply {
            Reply::Now(result) => {
                self.handle_events(group_id, events);
                return result;
            }
            Reply::Pending { member_id } => {
                let (tx, rx) = oneshot::channel();
                self.sync_waiters.borrow_mut().insert((group_id.to_string(), member_id), tx);
                rx
            }
        };
        self.handle_events(group_id, events);
        waiter.await.unwrap_or_else(|_| SyncResult::error(codes::REBALANCE_IN_PROGRESS))
    }

    /// Validates a commit, writes it, and applies it once it is on file. Returns the error
    /// for the whole request, if any.
    #[allow(clippy::too_many_arguments)]
    pub async fn commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        missing_group_error: i16,
        version: i16,
        commits: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<(), i16> {
        let now = now_ms();
        let consumer_check =
            self.consumer_groups.borrow().get(group_id).map(|g| g.validate_offset_commit(member_id, generation_id));
        if let Some(check) = consumer_check {
            // KIP-848: generation_id_or_member_epoch is the member epoch, and members of the
            // consumer protocol commit with v9+.
            check?;
            let is_member = self.consumer_groups.borrow().get(group_id).is_some_and(|g| g.member(member_id).is_some());
            if is_member && version < 9 {
                return Err(codes::UNSUPPORTED_VERSION);
            }
        } else {
            let exists = self.groups.borrow().contains_key(group_id);
            if !exists && generation_id >= 0 {
                return Err(missing_group_error);
            }
            self.with_group(group_id, true, |g| g.validate_offset_commit(now, member_id, instance_id, generation_id))
                .unwrap_or(Err(codes::COORDINATOR_NOT_AVAILABLE))?;
        }
        let records: Vec<LogRecord> =
            commits.iter().map(|(t, p, c)| LogRecord::offset(group_id, t, *p, Some(c))).collect();
        let partition = self.partition_of(group_id);
        let leadership = self.coordinated.borrow().get(&partition).copied();
        if let Err(e) = self.append(group_id, &records).await {
            sluice_engine::warn_limited!(group = group_id, error = %e, "offset commit not written");
            return Err(codes::COORDINATOR_NOT_AVAILABLE);
        }
        if self.coordinated.borrow().get(&partition).copied() != leadership {
            // Unloaded (and maybe reloaded) while the record was replicated: the group is the
            // new coordinator's.
            return Err(codes::NOT_COORDINATOR);
        }
        self.with_group(group_id, true, |g| {
            for (topic, partition, committed) in commits {
                g.apply_commit(&topic, partition, committed);
            }
        });
        Ok(())
    }

    /// Deletes committed offsets (tombstones first, then memory).
    pub async fn delete_offsets(&self, group_id: &str, partitions: &[(String, i32)]) -> Result<(), i16> {
        let records: Vec<LogRecord> =
            partitions.iter().map(|(t, p)| LogRecord::offset(group_id, t, *p, None)).collect();
        self.append(group_id, &records).await.map_err(|_| codes::COORDINATOR_NOT_AVAILABLE)?;
        self.with_group(group_id, false, |g| {
            for (t, p) in partitions {
                g.remove_offset(t, *p);
            }
        });
        Ok(())
    }

    /// A deleted topic's committed offsets leave every group this shard coordinates, as in
    /// Kafka (`onPartitionsDeleted`): memory first, so a topic of the same name created later
    /// starts with no offsets, then one tombstone per offset, written in the background (the
    /// metadata command that deleted the topic must not wait on `__consumer_offsets`). Pending
    /// transactional offsets of the topic are dropped too. A group left with nothing goes at
    /// the next retention check, as any empty group.
    pub fn forget_deleted_topic(self: &Rc<Self>, topic: &str) {
        let mut tombstones: Vec<(String, Vec<LogRecord>)> = Vec::new();
        for (group_id, group) in self.groups.borrow_mut().iter_mut() {
            let partitions: Vec<i32> = group.offsets().keys().filter(|(t, _)| t == topic).map(|(_, p)| *p).collect();
            for p in &partitions {
                let removed = group.remove_offset(topic, *p);
                debug_assert!(removed);
            }
            if !partitions.is_empty() {
                let records = partitions.iter().map(|p| LogRecord::offset(group_id, topic, *p, None)).collect();
                tombstones.push((group_id.clone(), records));
            }
        }
        for pending in self.txn_offsets.borrow_mut().values_mut() {
            pending.remove_topic(topic);
        }
        for (group_id, records) in tombstones {
            tracing::info!(group = %group_id, topic, offsets = records.len(), "committed offsets of a deleted topic removed");
            let shard = self.clone();
            glommio::spawn_local(async move {
                if let Err(e) = shard.append(&group_id, &records).await {
                    sluice_engine::warn_limited!(group = %group_id, error = %e, "tombstones for a deleted topic's offsets not written");
                }
            })
            .detach();
        }
    }

    /// Deletes an empty group with its offsets (DeleteGroups).
    pub async fn delete_group(&self, group_id: &str) -> i16 {
        let consumer_empty = self.consumer_groups.borrow().get(group_id).map(ConsumerGroup::is_empty);
        match consumer_empty {
            Some(false) => return codes::NON_EMPTY_GROUP,
            Some(true) => {
                self.remove_consumer_group(group_id);
                if !self.groups.borrow().contains_key(group_id) {
                    return codes::NONE;
                }
            }
            None => {}
        }
        let check = self.with_group(group_id, false, |g| {
            if g.member_count() > 0 || g.state() != super::coordinator::GroupState::Empty {
                Err(codes::NON_EMPTY_GROUP)
            } else {
                Ok(g.offsets().keys().cloned().collect::<Vec<_>>())
            }
        });
        let partitions = match check {
            None => return codes::GROUP_ID_NOT_FOUND,
            Some(Err(code)) => return code,
            Some(Ok(p)) => p,
        };
        let mut records: Vec<LogRecord> =
            partitions.iter().map(|(t, p)| LogRecord::offset(group_id, t, *p, None)).collect();
        records.push(LogRecord::group(group_id, None));
        if self.append(group_id, &records).await.is_err() {
            return codes::COORDINATOR_NOT_AVAILABLE;
        }
        self.groups.borrow_mut().remove(group_id);
        self.persisted.borrow_mut().remove(group_id);
        codes::NONE
    }

    async fn run_timer(self: Rc<Self>) {
        let mut last_retention_check_ms = now_ms();
        loop {
            glommio::timer::sleep(Duration::from_millis(TICK_INTERVAL_MS)).await;
            let now = now_ms();
            let due: Vec<String> = self
                .groups
                .borrow()
                .iter()
                .filter(|(_, g)| g.next_deadline_ms().is_some_and(|d| d <= now))
                .map(|(id, _)| id.clone())
                .collect();
            for id in due {
                self.with_group(&id, false, |g| g.tick(now, &self.config));
            }
            let due: Vec<String> = self
                .consumer_groups
                .borrow()
                .iter()
                .filter(|(_, g)| g.next_deadline_ms().is_some_and(|d| d <= now))
                .map(|(id, _)| id.clone())
                .collect();
            if !due.is_empty() {
                let topics = self.topics_image();
                for id in due {
                    self.with_consumer_group(&id, |g| {
                        g.tick(now, &self.config.consumer, &topics);
                    });
                }
            }
            if now.saturating_sub(last_retention_check_ms) >= self.config.offsets_retention_check_interval_ms {
                last_retention_check_ms = now;
                self.expire_offsets(now).await;
            }
        }
    }

    /// `offsets.retention.minutes`: drops expired offsets of empty groups, then groups left
    /// with nothing (classic and consumer-protocol ones).
    pub async fn expire_offsets(&self, now: u64) {
        let expired: Vec<(String, Vec<(String, i32)>)> = self
            .groups
            .borrow()
            .iter()
            .map(|(id, g)| (id.clone(), g.expired_offsets(now, self.config.offsets_retention_ms)))
            .filter(|(_, e)| !e.is_empty())
            .collect();
        for (group_id, partitions) in expired {
            if self.delete_offsets(&group_id, &partitions).await.is_ok() {
                tracing::info!(group = %group_id, expired = partitions.len(), "committed offsets expired");
            }
        }
        let disposable: Vec<String> =
            self.groups.borrow().iter().filter(|(_, g)| g.is_disposable()).map(|(id, _)| id.clone()).collect();
        for group_id in disposable {
            if self.persisted.borrow().contains(&group_id) {
                if self.append(&group_id, &[LogRecord::group(&group_id, None)]).await.is_err() {
                    continue;
                }
                self.persisted.borrow_mut().remove(&group_id);
            }
            let still = self.groups.borrow().get(&group_id).is_some_and(Group::is_disposable);
            if still {
                self.groups.borrow_mut().remove(&group_id);
            }
        }
        // Empty consumer-protocol groups without offsets go too (Kafka's cleanup cycle).
        let empty: Vec<String> = self
            .consumer_groups
            .borrow()
            .iter()
            .filter(|(id, g)| g.is_empty() && !self.groups.borrow().contains_key(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for group_id in empty {
            self.remove_consumer_group(&group_id);
            tracing::info!(group = %group_id, "empty consumer group without offsets deleted");
        }
    }

    /// ConsumerGroupHeartbeat on this shard. A classic group with members keeps its id
    /// (GROUP_ID_NOT_FOUND, as Kafka answers without a mixed group); an empty one becomes a
    /// consumer group (its offsets stay).
    /// The answer goes out once the changes it made (a new member, epoch or assignment) are on
    /// file, like Kafka's: a member never holds an epoch its next coordinator would not know.
    pub async fn consumer_heartbeat(&self, group_id: &str, req: ConsumerHeartbeat) -> ConsumerHeartbeatResponse {
        let exists = self.consumer_groups.borrow().contains_key(group_id);
        if !exists {
            let classic_busy = self
                .groups
                .borrow()
                .get(group_id)
                .is_some_and(|g| g.member_count() > 0 || g.state() != super::coordinator::GroupState::Empty);
            if classic_busy {
                return ConsumerHeartbeatResponse::error(
                    codes::GROUP_ID_NOT_FOUND,
                    format!("Group {group_id} is not a consumer group."),
                );
            }
            if req.member_epoch != 0 {
                // Unknown here (e.g. its coordinator moved without its records): the member
                // rejoins.
                return ConsumerHeartbeatResponse::error(
                    codes::UNKNOWN_MEMBER_ID,
                    format!("Consumer group {group_id} not found."),
                );
            }
            self.consumer_groups.borrow_mut().insert(group_id.to_string(), ConsumerGroup::new(group_id));
        }
        let topics = self.topics_image();
        let now = now_ms();
        let partition = self.partition_of(group_id);
        let leadership = self.coordinated.borrow().get(&partition).copied();
        let Some((response, written)) =
            self.with_consumer_group_written(group_id, |g| g.heartbeat(now, &self.config.consumer, &topics, req))
        else {
            return ConsumerHeartbeatResponse::error(codes::COORDINATOR_NOT_AVAILABLE, "group gone");
        };
        if let Some(written) = written {
            match written.await {
                Ok(Ok(())) => {}
                _ => {
                    return ConsumerHeartbeatResponse::error(
                        codes::COORDINATOR_NOT_AVAILABLE,
                        "group state not written",
                    )
                }
            }
            if self.coordinated.borrow().get(&partition).copied() != leadership {
                return ConsumerHeartbeatResponse::error(codes::NOT_COORDINATOR, "the coordinator moved");
            }
        }
        response
    }

    /// Runs `f` on a consumer group and handles its events (its records are written in the
    /// background).
    pub fn with_consumer_group<R>(&self, group_id: &str, f: impl FnOnce(&mut ConsumerGroup) -> R) -> Option<R> {
        self.with_consumer_group_written(group_id, f).map(|(r, _)| r)
    }

    /// [`GroupShard::with_consumer_group`], also returning when the records of its changes
    /// are on file (`None`: nothing to write).
    fn with_consumer_group_written<R>(
        &self,
        group_id: &str,
        f: impl FnOnce(&mut ConsumerGroup) -> R,
    ) -> Option<(R, Option<Written>)> {
        let (result, events, changes) = {
            let mut groups = self.consumer_groups.borrow_mut();
            let group = groups.get_mut(group_id)?;
            let result = f(group);
            let events = group.take_events();
            let changed = events.contains(&ConsumerGroupEvent::Changed);
            (result, events, changed.then(|| group.take_changes()))
        };
        for event in events {
            if let ConsumerGroupEvent::Removed { member_id, why } = event {
                tracing::info!(group = group_id, member = %member_id, ?why, "consumer group member removed");
            }
        }
        let written = changes.filter(|c| !c.is_empty()).map(|changes| {
            self.write_consumer_records(group_id, LogRecord::consumer_group_changes(group_id, &changes))
        });
        Some((result, written))
    }

    /// Kafka's OffsetFetch member check (v9+): only consumer-protocol groups check it.
    pub fn validate_offset_fetch(&self, group_id: &str, member_id: Option<&str>, member_epoch: i32) -> Result<(), i16> {
        match self.consumer_groups.borrow().get(group_id) {
            Some(g) => g.validate_offset_fetch(member_id, member_epoch),
            None => Ok(()),
        }
    }

    /// Read-only view of every consumer-protocol group.
    pub fn for_each_consumer_group(&self, mut f: impl FnMut(&ConsumerGroup)) {
        for g in self.consumer_groups.borrow().values() {
            f(g);
        }
    }

    /// Runs `f` on a consumer group if `group_id` is one.
    pub fn consumer_group<R>(&self, group_id: &str, f: impl FnOnce(&ConsumerGroup) -> R) -> Option<R> {
        self.consumer_groups.borrow().get(group_id).map(f)
    }

    /// A classic JoinGroup for an id that is a consumer group: refused while it has members
    /// (INCONSISTENT_GROUP_PROTOCOL: sluice has no mixed groups), converted when it is empty.
    fn take_over_from_consumer_group(&self, group_id: &str) -> Option<i16> {
        let empty = self.consumer_groups.borrow().get(group_id).map(ConsumerGroup::is_empty)?;
        if !empty {
            return Some(codes::INCONSISTENT_GROUP_PROTOCOL);
        }
        self.remove_consumer_group(group_id);
        tracing::info!(group = group_id, "empty consumer group converted to a classic group");
        None
    }

    /// Queues a consumer group's records for writing, after every batch queued before; the
    /// receiver learns when they are on file.
    fn write_consumer_records(&self, group_id: &str, records: Vec<LogRecord>) -> Written {
        let (tx, rx) = oneshot::channel();
        let write = ConsumerWrite {
            group_id: group_id.to_string(),
            partition: self.partition_of(group_id),
            records,
            done: Some(tx),
        };
        self.consumer_writes.queue.borrow_mut().push_back(write);
        if !self.consumer_writes.writing.replace(true) {
            let writes = self.consumer_writes.clone();
            let ctx = self.ctx.clone();
            let creating = self.creating_partition.clone();
            glommio::spawn_local(async move {
                loop {
                    let next = writes.queue.borrow_mut().pop_front();
                    let Some(mut w) = next else { break };
                    let result = offsets_log::append(&ctx, &creating, w.partition, &w.records).await;
                    if let Err(e) = &result {
                        sluice_engine::warn_limited!(group = %w.group_id, error = %e, "could not persist consumer group records");
                    }
                    if let Some(done) = w.done.take() {
                        let _ = done.send(result);
                    }
                }
                writes.writing.set(false);
            })
            .detach();
        }
        rx
    }

    /// Drops a consumer group and writes the deletion of its records.
    fn remove_consumer_group(&self, group_id: &str) {
        let Some(mut group) = self.consumer_groups.borrow_mut().remove(group_id) else { return };
        let mut records = LogRecord::consumer_group_changes(group_id, &group.take_tombstones());
        records.push(LogRecord::consumer_group_tombstone(group_id));
        drop(self.write_consumer_records(group_id, records));
    }

    /// The topics consumer groups may subscribe to (internal ones left out), cached per
    /// metadata image version.
    pub fn topics_image(&self) -> Rc<TopicsImage> {
        let image = self.ctx.image.borrow();
        if self.topics.borrow().version == image.version {
            return self.topics.borrow().clone();
        }
        let topics = image
            .topics
            .iter()
            .filter(|(name, _)| !crate::topic_name::is_internal(name))
            .map(|(name, t)| (name.clone(), TopicInfo { id: t.id, partitions: t.partitions }))
            .collect();
        let fresh = Rc::new(TopicsImage { version: image.version, topics });
        *self.topics.borrow_mut() = fresh.clone();
        fresh
    }
}
