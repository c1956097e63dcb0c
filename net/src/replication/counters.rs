//! Replication counters for operability (Kafka's `UnderReplicatedPartitions`,
//! `IsrShrinksPerSec`, `IsrExpandsPerSec`): whole-broker numbers every shard adds to.
//!
//! Owns: the counters. Must never: be the source of a decision (they only report).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

static UNDER_REPLICATED_PARTITIONS: AtomicI64 = AtomicI64::new(0);
static ISR_SHRINKS: AtomicU64 = AtomicU64::new(0);
static ISR_EXPANDS: AtomicU64 = AtomicU64::new(0);

/// A snapshot of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicationCounters {
    /// Partitions this broker leads with fewer in-sync replicas than replicas.
    pub under_replicated_partitions: i64,
    /// ISR shrinks and expansions this broker's leaders had committed.
    pub isr_shrinks: u64,
    pub isr_expands: u64,
}

pub fn snapshot() -> ReplicationCounters {
    ReplicationCounters {
        under_replicated_partitions: UNDER_REPLICATED_PARTITIONS.load(Ordering::Relaxed),
        isr_shrinks: ISR_SHRINKS.load(Ordering::Relaxed),
        isr_expands: ISR_EXPANDS.load(Ordering::Relaxed),
    }
}

/// A shard's count of under-replicated partitions changed by `delta`.
pub(crate) fn add_under_replicated(delta: i64) {
    if delta != 0 {
        UNDER_REPLICATED_PARTITIONS.fetch_add(delta, Ordering::Relaxed);
    }
}

pub(crate) fn isr_shrunk() {
    ISR_SHRINKS.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn isr_expanded() {
    ISR_EXPANDS.fetch_add(1, Ordering::Relaxed);
}
