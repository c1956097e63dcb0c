//! EndTxn (v0–v4): commit or abort the producer's transaction. Answered once the
//! PrepareCommit/PrepareAbort record is on file; the coordinator then writes the markers and
//! completes the transaction on its own (a client that retries meanwhile gets
//! CONCURRENT_TRANSACTIONS). v5 (KIP-890 part 2, an epoch bump per transaction) is not
//! advertised.

use std::rc::Rc;

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

use crate::shard_context::ShardContext;
use crate::txn::service::on_txn_shard;
use crate::txn::{codes, fenced_for_version};

/// The first EndTxn version that knows PRODUCER_FENCED (KIP-588).
const FIRST_VERSION_WITH_PRODUCER_FENCED: i16 = 2;

pub async fn handle(ctx: &Rc<ShardContext>, request: EndTxnRequest, version: i16) -> EndTxnResponse {
    let id = request.transactional_id.0.to_string();
    let (pid, epoch, commit) = (request.producer_id.0, request.producer_epoch, request.committed);
    let code = if id.is_empty() {
        codes::INVALID_REQUEST
    } else {
        let txn_id = id.clone();
        let answer = on_txn_shard(ctx, &id, move |txns| async move { txns.end_txn(&txn_id, pid, epoch, commit).await })
            .await
            .and_then(|r| r);
        answer.err().unwrap_or(codes::NONE)
    };
    EndTxnResponse::default()
        .with_throttle_time_ms(0)
        .with_error_code(fenced_for_version(code, version, FIRST_VERSION_WITH_PRODUCER_FENCED))
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}
