//! ListTransactions (v0–v1): every transactional id of every shard, filtered by state names
//! (unknown names are echoed back in `unknown_state_filters`, like Kafka), producer ids, and
//! (v1) transactions running longer than `duration_filter` ms.

use std::rc::Rc;

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId};

use crate::group::service::now_ms;
use crate::handlers::str_bytes;
use crate::shard_context::ShardContext;
use crate::txn::codes;
use crate::txn::coordinator::TxnState;
use crate::txn::service::TxnShard;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: ListTransactionsRequest,
    version: i16,
) -> ListTransactionsResponse {
    let per_shard = ctx
        .mesh
        .call_all(|| async {
            let txns = TxnShard::try_current()?;
            Some(
                txns.list()
                    .into_iter()
                    .map(|v| (v.id, v.meta.producer_id, v.meta.state, v.meta.txn_start_ms))
                    .collect::<Vec<_>>(),
            )
        })
        .await;
    let mut states: Vec<TxnState> = Vec::new();
    let mut unknown = Vec::new();
    for name in &request.state_filters {
        match TxnState::from_name(name) {
            Some(s) => states.push(s),
            None => unknown.push(name.clone()),
        }
    }
    // Asking only for unknown states matches nothing (Kafka).
    let nothing = !request.state_filters.is_empty() && states.is_empty();
    let duration_ms = if version >= 1 { request.duration_filter } else { -1 };
    let now = now_ms() as i64;
    let mut error = codes::NONE;
    let mut listed = Vec::new();
    for shard in per_shard {
        let list = match shard {
            Ok(Some(list)) => list,
            Ok(None) => {
                error = codes::COORDINATOR_LOAD_IN_PROGRESS;
                continue;
            }
            Err(_) => {
                error = codes::COORDINATOR_NOT_AVAILABLE;
                continue;
            }
        };
        for (id, pid, state, start_ms) in list {
            if nothing
                || (!states.is_empty() && !states.contains(&state))
                || (!request.producer_id_filters.is_empty() && !request.producer_id_filters.contains(&ProducerId(pid)))
                || (duration_ms >= 0 && (state != TxnState::Ongoing || start_ms < 0 || now - start_ms <= duration_ms))
            {
                continue;
            }
            listed.push(
                TransactionState::default()
                    .with_transactional_id(TransactionalId(str_bytes(id)))
                    .with_producer_id(ProducerId(pid))
                    .with_transaction_state(str_bytes(state.name())),
            );
        }
    }
    listed.sort_by(|a, b| a.transactional_id.0.cmp(&b.transactional_id.0));
    ListTransactionsResponse::default()
        .with_throttle_time_ms(0)
        .with_error_code(error)
        .with_unknown_state_filters(unknown)
        .with_transaction_states(listed)
}
