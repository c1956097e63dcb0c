//! AddPartitionsToTxn (v0–v5): v0–v3 add one transactional id's partitions; v4+ batch several
//! ids, each either adding or only verifying (`verify_only`, KIP-890) that its partitions are
//! in the open transaction. Unknown partitions answer UNKNOWN_TOPIC_OR_PARTITION and the rest
//! OPERATION_NOT_ATTEMPTED without any change, like Kafka; otherwise the id's coordinator
//! decides ([`crate::txn::coordinator::Txn::add_partitions`]) and every partition gets its code.

use std::rc::Rc;

use std::collections::BTreeMap;

use kafka_protocol::messages::add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ProducerId, TopicName, TransactionalId,
};

use crate::handlers::str_bytes;
use crate::shard_context::ShardContext;
use crate::txn::coordinator::PartitionErrors;
use crate::txn::service::on_txn_shard;
use crate::txn::state_log::{partition_for, TXN_STATE_TOPIC};
use crate::txn::{codes, fenced_for_version};

/// The first AddPartitionsToTxn version that knows PRODUCER_FENCED (KIP-588).
const FIRST_VERSION_WITH_PRODUCER_FENCED: i16 = 2;

/// Adds (or verifies) partitions of one transactional id: per-partition codes.
pub async fn add_or_verify(
    ctx: &ShardContext,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: Vec<(String, i32)>,
    verify_only: bool,
) -> PartitionErrors {
    let unknown: Vec<bool> = {
        let image = ctx.image.borrow();
        partitions.iter().map(|(t, p)| image.topic(t).is_none_or(|m| *p < 0 || *p >= m.partitions)).collect()
    };
    if transactional_id.is_empty() {
        return partitions.into_iter().map(|p| (p, codes::INVALID_REQUEST)).collect();
    }
    if unknown.iter().any(|u| *u) {
        return partitions
            .into_iter()
            .zip(unknown)
            .map(|(p, u)| (p, if u { codes::UNKNOWN_TOPIC_OR_PARTITION } else { codes::OPERATION_NOT_ATTEMPTED }))
            .collect();
    }
    let id = transactional_id.to_string();
    let asked = partitions.clone();
    let answer = on_txn_shard(ctx, transactional_id, move |txns| async move {
        txns.add_partitions(&id, producer_id, producer_epoch, asked, verify_only).await
    })
    .await
    .and_then(|r| r);
    match answer {
        Ok(answers) => answers,
        Err(code) => partitions.into_iter().map(|p| (p, code)).collect(),
    }
}

/// The verify-only check for partitions known to exist (Produce, KIP-890 part 1).
pub async fn verify(
    ctx: &ShardContext,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: Vec<(String, i32)>,
) -> PartitionErrors {
    let coordinator = coordinator_node(ctx, transactional_id);
    if coordinator != Some(ctx.config.node_id) {
        return verify_remote(ctx, coordinator, transactional_id, producer_id, producer_epoch, partitions).await;
    }
    let id = transactional_id.to_string();
    let asked = partitions.clone();
    let answer = on_txn_shard(ctx, transactional_id, move |txns| async move {
        txns.add_partitions(&id, producer_id, producer_epoch, asked, true).await
    })
    .await
    .and_then(|r| r);
    match answer {
        Ok(answers) => answers,
        Err(code) => partitions.into_iter().map(|p| (p, code)).collect(),
    }
}

/// The node coordinating `transactional_id`: the leader of its `__transaction_state`
/// partition (this node on a single node); `None` while there is none.
fn coordinator_node(ctx: &ShardContext, transactional_id: &str) -> Option<i32> {
    if !ctx.is_clustered() {
        return Some(ctx.config.node_id);
    }
    let partition = partition_for(transactional_id, ctx.config.txn.state_log_num_partitions);
    let known = ctx.replica_states.borrow().contains_key(TXN_STATE_TOPIC);
    let leader = ctx.replica_state(TXN_STATE_TOPIC, partition).leader_id;
    (known && leader >= 0).then_some(leader)
}

