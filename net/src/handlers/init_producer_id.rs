//! InitProducerId for idempotent producers (KIP-98): a producer id never handed out before,
//! epoch 0. Ids come from blocks the controller reserves in the metadata image, so they stay
//! unique across restarts.
//!
//! Transactional producers (a `transactional_id`) are refused with INVALID_REQUEST until
//! transactions land; the broker logs why. Must never: hand out an id twice, or accept a
//! half-given (producer id, epoch) pair — Kafka answers INVALID_REQUEST.

use std::rc::Rc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::controller;
use crate::handlers::codes;
use crate::shard_context::ShardContext;

pub async fn handle(_ctx: &Rc<ShardContext>, request: InitProducerIdRequest, _version: i16) -> InitProducerIdResponse {
    let refuse = |code: i16| {
        InitProducerIdResponse::default().with_error_code(code).with_producer_id(ProducerId(-1)).with_producer_epoch(-1)
    };
    if request.transactional_id.as_ref().is_some_and(|id| !id.0.is_empty()) {
        sluice_engine::warn_limited!(
            transactional_id = %request.transactional_id.as_ref().map(|t| t.0.as_str()).unwrap_or(""),
            "InitProducerId for a transactional producer refused: transactions are not implemented yet"
        );
        return refuse(codes::INVALID_REQUEST);
    }
    // Kafka: both -1 (a new producer) or both set (an epoch bump request, KIP-360); for a
    // producer without a transactional id either way gets a fresh id.
    let (pid, epoch) = (request.producer_id.0, request.producer_epoch);
    if (pid == -1) != (epoch == -1) {
        return refuse(codes::INVALID_REQUEST);
    }
    match controller::allocate_producer_id().await {
        Ok(id) => InitProducerIdResponse::default().with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            sluice_engine::warn_limited!(code = e.code, message = %e.message, "producer id allocation failed");
            refuse(codes::COORDINATOR_NOT_AVAILABLE)
        }
    }
}
