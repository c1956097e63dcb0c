//! Fetch: read each requested partition on its owner shard (one cross-shard call per owner
//! shard, for the reads and for the long-poll waiters), from the batch containing the fetch
//! offset, bounded by the high watermark, `partition_max_bytes` and the response's `max_bytes`
//! (the first non-empty partition is returned whole even past the limits, so consumers make
//! progress — KIP-74). If fewer than `min_bytes` are available the request waits — woken by the
//! append that moves a high watermark, not by polling — until `max_wait_ms` passes.
//!
//! Sessions (KIP-227, [`crate::fetch_session`]): a v7+ request with epoch 0 is a full fetch
//! that creates a session of its partitions when its shard has a slot (the response names the
//! session id; 0 if none); then requests with the session's next epoch list only partitions
//! whose fetch parameters changed (and `forgotten_topics_data`), the whole session is read, and
//! the response carries only partitions with news: records, a moved high watermark / last
//! stable offset / log start offset, an error, a diverging epoch or a preferred read replica.
//! Epoch -1 (or a full request naming a session) closes the session; -1 answers sessionless.
//! Unknown sessions get FETCH_SESSION_ID_NOT_FOUND, a wrong epoch INVALID_FETCH_SESSION_EPOCH,
//! a v13+ request on a v12- session (or the reverse) FETCH_SESSION_TOPIC_ID_ERROR: all with no
//! partitions and session id 0, so the client falls back to a full fetch.
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
use sluice_engine::PartitionLog;
use uuid::Uuid;

