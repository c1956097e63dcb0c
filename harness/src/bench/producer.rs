//! One producer: a connection to one partition leader, a per-partition accumulator that batches
//! like a Kafka client (a batch is sent when it reaches `batch_bytes` or its first record has
//! waited `linger_ms`; a request then drains every non-empty batch, as Kafka's sender does),
//! sticky partitioning for unkeyed messages and key hashing for keyed ones, at most
//! `max_in_flight` requests outstanding, and acknowledgement latency recorded per message
//! against its *intended* send time.
//!
//! A transactional producer (`transactional`) stamps its batches with its producer id, epoch
//! and per-partition sequences, adds all its partitions to the transaction at its first send,
//! and commits when the transaction is `transaction_commit_ms` old or holds
//! `transaction_commit_messages`: it waits for every batch's acknowledgement, then ends the
//! transaction ([`crate::bench::transaction`]); messages generated meanwhile keep their intended
//! times, so the commit's pause shows in their latency.
//!
//! Owns: its connection, accumulators and schedule. Must never: record a latency from the
//! moment a message actually left (that would hide stalls), hide a failed or refused batch (each
//! counts its messages as errors under the broker's error name), or buffer more than one batch
//! per partition (generation pauses while requests are in flight at the limit).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use glommio::sync::Semaphore;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest};
use sluice_engine::batch::{set_producer, set_transactional_producer};
use sluice_engine::batch_builder::RecordBatchBuilder;

use crate::bench::admin::topic_name;
use crate::bench::clock::{now_ns, wall_ms};
use crate::bench::compression::{engine_codec, Compressor};
use crate::bench::kafka_client::{decode_response, KafkaConnection, ResponseReceiver};
use crate::bench::payload::{PayloadHeader, PayloadPool, Rng};
use crate::bench::plan::ProducerPlan;
use crate::bench::rate::RateSchedule;
use crate::bench::run_state::{error_name, RunShared, ShardResult};
use crate::bench::transaction::TransactionSession;
use crate::bench::workload::MessageSize;

/// Broker-side timeout of a produce request.
const PRODUCE_TIMEOUT_MS: i32 = 30_000;
/// A produce request stops taking batches at this size (brokers refuse requests above
/// socket.request.max.bytes, 100 MiB by default).
const MAX_REQUEST_BYTES: usize = 16 << 20;

/// Messages of one partition waiting to be sent, and their intended send times.
struct Accumulator {
    partition: i32,
    builder: Option<RecordBatchBuilder>,
    intended_ns: Vec<u64>,
    value_bytes: u64,
    first_append_ns: Option<u64>,
    next_sequence: u64,
    /// Kafka's per-partition batch sequence (transactional producers): the base sequence of
    /// the next batch.
    next_batch_sequence: i32,
}

/// What every send of one producer uses: its connection, in-flight limit, plan, and where
/// results and a broken connection are reported.
#[derive(Clone, Copy)]
struct Link<'a> {
    conn: &'a Rc<KafkaConnection>,
    version: i16,
    in_flight: &'a Rc<Semaphore>,
    plan: &'a ProducerPlan,
    run: &'a Arc<RunShared>,
    shard: usize,
    result: &'a Rc<RefCell<ShardResult>>,
    broken: &'a Rc<RefCell<Option<String>>>,
}

/// Who an idempotent or transactional producer's batches say they come from.
#[derive(Clone, Debug)]
struct ProducerIdentity {
    producer_id: i64,
    producer_epoch: i16,
    /// Set for a transactional producer (its batches are transactional, its requests name it).
    transactional_id: Option<String>,
}

impl ProducerIdentity {
    fn of_session(session: &TransactionSession) -> ProducerIdentity {
        ProducerIdentity {
            producer_id: session.producer_id,
            producer_epoch: session.producer_epoch,
            transactional_id: Some(session.transactional_id().to_string()),
        }
    }
}

/// An idempotent producer's id and epoch (InitProducerId without a transactional id).
async fn init_idempotent(conn: &KafkaConnection) -> Result<ProducerIdentity, String> {
    use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(-1)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response = conn.call(&request).await?;
    if response.error_code != 0 {
        return Err(format!("InitProducerId: {}", error_name(response.error_code)));
    }
    Ok(ProducerIdentity {
        producer_id: response.producer_id.0,
        producer_epoch: response.producer_epoch,
        transactional_id: None,
    })
}

