//! AddOffsetsToTxn (v0–v4): adds the group's `__consumer_offsets` partition to the producer's
//! transaction, so the group's TxnOffsetCommits end with it (Kafka's semantics: the same
//! decision as AddPartitionsToTxn for that one partition).

use std::rc::Rc;

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use crate::group::offsets_log::{partition_for, OFFSETS_TOPIC};
use crate::shard_context::ShardContext;
use crate::txn::service::on_txn_shard;
use crate::txn::{codes, fenced_for_version};

/// The first AddOffsetsToTxn version that knows PRODUCER_FENCED (KIP-588).
const FIRST_VERSION_WITH_PRODUCER_FENCED: i16 = 2;

pub async fn handle(ctx: &Rc<ShardContext>, request: AddOffsetsToTxnRequest, version: i16) -> AddOffsetsToTxnResponse {
    let id = request.transactional_id.0.to_string();
    let group = request.group_id.0.to_string();
    let code = if id.is_empty() {
        codes::INVALID_REQUEST
    } else if group.is_empty() {
        codes::INVALID_GROUP_ID
    } else {
        let partition =
            (OFFSETS_TOPIC.to_string(), partition_for(&group, ctx.config.group.offsets_topic_num_partitions));
        let (pid, epoch) = (request.producer_id.0, request.producer_epoch);
        let txn_id = id.clone();
        let answer = on_txn_shard(ctx, &id, move |txns| async move {
            txns.add_partitions(&txn_id, pid, epoch, vec![partition], false).await
        })
        .await
        .and_then(|r| r);
        match answer {
            Ok(answers) => answers.first().map_or(codes::NONE, |(_, code)| *code),
            Err(code) => code,
        }
    };
    AddOffsetsToTxnResponse::default().with_throttle_time_ms(0).with_error_code(fenced_for_version(
        code,
        version,
        FIRST_VERSION_WITH_PRODUCER_FENCED,
    ))
}
