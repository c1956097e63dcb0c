//! The data path end to end with a real client (rdkafka / librdkafka) against the real binary:
//! a 2-shard broker whose topics have 4 partitions (auto-created with `num.partitions=4`), so
//! partitions live on both shards and requests cross shards. Ordering, acks, sizes, mid-batch
//! fetches, long-poll wake-up, ListOffsets, and data surviving a clean stop and a SIGKILL.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use futures::future::join_all;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use sluice_engine::batch::{batches, BatchInfo, Validation};
use support::*;

const PARTITIONS: i32 = 4;
/// Kafka's default `max.message.bytes` (topic) / `message.max.bytes` (broker).
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;
const TIMEOUT: Duration = Duration::from_secs(10);

/// A broker with 2 shards and 4 partitions per auto-created topic, plus `--set` overrides.
/// Starts a broker on `dir`; also says whether the start found a clean-shutdown marker (and took
/// it: no recovery) or not (recovery).
fn start(dir: &Path, sets: &[&str]) -> (Broker, Start) {
    let marker = dir.join(".clean_shutdown");
    let found_marker = marker.exists();
    let mut args = vec!["--cores", "2", "--set", "num.partitions=4"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let broker = Broker::start_with(dir, &args);
    broker.wait_for("sluice broker started");
    assert!(!marker.exists(), "a start takes the clean-shutdown marker");
    (broker, if found_marker { Start::Clean } else { Start::Recovery })
}

#[derive(Debug, PartialEq, Eq)]
enum Start {
    Clean,
    Recovery,
}

/// One consumed message.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Got {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
}

impl Got {
    fn of(m: &BorrowedMessage<'_>) -> Got {
        Got {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
        }
    }
}

fn all_partitions(from: i64) -> Vec<(i32, i64)> {
    (0..PARTITIONS).map(|p| (p, from)).collect()
}

/// Consumes from the given (partition, offset) starts until `n` messages arrived or 30 s passed.
fn consume(bootstrap: &str, topic: &str, from: &[(i32, i64)], n: usize, extra: &[(&str, &str)]) -> Vec<Got> {
    let consumer = assigned_consumer(bootstrap, topic, from, extra);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        if let Some(m) = consumer.poll(POLL) {
            let m = m.unwrap_or_else(|e| panic!("consuming {topic}: {e}"));
            got.push(Got::of(&m));
        }
    }
    got
}

/// A delivery report: (partition, offset) or the error.
type Delivered = Result<(i32, i64), KafkaError>;

/// Sends every record and waits for every delivery report.
fn deliver<'a>(
    producer: &FutureProducer,
    records: impl IntoIterator<Item = FutureRecord<'a, [u8], [u8]>>,
) -> Vec<Delivered> {
    let futures: Vec<_> =
        records.into_iter().map(|r| producer.send_result(r).unwrap_or_else(|(e, _)| panic!("enqueue: {e}"))).collect();
    block_on(join_all(futures))
        .into_iter()
        .map(|r| match r.expect("delivery report") {
            Ok(d) => Ok((d.partition, d.offset)),
            Err((e, _)) => Err(e),
        })
        .collect()
}

/// (partition, offset) of a successful delivery, panicking with the error otherwise.
fn acked(result: &Delivered) -> (i32, i64) {
    match result {
        Ok(at) => *at,
        Err(e) => panic!("delivery failed: {e}"),
    }
}

fn rdkafka_code(result: &Delivered) -> Option<RDKafkaErrorCode> {
    match result {
        Ok(_) => None,
        Err(KafkaError::MessageProduction(code)) => Some(*code),
        Err(other) => panic!("unexpected delivery error {other:?}"),
    }
}

/// A plain client for metadata, watermarks and offsets-for-times.
fn admin_consumer(bootstrap: &str) -> BaseConsumer {
    let mut c = client_config(bootstrap);
    c.set("group.id", "sluice-e2e-admin").set("enable.auto.commit", "false");
    c.create().expect("consumer")
}

fn watermarks(consumer: &BaseConsumer, topic: &str) -> Vec<(i64, i64)> {
    (0..PARTITIONS).map(|p| consumer.fetch_watermarks(topic, p, TIMEOUT).expect("watermarks")).collect()
}

/// The batches stored in `topic`/`partition` from offset 0, as the broker returns them.
fn stored_batches(bootstrap: &str, topic: &str, partition: i32) -> Vec<BatchInfo> {
    let fetched = raw_fetch(bootstrap, topic, partition, 0);
    assert_eq!(fetched.error_code, 0);
    batches(&fetched.records, Validation::Stored).map(|b| b.expect("stored batch is valid").1).collect()
}

