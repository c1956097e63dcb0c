//! The follower side: on each shard, one glommio task and one connection per leader broker,
//! fetching the partitions this shard follows from that leader (Kafka's
//! `ReplicaFetcherThread`, per shard instead of per thread). It sends Fetch with this node's id
//! as the replica id, each partition at its log end with the epoch of its last batch
//! (KIP-320), appends what comes back as it is (`append_as_follower`), takes
//! min(leader's HW, own log end) as its high watermark, and follows the leader's log start
//! offset up to that high watermark.
//!
//! Errors: a diverging epoch truncates the log ([`super::divergence::truncation_offset`]) and
//! fetching goes on; OFFSET_OUT_OF_RANGE with the leader's log starting past this log's end
//! empties the log to start there (Kafka's `truncateFullyAndStartAt`); any other partition
//! error (not the leader, a fenced or unknown epoch, an unknown partition) backs that partition off for
//! `replica.fetch.backoff.ms` — the next metadata change re-targets it if the leader moved; a
//! corrupt batch from the leader is an error, one log line, and a back-off; a broken or slow
//! connection is dropped and made again after the back-off.
//!
//! Owns: the fetch loop and its connection. Must never: append to a partition it no longer
//! follows at that epoch, be cancelled in the middle of an append (it is stopped by a flag and
//! checks it between fetches), spin (every failure waits), or block the shard.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures::future::{select, Either};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::clock::now_ms;
use sluice_engine::partition_log::AppendError;
use sluice_engine::watermark::Watermark;
use sluice_engine::PartitionLog;

use super::divergence::{truncation_offset, EpochEnd, UNDEFINED_EPOCH};
use super::PartitionKey;
use crate::kafka_client::KafkaConnection;
use crate::metadata_image::codes;
use crate::shard_context::ShardContext;

/// Longest a connect plus version negotiation may take.
const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// How much longer than its long poll a fetch may take before the connection is dropped.
const FETCH_TIMEOUT_MARGIN_MS: u64 = 30_000;
/// Most partitions in one fetch request (a limit on everything; the rest go in the next).
const MAX_PARTITIONS_PER_FETCH: usize = 1_000;

/// A partition followed from one leader at one leader epoch.
#[derive(Clone)]
pub struct FetchedPartition {
    log: Rc<PartitionLog>,
    leader_epoch: i32,
    /// No fetch of it before this time (ms): it failed.
    backoff_until_ms: i64,
}

impl FetchedPartition {
    pub fn new(log: Rc<PartitionLog>, leader_epoch: i32) -> FetchedPartition {
        FetchedPartition { log, leader_epoch, backoff_until_ms: 0 }
    }

    fn same_target(&self, other: &FetchedPartition) -> bool {
        self.leader_epoch == other.leader_epoch && Rc::ptr_eq(&self.log, &other.log)
    }
}

struct FetcherShared {
    leader_id: i32,
    partitions: RefCell<BTreeMap<PartitionKey, FetchedPartition>>,
    /// Bumped whenever the partitions change (wakes an idle fetcher).
    changed: Rc<Watermark>,
    stopped: Cell<bool>,
}

/// A running fetcher; dropping it stops the task at its next safe point.
pub struct FetcherHandle {
    shared: Rc<FetcherShared>,
}

impl Drop for FetcherHandle {
    fn drop(&mut self) {
        self.shared.stopped.set(true);
        self.shared.partitions.borrow_mut().clear();
        self.shared.changed.advance(self.shared.changed.get() + 1);
    }
}

impl FetcherHandle {
    pub fn start(leader_id: i32, partitions: BTreeMap<PartitionKey, FetchedPartition>) -> FetcherHandle {
        let shared = Rc::new(FetcherShared {
            leader_id,
            partitions: RefCell::new(partitions),
            changed: Watermark::new(0),
            stopped: Cell::new(false),
        });
        glommio::spawn_local(run(shared.clone())).detach();
        FetcherHandle { shared }
    }

    /// Replaces the partitions to fetch; those followed at the same epoch keep their state.
    /// Does nothing when nothing changed.
    pub fn set_partitions(&self, mut partitions: BTreeMap<PartitionKey, FetchedPartition>) {
        let mut current = self.shared.partitions.borrow_mut();
        let unchanged = current.len() == partitions.len()
            && current.iter().all(|(k, p)| partitions.get(k).is_some_and(|n| n.same_target(p)));
        if unchanged {
            return;
        }
        for (key, partition) in partitions.iter_mut() {
            if let Some(old) = current.get(key).filter(|old| old.same_target(partition)) {
                partition.backoff_until_ms = old.backoff_until_ms;
            }
        }
        *current = partitions;
        drop(current);
        self.shared.changed.advance(self.shared.changed.get() + 1);
    }

