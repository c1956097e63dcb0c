//! The glommio edge of the transaction coordinator on one shard: the shard's [`Txn`]s, writes
//! to `__transaction_state`, the markers that end a transaction, the timer that aborts
//! timed-out transactions and expires idle ids, and replay at start-up.
//!
//! Owns: every transactional id whose `__transaction_state` partition this shard owns and this
//! node leads (requests for an id run here, sent by [`on_txn_shard`] through the shard mesh),
//! and carrying out the state machine's [`Decision`]s. A partition's ids are loaded from its
//! log when this node becomes its leader and dropped when it stops leading
//! ([`TxnShard::reconcile`]); the leader epoch it was loaded at is the coordinator epoch its
//! markers carry, so a deposed coordinator's markers are refused. Markers go to data partitions through
//! [`write_txn_markers`] and to `__consumer_offsets` partitions through the group coordinator
//! ([`GroupShard::complete_txn_offsets`]); both are retried until every partition answered.
//!
//! Must never: hold a `RefCell` borrow across an `.await`, touch another shard's ids, or apply
//! a transition before its record is on file.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use sluice_engine::error_code::ErrorCode;
use sluice_engine::shard::ShardGone;

use super::coordinator::{Decision, PartitionErrors, Txn, TxnMetadata, TxnState};
use super::state_log::{self, partition_for, TXN_STATE_TOPIC};
use super::{codes, TxnConfig};
use crate::group::service::now_ms;
use crate::shard_context::ShardContext;
use crate::txn_markers::complete_transaction;

/// First and longest wait between rounds of marker writes that did not all succeed.
const MARKER_RETRY_MIN_MS: u64 = 50;
const MARKER_RETRY_MAX_MS: u64 = 2_000;

/// One shard's transactional ids. See the module docs.
pub struct TxnShard {
    pub config: TxnConfig,
    txns: RefCell<HashMap<String, Txn>>,
    /// Serializes creation of this shard's `__transaction_state` partitions on first use.
    creating_partition: Rc<glommio::sync::Semaphore>,
    /// The `__transaction_state` partitions this shard coordinates, with the leader epoch it
    /// loaded them at (the coordinator epoch); and those being loaded.
    coordinated: RefCell<BTreeMap<i32, i32>>,
    loading: RefCell<HashSet<i32>>,
    /// One [`TxnShard::reconcile`] at a time.
    reconciling: glommio::sync::Semaphore,
    ctx: Rc<ShardContext>,
}

thread_local! {
    static TXN_SHARD: RefCell<Option<Rc<TxnShard>>> = const { RefCell::new(None) };
}

/// The shard that coordinates `transactional_id`.
pub fn coordinator_shard(ctx: &ShardContext, transactional_id: &str) -> usize {
    let partition = partition_for(transactional_id, ctx.config.txn.state_log_num_partitions);
    ctx.owner_of(TXN_STATE_TOPIC, partition)
}

/// Runs `f` with the shard that owns `transactional_id`. Errors: COORDINATOR_LOAD_IN_PROGRESS
/// while that shard is still replaying the id's state partition, NOT_COORDINATOR when this
/// node does not lead it, COORDINATOR_NOT_AVAILABLE if the shard is gone.
pub async fn on_txn_shard<R, F, Fut>(ctx: &ShardContext, transactional_id: &str, f: F) -> Result<R, i16>
where
    R: Send + 'static,
    F: FnOnce(Rc<TxnShard>) -> Fut + Send + 'static,
    Fut: Future<Output = R> + 'static,
{
    let shard = coordinator_shard(ctx, transactional_id);
    let partition = partition_for(transactional_id, ctx.config.txn.state_log_num_partitions);
    let answer = ctx
        .mesh
        .call(shard, move || async move {
            match TxnShard::try_current() {
                Some(txns) if txns.loading.borrow().contains(&partition) => Err(codes::COORDINATOR_LOAD_IN_PROGRESS),
                Some(txns) if !txns.coordinated.borrow().contains_key(&partition) => Err(codes::NOT_COORDINATOR),
                Some(txns) => Ok(f(txns).await),
                None => Err(codes::COORDINATOR_LOAD_IN_PROGRESS),
            }
        })
        .await;
    answer.map_err(|_: ShardGone| codes::COORDINATOR_NOT_AVAILABLE).and_then(|r| r)
}

/// What DescribeTransactions and ListTransactions show of an id.
#[derive(Clone, Debug)]
pub struct TxnView {
    pub id: String,
    pub meta: TxnMetadata,
}