/// Deterministic incompressible-looking bytes.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn per_key_order_is_kept_across_four_partitions_on_two_shards() {
    const KEYS: usize = 40;
    const MESSAGES: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = start(dir.path(), &[]);
    let bootstrap = broker.bootstrap();
    let producer = future_producer(&bootstrap, &[("linger.ms", "5")]);
    let keys: Vec<String> = (0..KEYS).map(|k| format!("key-{k}")).collect();
    // Message i has key i % KEYS and is that key's (i / KEYS)-th message.
    let values: Vec<String> = (0..MESSAGES).map(|i| format!("{}:{}", i % KEYS, i / KEYS)).collect();
    let results = deliver(
        &producer,
        values
            .iter()
            .enumerate()
            .map(|(i, v)| FutureRecord::to("ordered").key(keys[i % KEYS].as_bytes()).payload(v.as_bytes())),
    );

    // Acks: one partition per key, offsets increasing in send order.
    let mut partition_of_key: BTreeMap<usize, i32> = BTreeMap::new();
    let mut last_offset_of_key: BTreeMap<usize, i64> = BTreeMap::new();
    for (i, result) in results.iter().enumerate() {
        let (partition, offset) = acked(result);
        let key = i % KEYS;
        assert_eq!(*partition_of_key.entry(key).or_insert(partition), partition, "key {key} changed partition");
        if let Some(previous) = last_offset_of_key.insert(key, offset) {
            assert!(offset > previous, "key {key}: offset {offset} after {previous}");
        }
    }
    let used: BTreeSet<i32> = partition_of_key.values().copied().collect();
    assert_eq!(used, (0..PARTITIONS).collect(), "the keys use every partition, so both shards");

    let got = consume(&bootstrap, "ordered", &all_partitions(0), MESSAGES, &[]);
    assert_eq!(got.len(), MESSAGES, "every message consumed");
    let mut sequences: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for m in &got {
        let key = String::from_utf8(m.key.clone().expect("key")).unwrap();
        let payload = String::from_utf8(m.payload.clone().expect("payload")).unwrap();
        let (k, seq) = payload.split_once(':').unwrap();
        let (k, seq): (usize, usize) = (k.parse().unwrap(), seq.parse().unwrap());
        assert_eq!(key, keys[k], "key and payload belong together");
        assert_eq!(m.partition, partition_of_key[&k], "key {k} consumed from its acked partition");
        sequences.entry(k).or_default().push(seq);
    }
    for k in 0..KEYS {
        assert_eq!(sequences[&k], (0..MESSAGES / KEYS).collect::<Vec<_>>(), "key {k} arrives in send order");
    }
    let acked_at: BTreeSet<(i32, i64)> = results.iter().map(acked).collect();
    let consumed_at: BTreeSet<(i32, i64)> = got.iter().map(|m| (m.partition, m.offset)).collect();
    assert_eq!(consumed_at, acked_at, "consumed exactly at the acked offsets");

    let admin = admin_consumer(&bootstrap);
    let metadata = admin.fetch_metadata(Some("ordered"), TIMEOUT).unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), PARTITIONS as usize);
    drop((admin, producer));
    broker.stop();
}

#[test]
fn acks_zero_one_and_all_each_deliver_every_message_exactly_once() {
    const MESSAGES: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = start(dir.path(), &[]);
    let bootstrap = broker.bootstrap();
    let admin = admin_consumer(&bootstrap);
    for acks in ["0", "1", "all"] {
        let topic = format!("acks-{acks}");
        let producer = future_producer(&bootstrap, &[("acks", acks), ("linger.ms", "2")]);
        let values: Vec<String> = (0..MESSAGES).map(|i| format!("{topic}/{i}")).collect();
        let results = deliver(&producer, values.iter().map(|v| FutureRecord::to(&topic).payload(v.as_bytes())));
        let mut expected: Vec<(Option<(i32, i64)>, String)> = Vec::new();
        for (result, value) in results.iter().zip(&values) {
            let (partition, offset) = acked(result);
            // acks=0 gets no response, so no offset.
            let at = if acks == "0" {
                assert!(offset < 0, "acks=0: no offset is known, got {offset}");
                None
            } else {
                assert!(offset >= 0);
                Some((partition, offset))
            };
            expected.push((at, value.clone()));
        }

        let got = consume(&bootstrap, &topic, &all_partitions(0), MESSAGES, &[]);
        let mut consumed: Vec<(Option<(i32, i64)>, String)> = got
            .iter()
            .map(|m| {
                let at = (acks != "0").then_some((m.partition, m.offset));
                (at, String::from_utf8(m.payload.clone().unwrap()).unwrap())
            })
            .collect();
        consumed.sort();
        expected.sort();
        assert_eq!(consumed, expected, "acks={acks}: every message once, at its acked offset");
        // Exactly once: the log holds exactly MESSAGES records, no duplicates.
        let marks = watermarks(&admin, &topic);
        assert!(marks.iter().all(|(low, _)| *low == 0), "{marks:?}");
        assert_eq!(marks.iter().map(|(_, high)| high).sum::<i64>(), MESSAGES as i64, "acks={acks}: {marks:?}");
    }
    drop(admin);
    broker.stop();
}

