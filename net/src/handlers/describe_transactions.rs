//! DescribeTransactions (v0): the state of each transactional id as its coordinator holds it
//! (TRANSACTIONAL_ID_NOT_FOUND for an unknown id).

use std::rc::Rc;

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName, TransactionalId,
};

use crate::handlers::str_bytes;
use crate::shard_context::ShardContext;
use crate::txn::codes;
use crate::txn::service::on_txn_shard;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: DescribeTransactionsRequest,
    _version: i16,
) -> DescribeTransactionsResponse {
    let mut states = Vec::with_capacity(request.transactional_ids.len());
    for id in request.transactional_ids {
        let id = id.0.to_string();
        let key = id.clone();
        let view = on_txn_shard(ctx, &id, move |txns| async move { txns.describe(&key) }).await;
        let state = TransactionState::default().with_transactional_id(TransactionalId(str_bytes(id)));
        states.push(match view {
            Err(code) => state.with_error_code(code).with_producer_id(ProducerId(-1)).with_producer_epoch(-1),
            Ok(None) => state
                .with_error_code(codes::TRANSACTIONAL_ID_NOT_FOUND)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
            Ok(Some(view)) => {
                let m = view.meta;
                let mut topics: Vec<TopicData> = Vec::new();
                for (topic, partition) in m.partitions {
                    match topics.last_mut() {
                        Some(t) if t.topic.0.as_str() == topic => t.partitions.push(partition),
                        _ => topics.push(
                            TopicData::default()
                                .with_topic(TopicName(str_bytes(topic)))
                                .with_partitions(vec![partition]),
                        ),
                    }
                }
                state
                    .with_error_code(codes::NONE)
                    .with_transaction_state(str_bytes(m.state.name()))
                    .with_transaction_timeout_ms(m.timeout_ms.min(i32::MAX as u64) as i32)
                    .with_transaction_start_time_ms(m.txn_start_ms)
                    .with_producer_id(ProducerId(m.producer_id))
                    .with_producer_epoch(m.producer_epoch)
                    .with_topics(topics)
            }
        });
    }
    DescribeTransactionsResponse::default().with_throttle_time_ms(0).with_transaction_states(states)
}