/// The open transaction of a transactional producer.
struct OpenTransaction {
    session: TransactionSession,
    started_ns: Option<u64>,
    messages: u64,
}

/// What the acknowledgement of one partition's batch must account for.
struct SentBatch {
    partition: i32,
    intended_ns: Vec<u64>,
    value_bytes: u64,
}

pub async fn run_producer(
    plan: ProducerPlan,
    run: Arc<RunShared>,
    shard: usize,
    pool: Rc<PayloadPool>,
    result: Rc<RefCell<ShardResult>>,
) {
    if let Err(e) = produce(&plan, &run, shard, &pool, &result).await {
        result.borrow_mut().error(format!("producer {} ({}): {e}", plan.producer_id, plan.leader), 1);
        run.live[shard].errors.fetch_add(1, Relaxed);
    }
    run.producer_finished();
}

async fn produce(
    plan: &ProducerPlan,
    run: &Arc<RunShared>,
    shard: usize,
    pool: &PayloadPool,
    result: &Rc<RefCell<ShardResult>>,
) -> Result<(), String> {
    let w = &run.workload;
    let conn = Rc::new(
        crate::bench::kafka_client::connect(&plan.leader, &format!("sluice-bench-p{}", plan.producer_id)).await?,
    );
    let version = conn.version_for(ApiKey::Produce)?;
    let mut txn = match &w.transaction {
        None => None,
        Some(settings) => {
            let transactional_id = format!("sluice-bench-{:08x}-{}", run.run_id, plan.producer_id);
            let session = TransactionSession::init(
                &w.bootstrap,
                &format!("sluice-bench-p{}-txn", plan.producer_id),
                &transactional_id,
                settings.timeout_ms,
                &plan.topic,
            )
            .await?;
            Some(OpenTransaction { session, started_ns: None, messages: 0 })
        }
    };
    let idempotent = match (&txn, w.idempotent) {
        (None, true) => Some(init_idempotent(&conn).await?),
        _ => None,
    };
    let Some(start_ns) = run.wait_for_start().await else { return Ok(()) };
    let end_ns = run.end_ns(start_ns);
    let warmup_end_ns = run.warmup_end_ns(start_ns);
    result.borrow_mut().set_warmup_end_ns(warmup_end_ns);
    let mut schedule = match plan.rate_per_sec {
        Some(rate) if rate > 0.0 => RateSchedule::fixed(start_ns, rate),
        _ => RateSchedule::unlimited(start_ns),
    };
    let in_flight = Rc::new(Semaphore::new(w.max_in_flight as u64));
    let mut compressor = Compressor::new(w.compression);
    let mut rng = Rng::new(w.seed ^ (u64::from(plan.producer_id) << 32) ^ u64::from(run.run_id));
    let mut accs: Vec<Accumulator> = plan
        .partitions
        .iter()
        .map(|p| Accumulator {
            partition: *p,
            builder: None,
            intended_ns: Vec::new(),
            value_bytes: 0,
            first_append_ns: None,
            next_sequence: 0,
            next_batch_sequence: 0,
        })
        .collect();
    let linger_ns = (w.linger_ms * 1e6) as u64;
    // A record's encoding: value, key, and at most 24 bytes of varints and attributes.
    let max_record_bytes = w.message_size.max_bytes() + if w.keyed { 8 } else { 0 } + 24;
    let mut sticky = rng.below(accs.len() as u64) as usize;
    let mut key = [0u8; 8];
    let keys = super::key_distribution::KeySampler::new(w.key_distribution, w.key_space)?;
    let broken: Rc<RefCell<Option<String>>> = Rc::new(RefCell::new(None));
    let link = Link { conn: &conn, version, in_flight: &in_flight, plan, run, shard, result, broken: &broken };
    loop {
        if let Some(reason) = broken.borrow().clone() {
            return Err(reason);
        }
        let now = now_ns();
        let out_of_count = plan.message_count.is_some_and(|c| schedule.issued() >= c);
        if end_ns.is_some_and(|e| now >= e) || out_of_count || run.aborted() {
            break;
        }
        // Generate the messages due now, until a batch fills.
        let mut full = false;
        let mut budget = schedule.backlog(now);
        if let Some(c) = plan.message_count {
            budget = budget.min(c - schedule.issued());
        }
        while budget > 0 && !full {
            let Some(intended) = schedule.take_due(now) else { break };
            budget -= 1;
            let index = if w.keyed {
                let k = keys.draw(&mut rng);
                key = k.to_be_bytes();
                (fxhash(k) % accs.len() as u64) as usize
            } else {
                sticky
            };
            let acc = &mut accs[index];
            let len = match w.message_size {
                MessageSize::Fixed(n) => n,
                MessageSize::Uniform { min, max } => min + rng.below((max - min + 1) as u64) as usize,
            };
            let header = PayloadHeader {
                run_id: run.run_id,
                producer_id: plan.producer_id,
                sequence: acc.next_sequence,
                intended_ns: intended,
            };
            acc.next_sequence += 1;
            let builder =
                acc.builder.get_or_insert_with(|| RecordBatchBuilder::new(wall_ms(), w.batch_bytes + len + 64));
            builder.push_with(w.keyed.then_some(&key[..]), len, |out| pool.append(out, len, &header, &mut rng));
            acc.intended_ns.push(intended);
            acc.value_bytes += len as u64;
            acc.first_append_ns.get_or_insert(now);
            if let Some(t) = &mut txn {
                t.started_ns.get_or_insert(now);
                t.messages += 1;
            }
            // Closed once the largest next record might not fit, so a batch never exceeds
            // batch_bytes (unless one record alone does) — brokers refuse batches above
            // max.message.bytes, which batch_bytes is usually sized against.
            if builder.len_bytes() + max_record_bytes > w.batch_bytes {
                full = true;
            }
        }
        if let (Some(t), Some(settings)) = (&mut txn, &w.transaction) {
            let commit_ns = (settings.commit_interval_ms * 1e6) as u64;
            let due = t.started_ns.is_some_and(|s| now >= s + commit_ns)
                || settings.commit_messages.is_some_and(|m| t.messages >= m);
            if due {
                commit(t, &link, &mut accs, &mut compressor).await?;
                continue;
            }
        }
        let linger_due = accs.iter().filter_map(|a| a.first_append_ns).min().map(|t| t + linger_ns);
        if full || linger_due.is_some_and(|d| d <= now) {
            let session = txn.as_mut().map(|t| &mut t.session);
            send_all(&link, &mut accs, &mut compressor, session, idempotent.as_ref()).await?;
            if !w.keyed {
                sticky = rng.below(accs.len() as u64) as usize;
            }
            glommio::yield_if_needed().await;
            continue;
        }
        let mut wake = if schedule.is_fixed_rate() { schedule.next_due_ns(now) } else { now };
        if let Some(d) = linger_due {
            wake = wake.min(d);
        }
        if let Some(e) = end_ns {
            wake = wake.min(e);
        }
        if wake > now {
            glommio::timer::sleep(Duration::from_nanos(wake - now)).await;
        } else {
            glommio::yield_if_needed().await;
        }
    }
    // Send what is left, then wait for every acknowledgement (and commit it).
    if let Some(t) = &mut txn {
        return commit(t, &link, &mut accs, &mut compressor).await;
    }
    if accs.iter().any(|a| a.builder.is_some()) {
        send_all(&link, &mut accs, &mut compressor, None, idempotent.as_ref()).await?;
    }
    let _ = in_flight.acquire(w.max_in_flight as u64).await;
    if let Some(reason) = broken.borrow().clone() {
        return Err(reason);
    }
    Ok(())
}

