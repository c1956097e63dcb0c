//! The internal `__transaction_state` log: which partition holds a transactional id, the record
//! format of its state, and replay at start-up.
//!
//! Owns: the key/value encoding (JSON, versioned by a `"v"` field; a null value is a tombstone:
//! the id expired), appending through the storage engine on the id's owner shard (the caller
//! applies a transition only after [`append`] returns: the record is on file), and reading a
//! partition back into the last state of every id. Partitioned like Kafka's:
//! partition = `abs(javaHashCode(transactional_id)) % transaction.state.log.num.partitions`.
//!
//! Must never: be reachable through Produce/Fetch of clients (the topic is not in the metadata
//! image), or run on a shard other than the partition's owner.

use std::collections::BTreeMap;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use sluice_engine::PartitionLog;

use crate::shard_context::ShardContext;

use super::coordinator::TxnMetadata;
use crate::internal_topic;

/// Kafka's name for the internal topic.
pub const TXN_STATE_TOPIC: &str = "__transaction_state";

/// The `__transaction_state` partition that holds `transactional_id` (Kafka's `partitionFor`).
pub fn partition_for(transactional_id: &str, partitions: i32) -> i32 {
    crate::group::offsets_log::partition_for(transactional_id, partitions)
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TxnKey {
    pub v: u8,
    pub id: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TxnValue {
    pub v: u8,
    #[serde(flatten)]
    pub meta: TxnMetadata,
}

/// The record of `id`'s state (`None`: the id is gone).
pub fn record(id: &str, meta: Option<&TxnMetadata>) -> (Vec<u8>, Option<Vec<u8>>) {
    let key = serde_json::to_vec(&TxnKey { v: 0, id: id.to_string() }).expect("serializes");
    let value = meta.map(|m| serde_json::to_vec(&TxnValue { v: 0, meta: m.clone() }).expect("serializes"));
    (key, value)
}

/// Appends one id's record to its partition on this shard; returns once it is on file.
pub async fn append(
    ctx: &ShardContext,
    creating: &glommio::sync::Semaphore,
    partition: i32,
    id: &str,
    meta: Option<&TxnMetadata>,
) -> Result<(), String> {
    internal_topic::append(ctx, creating, TXN_STATE_TOPIC, partition, &[record(id, meta)]).await
}

/// Folds one record into `ids` (later records win; a tombstone, or a value this version cannot
/// read, removes the id).
pub fn apply_record(ids: &mut BTreeMap<String, TxnMetadata>, key: &[u8], value: Option<&[u8]>) -> bool {
    let Ok(key) = serde_json::from_slice::<TxnKey>(key) else { return false };
    match value.map(serde_json::from_slice::<TxnValue>) {
        Some(Ok(v)) => {
            ids.insert(key.id, v.meta);
        }
        None => {
            ids.remove(&key.id);
        }
        Some(Err(_)) => return false,
    }
    true
}

/// Reads one partition of the internal topic from its start: every id's last state.
pub async fn replay(log: &Rc<PartitionLog>) -> Result<BTreeMap<String, TxnMetadata>, String> {
    let mut ids = BTreeMap::new();
    internal_topic::replay(log, |offset, key, value| {
        if !key.is_some_and(|k| apply_record(&mut ids, k, value)) {
            sluice_engine::warn_limited!(partition = log.partition(), offset, "unreadable record in {TXN_STATE_TOPIC}");
        }
    })
    .await?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::coordinator::TxnState;

    #[test]
    fn records_round_trip_and_tombstones_remove() {
        let meta = TxnMetadata {
            producer_id: 5,
            producer_epoch: 2,
            last_producer_id: -1,
            last_producer_epoch: 1,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [("t".to_string(), 0), ("u".to_string(), 3)].into_iter().collect(),
            txn_start_ms: 100,
            last_update_ms: 200,
        };
        let mut ids = BTreeMap::new();
        let (k, v) = record("tx", Some(&meta));
        assert!(apply_record(&mut ids, &k, v.as_deref()));
        assert_eq!(ids["tx"], meta);
        let (k, v) = record("tx", None);
        assert!(apply_record(&mut ids, &k, v.as_deref()));
        assert!(ids.is_empty());
        assert!(!apply_record(&mut ids, b"garbage", None));
    }
}
