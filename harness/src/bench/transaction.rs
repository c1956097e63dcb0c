//! One bench producer's transactions (KIP-98), as a Kafka client runs them: find the
//! transaction coordinator (FindCoordinator, key type 1), get a producer id and epoch for the
//! transactional id (InitProducerId), add each partition to the ongoing transaction before its
//! first batch (AddPartitionsToTxn, the client form, v3 at most), and end the transaction
//! (EndTxn). The producer stamps its batches with the id, epoch and per-partition sequences and
//! decides when to commit (`transaction_commit_ms` / `transaction_commit_messages`).
//!
//! Owns: the coordinator connection, the producer id and epoch, which partitions the open
//! transaction holds, and the retries of the coordinator's retriable answers. Must never: wait
//! without a bound (each call has a deadline), take an error code for success, or end a
//! transaction with batches still unacknowledged (the producer waits for them first).

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, ApiKey, EndTxnRequest, FindCoordinatorRequest, InitProducerIdRequest, ProducerId,
    TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use crate::bench::admin::topic_name;
use crate::bench::kafka_client::KafkaConnection;
use crate::bench::run_state::error_name;

/// Longest one transactional call may keep retrying (a coordinator loading its log, or still
/// completing the previous transaction).
const CALL_DEADLINE: Duration = Duration::from_secs(30);
/// Longest wait for one answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// First and longest wait before retrying a retriable answer. Kafka's Java client waits a fixed
/// 20 ms after CONCURRENT_TRANSACTIONS (the previous transaction's markers still being written);
/// starting at 1 ms and doubling measures the broker rather than the client's pause: with 20 ms,
/// a producer committing every 10 ms spent most of its time waiting.
const FIRST_RETRY_BACKOFF: Duration = Duration::from_millis(1);
const MAX_RETRY_BACKOFF: Duration = Duration::from_millis(20);
/// The last AddPartitionsToTxn version with the client's single-transaction form (v4+ are
/// the brokers' batched form, KIP-890).
const ADD_PARTITIONS_CLIENT_MAX_VERSION: i16 = 3;

/// Kafka error codes a transactional client retries.
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const CONCURRENT_TRANSACTIONS: i16 = 51;