#[test]
fn acks_all_fails_with_not_enough_replicas_when_min_insync_is_two_but_acks_one_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = start(dir.path(), &["min.insync.replicas=2"]);
    let bootstrap = broker.bootstrap();
    let all = future_producer(&bootstrap, &[("acks", "all"), ("retries", "0")]);
    let refused = deliver(&all, [FutureRecord::to("isr").partition(1).payload(&b"acks=all"[..])]);
    assert_eq!(rdkafka_code(&refused[0]), Some(RDKafkaErrorCode::NotEnoughReplicas));

    let one = future_producer(&bootstrap, &[("acks", "1")]);
    let ok = deliver(&one, [FutureRecord::to("isr").partition(1).payload(&b"acks=1"[..])]);
    assert_eq!(acked(&ok[0]), (1, 0), "acks=1 is written, and the refused message was not");
    let got = consume(&bootstrap, "isr", &[(1, 0)], 1, &[]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload.as_deref(), Some(&b"acks=1"[..]));
    let admin = admin_consumer(&bootstrap);
    assert_eq!(admin.fetch_watermarks("isr", 1, TIMEOUT).unwrap(), (0, 1));
    drop((admin, all, one));
    broker.stop();
}

#[test]
fn large_empty_and_one_byte_messages_round_trip_and_oversized_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = start(dir.path(), &[]);
    let bootstrap = broker.bootstrap();
    // The client must not refuse large messages itself: the broker has to.
    let producer = future_producer(&bootstrap, &[("message.max.bytes", "4000000"), ("retries", "0")]);
    let topic = "sizes";
    let send_one = |key: &[u8], payload: Option<&[u8]>| {
        let mut record = FutureRecord::to(topic).partition(2).key(key);
        if let Some(p) = payload {
            record = record.payload(p);
        }
        deliver(&producer, [record]).remove(0)
    };

    let big = pattern(1_000_000, 1);
    let mut expected: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    for (key, payload) in [
        (&b"big"[..], Some(big.clone())),
        (b"empty", Some(Vec::new())),
        (b"one", Some(vec![0xA5])),
        (b"zero", Some(vec![0])),
        (b"null", None),
        (b"", Some(b"empty key".to_vec())),
    ] {
        let offset = acked(&send_one(key, payload.as_deref())).1;
        assert_eq!(offset, expected.len() as i64);
        expected.push((key.to_vec(), payload));
    }

    // Find the per-message overhead from the stored ≈1 MB batch, then hit the limit exactly.
    let overhead = {
        let stored = stored_batches(&bootstrap, topic, 2);
        assert_eq!(stored[0].records_count, 1);
        stored[0].total_len - big.len()
    };
    let at_limit = pattern(DEFAULT_MAX_MESSAGE_BYTES - overhead, 2);
    let offset = acked(&send_one(b"big", Some(&at_limit))).1;
    assert_eq!(offset, expected.len() as i64, "a batch of exactly max.message.bytes is accepted");
    expected.push((b"big".to_vec(), Some(at_limit.clone())));
    let stored = stored_batches(&bootstrap, topic, 2);
    assert_eq!(stored.last().unwrap().total_len, DEFAULT_MAX_MESSAGE_BYTES, "the batch is exactly at the limit");

    let over = pattern(DEFAULT_MAX_MESSAGE_BYTES - overhead + 1, 3);
    assert_eq!(rdkafka_code(&send_one(b"big", Some(&over))), Some(RDKafkaErrorCode::MessageSizeTooLarge));
    let far_over = pattern(2_000_000, 4);
    assert_eq!(rdkafka_code(&send_one(b"big", Some(&far_over))), Some(RDKafkaErrorCode::MessageSizeTooLarge));
    let admin = admin_consumer(&bootstrap);
    assert_eq!(admin.fetch_watermarks(topic, 2, TIMEOUT).unwrap(), (0, expected.len() as i64), "nothing written");
    let offset = acked(&send_one(b"after", Some(b"still serving"))).1;
    assert_eq!(offset, expected.len() as i64);
    expected.push((b"after".to_vec(), Some(b"still serving".to_vec())));

    let got = consume(&bootstrap, topic, &[(2, 0)], expected.len(), &[]);
    let got: Vec<(i64, Vec<u8>, Option<Vec<u8>>)> =
        got.into_iter().map(|m| (m.offset, m.key.unwrap_or_default(), m.payload)).collect();
    let expected: Vec<(i64, Vec<u8>, Option<Vec<u8>>)> =
        expected.into_iter().enumerate().map(|(i, (k, v))| (i as i64, k, v)).collect();
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        // Compare without printing megabytes on failure.
        assert!(
            g == e,
            "offset {}: got key {:?} payload len {:?}, expected key {:?} len {:?}",
            e.0,
            g.1,
            g.2.as_ref().map(Vec::len),
            e.1,
            e.2.as_ref().map(Vec::len)
        );
    }
    drop((admin, producer));
    broker.stop();
}

