//! Writing transaction markers: the partition side of ending a transaction. The transaction
//! coordinator (EndTxn, a fenced or timed-out producer) and the WriteTxnMarkers API call
//! [`write_txn_markers`]; it writes one commit or abort control batch into each listed
//! partition, on the partition's owner shard like a produce, and answers per partition.
//!
//! In a cluster [`complete_transaction`] routes each partition to its leader: this node's
//! partitions are written here, other leaders get a WriteTxnMarkers request.
//!
//! Owns: routing markers to partitions and turning each outcome into Kafka's error code.
//! Must never: write a marker into a partition another broker leads, or answer a partition
//! before its marker is durable.

use std::collections::BTreeMap;
use std::rc::Rc;

use futures::future::join_all;
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::error_code::ErrorCode;

use crate::group::offsets_log::OFFSETS_TOPIC;
use crate::group::service::on_offsets_partition_shard;
use crate::shard_context::ShardContext;

/// Longest a marker waits for the in-sync replicas (Kafka's `request.timeout.ms` default);
/// the coordinator retries after REQUEST_TIMED_OUT.
const MARKER_REPLICATION_TIMEOUT_MS: u64 = 30_000;

/// Writes one commit (`commit`) or abort marker for the producer into each of `partitions`
/// (topic, partition) — `__consumer_offsets` partitions included — concurrently, and answers
/// per partition once its marker is durable and, on a replicated partition, in every in-sync
/// replica: NONE, UNKNOWN_TOPIC_OR_PARTITION (no such partition
/// here), NOT_LEADER_OR_FOLLOWER (another broker leads it), INVALID_PRODUCER_EPOCH (an epoch older than the partition knows for the producer),
/// TRANSACTION_COORDINATOR_FENCED (an older coordinator epoch), or the append's storage error.
pub async fn write_txn_markers(
    ctx: &Rc<ShardContext>,
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    commit: bool,
    partitions: Vec<(String, i32)>,
) -> Vec<((String, i32), ErrorCode)> {
    let writes = partitions.into_iter().map(|(topic, partition)| {
        let ctx = ctx.clone();
        async move {
            let replica = ctx.replica_state(&topic, partition);
            if replica.leader_id != ctx.config.node_id {
                return ((topic, partition), ErrorCode::NOT_LEADER_OR_FOLLOWER);
            }
            let leader_epoch = replica.leader_epoch;
            let outcome = ctx
                .on_partition(&topic, partition, move |log| async move {
                    // On the owner shard the leadership may have moved since the check above.
                    let now = ShardContext::current().replica_state(log.topic(), log.partition());
                    if now.leader_id != ShardContext::current().config.node_id || now.leader_epoch != leader_epoch {
                        return Err((ErrorCode::NOT_LEADER_OR_FOLLOWER, "the leadership moved".to_string()));
                    }
                    let appended = log
                        .append_txn_marker(producer_id, producer_epoch, coordinator_epoch, commit, leader_epoch)
                        .await
                        .map_err(|e| (e.error_code(), e.to_string()))?;
                    // Like Kafka's markers (acks=-1): done once every in-sync replica has it,
                    // so a new leader cannot lack it.
                    let next_offset = appended.last_offset + 1;
                    crate::handlers::produce::wait_replicated(&log, next_offset, MARKER_REPLICATION_TIMEOUT_MS, 1)
                        .await
                        .map_err(|e| (e.code, e.to_string()))
                })
                .await;
            let code = match outcome {
                None => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                Some(Ok(())) => ErrorCode::NONE,
                Some(Err((code, message))) => {
                    sluice_engine::info_limited!(
                        %topic, partition, producer_id, producer_epoch, coordinator_epoch, %code, %message,
                        "transaction marker refused"
                    );
                    code
                }
            };
            ((topic, partition), code)
        }
    });
    join_all(writes).await
}

