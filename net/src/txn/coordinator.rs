//! The transaction state machine of one transactional id, sans I/O: [`Txn`].
//!
//! Owns: Kafka's transaction states (Empty, Ongoing, PrepareCommit, PrepareAbort,
//! CompleteCommit, CompleteAbort, Dead, PrepareEpochFence), the producer id and epoch with the
//! previous ones (KIP-360 recovery), the timeout, the partitions of the open transaction and
//! its start time, and every decision of InitProducerId, AddPartitionsToTxn (and its
//! verify-only form), AddOffsetsToTxn, EndTxn, the timeout abort and id expiration, with
//! Kafka's error codes. Time is an input (`now_ms`); producer ids are handed in by the edge
//! when a decision asks for one ([`Decision::NeedProducerId`]).
//!
//! A state change is two-phase, like Kafka's `prepareTransitionTo`/`completeTransitionTo`: a
//! decision that changes state stores the target as *pending* and returns
//! [`Decision::Write`]; the edge appends [`Txn::pending_target`] to `__transaction_state` and
//! calls [`Txn::complete_write`] once it is on file (or [`Txn::abort_write`] if the append
//! failed). While a transition is pending every other request gets CONCURRENT_TRANSACTIONS, so
//! the log and the live state never disagree. A fence (InitProducerId over an open
//! transaction, or the timeout) shows as the pending state PrepareEpochFence and writes
//! PrepareAbort with the bumped epoch, as Kafka does; PrepareEpochFence itself is never written.
//!
//! Must never: do I/O, read a clock, or change [`Txn::meta`] except through
//! [`Txn::complete_write`] (so replaying the log gives exactly the live state).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::codes;

pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// Kafka's `isProducerEpochExhausted`: at `i16::MAX - 1` the next InitProducerId rotates to a
/// new producer id (one epoch is kept in reserve for a fence).
pub fn is_epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    /// Kafka's name (DescribeTransactions, ListTransactions).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// The state named `name` (case-insensitive, as ListTransactions filters are compared).
    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// No transaction open: a new one may begin.
    pub fn is_idle(self) -> bool {
        matches!(self, TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort)
    }
}

/// What `__transaction_state` records for one transactional id (Kafka's
/// `TransactionMetadata` without its pending state).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMetadata {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The producer id before the last rotation (KIP-360), -1 if none.
    pub last_producer_id: i64,
    /// The epoch before the last bump, -1 if none: an InitProducerId retry that names it gets
    /// the current epoch back instead of a fence.
    pub last_producer_epoch: i16,
    pub timeout_ms: u64,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    /// When the open (or last) transaction began, -1 if none ever did.
    pub txn_start_ms: i64,
    pub last_update_ms: u64,
}

/// A transition waiting for its record to be on file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// What the transition is, as reported: the target's state, or PrepareEpochFence.
    pub state: TxnState,
    pub target: TxnMetadata,
}

/// What the edge does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision<T> {
    /// Answer now; nothing changed.
    Answer(Result<T, i16>),
    /// Call again with a producer id fresh from the controller.
    NeedProducerId,
    /// Append [`Txn::pending_target`]; once on file call [`Txn::complete_write`] and answer
    /// `reply`, then, if `then_markers`, write the markers of the Prepare state just entered and
    /// call [`Txn::begin_complete`]. If the append fails call [`Txn::abort_write`] and answer
    /// COORDINATOR_NOT_AVAILABLE.
    Write { reply: Result<T, i16>, then_markers: bool },
}

/// Per-partition answers of AddPartitionsToTxn.
pub type PartitionErrors = Vec<((String, i32), i16)>;

/// One transactional id. See the module docs.
#[derive(Clone, Debug)]
pub struct Txn {
    pub id: String,
    meta: TxnMetadata,
    pending: Option<Pending>,
    /// Whether any record of this id is on file (a new id that failed its first write is
    /// dropped instead of tombstoned).
    persisted: bool,
}

