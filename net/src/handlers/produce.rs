//! Produce: validate and append each partition's record batch on the partition's owner shard,
//! all partitions concurrently; per-partition errors with Kafka's codes. The acknowledgement
//! waits until every append is durable (see [`handle`]). acks=0 gets no
//! response; acks=-1 requires `min.insync.replicas` ≤ the in-sync replicas or fails with
//! NOT_ENOUGH_REPLICAS, like Kafka — the partition's replica state
//! ([`sluice_engine::replica_state`]) decides both, and the leader epoch appends carry. Only
//! the partition's leader appends: elsewhere NOT_LEADER_OR_FOLLOWER, naming the current
//! leader and its endpoint from v10 (KIP-951); acks=all on a replicated partition waits for
//! the high watermark ([`wait_replicated`]).

use std::rc::Rc;

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::{join_all, Either};
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::BrokerId;
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use sluice_engine::replica_state::AckTarget;
use sluice_engine::{AppendInfo, PartitionLog};

use crate::handlers::{codes, str_bytes};
use crate::produce_placement::ProducePlacement;
use crate::shard_context::ShardContext;
use sluice_engine::{ApiError, ErrorCode};

/// What a produce request resolves to once its appends are durable (`None` for acks=0).
pub type ProduceAck = Pin<Box<dyn Future<Output = Option<ProduceResponse>>>>;

/// An append's result: refused (Kafka's code and the reason), or appended with the receiver of
/// its durability (typed, so a full disk and a log closed by shutdown answer with their own
/// codes).
type AppendOutcome = Result<(AppendInfo, oneshot::Receiver<Result<(), ApiError>>), ApiError>;