    pub fn follows(&self, key: &PartitionKey) -> bool {
        self.shared.partitions.borrow().contains_key(key)
    }
}

/// Runs `f` for at most `ms`; `None` if it took longer.
async fn within<T>(ms: u64, f: impl std::future::Future<Output = T>) -> Option<T> {
    let timer = glommio::timer::sleep(Duration::from_millis(ms));
    futures::pin_mut!(f, timer);
    match select(f, timer).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(_) => None,
    }
}

async fn connect(ctx: &ShardContext, leader_id: i32) -> Result<KafkaConnection, String> {
    let addr = {
        let image = ctx.image.borrow();
        let broker = image.brokers.get(&leader_id).ok_or_else(|| format!("broker {leader_id} is not registered"))?;
        format!("{}:{}", broker.host, broker.port)
    };
    let client_id = format!("sluice-replica-{}", ctx.config.node_id);
    within(CONNECT_TIMEOUT_MS, KafkaConnection::connect(&addr, &client_id))
        .await
        .unwrap_or_else(|| Err(format!("connect to {addr}: timed out")))
}

async fn run(shared: Rc<FetcherShared>) {
    let ctx = ShardContext::current();
    let config = ctx.config.replication.clone();
    let backoff = Duration::from_millis(config.fetch_backoff_ms);
    let mut connection: Option<Rc<KafkaConnection>> = None;
    while !shared.stopped.get() {
        let generation = shared.changed.get();
        let now = now_ms();
        let wanted: Vec<(PartitionKey, FetchedPartition)> = shared
            .partitions
            .borrow()
            .iter()
            .filter(|(_, p)| p.backoff_until_ms <= now && !p.log.is_closed())
            .take(MAX_PARTITIONS_PER_FETCH)
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect();
        if wanted.is_empty() {
            let next =
                shared.partitions.borrow().values().filter(|p| !p.log.is_closed()).map(|p| p.backoff_until_ms).min();
            let wait_ms = next.map_or(1_000, |t| t.saturating_sub(now)).clamp(1, 1_000) as u64;
            let _ = within(wait_ms, shared.changed.wait_for(generation + 1)).await;
            continue;
        }
        let conn = match &connection {
            Some(conn) => conn.clone(),
            None => match connect(&ctx, shared.leader_id).await {
                Ok(conn) => connection.insert(Rc::new(conn)).clone(),
                Err(e) => {
                    sluice_engine::warn_limited!(leader = shared.leader_id, error = %e, "replica fetcher cannot connect");
                    glommio::timer::sleep(backoff).await;
                    continue;
                }
            },
        };
        let request = fetch_request(ctx.config.node_id, &config, &wanted);
        let timeout_ms = config.fetch_wait_max_ms.max(0) as u64 + FETCH_TIMEOUT_MARGIN_MS;
        let response = match within(timeout_ms, conn.call(&request)).await {
            Some(Ok(response)) => response,
            outcome => {
                let error = match outcome {
                    Some(Err(e)) => e,
                    _ => "fetch timed out".to_string(),
                };
                sluice_engine::warn_limited!(leader = shared.leader_id, error = %error, "replica fetch failed; reconnecting");
                connection = None;
                glommio::timer::sleep(backoff).await;
                continue;
            }
        };
        if response.error_code != codes::NONE {
            sluice_engine::warn_limited!(
                leader = shared.leader_id,
                error = response.error_code,
                "replica fetch refused"
            );
            glommio::timer::sleep(backoff).await;
            continue;
        }
        let sent: BTreeMap<PartitionKey, i32> = wanted.iter().map(|(k, p)| (k.clone(), p.leader_epoch)).collect();
        for topic in response.responses {
            let name = topic.topic.0.to_string();
            for data in topic.partitions {
                let key = (name.clone(), data.partition_index);
                let Some(&epoch) = sent.get(&key) else { continue };
                let current = shared.partitions.borrow().get(&key).cloned();
                let Some(partition) = current.filter(|p| p.leader_epoch == epoch) else { continue };
                if let Err(why) = apply_partition(&partition.log, data).await {
                    sluice_engine::info_limited!(topic = %key.0, partition = key.1, leader = shared.leader_id, %why, "replica fetch of a partition failed; backing off");
                    if let Some(p) = shared.partitions.borrow_mut().get_mut(&key) {
                        p.backoff_until_ms = now_ms().saturating_add(config.fetch_backoff_ms as i64);
                    }
                }
            }
        }
    }
}