/// Ends the open transaction: sends what is batched, waits for every acknowledgement, commits.
async fn commit(
    txn: &mut OpenTransaction,
    link: &Link<'_>,
    accs: &mut [Accumulator],
    compressor: &mut Compressor,
) -> Result<(), String> {
    let Link { in_flight, run, result, broken, .. } = *link;
    let asked_ns = now_ns();
    if accs.iter().any(|a| a.builder.is_some()) {
        send_all(link, accs, compressor, Some(&mut txn.session), None).await?;
    }
    let max_in_flight = run.workload.max_in_flight as u64;
    // Every permit back means every request was answered; give them back for the next one.
    in_flight.acquire(max_in_flight).await.map_err(|e| format!("in-flight limit: {e}"))?;
    in_flight.signal(max_in_flight);
    if let Some(reason) = broken.borrow().clone() {
        return Err(reason);
    }
    if !txn.session.is_empty() {
        txn.session.end(true).await?;
        let mut r = result.borrow_mut();
        r.commit_latency.record(asked_ns, now_ns());
        r.transactions_committed += 1;
    }
    txn.started_ns = None;
    txn.messages = 0;
    Ok(())
}

/// The base sequence after a batch of `records` records at `sequence` (Kafka's sequences wrap
/// from `i32::MAX` to 0).
fn next_sequence(sequence: i32, records: usize) -> i32 {
    let records = i64::try_from(records).expect("records fit in i64");
    ((i64::from(sequence) + records) % (i64::from(i32::MAX) + 1)) as i32
}