/// The AddPartitionsToTxn version brokers verify with (v4+ is the brokers' batched form).
const BROKER_VERIFY_VERSION: i16 = 4;

/// KIP-890 verification with a coordinator on another node: AddPartitionsToTxn v4, one
/// verify-only transaction. Unreachable or unknown coordinator: COORDINATOR_NOT_AVAILABLE
/// for every partition (the producer retries).
async fn verify_remote(
    ctx: &ShardContext,
    coordinator: Option<i32>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: Vec<(String, i32)>,
) -> PartitionErrors {
    let unavailable = |partitions: Vec<(String, i32)>| {
        partitions.into_iter().map(|p| (p, codes::COORDINATOR_NOT_AVAILABLE)).collect()
    };
    let Some(node) = coordinator else { return unavailable(partitions) };
    let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for (topic, partition) in &partitions {
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partitions.push(*partition),
            None => topics.push(
                AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(str_bytes(topic.clone())))
                    .with_partitions(vec![*partition]),
            ),
        }
    }
    let transaction = AddPartitionsToTxnTransaction::default()
        .with_transactional_id(TransactionalId(str_bytes(transactional_id.to_string())))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(producer_epoch)
        .with_verify_only(true)
        .with_topics(topics);
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![transaction]);
    let response = match crate::broker_client::call(ctx, node, &request, BROKER_VERIFY_VERSION).await {
        Ok(r) => r,
        Err(e) => {
            sluice_engine::info_limited!(node, error = %e, "transaction verification not answered");
            return unavailable(partitions);
        }
    };
    if response.error_code != codes::NONE {
        return partitions.into_iter().map(|p| (p, response.error_code)).collect();
    }
    let mut answered: BTreeMap<(String, i32), i16> = BTreeMap::new();
    for topic in response.results_by_transaction.iter().flat_map(|t| &t.topic_results) {
        for p in &topic.results_by_partition {
            answered.insert((topic.name.0.to_string(), p.partition_index), p.partition_error_code);
        }
    }
    partitions
        .into_iter()
        .map(|p| {
            let code = answered.get(&p).copied().unwrap_or(codes::UNKNOWN_SERVER_ERROR);
            (p, code)
        })
        .collect()
}

fn partitions_of(topics: &[AddPartitionsToTxnTopic]) -> Vec<(String, i32)> {
    topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), *p))).collect()
}

fn topic_results(answers: PartitionErrors, version: i16) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut out: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, partition), code) in answers {
        let code = fenced_for_version(code, version, FIRST_VERSION_WITH_PRODUCER_FENCED);
        let result = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(partition)
            .with_partition_error_code(code);
        match out.last_mut() {
            Some(t) if t.name.0.as_str() == topic => t.results_by_partition.push(result),
            _ => out.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(TopicName(str_bytes(topic)))
                    .with_results_by_partition(vec![result]),
            ),
        }
    }
    out
}

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let response = AddPartitionsToTxnResponse::default().with_throttle_time_ms(0);
    if version <= 3 {
        let answers = add_or_verify(
            ctx,
            request.v3_and_below_transactional_id.0.as_str(),
            request.v3_and_below_producer_id.0,
            request.v3_and_below_producer_epoch,
            partitions_of(&request.v3_and_below_topics),
            false,
        )
        .await;
        return response.with_results_by_topic_v3_and_below(topic_results(answers, version));
    }
    let mut results = Vec::with_capacity(request.transactions.len());
    for txn in request.transactions {
        let answers = add_or_verify(
            ctx,
            txn.transactional_id.0.as_str(),
            txn.producer_id.0,
            txn.producer_epoch,
            partitions_of(&txn.topics),
            txn.verify_only,
        )
        .await;
        results.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(TransactionalId(str_bytes(txn.transactional_id.0.to_string())))
                .with_topic_results(topic_results(answers, version)),
        );
    }
    response.with_error_code(codes::NONE).with_results_by_transaction(results)
}