impl TxnShard {
    pub fn try_current() -> Option<Rc<TxnShard>> {
        TXN_SHARD.with(|t| t.borrow().clone())
    }

    /// Installs the shard's coordinator, loads the `__transaction_state` partitions this node
    /// leads ([`TxnShard::reconcile`], resuming the markers of transactions that were ending)
    /// and starts its timer. Runs after the group coordinator started (markers into
    /// `__consumer_offsets` need it) and before the shard serves requests.
    pub async fn start(ctx: Rc<ShardContext>) -> Result<(), String> {
        let shard = Rc::new(TxnShard {
            config: ctx.config.txn.clone(),
            txns: RefCell::new(HashMap::new()),
            creating_partition: Rc::new(glommio::sync::Semaphore::new(1)),
            coordinated: RefCell::new(BTreeMap::new()),
            loading: RefCell::new(HashSet::new()),
            reconciling: glommio::sync::Semaphore::new(1),
            ctx: ctx.clone(),
        });
        TXN_SHARD.with(|t| *t.borrow_mut() = Some(shard.clone()));
        shard.reconcile().await?;
        glommio::spawn_local(shard.clone().run_timer()).detach();
        Ok(())
    }

    /// Brings the coordinated partitions in line with leadership (see
    /// [`crate::group::service::GroupShard::reconcile`], which this mirrors). Called at
    /// start-up and after every applied metadata command.
    pub async fn reconcile(self: &Rc<Self>) -> Result<(), String> {
        let _one_at_a_time = self.reconciling.acquire_permit(1).await.map_err(|e| e.to_string())?;
        let changes = self.ctx.coordination_changes(
            TXN_STATE_TOPIC,
            self.config.state_log_num_partitions,
            &self.coordinated.borrow(),
        );
        ShardContext::apply_coordination_changes(
            changes,
            |p| self.unload(p),
            async |p, epoch| self.load(p, epoch).await,
        )
        .await
    }

