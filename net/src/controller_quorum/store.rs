//! openraft's storage trait over the [`LogStore`] and the [`StateMachine`] (through openraft's
//! `Adaptor`, which splits one `RaftStorage` into its log and state-machine halves).
//!
//! Owns: the glue — storage errors become openraft's, applied commands go to the shards'
//! bridge in log order. Must never: hold a lock across an await, or answer an append before it
//! is fsynced.

use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogState, Snapshot};
use openraft::{
    BasicNode, Entry, LogId, RaftLogReader, RaftSnapshotBuilder, RaftStorage, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership, Vote,
};

use super::log_store::LogStore;
use super::state_machine::{Applied, Durable, StateMachine};
use super::{CommandOutcome, MetadataRaft};

type StorageResult<T> = Result<T, StorageError<u64>>;

/// Where applied commands go (the shards' bridge); bounded.
pub type AppliedSender = tokio::sync::mpsc::Sender<Applied>;

#[derive(Clone)]
pub struct Store {
    pub log: Arc<Mutex<LogStore>>,
    pub state: Arc<Mutex<StateMachine>>,
    pub applied: AppliedSender,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RaftLogReader<MetadataRaft> for Store {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<MetadataRaft>>> {
        Ok(lock(&self.log).range(range))
    }
}

impl RaftSnapshotBuilder<MetadataRaft> for Store {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<MetadataRaft>> {
        Ok(snapshot_of(&lock(&self.state)))
    }
}

/// The current state as a snapshot (the state machine is durable, so any moment's state is a
/// valid snapshot covering everything applied).
fn snapshot_of(state: &StateMachine) -> Snapshot<MetadataRaft> {
    let durable = &state.durable;
    let snapshot_id = format!(
        "{}-{}",
        durable.last_applied.map_or(0, |l| l.leader_id.term),
        durable.last_applied.map_or(0, |l| l.index)
    );
    Snapshot {
        meta: SnapshotMeta {
            last_log_id: durable.last_applied,
            last_membership: durable.membership.clone(),
            snapshot_id,
        },
        snapshot: Box::new(Cursor::new(state.snapshot_bytes())),
    }
}

impl RaftStorage<MetadataRaft> for Store {
    type LogReader = Store;
    type SnapshotBuilder = Store;

    async fn save_vote(&mut self, vote: &Vote<u64>) -> StorageResult<()> {
        lock(&self.log).save_vote(vote).map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<u64>>> {
        Ok(lock(&self.log).vote())
    }

    async fn get_log_state(&mut self) -> StorageResult<LogState<MetadataRaft>> {
        let log = lock(&self.log);
        Ok(LogState { last_purged_log_id: log.last_purged(), last_log_id: log.last_log_id() })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn append_to_log<I>(&mut self, entries: I) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<MetadataRaft>> + Send,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        lock(&self.log).append(entries).map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn delete_conflict_logs_since(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        lock(&self.log).truncate_since(log_id.index).map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge_logs_upto(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        lock(&self.log).purge_upto(log_id).map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn last_applied_state(&mut self) -> StorageResult<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>)> {
        let state = lock(&self.state);
        Ok((state.durable.last_applied, state.durable.membership.clone()))
    }

    async fn apply_to_state_machine(&mut self, entries: &[Entry<MetadataRaft>]) -> StorageResult<Vec<CommandOutcome>> {
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut for_shards = Vec::new();
        {
            let mut state = lock(&self.state);
            for entry in entries {
                let (outcome, applied) = state.apply(entry.log_id, &entry.payload);
                outcomes.push(outcome);
                for_shards.extend(applied);
            }
            state.persist().map_err(|e| StorageIOError::write_state_machine(&e))?;
        }
        for applied in for_shards {
            // The shards apply in this order; a full channel holds the state machine back
            // (the shards are behind), not the raft core.
            if self.applied.send(applied).await.is_err() {
                tracing::warn!("the shards' metadata bridge is gone (shutting down)");
            }
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let mut durable: Durable = serde_json::from_slice(snapshot.get_ref())
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        durable.last_applied = meta.last_log_id;
        durable.membership = meta.last_membership.clone();
        let applied = {
            let mut state = lock(&self.state);
            let applied = state.install(durable);
            state.persist().map_err(|e| StorageIOError::write_state_machine(&e))?;
            applied
        };
        tracing::info!(snapshot = %meta.snapshot_id, "installed a metadata snapshot from the leader");
        if let Some(applied) = applied {
            if self.applied.send(applied).await.is_err() {
                tracing::warn!("the shards' metadata bridge is gone (shutting down)");
            }
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<MetadataRaft>>> {
        Ok(Some(snapshot_of(&lock(&self.state))))
    }
}