#[test]
fn fetching_from_the_middle_of_a_batch_starts_at_exactly_that_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = start(dir.path(), &[]);
    let bootstrap = broker.bootstrap();
    let topic = "midbatch";
    // Partition 0 uncompressed, partition 3 zstd: 4 rounds of 4 messages, one batch each.
    for (partition, codec) in [(0, "none"), (3, "zstd")] {
        let producer = future_producer(
            &bootstrap,
            &[("linger.ms", "200"), ("batch.num.messages", "4"), ("compression.type", codec)],
        );
        let mut values = Vec::new();
        for round in 0..4 {
            // Compressible values, so librdkafka really compresses the zstd batches.
            let batch: Vec<String> = (0..4).map(|i| format!("{codec}-{round}-{i}-{}", "x".repeat(200))).collect();
            let results = deliver(
                &producer,
                batch.iter().map(|v| FutureRecord::to(topic).partition(partition).payload(v.as_bytes())),
            );
            for (result, v) in results.iter().zip(batch) {
                assert_eq!(acked(result), (partition, values.len() as i64));
                values.push(v);
            }
        }
        let stored = stored_batches(&bootstrap, topic, partition);
        assert_eq!(stored.iter().map(|b| b.records_count as usize).sum::<usize>(), values.len());
        let codec_id = if codec == "zstd" { 4 } else { 0 };
        assert!(stored.iter().all(|b| b.attributes & 0x07 == codec_id), "{codec}: {stored:?}");
        let multi: Vec<&BatchInfo> = stored.iter().filter(|b| b.records_count > 1).collect();
        assert!(multi.len() >= 2, "{codec}: want several multi-record batches, got {stored:?}");
        let middles: Vec<i64> = multi.iter().flat_map(|b| b.base_offset + 1..=b.last_offset()).collect();
        // One consumer per start offset, all started at once, then each must begin exactly there.
        let consumers: Vec<(i64, BaseConsumer)> = middles
            .iter()
            .map(|&offset| (offset, assigned_consumer(&bootstrap, topic, &[(partition, offset)], &[])))
            .collect();
        for (offset, consumer) in consumers {
            let deadline = Instant::now() + Duration::from_secs(20);
            let first = loop {
                assert!(Instant::now() < deadline, "{codec}: nothing consumed from offset {offset}");
                if let Some(m) = consumer.poll(POLL) {
                    break Got::of(&m.expect("message"));
                }
            };
            assert_eq!(first.offset, offset, "{codec}: first message of a fetch from {offset}");
            assert_eq!(first.payload.as_deref(), Some(values[offset as usize].as_bytes()), "{codec}: offset {offset}");
        }
    }
    broker.stop();
}

#[test]
fn a_waiting_fetch_is_woken_by_a_produce_long_before_its_max_wait() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = start(dir.path(), &[]);
    let bootstrap = broker.bootstrap();
    let topic = "longpoll";
    let producer = future_producer(&bootstrap, &[]);
    // One message per partition first: the topic exists and the producer knows it.
    for p in 0..PARTITIONS {
        assert_eq!(acked(&deliver(&producer, [FutureRecord::to(topic).partition(p).payload(&b"warm-up"[..])])[0]).1, 0);
    }
    // One consumer at the end of all four partitions (both shards), long-polling 10 s.
    let consumer = assigned_consumer(&bootstrap, topic, &all_partitions(1), &[("fetch.wait.max.ms", "10000")]);
    for p in 0..PARTITIONS {
        // Let the consumer settle into a waiting fetch.
        let idle_until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < idle_until {
            if let Some(m) = consumer.poll(POLL) {
                panic!("nothing was produced yet, got {:?}", m.map(|m| Got::of(&m)));
            }
        }
        let value = format!("wake-up {p}");
        let produced_at = Instant::now();
        assert_eq!(
            acked(&deliver(&producer, [FutureRecord::to(topic).partition(p).payload(value.as_bytes())])[0]),
            (p, 1)
        );
        let got = loop {
            assert!(produced_at.elapsed() < Duration::from_secs(25), "partition {p}: message never arrived");
            if let Some(m) = consumer.poll(POLL) {
                break Got::of(&m.expect("message"));
            }
        };
        let waited = produced_at.elapsed();
        assert_eq!((got.partition, got.offset, got.payload.as_deref()), (p, 1, Some(value.as_bytes())));
        assert!(waited < Duration::from_secs(5), "partition {p}: arrived after {waited:?}, the fetch was not woken");
    }
    drop((consumer, producer));
    broker.stop();
}

