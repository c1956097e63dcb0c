//! Fetch: read each requested partition on its owner shard, from the batch containing the fetch
//! offset, bounded by the high watermark, `partition_max_bytes` and the response's `max_bytes`
//! (the first non-empty partition is returned whole even past the limits, so consumers make
//! progress — KIP-74). If fewer than `min_bytes` are available the request waits — woken by the
//! append that moves a high watermark, not by polling — until `max_wait_ms` passes.
//!
//! Sessions (KIP-227): this broker answers every fetch as a full, sessionless fetch (session id
//! 0, which clients treat as "no session"); an incremental request naming a session id gets
//! FETCH_SESSION_ID_NOT_FOUND so the client falls back to a full fetch.
//!
//! Isolation (KIP-98): read_uncommitted reads below the high watermark; read_committed below
//! the last stable offset, with the aborted transactions overlapping what it reads (the client
//! drops their records), and its long poll waits for the last stable offset to move. Both
//! report the last stable offset.
//!
//! Replica fetches (a replica id ≥ 0: `replica_id` before v15, `replica_state` from v15): only
//! the partition's leader answers (else NOT_LEADER_OR_FOLLOWER, as to a consumer), they read
//! up to the log end through the same paths, long-poll on the log end, and each records the
//! follower's progress first ([`crate::replication::leader::on_follower_fetch`]: the high
//! watermark, the ISR). KIP-320: a follower naming the epoch of its last fetched batch is
//! answered with `diverging_epoch` and no records when its log went past the leader's end of
//! that epoch ([`crate::replication::divergence`]). NOT_LEADER_OR_FOLLOWER and
//! FENCED_LEADER_EPOCH answers name the current leader and epoch (v12+) and, from v16, its
//! endpoint (KIP-951), so clients can move without waiting for a Metadata refresh.
//!
//! Follower fetching (KIP-392): a consumer's fetch of v11+ (it carries `rack_id`) is answered
//! by any replica, a follower reading below its own high watermark (older consumers get
//! NOT_LEADER_OR_FOLLOWER there). The leader, with `replica.selector.class` set, answers a
//! consumer it would rather send elsewhere with `preferred_read_replica` and no records, at
//! once ([`crate::replication::read_replica`] decides).
//!
//! Must never: return bytes above the high watermark to a consumer (above the last stable
//! offset to a read_committed one), encode absent records as null (librdkafka breaks on it:
//! empty bytes instead), or hold a waiter after responding.

use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::{select, select_all, Either, Future};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::BrokerId;
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::partition_log::{LogError, ReadBound};
use uuid::Uuid;

use crate::handlers::{check_leader_epoch, codes};
use crate::replication::divergence::{diverging_epoch, leader_end_for_epoch, EpochEnd};
use crate::replication::leader::{on_follower_fetch, preferred_read_replica};
use crate::response_buf::{file_marker, FileRange, MAX_FILE_MARKERS};
use crate::shard_context::ShardContext;

/// Isolation level 1 = READ_COMMITTED.
const READ_COMMITTED: i8 = 1;

/// One partition to read, resolved against the metadata image.
#[derive(Clone)]
struct Wanted {
    topic_index: usize,
    topic: Option<String>,
    partition: i32,
    fetch_offset: i64,
    partition_max_bytes: usize,
    /// Error decided before reading (unknown topic/partition, fenced epoch, not the leader).
    error: i16,
    /// A follower's fetch: its replica id and the epoch of its last fetched batch (-1: none).
    replica: Option<(i32, i32)>,
    /// A consumer's fetch of v11+ (KIP-392): its `rack_id` (may be empty). `None` for older
    /// consumers and for followers.
    client_rack: Option<String>,
}

/// Record data of one partition: bytes (from the tail cache, or read and copied), or a range
/// of the segment file to `sendfile` (`sluice.fetch.sendfile`).
#[derive(Clone, Debug)]
enum Records {
    Bytes(Bytes),
    File(FileRange),
}