/// Kafka-like spreading of keys over partitions (not murmur2: only the spread matters here).
fn fxhash(k: u64) -> u64 {
    k.wrapping_mul(0x517c_c1b7_2722_0a95).rotate_left(17)
}

async fn send_all(
    link: &Link<'_>,
    accs: &mut [Accumulator],
    compressor: &mut Compressor,
    mut txn: Option<&mut TransactionSession>,
    idempotent: Option<&ProducerIdentity>,
) -> Result<(), String> {
    let Link { conn, version, in_flight, plan, run, shard, result, broken } = *link;
    // A transaction must hold a partition before the partition's first batch of it. All of the
    // producer's partitions go in at the transaction's first send, while none of its batches is
    // in flight: adding one later would make the coordinator busy while earlier batches are
    // verified (KIP-890), which it answers with a retriable error this client does not retry.
    if let Some(session) = txn.as_deref_mut() {
        session.add_partitions(accs.iter().map(|a| a.partition)).await?;
    }
    let identity = txn.map(|s| ProducerIdentity::of_session(s)).or_else(|| idempotent.cloned());
    let permit = in_flight.clone().acquire_static_permit(1).await.map_err(|e| format!("in-flight limit: {e}"))?;
    let codec = engine_codec(compressor.codec());
    let mut partitions = Vec::new();
    let mut sent = Vec::new();
    let mut messages = 0u64;
    let mut request_bytes = 0usize;
    {
        let mut r = result.borrow_mut();
        for acc in accs.iter_mut() {
            if request_bytes >= MAX_REQUEST_BYTES {
                break; // the rest go in the next request (their linger has expired)
            }
            let Some(builder) = acc.builder.take() else { continue };
            acc.first_append_ns = None;
            r.uncompressed_batch_bytes += builder.len_bytes() as u64;
            let records = builder.record_count();
            let mut batch = if compressor.codec() == crate::bench::workload::CompressionCodec::None {
                builder.finish()
            } else {
                let compressed = compressor.compress(builder.records_section());
                builder.finish_compressed(codec, &compressed)
            };
            if let Some(id) = &identity {
                let sequence = acc.next_batch_sequence;
                if id.transactional_id.is_some() {
                    set_transactional_producer(&mut batch, id.producer_id, id.producer_epoch, sequence);
                } else {
                    set_producer(&mut batch, id.producer_id, id.producer_epoch, sequence);
                }
                acc.next_batch_sequence = next_sequence(sequence, records);
            }
            r.wire_batch_bytes += batch.len() as u64;
            request_bytes += batch.len() + 16;
            messages += acc.intended_ns.len() as u64;
            partitions
                .push(PartitionProduceData::default().with_index(acc.partition).with_records(Some(Bytes::from(batch))));
            sent.push(SentBatch {
                partition: acc.partition,
                intended_ns: std::mem::take(&mut acc.intended_ns),
                value_bytes: std::mem::take(&mut acc.value_bytes),
            });
        }
        r.sent_msgs += messages;
        r.produce_requests += 1;
    }
    let acks = run.workload.acks.0;
    // A transactional batch travels with its transactional id (KIP-890's verification).
    let transactional_id = identity
        .and_then(|id| id.transactional_id)
        .map(|id| kafka_protocol::messages::TransactionalId(kafka_protocol::protocol::StrBytes::from_string(id)));
    let request = ProduceRequest::default()
        .with_transactional_id(transactional_id)
        .with_acks(acks)
        .with_timeout_ms(PRODUCE_TIMEOUT_MS)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(&plan.topic))
            .with_partition_data(partitions)]);
    let receiver = match conn.send(&request, version, acks != 0, request_bytes + 256).await {
        Ok(r) => r,
        Err(e) => {
            count_failed(&sent, &format!("produce request: {e}"), run, shard, result);
            return Err(e);
        }
    };
    let topic = plan.topic.clone();
    let run = run.clone();
    let result = result.clone();
    let broken = broken.clone();
    match receiver {
        None => {
            // acks=0: nothing comes back; the write is the acknowledgement, no latency.
            complete(&topic, sent, None, now_ns(), &run, shard, &result);
            drop(permit);
        }
        Some(rx) => {
            glommio::spawn_local(async move {
                await_ack(rx, version, &topic, sent, &run, shard, &result, &broken).await;
                drop(permit);
            })
            .detach();
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn await_ack(
    rx: ResponseReceiver,
    version: i16,
    topic: &str,
    sent: Vec<SentBatch>,
    run: &Arc<RunShared>,
    shard: usize,
    result: &Rc<RefCell<ShardResult>>,
    broken: &Rc<RefCell<Option<String>>>,
) {
    let frame = match rx.await {
        Ok(Ok(frame)) => frame,
        Ok(Err(e)) => {
            count_failed(&sent, &format!("produce: {e}"), run, shard, result);
            broken.borrow_mut().get_or_insert(e);
            return;
        }
        Err(_) => {
            count_failed(&sent, "produce: connection dropped", run, shard, result);
            broken.borrow_mut().get_or_insert("connection dropped".into());
            return;
        }
    };
    let done_ns = now_ns();
    let response = match decode_response::<ProduceRequest>(frame, version) {
        Ok(r) => r,
        Err(e) => {
            count_failed(&sent, &format!("produce response: {e}"), run, shard, result);
            broken.borrow_mut().get_or_insert(e);
            return;
        }
    };
    let mut codes = Vec::with_capacity(sent.len());
    for t in &response.responses {
        for p in &t.partition_responses {
            codes.push((p.index, p.error_code));
        }
    }
    complete(topic, sent, Some(&codes), done_ns, run, shard, result);
}

/// Accounts for acknowledged (or refused) batches. `codes`: per-partition error codes, or
/// `None` for acks=0.
fn complete(
    topic: &str,
    sent: Vec<SentBatch>,
    codes: Option<&[(i32, i16)]>,
    done_ns: u64,
    run: &Arc<RunShared>,
    shard: usize,
    result: &Rc<RefCell<ShardResult>>,
) {
    let mut r = result.borrow_mut();
    let live = &run.live[shard];
    for batch in sent {
        let n = batch.intended_ns.len() as u64;
        let code = match codes {
            None => Some(0),
            Some(codes) => codes.iter().find(|(p, _)| *p == batch.partition).map(|(_, c)| *c),
        };
        match code {
            Some(0) => {
                let mut measured = 0u64;
                if codes.is_some() {
                    for intended in &batch.intended_ns {
                        if r.ack_latency.record(*intended, done_ns) {
                            measured += 1;
                        }
                    }
                } else {
                    let warmup_end = run.start_ns_if_started().map(|s| run.warmup_end_ns(s)).unwrap_or(0);
                    measured = batch.intended_ns.iter().filter(|t| **t >= warmup_end).count() as u64;
                }
                r.acked_msgs += n;
                r.acked_bytes += batch.value_bytes;
                r.acked_measured_msgs += measured;
                r.acked_measured_bytes += batch.value_bytes * measured / n.max(1);
                r.last_ack_ns = r.last_ack_ns.max(done_ns);
                *r.acked_by_partition.entry((topic.to_string(), batch.partition)).or_insert(0) += n;
                if let Some(a) = run.acked_by_partition.get(&(topic.to_string(), batch.partition)) {
                    a.fetch_add(n, Relaxed);
                }
                live.acked_msgs.fetch_add(n, Relaxed);
                live.acked_bytes.fetch_add(batch.value_bytes, Relaxed);
            }
            Some(code) => {
                r.error(format!("produce {topic}/{}: {}", batch.partition, error_name(code)), n);
                live.errors.fetch_add(n, Relaxed);
            }
            None => {
                r.error(format!("produce {topic}/{}: partition missing from the response", batch.partition), n);
                live.errors.fetch_add(n, Relaxed);
            }
        }
    }
}

fn count_failed(sent: &[SentBatch], what: &str, run: &Arc<RunShared>, shard: usize, result: &Rc<RefCell<ShardResult>>) {
    let n: u64 = sent.iter().map(|b| b.intended_ns.len() as u64).sum();
    result.borrow_mut().error(what.to_string(), n);
    run.live[shard].errors.fetch_add(n, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sequences_advance_by_the_record_count_and_wrap_like_kafkas() {
        assert_eq!(next_sequence(0, 5), 5);
        assert_eq!(next_sequence(i32::MAX - 1, 1), i32::MAX);
        assert_eq!(next_sequence(i32::MAX, 1), 0);
        assert_eq!(next_sequence(i32::MAX - 2, 5), 2);
    }
}