#[test]
fn watermarks_and_offsets_for_times_match_what_was_produced() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = start(dir.path(), &[]);
    let bootstrap = broker.bootstrap();
    let topic = "times";
    let producer = future_producer(&bootstrap, &[]);
    let base = now_ms() - 3_600_000;
    // Partition p holds 3 + p messages, each in its own batch, 1 s apart.
    let ts = |p: i32, i: i64| base + p as i64 * 100_000 + i * 1000;
    let count = |p: i32| 3 + p as i64;
    for p in 0..PARTITIONS {
        for i in 0..count(p) {
            let record = FutureRecord::to(topic).partition(p).timestamp(ts(p, i)).payload(&b"t"[..]);
            assert_eq!(acked(&deliver(&producer, [record])[0]), (p, i));
        }
    }
    let admin = admin_consumer(&bootstrap);
    let marks = watermarks(&admin, topic);
    assert_eq!(marks, (0..PARTITIONS).map(|p| (0, count(p))).collect::<Vec<_>>());

    let query = |at: &dyn Fn(i32) -> i64| -> Vec<Offset> {
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(topic, p, Offset::Offset(at(p))).unwrap();
        }
        let answer = admin.offsets_for_times(tpl, TIMEOUT).expect("offsets_for_times");
        (0..PARTITIONS)
            .map(|p| {
                let e = answer.find_partition(topic, p).expect("partition in answer");
                assert!(e.error().is_ok(), "partition {p}: {:?}", e.error());
                e.offset()
            })
            .collect()
    };
    assert_eq!(query(&|_| base - 10_000), vec![Offset::Offset(0); PARTITIONS as usize], "before everything");
    for i in 0..count(PARTITIONS - 1) {
        let want: Vec<Offset> =
            (0..PARTITIONS).map(|p| if i < count(p) { Offset::Offset(i) } else { Offset::End }).collect();
        assert_eq!(query(&|p| ts(p, i)), want, "exactly at message {i}");
        assert_eq!(query(&|p| ts(p, i) - 500), want, "between messages {} and {i}", i - 1);
    }
    assert_eq!(query(&|p| ts(p, count(p))), vec![Offset::End; PARTITIONS as usize], "after everything");
    drop((admin, producer));
    broker.stop();
}

#[test]
fn offsets_for_times_is_exact_inside_a_multi_record_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = start(dir.path(), &[]);
    let bootstrap = broker.bootstrap();
    let topic = "batchtimes";
    let producer = future_producer(&bootstrap, &[("linger.ms", "200"), ("batch.num.messages", "4")]);
    let base = now_ms() - 60_000;
    let results = deliver(
        &producer,
        (0..4).map(|i| FutureRecord::to(topic).partition(0).timestamp(base + i * 1000).payload(&b"t"[..])),
    );
    for (i, r) in results.iter().enumerate() {
        assert_eq!(acked(r), (0, i as i64));
    }
    let stored = stored_batches(&bootstrap, topic, 0);
    assert_eq!(stored.len(), 1, "one batch of four records: {stored:?}");
    let admin = admin_consumer(&bootstrap);
    for i in 0..4 {
        for at in [base + i * 1000, base + i * 1000 - 500] {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, 0, Offset::Offset(at)).unwrap();
            let answer = admin.offsets_for_times(tpl, TIMEOUT).unwrap();
            let offset = answer.find_partition(topic, 0).unwrap().offset();
            assert_eq!(offset, Offset::Offset(i), "first record with timestamp >= {at} (base + {})", at - base);
        }
    }
    drop((admin, producer));
    broker.stop();
}

/// Produces `per_partition` keyed messages to every partition of `topic`, returning what was
/// acked, by (partition, offset).
fn produce_everywhere(
    bootstrap: &str,
    topic: &str,
    per_partition: i64,
    extra: &[(&str, &str)],
) -> BTreeMap<(i32, i64), (Vec<u8>, Vec<u8>)> {
    let producer = future_producer(bootstrap, extra);
    let records: Vec<(i32, Vec<u8>, Vec<u8>)> = (0..per_partition)
        .flat_map(|i| {
            (0..PARTITIONS)
                .map(move |p| (p, format!("k{p}-{i}").into_bytes(), pattern(10 + (i as usize * 7) % 300, i as u64)))
        })
        .collect();
    let results = deliver(
        &producer,
        records.iter().map(|(p, k, v)| FutureRecord::to(topic).partition(*p).key(&k[..]).payload(&v[..])),
    );
    let mut out = BTreeMap::new();
    for (result, (p, k, v)) in results.iter().zip(records) {
        let (partition, offset) = acked(result);
        assert_eq!(partition, p);
        out.insert((partition, offset), (k, v));
    }
    out
}

fn consume_everything(bootstrap: &str, topic: &str, n: usize) -> BTreeMap<(i32, i64), (Vec<u8>, Vec<u8>)> {
    consume(bootstrap, topic, &all_partitions(0), n, &[])
        .into_iter()
        .map(|m| ((m.partition, m.offset), (m.key.unwrap_or_default(), m.payload.unwrap_or_default())))
        .collect()
}