impl Records {
    fn len(&self) -> usize {
        match self {
            Records::Bytes(b) => b.len(),
            Records::File(f) => f.len,
        }
    }
}

/// What a read of one partition returned (all `Send`: it may come from another shard).
#[derive(Clone, Debug)]
struct PartitionRead {
    error: i16,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    records: Records,
    /// read_committed: the aborted transactions overlapping the read, as (producer id, first
    /// offset).
    aborted: Vec<(i64, i64)>,
    /// KIP-320: the follower's log diverged; the epoch and end offset it truncates towards.
    diverging: Option<EpochEnd>,
    /// KIP-392: the replica the consumer should read this partition from instead (no records).
    preferred_read_replica: Option<i32>,
}

/// Answers a Fetch; the file ranges are what the response's file markers stand for.
/// `listener`: the connection's; leaders (KIP-951) are named at their endpoints on it.
pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: FetchRequest,
    version: i16,
    listener: &str,
) -> (FetchResponse, Vec<FileRange>) {
    if request.session_id != 0 {
        let response = FetchResponse::default()
            .with_error_code(codes::FETCH_SESSION_ID_NOT_FOUND)
            .with_session_id(0)
            .with_responses(vec![]);
        return (response, Vec::new());
    }
    let by_id = version >= 13;
    let replica_id = if version >= 15 { request.replica_state.replica_id.0 } else { request.replica_id.0 };
    // KIP-392: a consumer's fetch of v11+ carries its rack and may be served by a follower.
    let client_rack = (replica_id < 0 && version >= 11).then(|| request.rack_id.to_string());
    let mut topic_headers: Vec<(TopicName, Uuid)> = Vec::new();
    let mut wanted = Vec::new();
    for topic in &request.topics {
        let resolved: Option<(String, i32)> = {
            let image = ctx.image.borrow();
            if by_id {
                image.topic_by_id(topic.topic_id.as_bytes()).map(|(n, m)| (n.clone(), m.partitions))
            } else {
                let name = topic.topic.0.to_string();
                image.topic(&name).map(|m| (name, m.partitions))
            }
        };
        let topic_index = topic_headers.len();
        topic_headers.push((topic.topic.clone(), topic.topic_id));
        for p in &topic.partitions {
            let error = match &resolved {
                None if by_id => codes::UNKNOWN_TOPIC_ID,
                None => codes::UNKNOWN_TOPIC_OR_PARTITION,
                Some((_, count)) if p.partition < 0 || p.partition >= *count => codes::UNKNOWN_TOPIC_OR_PARTITION,
                Some((name, _)) => match check_leader_epoch(ctx, name, p.partition, p.current_leader_epoch) {
                    codes::NOT_LEADER_OR_FOLLOWER if client_rack.is_some() && is_follower(ctx, name, p.partition) => {
                        codes::NONE
                    }
                    code => code,
                },
            };
            // No partition can contribute more than the whole response may hold (the first
            // batch of the first partition aside, which min-one-batch reads whole anyway).
            let partition_max_bytes = (p.partition_max_bytes.max(0) as usize).min(request.max_bytes.max(0) as usize);
            wanted.push(Wanted {
                topic_index,
                topic: resolved.as_ref().map(|(n, _)| n.clone()),
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes,
                error,
                replica: (replica_id >= 0).then_some((replica_id, p.last_fetched_epoch)),
                client_rack: client_rack.clone(),
            });
        }
    }
    let bound = if replica_id >= 0 {
        ReadBound::LogEnd
    } else if request.isolation_level == READ_COMMITTED {
        ReadBound::LastStable
    } else {
        ReadBound::HighWatermark
    };
    let max_bytes = request.max_bytes.max(0) as usize;
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_wait = Duration::from_millis(request.max_wait_ms.clamp(0, ctx.config.max_fetch_wait_ms) as u64);
    let deadline = Instant::now() + max_wait;

    let reads = loop {
        let reads = read_all(ctx, &wanted, bound).await;
        let total: usize = reads.iter().map(|r| r.records.len()).sum();
        let any_error =
            reads.iter().any(|r| r.error != codes::NONE || r.diverging.is_some() || r.preferred_read_replica.is_some());
        // min_bytes 0 answers at once, like Kafka; otherwise wait for enough data.
        if total >= min_bytes || any_error || Instant::now() >= deadline || wanted.is_empty() {
            break reads;
        }
        // Wait for any high watermark to pass what we just saw, or the deadline.
        if !wait_for_data(ctx, &wanted, &reads, bound, deadline).await {
            break read_all(ctx, &wanted, bound).await;
        }
    };

    // Assemble in request order within the response budget.
    let mut responses: Vec<FetchableTopicResponse> = topic_headers
        .iter()
        .map(|(name, id)| {
            let mut t = FetchableTopicResponse::default().with_partitions(vec![]);
            if by_id {
                t = t.with_topic_id(*id);
            } else {
                t = t.with_topic(name.clone());
            }
            t
        })
        .collect();
    let mut budget = max_bytes;
    let mut leaders: Vec<i32> = Vec::new();
    let mut any_records = false;
    let mut files = Vec::new();
    for (w, r) in wanted.iter().zip(reads) {
        let mut records = r.records;
        if records.len() > budget && any_records {
            records = Records::Bytes(Bytes::new());
        }
        if records.len() > 0 {
            any_records = true;
            budget = budget.saturating_sub(records.len());
            if let Some(topic) = &w.topic {
                crate::metrics::record_fetch(topic, records.len() as u64);
            }
        }
        let records = match records {
            Records::Bytes(b) => b,
            Records::File(range) if files.len() < MAX_FILE_MARKERS => {
                files.push(range);
                file_marker(files.len() - 1)
            }
            // Out of markers: answer this partition empty; the client fetches it again.
            Records::File(_) => Bytes::new(),
        };
        let data = PartitionData::default()
            .with_partition_index(w.partition)
            .with_error_code(r.error)
            .with_high_watermark(r.high_watermark)
            .with_last_stable_offset(r.last_stable_offset)
            .with_log_start_offset(r.log_start_offset)
            .with_aborted_transactions((bound == ReadBound::LastStable).then(|| {
                r.aborted
                    .iter()
                    .map(|(pid, first)| {
                        AbortedTransaction::default().with_producer_id(ProducerId(*pid)).with_first_offset(*first)
                    })
                    .collect()
            }))
            .with_preferred_read_replica(BrokerId(r.preferred_read_replica.unwrap_or(-1)))
            .with_records(Some(records));
        let data = match r.diverging {
            Some(d) if version >= 12 => {
                data.with_diverging_epoch(EpochEndOffset::default().with_epoch(d.epoch).with_end_offset(d.end_offset))
            }
            _ => data,
        };
        // KIP-951: who leads instead, so the client need not wait for a Metadata refresh.
        let data = match (&w.topic, r.error) {
            (Some(topic), codes::NOT_LEADER_OR_FOLLOWER | codes::FENCED_LEADER_EPOCH) if version >= 12 => {
                let state = ctx.replica_state(topic, w.partition);
                if state.leader_id >= 0 && !leaders.contains(&state.leader_id) {
                    leaders.push(state.leader_id);
                }
                data.with_current_leader(
                    LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(state.leader_id))
                        .with_leader_epoch(state.leader_epoch),
                )
            }
            _ => data,
        };
        responses[w.topic_index].partitions.push(data);
    }
    let node_endpoints = if version >= 16 { leader_endpoints(ctx, &leaders, listener) } else { Vec::new() };
    let response = FetchResponse::default()
        .with_throttle_time_ms(0)
        .with_error_code(codes::NONE)
        .with_session_id(0)
        .with_responses(responses)
        .with_node_endpoints(node_endpoints);
    (response, files)
}