impl Txn {
    /// A new id: producer id `producer_id`, no epoch yet (the first InitProducerId makes it 0).
    pub fn new(id: &str, producer_id: i64, timeout_ms: u64, now_ms: u64) -> Txn {
        Txn {
            id: id.to_string(),
            meta: TxnMetadata {
                producer_id,
                producer_epoch: NO_PRODUCER_EPOCH,
                last_producer_id: NO_PRODUCER_ID,
                last_producer_epoch: NO_PRODUCER_EPOCH,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                txn_start_ms: -1,
                last_update_ms: now_ms,
            },
            pending: None,
            persisted: false,
        }
    }

    /// An id as its last record left it.
    pub fn restore(id: &str, meta: TxnMetadata) -> Txn {
        Txn { id: id.to_string(), meta, pending: None, persisted: true }
    }

    pub fn meta(&self) -> &TxnMetadata {
        &self.meta
    }

    pub fn pending(&self) -> Option<&Pending> {
        self.pending.as_ref()
    }

    pub fn is_persisted(&self) -> bool {
        self.persisted
    }

    /// The record to append for the pending transition.
    pub fn pending_target(&self) -> Option<&TxnMetadata> {
        self.pending.as_ref().map(|p| &p.target)
    }

    /// The pending transition's record is on file: it becomes the state.
    pub fn complete_write(&mut self) {
        let pending = self.pending.take();
        assert!(pending.is_some(), "txn {}: complete_write without a pending transition", self.id);
        self.meta = pending.map(|p| p.target).unwrap_or_else(|| self.meta.clone());
        self.persisted = true;
    }

    /// The pending transition's record could not be written: nothing changed.
    pub fn abort_write(&mut self) {
        self.pending = None;
    }

    fn begin(&mut self, state: TxnState, target: TxnMetadata) {
        assert!(self.pending.is_none(), "txn {}: two transitions at once", self.id);
        self.pending = Some(Pending { state, target });
    }

    fn busy(&self) -> bool {
        self.pending.is_some()
            || matches!(
                self.meta.state,
                TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence | TxnState::Dead
            )
    }