/// Big batches, one partition at a time, as a load generator sends them. From a producer's
/// second request to a partition on, its batch is read into memory placed for a direct
/// write, and the batch's whole pages go to the segment file straight from the request
/// (whichever shard owns the partition), without a copy. What is consumed, live and after a
/// restart (from the files), is byte-exact.
#[test]
fn big_batches_written_straight_from_the_request_read_back_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = start(dir.path(), &[]);
    let settings = [("linger.ms", "50"), ("batch.size", "1000000"), ("compression.type", "none")];
    let producer = future_producer(&broker.bootstrap(), &settings);
    let mut sent = BTreeMap::new();
    for p in 0..PARTITIONS {
        let records: Vec<(Vec<u8>, Vec<u8>)> = (0..1500usize)
            .map(|i| (format!("k{p}-{i}").into_bytes(), pattern(1000 + i * 13 % 3000, (p as u64) << 32 | i as u64)))
            .collect();
        let results = deliver(
            &producer,
            records.iter().map(|(k, v)| FutureRecord::to("direct").partition(p).key(&k[..]).payload(&v[..])),
        );
        for (result, (k, v)) in results.iter().zip(records) {
            let (partition, offset) = acked(result);
            assert_eq!(partition, p);
            sent.insert((partition, offset), (k, v));
        }
    }
    let bootstrap = broker.bootstrap();
    for p in 0..PARTITIONS {
        let big = stored_batches(&bootstrap, "direct", p).iter().filter(|b| b.total_len >= 256 << 10).count();
        assert!(big >= 2, "partition {p}: {big} batches of 256 KiB or more; the test needs several");
    }
    assert!(consume_everything(&bootstrap, "direct", sent.len()) == sent, "consumed bytes differ from the produced");
    drop(producer);
    broker.stop();

    let (broker, _) = start(dir.path(), &[]);
    let from_files = consume_everything(&broker.bootstrap(), "direct", sent.len());
    assert!(from_files == sent, "bytes read back from the files differ from the produced");
    broker.stop();
}

/// Big batches of all partitions at once on one connection, as librdkafka sends them when a
/// producer writes many partitions: one partition per request, in turn. Each frame is placed
/// for the partition its first bytes name (where this connection's last append to it ended),
/// so from a partition's second request on, its batches' whole pages go to the file straight
/// from the request, on whichever shard owns it (`sluice_segment_bytes_written_from_frames_
/// total`). What is consumed, live and after a SIGKILL and recovery, is byte-exact.
#[test]
fn interleaved_big_batches_of_all_partitions_are_written_from_their_requests_and_survive_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let metrics_setting = format!("sluice.metrics.addr={metrics}");
    let (broker, _) = start(dir.path(), &[&metrics_setting]);
    let settings = [("linger.ms", "50"), ("batch.size", "1000000"), ("compression.type", "none")];
    let producer = future_producer(&broker.bootstrap(), &settings);
    // Every partition's records queued at once, sizes differing per partition so no two
    // partitions' batches end at the same place within a page.
    let records: Vec<(i32, Vec<u8>, Vec<u8>)> = (0..2000usize)
        .flat_map(|i| {
            (0..PARTITIONS).map(move |p| {
                let len = 1000 + (i * 13 + p as usize * 101) % 3000;
                (p, format!("k{p}-{i}").into_bytes(), pattern(len, (p as u64) << 32 | i as u64))
            })
        })
        .collect();
    let results = deliver(
        &producer,
        records.iter().map(|(p, k, v)| FutureRecord::to("spread").partition(*p).key(&k[..]).payload(&v[..])),
    );
    let mut sent = BTreeMap::new();
    for (result, (p, k, v)) in results.iter().zip(records) {
        let (partition, offset) = acked(result);
        assert_eq!(partition, p);
        sent.insert((partition, offset), (k, v));
    }
    let bootstrap = broker.bootstrap();
    let mut stored_bytes = 0;
    for p in 0..PARTITIONS {
        let batches = stored_batches(&bootstrap, "spread", p);
        let big = batches.iter().filter(|b| b.total_len >= 256 << 10).count();
        assert!(big >= 3, "partition {p}: {big} batches of 256 KiB or more; the test needs several");
        stored_bytes += batches.iter().map(|b| b.total_len).sum::<usize>();
    }
    // All but each partition's first batch, less the partial pages at either end of each.
    let from_frames = metric_sum(&metrics, "sluice_segment_bytes_written_from_frames_total");
    assert!(
        from_frames >= stored_bytes as f64 / 2.0,
        "{from_frames} of {stored_bytes} bytes written straight from the requests"
    );
    assert!(consume_everything(&bootstrap, "spread", sent.len()) == sent, "consumed bytes differ from the produced");
    drop(producer);
    broker.signal(libc::SIGKILL);
    broker.wait_exit();

    let (broker, started) = start(dir.path(), &[]);
    assert_eq!(started, Start::Recovery);
    let from_files = consume_everything(&broker.bootstrap(), "spread", sent.len());
    assert!(from_files == sent, "bytes read back from the files differ from the produced");
    broker.stop();
}