/// Ends a transaction in each of `partitions` wherever it is led: on this node, a commit or
/// abort marker in a data partition ([`write_txn_markers`]) and the transaction's end in a
/// `__consumer_offsets` partition (the group coordinator's
/// [`crate::group::service::GroupShard::complete_txn_offsets`]); on another node, one
/// WriteTxnMarkers request per leader (v1, [`crate::broker_client`]). Answers per partition:
/// NONE once done, an error otherwise (NOT_LEADER_OR_FOLLOWER while a partition has no leader,
/// COORDINATOR_NOT_AVAILABLE when a leader did not answer) — the coordinator retries those.
pub async fn complete_transaction(
    ctx: &Rc<ShardContext>,
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    commit: bool,
    partitions: Vec<(String, i32)>,
) -> Vec<((String, i32), ErrorCode)> {
    let mut local = Vec::new();
    let mut remote: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
    let mut answers = Vec::new();
    for (topic, partition) in partitions {
        match ctx.replica_state(&topic, partition).leader_id {
            leader if leader == ctx.config.node_id => local.push((topic, partition)),
            -1 => answers.push(((topic, partition), ErrorCode::NOT_LEADER_OR_FOLLOWER)),
            leader => remote.entry(leader).or_default().push((topic, partition)),
        }
    }
    let local = complete_here(ctx, producer_id, producer_epoch, coordinator_epoch, commit, local);
    let remote = join_all(remote.into_iter().map(|(leader, partitions)| {
        let ctx = ctx.clone();
        async move {
            let marker = WritableTxnMarker::default()
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(producer_epoch)
                .with_transaction_result(commit)
                .with_coordinator_epoch(coordinator_epoch)
                .with_topics(by_topic(&partitions));
            let request = WriteTxnMarkersRequest::default().with_markers(vec![marker]);
            match crate::broker_client::call(&ctx, leader, &request, WRITE_TXN_MARKERS_VERSION).await {
                Ok(response) => {
                    let mut codes: BTreeMap<(String, i32), ErrorCode> = BTreeMap::new();
                    for topic in response.markers.iter().flat_map(|m| &m.topics) {
                        for p in &topic.partitions {
                            codes.insert((topic.name.0.to_string(), p.partition_index), ErrorCode(p.error_code));
                        }
                    }
                    partitions
                        .into_iter()
                        .map(|p| {
                            let code = codes.get(&p).copied().unwrap_or(ErrorCode::UNKNOWN_SERVER_ERROR);
                            (p, code)
                        })
                        .collect::<Vec<_>>()
                }
                Err(e) => {
                    sluice_engine::info_limited!(leader, error = %e, "transaction markers not sent; retrying");
                    partitions.into_iter().map(|p| (p, ErrorCode::COORDINATOR_NOT_AVAILABLE)).collect()
                }
            }
        }
    }));
    let (local, remote) = futures::join!(local, remote);
    answers.extend(local);
    answers.extend(remote.into_iter().flatten());
    answers
}

/// The WriteTxnMarkers version brokers send each other (Kafka 4.x accepts only v1).
pub const WRITE_TXN_MARKERS_VERSION: i16 = 1;

/// Ends the transaction in partitions this node leads: markers into data partitions, the
/// group coordinator for `__consumer_offsets` ones. What WriteTxnMarkers from another node's
/// coordinator runs too.
pub async fn complete_here(
    ctx: &Rc<ShardContext>,
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    commit: bool,
    partitions: Vec<(String, i32)>,
) -> Vec<((String, i32), ErrorCode)> {
    let (offsets, data): (Vec<_>, Vec<_>) = partitions.into_iter().partition(|(t, _)| t == OFFSETS_TOPIC);
    let markers = write_txn_markers(ctx, producer_id, producer_epoch, coordinator_epoch, commit, data);
    let offsets = join_all(offsets.into_iter().map(|(topic, partition)| {
        let ctx = ctx.clone();
        async move {
            let answer = on_offsets_partition_shard(&ctx, partition, move |groups| async move {
                groups.complete_txn_offsets(partition, producer_id, commit).await
            })
            .await
            .and_then(|r| r);
            ((topic, partition), answer.err().map_or(ErrorCode::NONE, ErrorCode))
        }
    }));
    let (mut markers, offsets) = futures::join!(markers, offsets);
    markers.extend(offsets);
    markers
}

/// Partitions grouped by topic, in first-seen order, as WriteTxnMarkers lists them.
fn by_topic(partitions: &[(String, i32)]) -> Vec<WritableTxnMarkerTopic> {
    let mut topics: Vec<WritableTxnMarkerTopic> = Vec::new();
    for (topic, partition) in partitions {
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partition_indexes.push(*partition),
            None => topics.push(
                WritableTxnMarkerTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partition_indexes(vec![*partition]),
            ),
        }
    }
    topics
}