    /// InitProducerId with this transactional id (Kafka's `handleInitProducerId`):
    /// `expected` is the KIP-360 (producer id, epoch) the client already has, if any.
    pub fn init_producer_id(
        &mut self,
        now_ms: u64,
        timeout_ms: u64,
        expected: Option<(i64, i16)>,
        fresh_producer_id: Option<i64>,
    ) -> Decision<(i64, i16)> {
        use Decision::Answer;
        if self.pending.is_some() {
            return Answer(Err(codes::CONCURRENT_TRANSACTIONS));
        }
        // A new id has nothing to recover: whatever the client had, it starts afresh.
        let expected = if self.persisted { expected } else { None };
        if let Some((pid, _)) = expected {
            if pid != self.meta.producer_id && pid != self.meta.last_producer_id {
                return Answer(Err(codes::PRODUCER_FENCED));
            }
        }
        let m = &self.meta;
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence | TxnState::Dead => {
                Answer(Err(codes::CONCURRENT_TRANSACTIONS))
            }
            // The previous incarnation left a transaction open: fence it (epoch + 1) and abort
            // its transaction; the client retries on CONCURRENT_TRANSACTIONS and then gets the
            // next epoch.
            TxnState::Ongoing => {
                self.begin_fence_abort(now_ms);
                Decision::Write { reply: Err(codes::CONCURRENT_TRANSACTIONS), then_markers: true }
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let idle = |producer_id, producer_epoch, last_producer_id, last_producer_epoch| TxnMetadata {
                    producer_id,
                    producer_epoch,
                    last_producer_id,
                    last_producer_epoch,
                    timeout_ms,
                    state: TxnState::Empty,
                    partitions: BTreeSet::new(),
                    txn_start_ms: -1,
                    last_update_ms: now_ms,
                };
                let target =
                    if is_epoch_exhausted(m.producer_epoch) && expected.is_none_or(|(_, e)| e == m.producer_epoch) {
                        let Some(new_pid) = fresh_producer_id else { return Decision::NeedProducerId };
                        let last_epoch = if expected.is_some() { m.producer_epoch } else { NO_PRODUCER_EPOCH };
                        idle(new_pid, 0, m.producer_id, last_epoch)
                    } else {
                        let bumped = m.producer_epoch + 1;
                        match expected {
                            None => idle(m.producer_id, bumped, m.last_producer_id, NO_PRODUCER_EPOCH),
                            Some((_, e)) if m.producer_epoch == NO_PRODUCER_EPOCH || e == m.producer_epoch => {
                                idle(m.producer_id, bumped, m.last_producer_id, m.producer_epoch)
                            }
                            // A retry of a bump that already happened: the same answer again.
                            Some((_, e)) if e == m.last_producer_epoch => {
                                idle(m.producer_id, m.producer_epoch, m.last_producer_id, m.last_producer_epoch)
                            }
                            Some(_) => return Answer(Err(codes::PRODUCER_FENCED)),
                        }
                    };
                let reply = Ok((target.producer_id, target.producer_epoch));
                self.begin(TxnState::Empty, target);
                Decision::Write { reply, then_markers: false }
            }
        }
    }

    /// Fences the current producer (epoch + 1 unless at the maximum) and prepares the abort of
    /// its open transaction.
    fn begin_fence_abort(&mut self, now_ms: u64) {
        let epoch = self.meta.producer_epoch.saturating_add(1);
        let target = TxnMetadata {
            producer_epoch: epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            state: TxnState::PrepareAbort,
            last_update_ms: now_ms,
            ..self.meta.clone()
        };
        self.begin(TxnState::PrepareEpochFence, target);
    }

    /// Checks shared by AddPartitionsToTxn, AddOffsetsToTxn and EndTxn from a client.
    fn check_producer(&self, producer_id: i64, producer_epoch: i16) -> Result<(), i16> {
        if producer_id != self.meta.producer_id {
            Err(codes::INVALID_PRODUCER_ID_MAPPING)
        } else if producer_epoch != self.meta.producer_epoch {
            Err(codes::PRODUCER_FENCED)
        } else if self.busy() {
            Err(codes::CONCURRENT_TRANSACTIONS)
        } else {
            Ok(())
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's `__consumer_offsets`
    /// partition). `verify_only` (v4+, and the Produce check of KIP-890) changes nothing and
    /// answers per partition whether it is in the open transaction (INVALID_TXN_STATE if not).
    pub fn add_partitions(
        &mut self,
        now_ms: u64,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
        verify_only: bool,
    ) -> Decision<PartitionErrors> {
        if let Err(code) = self.check_producer(producer_id, producer_epoch) {
            return Decision::Answer(Err(code));
        }
        let ongoing = self.meta.state == TxnState::Ongoing;
        let contains = |p: &(String, i32)| ongoing && self.meta.partitions.contains(p);
        if verify_only {
            let answers = partitions
                .iter()
                .map(|p| (p.clone(), if contains(p) { codes::NONE } else { codes::INVALID_TXN_STATE }))
                .collect();
            return Decision::Answer(Ok(answers));
        }
        let all_none = || partitions.iter().map(|p| (p.clone(), codes::NONE)).collect::<PartitionErrors>();
        if ongoing && partitions.iter().all(contains) {
            return Decision::Answer(Ok(all_none()));
        }
        let mut target = self.meta.clone();
        target.partitions.extend(partitions.iter().cloned());
        if !ongoing {
            target.txn_start_ms = now_ms as i64;
        }
        target.state = TxnState::Ongoing;
        target.last_update_ms = now_ms;
        self.begin(TxnState::Ongoing, target);
        Decision::Write { reply: Ok(all_none()), then_markers: false }
    }

    /// EndTxn from the client (Kafka's `handleEndTransaction`, before KIP-890 part 2).
    pub fn end_txn(&mut self, now_ms: u64, producer_id: i64, producer_epoch: i16, commit: bool) -> Decision<()> {
        use Decision::Answer;
        if producer_id != self.meta.producer_id {
            return Answer(Err(codes::INVALID_PRODUCER_ID_MAPPING));
        }
        if producer_epoch != self.meta.producer_epoch {
            return Answer(Err(codes::PRODUCER_FENCED));
        }
        if self.pending.is_some() {
            return Answer(Err(codes::CONCURRENT_TRANSACTIONS));
        }
        match (self.meta.state, commit) {
            (TxnState::Ongoing, _) => {
                let state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
                let target = TxnMetadata { state, last_update_ms: now_ms, ..self.meta.clone() };
                self.begin(state, target);
                Decision::Write { reply: Ok(()), then_markers: true }
            }
            // A retry of an EndTxn that already completed.
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Answer(Ok(())),
            // A retry while the markers are still being written.
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Answer(Err(codes::CONCURRENT_TRANSACTIONS))
            }
            (TxnState::PrepareEpochFence, _) => Answer(Err(codes::CONCURRENT_TRANSACTIONS)),
            _ => Answer(Err(codes::INVALID_TXN_STATE)),
        }
    }

    /// The markers of the Prepare state are written: complete the transaction (partitions
    /// cleared). `false` if there is nothing to complete (not in a Prepare state, or busy).
    pub fn begin_complete(&mut self, now_ms: u64) -> bool {
        if self.pending.is_some() {
            return false;
        }
        let state = match self.meta.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            _ => return false,
        };
        let target = TxnMetadata { state, partitions: BTreeSet::new(), last_update_ms: now_ms, ..self.meta.clone() };
        self.begin(state, target);
        true
    }

    /// Has the open transaction outlived its timeout?
    pub fn is_timed_out(&self, now_ms: u64) -> bool {
        self.pending.is_none()
            && self.meta.state == TxnState::Ongoing
            && self.meta.txn_start_ms >= 0
            && (self.meta.txn_start_ms as u64).saturating_add(self.meta.timeout_ms) < now_ms
    }

    /// The coordinator's own abort of a timed-out transaction: the producer is fenced (epoch
    /// + 1) like Kafka's `abortTimedOutTransactions`.
    pub fn abort_timed_out(&mut self, now_ms: u64) -> Decision<()> {
        if !self.is_timed_out(now_ms) {
            return Decision::Answer(Err(codes::INVALID_TXN_STATE));
        }
        self.begin_fence_abort(now_ms);
        Decision::Write { reply: Ok(()), then_markers: true }
    }

    /// Is the id idle for longer than `transactional.id.expiration.ms`?
    pub fn is_expired(&self, now_ms: u64, expiration_ms: u64) -> bool {
        self.pending.is_none()
            && self.meta.state.is_idle()
            && self.meta.last_update_ms.saturating_add(expiration_ms) <= now_ms
    }

    /// Prepares the id's removal (the edge writes a tombstone, then drops the id).
    pub fn begin_expire(&mut self, now_ms: u64, expiration_ms: u64) -> bool {
        if !self.is_expired(now_ms, expiration_ms) {
            return false;
        }
        let target = TxnMetadata { state: TxnState::Dead, last_update_ms: now_ms, ..self.meta.clone() };
        self.begin(TxnState::Dead, target);
        true
    }

    /// Invariants of a state (checked in tests and debug builds after every call).
    pub fn check_invariants(&self) -> bool {
        let m = &self.meta;
        let partitions_ok = match m.state {
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => m.partitions.is_empty(),
            TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort => m.txn_start_ms >= 0,
            TxnState::Dead => true,
            TxnState::PrepareEpochFence => false, // only ever a pending state
        };
        let epoch_ok = !self.persisted || m.producer_epoch >= 0;
        partitions_ok && epoch_ok && m.producer_id >= 0
    }
}

#[cfg(test)]
mod tests;