/// Whether this broker is a follower of `topic`/`partition` (a replica, not its leader): it then
/// answers consumers' fetches of v11+ from its own log, up to its own high watermark (KIP-392).
fn is_follower(ctx: &ShardContext, topic: &str, partition: i32) -> bool {
    let state = ctx.replica_state(topic, partition);
    let node_id = ctx.config.node_id;
    !Rc::ptr_eq(&state, &ctx.single_node_replica_state)
        && state.leader_id != node_id
        && state.replicas.contains(&node_id)
}

/// The endpoints of the brokers named as current leaders (v16+, KIP-951), from the image.
fn leader_endpoints(ctx: &ShardContext, leaders: &[i32], listener: &str) -> Vec<NodeEndpoint> {
    let image = ctx.image.borrow();
    leaders
        .iter()
        .filter_map(|id| image.brokers.get(id))
        .filter_map(|b| Some((b, b.endpoint(listener)?)))
        .map(|(b, (host, port))| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(b.id))
                .with_host(StrBytes::from_string(host.to_string()))
                .with_port(port)
                .with_rack(b.rack.clone().map(StrBytes::from_string))
        })
        .collect()
}

/// Reads every wanted partition concurrently on its owner. The first non-empty partition may
/// exceed its limit by one batch (min-one-batch), the others are capped.
async fn read_all(ctx: &Rc<ShardContext>, wanted: &[Wanted], bound: ReadBound) -> Vec<PartitionRead> {
    let sendfile = ctx.config.fetch_sendfile;
    let readahead_bytes = ctx.config.fetch_readahead_bytes;
    let futures = wanted.iter().map(|w| {
        let w = w.clone();
        let ctx = ctx.clone();
        async move {
            let empty = || Records::Bytes(Bytes::new());
            let missing = PartitionRead {
                error: w.error,
                high_watermark: -1,
                last_stable_offset: -1,
                log_start_offset: -1,
                records: empty(),
                aborted: Vec::new(),
                diverging: None,
                preferred_read_replica: None,
            };
            if w.error != codes::NONE {
                return missing;
            }
            let topic = w.topic.clone().expect("resolved");
            let result = ctx
                .on_partition(&topic, w.partition, move |log| async move {
                    let failed = |error: i16| PartitionRead {
                        error,
                        high_watermark: log.high_watermark(),
                        last_stable_offset: log.last_stable_offset(),
                        log_start_offset: log.log_start_offset(),
                        records: empty(),
                        aborted: Vec::new(),
                        diverging: None,
                        preferred_read_replica: None,
                    };
                    if let Some(client_rack) = &w.client_rack {
                        if let Some(id) = preferred_read_replica(&log, client_rack, w.fetch_offset) {
                            return PartitionRead { preferred_read_replica: Some(id), ..failed(codes::NONE) };
                        }
                    }
                    if let Some((replica_id, last_fetched_epoch)) = w.replica {
                        let ctx = ShardContext::current();
                        let state = ctx.replica_state(log.topic(), log.partition());
                        let (epoch, end_offset) = log.end_offset_for_epoch(last_fetched_epoch);
                        let leader_end = leader_end_for_epoch(
                            last_fetched_epoch,
                            EpochEnd { epoch, end_offset },
                            log.latest_epoch(),
                            state.leader_epoch,
                            log.log_end_offset(),
                        );
                        if let Some(d) = diverging_epoch(last_fetched_epoch, w.fetch_offset, leader_end) {
                            return PartitionRead { error: codes::NONE, diverging: Some(d), ..failed(codes::NONE) };
                        }
                        if let Err(code) = on_follower_fetch(&log, &state, replica_id, w.fetch_offset) {
                            return failed(code);
                        }
                    }
                    let read = match log.read(w.fetch_offset, w.partition_max_bytes, bound, true).await {
                        Ok(read) => read,
                        Err(e) => {
                            let error = match e {
                                LogError::OffsetOutOfRange { .. } => codes::OFFSET_OUT_OF_RANGE,
                                other => other.error_code().0,
                            };
                            return failed(error);
                        }
                    };
                    // The transactions aborted within what is returned: it starts at the batch
                    // holding the fetch offset and ends below the last stable offset (a
                    // superset of Kafka's range is harmless: the client drops records only of
                    // batches it is given).
                    let aborted = if bound == ReadBound::LastStable && !read.is_empty() {
                        let from = w.fetch_offset.min(read.first_batch_offset.max(0));
                        log.aborted_transactions(from, read.last_stable_offset)
                            .iter()
                            .map(|a| (a.producer_id, a.first_offset))
                            .collect()
                    } else {
                        Vec::new()
                    };
                    let done = |records| PartitionRead {
                        error: codes::NONE,
                        high_watermark: read.high_watermark,
                        last_stable_offset: read.last_stable_offset,
                        log_start_offset: read.log_start_offset,
                        records,
                        aborted,
                        diverging: None,
                        preferred_read_replica: None,
                    };
                    if sendfile {
                        if let Some((file, position, len)) = read.file_range() {
                            let wanted_end = position + len as u64 + readahead_bytes;
                            let readahead_end = wanted_end.min(read.stable_file_end());
                            return done(Records::File(FileRange { file, position, len, readahead_end }));
                        }
                    }
                    let finished = done(Records::Bytes(Bytes::new()));
                    match read.into_bytes().await {
                        Ok(bytes) => PartitionRead { records: Records::Bytes(bytes), ..finished },
                        Err(e) => {
                            sluice_engine::error_limited!(error = %e, "fetch read failed");
                            failed(codes::KAFKA_STORAGE_ERROR)
                        }
                    }
                })
                .await;
            result.unwrap_or(PartitionRead { error: codes::UNKNOWN_TOPIC_OR_PARTITION, ..missing })
        }
    });
    futures::future::join_all(futures).await
}