/// The Fetch for `wanted`, each partition from its log end with its last epoch.
fn fetch_request(
    node_id: i32,
    config: &super::config::ReplicationConfig,
    wanted: &[(PartitionKey, FetchedPartition)],
) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for ((topic, index), partition) in wanted {
        let log = &partition.log;
        let fetch = FetchPartition::default()
            .with_partition(*index)
            .with_current_leader_epoch(partition.leader_epoch)
            .with_fetch_offset(log.log_end_offset())
            .with_last_fetched_epoch(log.latest_epoch().unwrap_or(UNDEFINED_EPOCH))
            .with_log_start_offset(log.log_start_offset())
            .with_partition_max_bytes(config.fetch_max_bytes);
        match topics.last_mut() {
            Some(last) if last.topic.0.as_str() == topic => last.partitions.push(fetch),
            _ => topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partitions(vec![fetch]),
            ),
        }
    }
    FetchRequest::default()
        .with_replica_id(BrokerId(node_id))
        .with_max_wait_ms(config.fetch_wait_max_ms)
        .with_min_bytes(config.fetch_min_bytes)
        .with_max_bytes(config.fetch_response_max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics)
}

/// Applies one partition's answer: truncate on a diverging epoch, else append the records and
/// take the leader's high watermark. `Err`: why the partition should back off.
async fn apply_partition(log: &Rc<PartitionLog>, data: PartitionData) -> Result<(), String> {
    if log.is_closed() {
        return Ok(()); // shutting down, or the partition was deleted
    }
    if data.error_code == codes::OFFSET_OUT_OF_RANGE && data.log_start_offset > log.log_end_offset() {
        // The leader's log starts past this one's end (retention ran while this replica was
        // away): start over at the leader's start, like Kafka's follower.
        tracing::info!(
            topic = log.topic(),
            partition = log.partition(),
            log_end = log.log_end_offset(),
            leader_log_start = data.log_start_offset,
            "follower behind the leader's log start: starting over there"
        );
        return log.truncate_fully_and_start_at(data.log_start_offset).await.map_err(|e| e.to_string());
    }
    if data.error_code != codes::NONE {
        return Err(format!("error code {}", data.error_code));
    }
    if data.diverging_epoch.epoch >= 0 || data.diverging_epoch.end_offset >= 0 {
        let diverging = EpochEnd { epoch: data.diverging_epoch.epoch, end_offset: data.diverging_epoch.end_offset };
        let own = (diverging.epoch >= 0)
            .then(|| log.end_offset_for_epoch(diverging.epoch))
            .filter(|(epoch, _)| *epoch != UNDEFINED_EPOCH)
            .map(|(epoch, end_offset)| EpochEnd { epoch, end_offset });
        let truncation =
            truncation_offset(diverging, own, log.log_start_offset(), log.log_end_offset(), log.high_watermark());
        if truncation.offset >= log.log_end_offset() {
            // Nothing to cut, yet the leader says the logs differ: back off rather than ask
            // again at once (it cannot happen while both follow the same metadata).
            return Err(format!("diverging epoch {diverging:?} with nothing to truncate"));
        }
        if truncation.offset < log.high_watermark() {
            sluice_engine::warn_limited!(
                topic = log.topic(),
                partition = log.partition(),
                offset = truncation.offset,
                high_watermark = log.high_watermark(),
                "truncating below the high watermark"
            );
        }
        tracing::info!(
            topic = log.topic(),
            partition = log.partition(),
            from = log.log_end_offset(),
            to = truncation.offset,
            ?diverging,
            "follower log diverged from its leader: truncating"
        );
        log.truncate_to(truncation.offset).await.map_err(|e| format!("truncation failed: {e}"))?;
        return Ok(());
    }
    let records = data.records.unwrap_or_default();
    if !records.is_empty() {
        match log.append_as_follower_shared(&records).await {
            Ok(_) => {}
            Err(AppendError::UnexpectedOffset { expected, got }) => {
                // The log moved meanwhile (a truncation, a new role): the next fetch is from
                // its end.
                tracing::debug!(topic = log.topic(), partition = log.partition(), expected, got, "stale fetch dropped");
                return Ok(());
            }
            Err(e) => {
                sluice_engine::error_limited!(topic = log.topic(), partition = log.partition(), error = %e,
                    "records from the leader refused");
                return Err(e.to_string());
            }
        }
    }
    log.set_high_watermark(data.high_watermark.min(log.log_end_offset()));
    // The leader's log start moved (DeleteRecords, retention): follow it up to what is
    // committed here (Kafka's `maybeIncrementLogStartOffset` on a follower).
    let log_start_offset = data.log_start_offset.min(log.high_watermark());
    if log_start_offset > log.log_start_offset() {
        log.delete_records_before(log_start_offset).await.map_err(|e| format!("moving the log start: {e}"))?;
    }
    Ok(())
}