use crate::fetch_session::cache::{
    shard_of_session, FetchContext, SessionRequest, FINAL_EPOCH, INITIAL_EPOCH, INVALID_SESSION_ID,
};
use crate::fetch_session::session::{PartitionKey, PartitionOutcome, PartitionRequest, TopicKey};
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
/// `may_fetch`: whether the principal may fetch from a topic (checked for the partitions an
/// incremental fetch takes from its session; those the request lists were checked before).
pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: FetchRequest,
    version: i16,
    listener: &str,
    may_fetch: &dyn Fn(&str) -> bool,
) -> (FetchResponse, Vec<FileRange>) {
    let by_id = version >= 13;
    let replica_id = if version >= 15 { request.replica_state.replica_id.0 } else { request.replica_id.0 };
    // KIP-392: a consumer's fetch of v11+ carries its rack and may be served by a follower.
    let client_rack = (replica_id < 0 && version >= 11).then(|| request.rack_id.to_string());
    let topic_key = |name: &TopicName, id: &Uuid| {
        if by_id {
            TopicKey::Id(*id)
        } else {
            TopicKey::Name(Rc::from(name.0.as_str()))
        }
    };
    let listed: Vec<(PartitionKey, PartitionRequest)> = request
        .topics
        .iter()
        .flat_map(|t| {
            let topic = topic_key(&t.topic, &t.topic_id);
            t.partitions.iter().map(move |p| {
                let key = PartitionKey { topic: topic.clone(), partition: p.partition };
                let asked = PartitionRequest {
                    fetch_offset: p.fetch_offset,
                    partition_max_bytes: p.partition_max_bytes,
                    current_leader_epoch: p.current_leader_epoch,
                    last_fetched_epoch: p.last_fetched_epoch,
                    log_start_offset: p.log_start_offset,
                };
                (key, asked)
            })
        })
        .collect();
    let forgotten: Vec<PartitionKey> = request
        .forgotten_topics_data
        .iter()
        .flat_map(|t| {
            let topic = topic_key(&t.topic, &t.topic_id);
            t.partitions.iter().map(move |p| PartitionKey { topic: topic.clone(), partition: *p })
        })
        .collect();
    // Sessions (KIP-227): v7+ (older versions decode as session 0, epoch -1: sessionless).
    let session_request = SessionRequest {
        session_id: request.session_id,
        epoch: request.session_epoch,
        uses_topic_ids: by_id,
        privileged: replica_id >= 0,
        listed: &listed,
        forgotten: &forgotten,
    };
    let context = ctx.fetch_sessions.borrow_mut().begin(&session_request, now_ms());
    let full = matches!(request.session_epoch, INITIAL_EPOCH | FINAL_EPOCH);
    if full && request.session_id != INVALID_SESSION_ID {
        close_remote_session(ctx, request.session_id).await;
    }
    let (to_read, incremental, create) = match context {
        FetchContext::Error(code) => return (session_error(code, INVALID_SESSION_ID), Vec::new()),
        FetchContext::Sessionless => (listed, None, false),
        FetchContext::Full => (listed, None, true),
        FetchContext::Incremental { session, epoch, generation, partitions } => {
            (partitions, Some((session, epoch, generation)), false)
        }
    };

    let mut wanted = Vec::with_capacity(to_read.len());
    // Topics resolve once per run of partitions of the same topic (by id is a scan).
    let mut resolved: Option<(TopicKey, Option<(String, i32)>)> = None;
    for (key, asked) in &to_read {
        if resolved.as_ref().is_none_or(|(k, _)| k != &key.topic) {
            let image = ctx.image.borrow();
            let meta = match &key.topic {
                TopicKey::Id(id) => image.topic_by_id(id.as_bytes()).map(|(n, m)| (n.clone(), m.partitions)),
                TopicKey::Name(name) => image.topic(name).map(|m| (name.to_string(), m.partitions)),
            };
            resolved = Some((key.topic.clone(), meta));
        }
        let meta = resolved.as_ref().and_then(|(_, m)| m.as_ref());
        let p = key.partition;
        let error = match meta {
            None if by_id => codes::UNKNOWN_TOPIC_ID,
            None => codes::UNKNOWN_TOPIC_OR_PARTITION,
            Some((name, _)) if incremental.is_some() && !may_fetch(name) => codes::TOPIC_AUTHORIZATION_FAILED,
            Some((_, count)) if p < 0 || p >= *count => codes::UNKNOWN_TOPIC_OR_PARTITION,
            Some((name, _)) => match check_leader_epoch(ctx, name, p, asked.current_leader_epoch) {
                codes::NOT_LEADER_OR_FOLLOWER if client_rack.is_some() && is_follower(ctx, name, p) => codes::NONE,
                code => code,
            },
        };
        // No partition can contribute more than the whole response may hold (the first
        // batch of the first partition aside, which min-one-batch reads whole anyway).
        let partition_max_bytes = (asked.partition_max_bytes.max(0) as usize).min(request.max_bytes.max(0) as usize);
        wanted.push(Wanted {
            topic: meta.map(|(n, _)| n.clone()),
            partition: p,
            fetch_offset: asked.fetch_offset,
            partition_max_bytes,
            error,
            replica: (replica_id >= 0).then_some((replica_id, asked.last_fetched_epoch)),
            client_rack: client_rack.clone(),
        });
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
        let reads = read_all(ctx, &wanted, bound, max_bytes).await;
        let total: usize = reads.iter().map(|r| r.records.len()).sum();
        let any_error =
            reads.iter().any(|r| r.error != codes::NONE || r.diverging.is_some() || r.preferred_read_replica.is_some());
        // min_bytes 0 answers at once, like Kafka; otherwise wait for enough data.
        if total >= min_bytes || any_error || Instant::now() >= deadline || wanted.is_empty() {
            break reads;
        }
        // Wait for any high watermark to pass what we just saw, or the deadline.
        if !wait_for_data(ctx, &wanted, &reads, bound, deadline).await {
            break read_all(ctx, &wanted, bound, max_bytes).await;
        }
    };

    // Within the response budget, in order: the first non-empty partition whole, the others
    // only if they fit (dropped ones are read again next time).
    let mut budget = max_bytes;
    let mut any_records = false;
    let mut reads = reads;
    for r in &mut reads {
        if r.records.len() > budget && any_records {
            r.records = Records::Bytes(Bytes::new());
        }
        if r.records.len() > 0 {
            any_records = true;
            budget = budget.saturating_sub(r.records.len());
        }
    }
    let outcomes: Vec<PartitionOutcome> = reads
        .iter()
        .map(|r| PartitionOutcome {
            records_bytes: r.records.len(),
            error: r.error,
            high_watermark: r.high_watermark,
            last_stable_offset: r.last_stable_offset,
            log_start_offset: r.log_start_offset,
            redirect: r.diverging.is_some() || r.preferred_read_replica.is_some(),
        })
        .collect();
    // Which partitions the response carries, and its session id.
    let (include, session_id) = match &incremental {
        None => {
            let session_id = if create {
                ctx.fetch_sessions.borrow_mut().create(replica_id >= 0, by_id, &to_read, &outcomes, now_ms())
            } else {
                INVALID_SESSION_ID
            };
            (vec![true; wanted.len()], session_id)
        }
        Some((session, epoch, generation)) => {
            let mut session = session.borrow_mut();
            match session.respond(*epoch, *generation, &outcomes) {
                Ok(include) => (include, session.id),
                // Another request of this session's epoch was answered meanwhile.
                Err(_moved_on) => return (session_error(codes::INVALID_FETCH_SESSION_EPOCH, session.id), Vec::new()),
            }
        }
    };

    // Assemble in read order; consecutive partitions of one topic share its entry.
    let mut responses: Vec<FetchableTopicResponse> = Vec::new();
    let mut leaders: Vec<i32> = Vec::new();
    let mut files = Vec::new();
    for (((w, r), included), (key, _)) in wanted.iter().zip(reads).zip(include).zip(&to_read) {
        if !included {
            continue;
        }
        if r.records.len() > 0 {
            if let Some(topic) = &w.topic {
                crate::metrics::record_fetch(topic, r.records.len() as u64);
            }
        }
        let records = match r.records {
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
        let same_topic = responses.last().is_some_and(|t| match &key.topic {
            TopicKey::Id(id) => t.topic_id == *id,
            TopicKey::Name(name) => t.topic.0.as_str() == &**name,
        });
        if !same_topic {
            let t = FetchableTopicResponse::default().with_partitions(vec![]);
            responses.push(match &key.topic {
                TopicKey::Id(id) => t.with_topic_id(*id),
                TopicKey::Name(name) => t.with_topic(TopicName(StrBytes::from_string(name.to_string()))),
            });
        }
        responses.last_mut().expect("pushed").partitions.push(data);
    }
    let node_endpoints = if version >= 16 { leader_endpoints(ctx, &leaders, listener) } else { Vec::new() };
    let response = FetchResponse::default()
        .with_throttle_time_ms(0)
        .with_error_code(codes::NONE)
        .with_session_id(session_id)
        .with_responses(responses)
        .with_node_endpoints(node_endpoints);
    (response, files)
}

/// A response with a session-level error and no partitions.
fn session_error(code: i16, session_id: i32) -> FetchResponse {
    FetchResponse::default().with_error_code(code).with_session_id(session_id).with_responses(vec![])
}

/// A full fetch closes the session it names; one of another shard is closed there.
async fn close_remote_session(ctx: &ShardContext, session_id: i32) {
    let Some(owner) = shard_of_session(session_id, ctx.mesh.shard_count()) else { return };
    if owner == ctx.shard {
        return; // closed by `begin`
    }
    let _ = ctx
        .mesh
        .call(owner, move || async move {
            ShardContext::current().fetch_sessions.borrow_mut().remove(session_id);
        })
        .await;
}

/// Wall-clock milliseconds: session ages (eviction) only.
fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
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

/// Reads every wanted partition concurrently on its owner: one cross-shard call per owner shard
/// (not per partition), which reads its partitions concurrently. The first non-empty partition
/// may exceed its limit by one batch (min-one-batch), the others are capped.
async fn read_all(ctx: &Rc<ShardContext>, wanted: &[Wanted], bound: ReadBound, max_bytes: usize) -> Vec<PartitionRead> {
    let sendfile = ctx.config.fetch_sendfile;
    let readahead_bytes = ctx.config.fetch_readahead_bytes;
    let mut reads: Vec<Option<PartitionRead>> = vec![None; wanted.len()];
    let mut by_shard: Vec<Vec<(usize, Wanted)>> = vec![Vec::new(); ctx.mesh.shard_count()];
    for (i, w) in wanted.iter().enumerate() {
        match &w.topic {
            Some(topic) if w.error == codes::NONE => by_shard[ctx.owner_of(topic, w.partition)].push((i, w.clone())),
            _ => reads[i] = Some(unread(w.error)),
        }
    }
    let calls = by_shard.into_iter().enumerate().filter(|(_, batch)| !batch.is_empty()).map(|(shard, batch)| {
        let (indices, batch): (Vec<usize>, Vec<Wanted>) = batch.into_iter().unzip();
        async move {
            let count = batch.len();
            let answered = ctx
                .mesh
                .call(shard, move || async move {
                    let ctx = ShardContext::current();
                    // `skim`: answer with the partition's offsets only, without reading it.
                    let read = |w: Wanted, skim: bool| {
                        let log = ctx.storage.partition(w.topic.as_deref().expect("resolved"), w.partition);
                        async move {
                            match log {
                                Some(log) if skim => offsets_only(&log),
                                Some(log) => read_one(log, w, bound, sendfile, readahead_bytes).await,
                                None => unread(codes::UNKNOWN_TOPIC_OR_PARTITION),
                            }
                        }
                    };
                    // In waves, until this shard's reads fill the response budget (Kafka's
                    // `limitBytes`): the partitions after that are answered with their offsets
                    // only and read on a later fetch. Reading them all, to drop what does not
                    // fit, made a fetch of 10,000 partitions cost ~10,000 reads for 50 MB.
                    let mut out = Vec::with_capacity(batch.len());
                    let mut remaining = max_bytes;
                    let mut batch = batch.into_iter().peekable();
                    while batch.peek().is_some() && remaining > 0 {
                        let wave: Vec<Wanted> = batch.by_ref().take(READ_WAVE_PARTITIONS).collect();
                        for r in futures::future::join_all(wave.into_iter().map(|w| read(w, false))).await {
                            remaining = remaining.saturating_sub(r.records.len());
                            out.push(r);
                        }
                    }
                    for w in batch {
                        // Followers' fetches move the ISR and rack-aware ones may redirect:
                        // those are always read.
                        let skim = w.replica.is_none() && w.client_rack.is_none();
                        out.push(read(w, skim).await);
                    }
                    out
                })
                .await
                .unwrap_or_else(|_| vec![unread(codes::UNKNOWN_TOPIC_OR_PARTITION); count]);
            (indices, answered)
        }
    });
    for (indices, answered) in futures::future::join_all(calls).await {
        for (i, read) in indices.into_iter().zip(answered) {
            reads[i] = Some(read);
        }
    }
    reads.into_iter().map(|r| r.expect("every partition is read or refused")).collect()
}

/// Partitions of one shard read concurrently, per wave of the response budget (see `read_all`).
const READ_WAVE_PARTITIONS: usize = 16;

/// A partition answered with its offsets and no records: not read because the response is full
/// (see `read_all`), or the base of an answer without records (`read_one`).
fn offsets_only(log: &PartitionLog) -> PartitionRead {
    PartitionRead {
        error: codes::NONE,
        high_watermark: log.high_watermark(),
        last_stable_offset: log.last_stable_offset(),
        log_start_offset: log.log_start_offset(),
        records: Records::Bytes(Bytes::new()),
        aborted: Vec::new(),
        diverging: None,
        preferred_read_replica: None,
    }
}

/// A partition answered `error` without reading it.
fn unread(error: i16) -> PartitionRead {
    PartitionRead {
        error,
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
        records: Records::Bytes(Bytes::new()),
        aborted: Vec::new(),
        diverging: None,
        preferred_read_replica: None,
    }
}

/// Reads one partition on its owner shard.
async fn read_one(
    log: Rc<PartitionLog>,
    w: Wanted,
    bound: ReadBound,
    sendfile: bool,
    readahead_bytes: u64,
) -> PartitionRead {
    let failed = |error: i16| PartitionRead { error, ..offsets_only(&log) };
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
            let wanted_end = (position + len as u64).saturating_add(readahead_bytes);
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
    // What each owner shard waits on: (topic, partition, offset the bound must pass).
    let mut by_shard: Vec<Vec<(String, i32, u64)>> = vec![Vec::new(); ctx.mesh.shard_count()];
    for (w, r) in wanted.iter().zip(reads) {
        let Some(topic) = w.topic.clone() else { continue };
        // Wake when the bound passes both the fetch offset and what we saw.
        let seen_bound = match bound {
            ReadBound::LastStable => r.last_stable_offset,
            ReadBound::HighWatermark => r.high_watermark,
            ReadBound::LogEnd => w.fetch_offset, // nothing was returned: the log ends there
        };
        let seen = w.fetch_offset.max(seen_bound).max(0) as u64;
        let owner = ctx.owner_of(&topic, w.partition);
        by_shard[owner].push((topic, w.partition, seen));
    }
    // One waiter per shard (not per partition): it registers on each of its partitions'
    // watermarks and ends at the first that moves, its timer, or this fetch answering.
    let mut waits: Vec<Pin<Box<dyn Future<Output = bool>>>> = Vec::new();
    for (shard, batch) in by_shard.into_iter().enumerate().filter(|(_, b)| !b.is_empty()) {
        let ctx = ctx.clone();
        waits.push(Box::pin(async move {
            // When this fetch answers (another shard woke it, or the deadline), dropping
            // `_answered` ends the waiter there too, instead of leaving it registered until
            // its own timer fires.
            let (_answered, cancelled) = futures::channel::oneshot::channel::<()>();
            ctx.mesh
                .call(shard, move || async move {
                    let ctx = ShardContext::current();
                    let partition_waits: Vec<_> = batch
                        .into_iter()
                        .filter_map(|(topic, partition, seen)| {
                            let log = ctx.storage.partition(&topic, partition)?;
                            let watermark = match bound {
                                ReadBound::LastStable => log.last_stable_watermark(),
                                ReadBound::HighWatermark => log.high_watermark_watermark(),
                                ReadBound::LogEnd => log.log_end_watermark(),
                            };
                            Some(watermark.wait_for(seen + 1))
                        })
                        .collect();
                    if partition_waits.is_empty() {
                        return false;
                    }
                    let timer = glommio::timer::sleep(remaining);
                    futures::pin_mut!(timer);
                    match select(select(select_all(partition_waits), timer), cancelled).await {
                        Either::Left((Either::Left(((woke, _, _), _)), _)) => woke.is_ok(),
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