/// Waits until one partition's high watermark (read_committed: last stable offset) moves past
/// what the last read saw, or the deadline. Returns false on deadline.
async fn wait_for_data(
    ctx: &Rc<ShardContext>,
    wanted: &[Wanted],
    reads: &[PartitionRead],
    bound: ReadBound,
    deadline: Instant,
) -> bool {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return false;
    }
    let mut waits: Vec<Pin<Box<dyn Future<Output = bool>>>> = Vec::new();
    for (w, r) in wanted.iter().zip(reads) {
        let Some(topic) = w.topic.clone() else { continue };
        // Wake when the bound passes both the fetch offset and what we saw.
        let seen_bound = match bound {
            ReadBound::LastStable => r.last_stable_offset,
            ReadBound::HighWatermark => r.high_watermark,
            ReadBound::LogEnd => w.fetch_offset, // nothing was returned: the log ends there
        };
        let seen = w.fetch_offset.max(seen_bound).max(0) as u64;
        let partition = w.partition;
        let ctx = ctx.clone();
        waits.push(Box::pin(async move {
            // The waiter runs on the partition's shard; when this fetch answers (another
            // partition woke it, or the deadline), dropping `_answered` ends it there too,
            // instead of leaving it registered until its own timer fires.
            let (_answered, cancelled) = futures::channel::oneshot::channel::<()>();
            ctx.on_partition(&topic, partition, move |log| async move {
                let watermark = match bound {
                    ReadBound::LastStable => log.last_stable_watermark(),
                    ReadBound::HighWatermark => log.high_watermark_watermark(),
                    ReadBound::LogEnd => log.log_end_watermark(),
                };
                let wait = watermark.wait_for(seen + 1);
                let timer = glommio::timer::sleep(remaining);
                futures::pin_mut!(wait, timer);
                match select(select(wait, timer), cancelled).await {
                    Either::Left((Either::Left((woke, _)), _)) => woke.is_ok(),
                    _ => false,
                }
            })
            .await
            .unwrap_or(false)
        }));
    }
    if waits.is_empty() {
        glommio::timer::sleep(remaining).await;
        return false;
    }
    let timer = Box::pin(glommio::timer::sleep(remaining));
    match select(select_all(waits), timer).await {
        Either::Left(((woke, _, _), _)) => woke,
        Either::Right(_) => false,
    }
}