    /// Replays one partition's log (if this node has it) into its ids and resumes the markers
    /// of those that were ending.
    async fn load(self: &Rc<Self>, partition: i32, leader_epoch: i32) -> Result<(), String> {
        self.loading.borrow_mut().insert(partition);
        let replayed = match self.ctx.storage.partition(TXN_STATE_TOPIC, partition) {
            Some(log) => state_log::replay(&log).await,
            None => Ok(Default::default()),
        };
        self.loading.borrow_mut().remove(&partition);
        let mut ending = Vec::new();
        let mut loaded = 0usize;
        for (id, meta) in replayed? {
            if matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
                ending.push(id.clone());
            }
            let txn = Txn::restore(&id, meta);
            debug_assert!(txn.check_invariants(), "replayed txn {id} breaks an invariant");
            self.txns.borrow_mut().insert(id, txn);
            loaded += 1;
        }
        self.coordinated.borrow_mut().insert(partition, leader_epoch);
        if loaded > 0 || self.ctx.is_clustered() {
            tracing::info!(
                shard = self.ctx.shard,
                partition,
                leader_epoch,
                transactional_ids = loaded,
                ending = ending.len(),
                "transactions loaded"
            );
        }
        for id in ending {
            glommio::spawn_local(self.clone().finish(id)).detach();
        }
        Ok(())
    }

    /// Drops the ids of a partition this node no longer leads (their marker writers stop at
    /// their next round: [`TxnShard::finish`] finds the id gone).
    fn unload(&self, partition: i32) {
        self.coordinated.borrow_mut().remove(&partition);
        let before = self.txns.borrow().len();
        self.txns.borrow_mut().retain(|id, _| self.partition_of(id) != partition);
        let dropped = before - self.txns.borrow().len();
        tracing::info!(
            shard = self.ctx.shard,
            partition,
            transactional_ids = dropped,
            "transactions unloaded: not the leader"
        );
    }

    /// The coordinator epoch of `partition`'s ids: the leader epoch this node loaded it at.
    fn coordinator_epoch(&self, partition: i32) -> Option<i32> {
        self.coordinated.borrow().get(&partition).copied()
    }

    pub fn partition_of(&self, transactional_id: &str) -> i32 {
        partition_for(transactional_id, self.config.state_log_num_partitions)
    }

    /// Runs `f` on the id's state machine; `None` if the id is unknown.
    fn with_txn<R>(&self, id: &str, f: impl FnOnce(&mut Txn) -> R) -> Option<R> {
        let mut txns = self.txns.borrow_mut();
        let txn = txns.get_mut(id)?;
        let result = f(txn);
        debug_assert!(txn.check_invariants(), "txn {id} broke an invariant");
        Some(result)
    }

    /// A view of one id.
    pub fn describe(&self, id: &str) -> Option<TxnView> {
        self.txns.borrow().get(id).map(|t| TxnView { id: id.to_string(), meta: t.meta().clone() })
    }

    /// A view of every id on this shard.
    pub fn list(&self) -> Vec<TxnView> {
        self.txns.borrow().values().map(|t| TxnView { id: t.id.clone(), meta: t.meta().clone() }).collect()
    }

    /// Appends the id's pending transition and applies it once on file (a Dead target writes a
    /// tombstone and drops the id).
    async fn write_pending(&self, id: &str) -> Result<(), i16> {
        let Some(Some(target)) = self.with_txn(id, |t| t.pending_target().cloned()) else {
            return Err(codes::COORDINATOR_NOT_AVAILABLE);
        };
        let dead = target.state == TxnState::Dead;
        let partition = self.partition_of(id);
        let value = (!dead).then_some(&target);
        let leadership = self.coordinator_epoch(partition);
        let written = state_log::append(&self.ctx, &self.creating_partition, partition, id, value).await;
        if self.coordinator_epoch(partition) != leadership {
            // The partition changed hands while the record was being replicated: this shard's
            // view of the id was dropped (and maybe reloaded from the log); the client retries
            // with the coordinator that leads now.
            return Err(codes::NOT_COORDINATOR);
        }
        match written {
            Ok(()) => {
                if dead {
                    self.txns.borrow_mut().remove(id);
                } else {
                    self.with_txn(id, Txn::complete_write);
                }
                Ok(())
            }
            Err(e) => {
                sluice_engine::warn_limited!(transactional_id = id, error = %e, "transaction state not written");
                let persisted = self.with_txn(id, |t| {
                    t.abort_write();
                    t.is_persisted()
                });
                if persisted == Some(false) {
                    self.txns.borrow_mut().remove(id);
                }
                Err(codes::COORDINATOR_NOT_AVAILABLE)
            }
        }
    }

    /// Carries out a decision: writes its transition, starts the markers if it asks, answers.
    async fn run<T>(self: &Rc<Self>, id: &str, decision: Decision<T>) -> Result<T, i16> {
        match decision {
            Decision::Answer(answer) => answer,
            Decision::NeedProducerId => Err(codes::COORDINATOR_NOT_AVAILABLE),
            Decision::Write { reply, then_markers } => {
                self.write_pending(id).await?;
                if then_markers {
                    glommio::spawn_local(self.clone().finish(id.to_string())).detach();
                }
                reply
            }
        }
    }

    /// InitProducerId with a transactional id: a new id gets a producer id from the controller;
    /// a known one gets its epoch bumped (or is fenced and its open transaction aborted).
    pub async fn init_producer_id(
        self: &Rc<Self>,
        id: &str,
        timeout_ms: u64,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), i16> {
        let mut fresh: Option<i64> = None;
        // At most two rounds: one that asks for a producer id, one that uses it.
        for _ in 0..2 {
            let now = now_ms();
            let decision = {
                let mut txns = self.txns.borrow_mut();
                match (txns.get_mut(id), fresh) {
                    (Some(txn), _) => txn.init_producer_id(now, timeout_ms, expected, fresh),
                    (None, None) => Decision::NeedProducerId,
                    (None, Some(pid)) => {
                        let mut txn = Txn::new(id, pid, timeout_ms, now);
                        let decision = txn.init_producer_id(now, timeout_ms, None, None);
                        txns.insert(id.to_string(), txn);
                        decision
                    }
                }
            };
            match decision {
                Decision::NeedProducerId => match crate::controller::allocate_producer_id().await {
                    Ok(pid) => fresh = Some(pid),
                    Err(e) => {
                        sluice_engine::warn_limited!(code = e.code, message = %e.message, "producer id allocation failed");
                        return Err(codes::COORDINATOR_NOT_AVAILABLE);
                    }
                },
                decision => return self.run(id, decision).await,
            }
        }
        Err(codes::CONCURRENT_TRANSACTIONS)
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn, or (`verify_only`) the check of KIP-890.
    pub async fn add_partitions(
        self: &Rc<Self>,
        id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
        verify_only: bool,
    ) -> Result<PartitionErrors, i16> {
        let now = now_ms();
        let decision = self
            .with_txn(id, |t| t.add_partitions(now, producer_id, producer_epoch, &partitions, verify_only))
            .unwrap_or(Decision::Answer(Err(codes::INVALID_PRODUCER_ID_MAPPING)));
        self.run(id, decision).await
    }

    /// EndTxn: answers once the Prepare record is on file; the markers follow.
    pub async fn end_txn(
        self: &Rc<Self>,
        id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) -> Result<(), i16> {
        let now = now_ms();
        let decision = self
            .with_txn(id, |t| t.end_txn(now, producer_id, producer_epoch, commit))
            .unwrap_or(Decision::Answer(Err(codes::INVALID_PRODUCER_ID_MAPPING)));
        self.run(id, decision).await
    }

    /// Writes the markers of an id in PrepareCommit/PrepareAbort into every partition of its
    /// transaction (retrying those that failed), then completes the transaction.
    async fn finish(self: Rc<Self>, id: String) {
        if self.config.hold_markers {
            // The fault point: never, until the process dies.
            loop {
                glommio::timer::sleep(Duration::from_millis(MARKER_RETRY_MAX_MS)).await;
            }
        }
        let mut done: BTreeSet<(String, i32)> = BTreeSet::new();
        let mut backoff_ms = MARKER_RETRY_MIN_MS;
        loop {
            let Some(meta) = self.with_txn(&id, |t| t.meta().clone()) else { return };
            let commit = match meta.state {
                TxnState::PrepareCommit => true,
                TxnState::PrepareAbort => false,
                _ => return,
            };
            let pending: Vec<(String, i32)> = meta.partitions.iter().filter(|p| !done.contains(*p)).cloned().collect();
            // Deposed meanwhile: the new coordinator resumes the markers.
            let Some(coordinator_epoch) = self.coordinator_epoch(self.partition_of(&id)) else { return };
            let (pid, epoch) = (meta.producer_id, meta.producer_epoch);
            for (partition, code) in
                complete_transaction(&self.ctx, pid, epoch, coordinator_epoch, commit, pending).await
            {
                // A partition deleted meanwhile has nothing left to mark (Kafka drops it too).
                if code == ErrorCode::NONE || code == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION {
                    done.insert(partition);
                } else {
                    sluice_engine::warn_limited!(transactional_id = %id, topic = %partition.0, partition = partition.1, %code, "transaction marker not written; retrying");
                }
            }
            if meta.partitions.iter().all(|p| done.contains(p)) {
                match self.with_txn(&id, |t| t.begin_complete(now_ms())) {
                    Some(true) => {
                        if self.write_pending(&id).await.is_ok() {
                            let outcome = if commit { "committed" } else { "aborted" };
                            tracing::debug!(transactional_id = %id, partitions = meta.partitions.len(), "transaction {outcome}");
                            return;
                        }
                    }
                    _ => return,
                }
            }
            glommio::timer::sleep(Duration::from_millis(backoff_ms)).await;
            backoff_ms = (backoff_ms * 2).min(MARKER_RETRY_MAX_MS);
        }
    }

    async fn run_timer(self: Rc<Self>) {
        let mut last_expiry_check_ms = now_ms();
        loop {
            glommio::timer::sleep(Duration::from_millis(self.config.abort_timed_out_interval_ms)).await;
            let now = now_ms();
            self.abort_timed_out(now).await;
            if now.saturating_sub(last_expiry_check_ms) >= self.config.remove_expired_interval_ms {
                last_expiry_check_ms = now;
                self.expire_ids(now).await;
            }
        }
    }

    /// Aborts every transaction older than its timeout (fencing its producer).
    pub async fn abort_timed_out(self: &Rc<Self>, now: u64) {
        let due: Vec<String> =
            self.txns.borrow().values().filter(|t| t.is_timed_out(now)).map(|t| t.id.clone()).collect();
        for id in due {
            let Some(decision) = self.with_txn(&id, |t| t.abort_timed_out(now)) else { continue };
            if self.run(&id, decision).await.is_ok() {
                tracing::info!(transactional_id = %id, "transaction timed out: aborting it");
            }
        }
    }

    /// `transactional.id.expiration.ms`: forgets ids idle for longer (a tombstone first).
    pub async fn expire_ids(&self, now: u64) {
        let expiration_ms = self.config.id_expiration_ms;
        let due: Vec<String> =
            self.txns.borrow().values().filter(|t| t.is_expired(now, expiration_ms)).map(|t| t.id.clone()).collect();
        for id in due {
            if self.with_txn(&id, |t| t.begin_expire(now, expiration_ms)) == Some(true)
                && self.write_pending(&id).await.is_ok()
            {
                tracing::info!(transactional_id = %id, "transactional id expired");
            }
        }
    }
}
