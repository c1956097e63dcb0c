//! STUB until the storage side lands (issue #14 part 2 owns this file and replaces it).
//!
//! Writes one commit/abort control batch into each listed partition (on the partition's owner
//! shard) and answers per partition. This stub writes nothing and answers NONE for every
//! partition, so the transaction coordinator completes transactions; no marker reaches a log.

use std::rc::Rc;

use sluice_engine::error_code::ErrorCode;

use crate::shard_context::ShardContext;

/// See the module docs: a stub with the exact signature of part 2's function.
pub async fn write_txn_markers(
    _ctx: &Rc<ShardContext>,
    _producer_id: i64,
    _producer_epoch: i16,
    _coordinator_epoch: i32,
    _commit: bool,
    partitions: Vec<(String, i32)>,
) -> Vec<((String, i32), ErrorCode)> {
    partitions.into_iter().map(|p| (p, ErrorCode::NONE)).collect()
}
