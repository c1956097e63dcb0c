//! Kafka-style data replication (one half of issue #16): followers fetch from their leader with
//! the Fetch API, the leader tracks its followers, keeps the ISR (AlterPartition through the
//! controller), advances the high watermark, and so completes acks=all produces.
//!
//! Layout: the decisions are sans-I/O state machines — [`follower_progress`] (the leader's view
//! of its followers: HW, ISR shrink/expand) and [`divergence`] (KIP-320, both halves);
//! [`leader`] applies them on the leader's shard (follower fetches, the HW as the durable end
//! moves, the periodic ISR check, proposals); [`fetcher`] is the follower side (one glommio task
//! and one connection per leader broker per shard); [`reconcile`] turns the metadata image into
//! who leads and who follows, after every applied command and at start-up; [`counters`] are
//! the operability numbers; [`config`] the `replica.*` settings; [`read_replica`] which replica
//! a consumer reads from (KIP-392).
//!
//! Owns: this shard's replication state ([`ShardReplication`], a thread-local: one shard owns
//! its partitions, so each shard replicates its own). Must never: touch a partition another
//! shard owns, block the shard, hold a `RefCell` borrow across an await, or move a single-node
//! topic's high watermark (those follow their durable end, exactly as before replication).
//!
//! A replicated partition's high watermark is checkpointed (`high-watermark.checkpoint`, by
//! the engine, with the recovery point every 60 s and at close; Kafka: every 5 s, one file per
//! log dir) and restored when replication takes the partition over after a restart, so a
//! restarted replica does not take its log end for committed (an older checkpoint is only a
//! lower, still safe, high watermark).
//!
//! Not done yet: an OFFSET_OUT_OF_RANGE answer to a follower whose log end is past the
//! leader's start (only after an unclean election) is logged and retried after
//! `replica.fetch.backoff.ms`; follower fetches are sessionless full fetches (no KIP-227
//! sessions: every request lists every followed partition); nothing reads [`counters`] yet
//! (the operability issue exposes them); the leader's ISR check runs every
//! `replica.lag.time.max.ms / 2` on every led partition (fine for thousands, not tuned for
//! far more); a v15+ fetch's `replica_epoch` (the follower's broker epoch) is not checked;
//! DeleteRecords answers without waiting for the followers' log start.

pub mod config;
pub mod counters;
pub mod divergence;
pub mod fetcher;
pub mod follower_progress;
pub mod leader;
pub mod read_replica;
pub mod reconcile;

use std::cell::RefCell;
use std::collections::HashMap;

pub use reconcile::reconcile;

/// A partition by topic name and index.
pub type PartitionKey = (String, i32);

/// This shard's replication state.
#[derive(Default)]
pub struct ShardReplication {
    /// Partitions this shard leads (replicated topics only).
    pub(crate) leaders: HashMap<PartitionKey, leader::LeaderPartition>,
    /// Fetchers by leader broker id.
    pub(crate) fetchers: HashMap<i32, fetcher::FetcherHandle>,
    /// The periodic ISR check, once this shard leads a replicated partition.
    pub(crate) isr_check: Option<glommio::Task<()>>,
}

thread_local! {
    static SHARD: RefCell<ShardReplication> = RefCell::new(ShardReplication::default());
}

/// Runs `f` on this shard's replication state. `f` must not await (it cannot: it is sync) nor
/// call back into `with_shard`.
pub(crate) fn with_shard<R>(f: impl FnOnce(&mut ShardReplication) -> R) -> R {
    SHARD.with(|s| f(&mut s.borrow_mut()))
}