#[test]
fn a_clean_restart_keeps_topics_and_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = start(dir.path(), &[]);
    let sent = produce_everywhere(&broker.bootstrap(), "durable", 50, &[("linger.ms", "5")]);
    let other = produce_everywhere(&broker.bootstrap(), "durable-other", 1, &[]);
    broker.stop();

    let (broker, started) = start(dir.path(), &[]);
    assert_eq!(started, Start::Clean, "a clean stop needs no recovery");
    let bootstrap = broker.bootstrap();
    let admin = admin_consumer(&bootstrap);
    let metadata = admin.fetch_metadata(None, TIMEOUT).unwrap();
    let mut topics: Vec<(String, usize)> =
        metadata.topics().iter().map(|t| (t.name().to_string(), t.partitions().len())).collect();
    topics.sort();
    assert_eq!(topics, vec![("durable".to_string(), 4), ("durable-other".to_string(), 4)]);
    assert_eq!(watermarks(&admin, "durable"), vec![(0, 50); PARTITIONS as usize]);
    assert_eq!(consume_everything(&bootstrap, "durable", sent.len()), sent);
    assert_eq!(consume_everything(&bootstrap, "durable-other", other.len()), other);
    // Appends continue after the recovered end.
    let more = produce_everywhere(&bootstrap, "durable", 1, &[]);
    assert_eq!(more.keys().map(|(_, o)| *o).collect::<BTreeSet<_>>(), BTreeSet::from([50]));
    drop(admin);
    broker.stop();
}

#[test]
fn with_flush_always_every_message_acked_with_acks_all_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let sets = ["sluice.flush.mode=always"];
    let (broker, _) = start(dir.path(), &sets);
    let sent = produce_everywhere(&broker.bootstrap(), "crash", 100, &[("acks", "all"), ("linger.ms", "2")]);
    broker.signal(libc::SIGKILL);
    broker.wait_exit();

    let (broker, started) = start(dir.path(), &sets);
    assert_eq!(started, Start::Recovery, "a SIGKILL forces recovery");
    let bootstrap = broker.bootstrap();
    let admin = admin_consumer(&bootstrap);
    assert_eq!(watermarks(&admin, "crash"), vec![(0, 100); PARTITIONS as usize]);
    assert_eq!(consume_everything(&bootstrap, "crash", sent.len()), sent, "every acked message, byte-exact");
    drop(admin);
    broker.stop();
}

/// With the default flush policy (never fsync) an acked append may still be in the
/// write-behind buffer (process memory, `O_DIRECT` files: not in the page cache) when the
/// process dies, so a SIGKILL may lose a tail. What the engine guarantees is that recovery
/// yields, per partition, a prefix of what was acked: no holes, nothing altered, nothing
/// invented, and the log is appendable at its recovered end.
#[test]
fn after_sigkill_with_default_flush_each_partition_recovers_a_prefix_of_what_was_acked() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = start(dir.path(), &[]);
    let sent = produce_everywhere(&broker.bootstrap(), "prefix", 200, &[("acks", "all"), ("linger.ms", "2")]);
    broker.signal(libc::SIGKILL);
    broker.wait_exit();

    let (broker, started) = start(dir.path(), &[]);
    assert_eq!(started, Start::Recovery);
    let bootstrap = broker.bootstrap();
    let admin = admin_consumer(&bootstrap);
    let marks = watermarks(&admin, "prefix");
    let survivors: usize = marks.iter().map(|(_, high)| *high as usize).sum();
    let got = consume_everything(&bootstrap, "prefix", survivors);
    assert_eq!(got.len(), survivors);
    for (p, (low, high)) in (0..PARTITIONS).zip(&marks) {
        assert_eq!(*low, 0);
        assert!(*high <= 200, "partition {p}: {high} records but only 200 were produced");
        let expected: BTreeMap<_, _> = sent.range((p, 0)..(p, *high)).map(|(k, v)| (*k, v.clone())).collect();
        let recovered: BTreeMap<_, _> = got.range((p, 0)..(p, *high)).map(|(k, v)| (*k, v.clone())).collect();
        assert_eq!(recovered, expected, "partition {p}: the recovered records are the first {high} acked");
    }
    let more = produce_everywhere(&bootstrap, "prefix", 1, &[]);
    for ((p, offset), _) in more {
        assert_eq!(offset, marks[p as usize].1, "partition {p}: appends continue at the recovered end");
    }
    drop(admin);
    broker.stop();
}