fn retriable(code: i16) -> bool {
    matches!(code, COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR | CONCURRENT_TRANSACTIONS)
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A transactional producer's session with its coordinator.
pub struct TransactionSession {
    coordinator: KafkaConnection,
    transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    topic: String,
    /// Partitions added to the open transaction.
    added: BTreeSet<i32>,
}

impl TransactionSession {
    /// Finds the coordinator of `transactional_id` through `bootstrap` and initialises the
    /// producer (a new id, or the next epoch of the id's previous incarnation).
    pub async fn init(
        bootstrap: &str,
        client_id: &str,
        transactional_id: &str,
        timeout_ms: i32,
        topic: &str,
    ) -> Result<TransactionSession, String> {
        let deadline = Instant::now() + CALL_DEADLINE;
        let mut backoff = FIRST_RETRY_BACKOFF;
        let coordinator_addr = loop {
            let conn = crate::bench::kafka_client::connect(bootstrap, client_id).await?;
            let version = conn.version_for(ApiKey::FindCoordinator)?;
            let mut request = FindCoordinatorRequest::default().with_key_type(1);
            request = if version >= 4 {
                request.with_coordinator_keys(vec![s(transactional_id)])
            } else {
                request.with_key(s(transactional_id))
            };
            let response = within(REQUEST_TIMEOUT, "FindCoordinator", conn.call(&request)).await?;
            let (code, host, port) = match response.coordinators.first() {
                Some(c) if version >= 4 => (c.error_code, c.host.to_string(), c.port),
                None if version >= 4 => return Err("FindCoordinator: answer without a coordinator".into()),
                _ => (response.error_code, response.host.to_string(), response.port),
            };
            match code {
                0 => break format!("{host}:{port}"),
                code if retriable(code) && Instant::now() < deadline => {
                    glommio::timer::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_RETRY_BACKOFF);
                }
                code => return Err(format!("FindCoordinator (transaction): {}", error_name(code))),
            }
        };
        let coordinator = crate::bench::kafka_client::connect(&coordinator_addr, client_id).await?;
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(transactional_id))))
            .with_transaction_timeout_ms(timeout_ms)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let response = retry("InitProducerId", || coordinator.call(&request), |r| r.error_code).await?;
        Ok(TransactionSession {
            coordinator,
            transactional_id: transactional_id.to_string(),
            producer_id: response.producer_id.0,
            producer_epoch: response.producer_epoch,
            topic: topic.to_string(),
            added: BTreeSet::new(),
        })
    }

    /// Adds to the open transaction those of `partitions` it does not hold yet (one request
    /// for all of them); a no-op when it holds them all.
    pub async fn add_partitions(&mut self, partitions: impl IntoIterator<Item = i32>) -> Result<(), String> {
        let new: Vec<i32> = partitions.into_iter().filter(|p| !self.added.contains(p)).collect();
        if new.is_empty() {
            return Ok(());
        }
        let version = self.coordinator.version_for(ApiKey::AddPartitionsToTxn)?;
        if version > ADD_PARTITIONS_CLIENT_MAX_VERSION {
            return Err(format!("AddPartitionsToTxn: negotiated v{version}, the client form ends at v3"));
        }
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(s(&self.transactional_id)))
            .with_v3_and_below_producer_id(ProducerId(self.producer_id))
            .with_v3_and_below_producer_epoch(self.producer_epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(topic_name(&self.topic))
                .with_partitions(new.clone())]);
        // One code per partition; the first failure speaks for the request.
        let first_error = |r: &kafka_protocol::messages::AddPartitionsToTxnResponse| {
            r.results_by_topic_v3_and_below
                .iter()
                .flat_map(|t| t.results_by_partition.iter().map(|p| p.partition_error_code))
                .find(|c| *c != 0)
                .unwrap_or(r.error_code)
        };
        retry("AddPartitionsToTxn", || self.coordinator.call(&request), first_error).await?;
        self.added.extend(new);
        Ok(())
    }

    /// Commits (or aborts) the open transaction. The caller has every batch acknowledged.
    pub async fn end(&mut self, commit: bool) -> Result<(), String> {
        let request = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s(&self.transactional_id)))
            .with_producer_id(ProducerId(self.producer_id))
            .with_producer_epoch(self.producer_epoch)
            .with_committed(commit);
        // EndTxn stays below v5 (and Produce below v12): the epoch bump per transaction of
        // KIP-890 part 2 is not asked for, so the epoch stays what InitProducerId gave.
        retry("EndTxn", || self.coordinator.call(&request), |r| r.error_code).await?;
        self.added.clear();
        Ok(())
    }

    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    /// Whether the open transaction holds any partition (an empty one needs no EndTxn).
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
    }
}

/// Calls until the answer's code is 0, retrying Kafka's retriable codes within the deadline.
async fn retry<T, F, Fut>(what: &str, mut call: F, code_of: impl Fn(&T) -> i16) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + CALL_DEADLINE;
    let mut backoff = FIRST_RETRY_BACKOFF;
    loop {
        let response = within(REQUEST_TIMEOUT, what, call()).await?;
        match code_of(&response) {
            0 => return Ok(response),
            code if retriable(code) && Instant::now() < deadline => {
                glommio::timer::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_RETRY_BACKOFF);
            }
            code => return Err(format!("{what}: {}", error_name(code))),
        }
    }
}

async fn within<T>(limit: Duration, what: &str, call: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    match glommio::timer::timeout(limit, async { Ok::<_, glommio::GlommioError<()>>(call.await) }).await {
        Ok(result) => result.map_err(|e| format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {} s", limit.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_coordinators_transient_answers_are_retried() {
        for code in [14, 15, 16, 51] {
            assert!(retriable(code), "{code}");
        }
        // INVALID_PRODUCER_EPOCH, PRODUCER_FENCED, INVALID_TXN_STATE, TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        for code in [0, 47, 90, 48, 53] {
            assert!(!retriable(code), "{code}");
        }
    }
}