/// Appends every partition's batch in request order (each waits only until its batch is in
/// the partition's write-behind buffer), then returns the acknowledgement as a future: it
/// resolves once every append is durable (written to its segment file, fsynced if the topic's
/// flush policy says so). The connection reads and appends its next requests meanwhile and
/// writes the responses in order.
///
/// Where each append ended is reported to `placement`, which places the connection's next
/// frame from it. `listener`: the connection's; leaders (KIP-951) are named at their endpoints
/// on it.
pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: ProduceRequest,
    version: i16,
    placement: &mut ProducePlacement,
    listener: Rc<str>,
) -> ProduceAck {
    let acks = request.acks;
    let timeout_ms = request.timeout_ms.max(0) as u64;
    // KIP-890 part 1: transactional batches only into partitions of the open transaction.
    let refused = crate::txn::produce_check::refused_partitions(ctx, &request).await;
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        let meta = ctx.image.borrow().topic(&name).cloned();
        let config = ctx.image.borrow().log_config(&name, &ctx.config.default_log_config);
        let partitions = topic.partition_data.into_iter().map(|p| {
            let name = name.clone();
            let meta = meta.clone();
            let min_insync = config.as_ref().map_or(1, |c| c.min_insync_replicas);
            let verification = if refused.is_empty() { None } else { refused.get(&(name.clone(), p.index)).copied() };
            async move {
                let index = p.index;
                let refuse = |refused: ApiError| (index, Err(refused));
                // The partition's replica state decides the leader epoch and what acks needs.
                let replica = ShardContext::current().replica_state(&name, index);
                let ack_target = replica.ack_target(acks, min_insync);
                if let Err(refused) = &ack_target {
                    if refused.code == ErrorCode::INVALID_REQUIRED_ACKS {
                        return refuse(refused.clone());
                    }
                }
                if crate::topic_name::is_internal(&name) {
                    // Kafka: "Cannot append to internal topic".
                    return refuse(ApiError::new(
                        ErrorCode::INVALID_TOPIC_EXCEPTION,
                        format!("Cannot append to internal topic {name}"),
                    ));
                }
                let Some(meta) = meta else { return refuse(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.into()) };
                if index < 0 || index >= meta.partitions {
                    return refuse(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.into());
                }
                let ack_target = match ack_target {
                    Ok(target) => target,
                    Err(refused) => return refuse(refused),
                };
                if replica.leader_id != ShardContext::current().config.node_id {
                    return refuse(ErrorCode::NOT_LEADER_OR_FOLLOWER.into());
                }
                if let Some(code) = verification {
                    let message = "transactional batch for a partition outside the producer's open transaction";
                    return refuse(ApiError::new(ErrorCode(code), message));
                }
                let leader_epoch = replica.leader_epoch;
                let records: Bytes = p.records.unwrap_or_default();
                let ctx = ShardContext::current();
                if ctx.config.produce_discard {
                    let (tx, rx) = oneshot::channel();
                    let _ = tx.send(Ok(()));
                    let info = AppendInfo {
                        base_offset: 0,
                        last_offset: 0,
                        log_append_time_ms: -1,
                        log_start_offset: 0,
                        record_count: 0,
                        end_position: 0,
                    };
                    return (index, Ok((info, rx)));
                }
                let ack_when_written = ctx.config.ack_when_written;
                let outcome: Option<AppendOutcome> = ctx
                    .on_partition(&name, index, move |log| async move {
                        let (info, target) = log
                            .append_buffered_shared(&records, leader_epoch)
                            .await
                            .map_err(|e| ApiError::new(e.error_code(), e.to_string()))?;
                        // On the owner shard: its counters, rate window and hot-key sketch.
                        crate::metrics::record_produce(
                            log.topic(),
                            log.partition(),
                            &records,
                            info.record_count as u64,
                        );
                        // Durability is awaited on the owner shard; the result crosses back
                        // over a oneshot (Send), so the request's shard can go on meanwhile.
                        let (tx, rx) = oneshot::channel();
                        glommio::spawn_local(async move {
                            let done = if ack_when_written {
                                log.wait_durable(target).await
                            } else if target.needs_flush {
                                log.flush().await // sluice.ack.on=buffered: only the flush policy
                            } else {
                                Ok(())
                            };
                            let done = done.map_err(|e| ApiError::new(e.error_code(), e.to_string()));
                            let done = match done {
                                Ok(()) if ack_target == AckTarget::AllInSync => {
                                    wait_replicated(&log, info.last_offset + 1, timeout_ms, min_insync).await
                                }
                                other => other,
                            };
                            let _ = tx.send(done);
                        })
                        .detach();
                        Ok((info, rx))
                    })
                    .await;
                match outcome {
                    None => refuse(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.into()),
                    Some(Ok(appended)) => (index, Ok(appended)),
                    Some(Err(refused)) => {
                        sluice_engine::info_limited!(topic = %name, partition = index, %refused, "produce refused");
                        refuse(refused)
                    }
                }
            }
        });
        let appended = join_all(partitions).await;
        for (index, outcome) in &appended {
            if let Ok((info, _)) = outcome {
                placement.appended(&name, *index, info.end_position);
            }
        }
        // An owned copy of the name: the acknowledgement outlives the request, and a slice of
        // the request frame would keep the whole frame from being reused for the next one.
        topics.push((kafka_protocol::messages::TopicName(str_bytes(name)), appended));
    }
    Box::pin(async move {
        let mut responses = Vec::with_capacity(topics.len());
        let mut leaders: Vec<i32> = Vec::new();
        for (name, partitions) in topics {
            let mut partition_responses = Vec::with_capacity(partitions.len());
            for (index, appended) in partitions {
                let mut error = |refused: ApiError| {
                    let response = PartitionProduceResponse::default()
                        .with_index(index)
                        .with_error_code(refused.code.0)
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(-1)
                        .with_error_message(refused.message.map(str_bytes));
                    // KIP-951: who leads instead (v10+).
                    let moved = refused.code == ErrorCode::NOT_LEADER_OR_FOLLOWER;
                    if !moved || version < 10 {
                        return response;
                    }
                    let state = ShardContext::current().replica_state(name.0.as_str(), index);
                    if state.leader_id >= 0 && !leaders.contains(&state.leader_id) {
                        leaders.push(state.leader_id);
                    }
                    response.with_current_leader(
                        LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(state.leader_id))
                            .with_leader_epoch(state.leader_epoch),
                    )
                };
                partition_responses.push(match appended {
                    Err(refused) => error(refused),
                    Ok((info, durable)) => match durable.await {
                        Ok(Ok(())) => PartitionProduceResponse::default()
                            .with_index(index)
                            .with_error_code(codes::NONE)
                            .with_base_offset(info.base_offset)
                            .with_log_append_time_ms(info.log_append_time_ms)
                            .with_log_start_offset(info.log_start_offset),
                        Ok(Err(refused)) => error(refused),
                        Err(_) => error(ApiError::new(
                            ErrorCode::KAFKA_STORAGE_ERROR,
                            "shard stopped before the append was durable",
                        )),
                    },
                });
            }
            responses
                .push(TopicProduceResponse::default().with_name(name).with_partition_responses(partition_responses));
        }
        if acks == 0 {
            return None;
        }
        let node_endpoints = if version >= 10 { leader_endpoints(&leaders, &listener) } else { Vec::new() };
        Some(
            ProduceResponse::default()
                .with_responses(responses)
                .with_throttle_time_ms(0)
                .with_node_endpoints(node_endpoints),
        )
    })
}