/// Pipelines `BATCHES` Produce requests (acks=-1, 10 records of 10 kB each) to partition 0 of a
/// fresh topic on one raw connection, SIGKILLs the broker the moment the last response arrives,
/// restarts it, and returns (records acked, recovered high watermark). Pipelining keeps the
/// write-behind busy, so the last acked batches are the least likely to be on disk.
fn acked_then_sigkill(dir: &Path, sets: &[&str]) -> (i64, i64) {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{MetadataRequest, ProduceRequest, ProduceResponse, ResponseHeader, TopicName};
    use kafka_protocol::protocol::{Decodable, StrBytes};
    const BATCHES: usize = 300;
    const RECORDS: i64 = 10;
    let (broker, _) = start(dir, sets);
    let bootstrap = broker.bootstrap();
    let mut client = raw::RawClient::connect(&bootstrap);
    let mut wire = bytes::BytesMut::new();
    let topic_name = TopicName(StrBytes::from_static_str("crash-window"));
    let mut last_batch = Vec::new();
    for i in 0..BATCHES {
        last_batch = sluice_engine::batch::build_batch_of_size(0, RECORDS as usize, 10_000, now_ms() + i as i64);
        let partition = PartitionProduceData::default().with_index(0).with_records(Some(last_batch.clone().into()));
        let topic = TopicProduceData::default().with_name(topic_name.clone()).with_partition_data(vec![partition]);
        let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![topic]);
        wire.extend_from_slice(&client.encode(&request, 9).1);
    }
    // Create the topic first so every produce is accepted.
    let create = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name.clone()))]))
        .with_allow_auto_topic_creation(true);
    assert_eq!(client.send(&create, 12).topics[0].partitions.len(), PARTITIONS as usize);
    client.write_bytes(&wire);
    for i in 0..BATCHES {
        let mut frame = client.read_frame().expect("produce response");
        ResponseHeader::decode(&mut frame, 1).unwrap();
        let response = ProduceResponse::decode(&mut frame, 9).unwrap();
        let p = &response.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, i as i64 * RECORDS), "batch {i} acked in order");
    }
    broker.signal(libc::SIGKILL);
    broker.wait_exit();
    let acked = BATCHES as i64 * RECORDS;

    let (broker, started) = start(dir, sets);
    assert_eq!(started, Start::Recovery);
    let bootstrap = broker.bootstrap();
    let admin = admin_consumer(&bootstrap);
    let (low, high) = admin.fetch_watermarks("crash-window", 0, TIMEOUT).unwrap();
    assert_eq!(low, 0);
    assert!(high <= acked && high % RECORDS == 0, "recovered {high} of {acked}: whole batches only");
    if high == acked {
        let fetched = raw_fetch(&bootstrap, "crash-window", 0, acked - RECORDS);
        let stored = &fetched.records[..last_batch.len()];
        assert_eq!(&stored[16..], &last_batch[16..], "the last acked batch is intact");
    }
    drop(admin);
    broker.stop();
    (acked, high)
}

#[test]
fn with_flush_always_a_sigkill_right_after_the_last_ack_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (acked, recovered) = acked_then_sigkill(dir.path(), &["sluice.flush.mode=always"]);
    assert_eq!(recovered, acked);
}

/// Kafka acknowledges an append once it is in the page cache, so killing the process (not the
/// machine) never loses an acked record, whatever the flush settings. Five tries, as the loss
/// depends on where the write-behind is when the signal lands.
#[test]
fn with_default_flush_a_sigkill_right_after_the_last_ack_loses_nothing() {
    for attempt in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let (acked, recovered) = acked_then_sigkill(dir.path(), &[]);
        assert_eq!(recovered, acked, "attempt {attempt}: records acked with acks=all but lost by a process crash");
    }
}

#[test]
fn a_fetch_fills_its_byte_budget_in_order_and_reports_the_offsets_of_the_partitions_left_out() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    const MANY: i32 = 40;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(dir.path(), &["--cores", "1"]);
    broker.wait_for("sluice broker started");
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "budget", MANY);
    let producer = future_producer(&bootstrap, &[("linger.ms", "0")]);
    let value = pattern(10_000, 7);
    let results = deliver(&producer, (0..MANY).map(|p| FutureRecord::to("budget").partition(p).payload(&value[..])));
    assert!(results.iter().all(|r| r.is_ok()));
    // One request for every partition from offset 0 with room for about five of them: the
    // broker reads partitions in request order until the budget is spent and answers the
    // others with their offsets only; asking again from where each stands reads the rest.
    let mut client = support::raw::RawClient::connect(&bootstrap);
    let mut next = vec![0i64; MANY as usize];
    let mut rounds = 0;
    while next.iter().any(|&o| o < 1) {
        rounds += 1;
        assert!(rounds <= MANY, "no progress: {next:?}");
        let partitions = (0..MANY)
            .map(|p| {
                FetchPartition::default()
                    .with_partition(p)
                    .with_fetch_offset(next[p as usize])
                    .with_partition_max_bytes(1 << 20)
            })
            .collect();
        let request =
            FetchRequest::default().with_max_wait_ms(0).with_min_bytes(0).with_max_bytes(50_000).with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str("budget")))
                    .with_partitions(partitions),
            ]);
        let response = client.send(&request, 12);
        let mut returned = 0usize;
        for p in &response.responses[0].partitions {
            assert_eq!(p.error_code, 0);
            assert_eq!(p.high_watermark, 1, "partition {} reports its offsets, read or not", p.partition_index);
            let records = p.records.clone().unwrap_or_default();
            if !records.is_empty() {
                returned += records.len();
                next[p.partition_index as usize] = 1;
            }
        }
        assert!(returned > 0, "every round returns something");
        assert!(returned <= 50_000 + 11_000, "{returned} bytes: the budget and at most one batch over it");
    }
    assert!(rounds >= 5, "{rounds} rounds: the budget held each response to a few partitions");
    drop(producer);
    broker.stop();
}
