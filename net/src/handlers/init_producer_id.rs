//! InitProducerId (KIP-98, KIP-360). Without a transactional id (idempotent producers): a
//! producer id never handed out before, epoch 0; ids come from blocks the controller reserves
//! in the metadata image, so they stay unique across restarts. With a transactional id: the
//! transaction coordinator of that id answers ([`crate::txn::service::TxnShard::init_producer_id`]:
//! a new id, an epoch bump, or the fence of the previous incarnation), after the timeout is
//! checked against `transaction.max.timeout.ms` (INVALID_TRANSACTION_TIMEOUT above it).
//!
//! Must never: hand out an id twice, or accept a half-given (producer id, epoch) pair — Kafka
//! answers INVALID_REQUEST.

use std::rc::Rc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::controller;
use crate::shard_context::ShardContext;
use crate::txn::service::on_txn_shard;
use crate::txn::{codes, fenced_for_version};

/// The first InitProducerId version that knows PRODUCER_FENCED (KIP-588).
const FIRST_VERSION_WITH_PRODUCER_FENCED: i16 = 4;

pub async fn handle(ctx: &Rc<ShardContext>, request: InitProducerIdRequest, version: i16) -> InitProducerIdResponse {
    let refuse = |code: i16| {
        InitProducerIdResponse::default()
            .with_error_code(fenced_for_version(code, version, FIRST_VERSION_WITH_PRODUCER_FENCED))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    // Kafka: both -1 (a new producer) or both set (an epoch bump request, KIP-360).
    let (pid, epoch) = (request.producer_id.0, request.producer_epoch);
    if (pid == -1) != (epoch == -1) {
        return refuse(codes::INVALID_REQUEST);
    }
    if let Some(id) = request.transactional_id.as_ref().filter(|id| !id.0.is_empty()) {
        let timeout_ms = request.transaction_timeout_ms;
        if timeout_ms <= 0 || timeout_ms as u64 > ctx.config.txn.max_timeout_ms {
            return refuse(codes::INVALID_TRANSACTION_TIMEOUT);
        }
        let expected = (pid != -1).then_some((pid, epoch));
        let id = id.0.to_string();
        let answer = on_txn_shard(ctx, &id.clone(), move |txns| async move {
            txns.init_producer_id(&id, timeout_ms as u64, expected).await
        })
        .await
        .and_then(|r| r);
        return match answer {
            Ok((pid, epoch)) => {
                InitProducerIdResponse::default().with_producer_id(ProducerId(pid)).with_producer_epoch(epoch)
            }
            Err(code) => refuse(code),
        };
    }
    // An idempotent producer gets a fresh id either way.
    match controller::allocate_producer_id().await {
        Ok(id) => InitProducerIdResponse::default().with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            sluice_engine::warn_limited!(code = e.code, message = %e.message, "producer id allocation failed");
            refuse(codes::COORDINATOR_NOT_AVAILABLE)
        }
    }
}