/// acks=all on a replicated partition: waits until the high watermark passes `next_offset`
/// (every in-sync replica has the append), at most the request's `timeout_ms`
/// (REQUEST_TIMED_OUT then, as Kafka's delayed produce), and fails with NOT_LEADER_OR_FOLLOWER
/// when this broker's leadership of the partition ends meanwhile. Once replicated, fewer
/// in-sync replicas than `min.insync.replicas` is NOT_ENOUGH_REPLICAS_AFTER_APPEND (the ISR
/// shrank after the append: Kafka's `checkEnoughReplicasReachOffset`). A single-node
/// partition's high watermark follows its durable end, which the append already reached.
pub(crate) async fn wait_replicated(
    log: &PartitionLog,
    next_offset: i64,
    timeout_ms: u64,
    min_insync: i32,
) -> Result<(), ApiError> {
    if log.high_watermark_follows_durable_end() {
        return Ok(());
    }
    let enough_in_sync = || {
        let in_sync = ShardContext::current().replica_state(log.topic(), log.partition()).in_sync_replicas.len() as i32;
        if in_sync < min_insync {
            let message = format!("in-sync replicas {in_sync} below min.insync.replicas {min_insync} after the append");
            return Err(ApiError::new(ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND, message));
        }
        Ok(())
    };
    if log.high_watermark() >= next_offset {
        return enough_in_sync();
    }
    let not_leader =
        || ApiError::new(ErrorCode::NOT_LEADER_OR_FOLLOWER, "the leadership ended before the append was replicated");
    let Some(ended) = crate::replication::leader::leadership_ended(log.topic(), log.partition()) else {
        return Err(not_leader());
    };
    let replicated = log.high_watermark_watermark().wait_for(next_offset as u64);
    let leadership_ended = ended.wait_for(1);
    let timer = glommio::timer::sleep(std::time::Duration::from_millis(timeout_ms));
    futures::pin_mut!(replicated, leadership_ended, timer);
    match futures::future::select(replicated, futures::future::select(leadership_ended, timer)).await {
        Either::Left((Ok(()), _)) => enough_in_sync(),
        Either::Left((Err(_), _)) | Either::Right((Either::Left(_), _)) => Err(not_leader()),
        Either::Right((Either::Right(_), _)) => Err(ApiError::new(
            ErrorCode::REQUEST_TIMED_OUT,
            format!("the append was not replicated to the in-sync replicas within {timeout_ms} ms"),
        )),
    }
}

/// The endpoints of the brokers named as current leaders (v10+, KIP-951), from the image.
fn leader_endpoints(leaders: &[i32], listener: &str) -> Vec<NodeEndpoint> {
    let ctx = ShardContext::current();
    let image = ctx.image.borrow();
    leaders
        .iter()
        .filter_map(|id| image.brokers.get(id))
        .filter_map(|b| Some((b, b.endpoint(listener)?)))
        .map(|(b, (host, port))| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(b.id))
                .with_host(str_bytes(host))
                .with_port(port)
                .with_rack(b.rack.clone().map(str_bytes))
        })
        .collect()
}
