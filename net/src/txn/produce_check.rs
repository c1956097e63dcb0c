//! KIP-890 part 1 on the produce path: a transactional batch is appended only to a partition
//! that is in its producer's open transaction. The Produce handler collects the transactional
//! batches of a request ([`transactional_batches`]), asks the coordinator once per producer
//! with the verify-only form of AddPartitionsToTxn, bounded by [`VERIFY_TIMEOUT_MS`], and
//! refuses the partitions that fail with the code a producer understands ([`produce_error`]).
//!
//! Must never: cost a non-transactional produce more than one header check per partition.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::future::{select, Either};
use kafka_protocol::messages::ProduceRequest;
use sluice_engine::batch::BatchHeader;

use super::codes;
use crate::handlers::add_partitions_to_txn;
use crate::shard_context::ShardContext;

/// Longest a Produce waits for the coordinator's answer before it answers NOT_ENOUGH_REPLICAS
/// (retriable) — the coordinator answers from memory, so this only bounds a stuck shard.
pub const VERIFY_TIMEOUT_MS: u64 = 5_000;

/// (topic, partition) → (producer id, epoch) of every transactional batch in the request.
pub fn transactional_batches(request: &ProduceRequest) -> Vec<((String, i32), (i64, i16))> {
    let mut out = Vec::new();
    for topic in &request.topic_data {
        for p in &topic.partition_data {
            let Some(records) = p.records.as_ref() else { continue };
            if let Ok(header) = BatchHeader::parse(records) {
                if header.is_transactional() {
                    out.push(((topic.name.0.to_string(), p.index), (header.producer_id(), header.producer_epoch())));
                }
            }
        }
    }
    out
}

/// What a Produce answers for a verification failure: fencing as INVALID_PRODUCER_EPOCH (what
/// a producer treats as fenced), a partition outside the transaction as INVALID_TXN_STATE,
/// and a coordinator that is busy or unreachable as NOT_ENOUGH_REPLICAS (retriable), as Kafka
/// does.
pub fn produce_error(code: i16) -> i16 {
    match code {
        codes::NONE => codes::NONE,
        codes::PRODUCER_FENCED | codes::INVALID_PRODUCER_ID_MAPPING | codes::INVALID_PRODUCER_EPOCH => {
            codes::INVALID_PRODUCER_EPOCH
        }
        codes::INVALID_TXN_STATE => codes::INVALID_TXN_STATE,
        _ => codes::NOT_ENOUGH_REPLICAS,
    }
}

/// Verifies every transactional batch of `request`: the partitions to refuse, with the code.
pub async fn refused_partitions(ctx: &ShardContext, request: &ProduceRequest) -> HashMap<(String, i32), i16> {
    let batches = transactional_batches(request);
    let mut refused = HashMap::new();
    if batches.is_empty() {
        return refused;
    }
    let txn_id = request.transactional_id.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
    if txn_id.is_empty() {
        // Kafka: transactional records need a transactional id.
        return batches.into_iter().map(|(p, _)| (p, codes::INVALID_TXN_STATE)).collect();
    }
    let mut by_producer: BTreeMap<(i64, i16), Vec<(String, i32)>> = BTreeMap::new();
    for (partition, producer) in batches {
        by_producer.entry(producer).or_default().push(partition);
    }
    for ((pid, epoch), partitions) in by_producer {
        let asked = partitions.clone();
        let verify = Box::pin(add_partitions_to_txn::verify(ctx, &txn_id, pid, epoch, asked));
        let deadline = Box::pin(glommio::timer::sleep(Duration::from_millis(VERIFY_TIMEOUT_MS)));
        match select(verify, deadline).await {
            Either::Left((answers, _)) => {
                for (partition, code) in answers {
                    if code != codes::NONE {
                        refused.insert(partition, produce_error(code));
                    }
                }
            }
            Either::Right(_) => {
                for partition in partitions {
                    refused.insert(partition, codes::NOT_ENOUGH_REPLICAS);
                }
            }
        }
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_failures_map_to_codes_producers_understand() {
        assert_eq!(produce_error(codes::NONE), codes::NONE);
        assert_eq!(produce_error(codes::PRODUCER_FENCED), codes::INVALID_PRODUCER_EPOCH);
        assert_eq!(produce_error(codes::INVALID_PRODUCER_ID_MAPPING), codes::INVALID_PRODUCER_EPOCH);
        assert_eq!(produce_error(codes::INVALID_TXN_STATE), codes::INVALID_TXN_STATE);
        assert_eq!(produce_error(codes::CONCURRENT_TRANSACTIONS), codes::NOT_ENOUGH_REPLICAS);
        assert_eq!(produce_error(codes::COORDINATOR_LOAD_IN_PROGRESS), codes::NOT_ENOUGH_REPLICAS);
    }
}
