//! Compression codecs and the idempotent producer end to end, against the real binary:
//! librdkafka (rdkafka crate) producing with each codec and with idempotence on, raw produce
//! requests for exact duplicates, gaps, stale epochs and corrupt compressed batches, and
//! restarts (clean and SIGKILL) in the middle of an idempotent stream.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::executor::block_on;
use futures::future::join_all;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, ProducerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use sluice_engine::batch::{batches, build_batch, reframe, set_producer, Compression, Validation};
use sluice_engine::compressed_batch::recompress;
use support::*;

const CODECS: [(&str, Compression); 4] = [
    ("gzip", Compression::Gzip),
    ("snappy", Compression::Snappy),
    ("lz4", Compression::Lz4),
    ("zstd", Compression::Zstd),
];

/// Random-looking (incompressible) bytes, with a compressible tail so codecs do work.
fn payload(i: u64, len: usize) -> Vec<u8> {
    let mut x = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|j| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if j < len / 2 {
                x as u8
            } else {
                b'a' + (j % 7) as u8
            }
        })
        .collect()
}

/// Produces `n` keyed messages and returns (partition, offset) → (key, value).
fn produce(bootstrap: &str, topic: &str, n: u64, extra: &[(&str, &str)]) -> BTreeMap<(i32, i64), (Vec<u8>, Vec<u8>)> {
    let producer = future_producer(bootstrap, extra);
    let sent: Vec<(Vec<u8>, Vec<u8>)> =
        (0..n).map(|i| (format!("key-{}", i % 17).into_bytes(), payload(i, 50 + (i as usize * 13) % 900))).collect();
    let futures: Vec<_> = sent
        .iter()
        .map(|(k, v)| producer.send_result(FutureRecord::to(topic).key(k).payload(v)).expect("queued"))
        .collect();
    let mut out = BTreeMap::new();
    for (result, (k, v)) in block_on(join_all(futures)).into_iter().zip(sent) {
        let d = result.expect("report").expect("acked");
        let (partition, offset) = (d.partition, d.offset);
        assert!(out.insert((partition, offset), (k, v)).is_none(), "offset acked twice");
    }
    out
}

/// Consumes `topic` partition 0..partitions from 0 until `n` messages arrived.
fn consume(bootstrap: &str, topic: &str, partitions: i32, n: usize) -> BTreeMap<(i32, i64), (Vec<u8>, Vec<u8>)> {
    let from: Vec<(i32, i64)> = (0..partitions).map(|p| (p, 0)).collect();
    let consumer = assigned_consumer(bootstrap, topic, &from, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = BTreeMap::new();
    while got.len() < n && Instant::now() < deadline {
        if let Some(m) = consumer.poll(POLL) {
            let m = m.expect("message");
            let value = (m.key().unwrap_or_default().to_vec(), m.payload().unwrap_or_default().to_vec());
            assert!(got.insert((m.partition(), m.offset()), value).is_none(), "offset consumed twice");
        }
    }
    got
}

/// Codecs of the batches stored in `topic`/`partition`, as fetched.
fn stored_codecs(bootstrap: &str, topic: &str, partition: i32) -> Vec<Compression> {
    let fetched = raw_fetch(bootstrap, topic, partition, 0);
    assert_eq!(fetched.error_code, 0);
    batches(&fetched.records, Validation::Stored).map(|b| b.expect("valid stored batch").1.compression()).collect()
}

#[test]
fn each_codec_from_librdkafka_is_stored_as_sent_and_consumed_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(dir.path(), &["--cores", "2", "--set", "num.partitions=3"]);
    broker.wait_for("sluice broker started");
    let bootstrap = broker.bootstrap();
    // librdkafka compresses with lz4 only if the broker advertises FindCoordinator (its proxy
    // for "Kafka >= 0.8.2"); otherwise it sends lz4 batches uncompressed.
    let advertises_find_coordinator = {
        let mut client = raw::RawClient::connect(&bootstrap);
        let versions = client.send(&kafka_protocol::messages::ApiVersionsRequest::default(), 3);
        versions.api_keys.iter().any(|k| k.api_key == kafka_protocol::messages::ApiKey::FindCoordinator as i16)
    };
    for (name, codec) in CODECS {
        let topic = format!("codec-{name}");
        let sent = produce(&bootstrap, &topic, 2_000, &[("compression.codec", name), ("linger.ms", "5")]);
        let got = consume(&bootstrap, &topic, 3, sent.len());
        assert_eq!(got, sent, "{name}: every message back, byte-exact, at its acked offset");
        let codecs: Vec<Compression> = (0..3).flat_map(|p| stored_codecs(&bootstrap, &topic, p)).collect();
        // Stored as sent (compression.type=producer). librdkafka sends a batch uncompressed
        // when compressing would not shrink it, so a few may be plain.
        if codec != Compression::Lz4 || advertises_find_coordinator {
            assert!(codecs.contains(&codec), "{name}: {codecs:?}");
        }
        assert!(codecs.iter().all(|c| *c == codec || *c == Compression::None), "{name}: {codecs:?}");
    }
    broker.stop();
}

#[test]
fn topic_compression_type_recompresses_on_append_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 2);
    let bootstrap = broker.bootstrap();
    // (topic codec, producer codec, what is stored)
    let cases = [
        ("zstd", "none", Compression::Zstd),
        ("gzip", "lz4", Compression::Gzip),
        ("uncompressed", "snappy", Compression::None),
        ("lz4", "zstd", Compression::Lz4),
    ];
    for (topic_codec, producer_codec, stored) in cases {
        let topic = format!("recompress-{topic_codec}-{producer_codec}");
        create_topic_with_configs(&bootstrap, &topic, 1, &[("compression.type", topic_codec)]);
        let sent = produce(&bootstrap, &topic, 500, &[("compression.codec", producer_codec), ("linger.ms", "5")]);
        let got = consume(&bootstrap, &topic, 1, sent.len());
        assert_eq!(got, sent, "{topic}");
        let codecs = stored_codecs(&bootstrap, &topic, 0);
        assert!(codecs.iter().all(|c| *c == stored), "{topic}: {codecs:?}");
    }
    broker.stop();
}

/// A raw produce request of one batch to `topic`/0.
fn produce_request(topic: &str, batch: &[u8], acks: i16) -> ProduceRequest {
    let partition = PartitionProduceData::default().with_index(0).with_records(Some(Bytes::copy_from_slice(batch)));
    let topic = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_string(topic.into())))
        .with_partition_data(vec![partition]);
    ProduceRequest::default().with_acks(acks).with_timeout_ms(10_000).with_topic_data(vec![topic])
}

/// (error code, base offset) of a raw produce of `batch`.
fn raw_produce(client: &mut raw::RawClient, topic: &str, batch: &[u8]) -> (i16, i64) {
    let response = client.send(&produce_request(topic, batch, -1), 9);
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn init_producer_id(client: &mut raw::RawClient) -> (i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response = client.send(&request, 4);
    assert_eq!(response.error_code, 0);
    (response.producer_id.0, response.producer_epoch)
}

fn idempotent_batch(tag: u64, records: usize, pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..records).map(|i| format!("{tag}-{i}").into_bytes()).collect();
    let specs: Vec<sluice_engine::batch::RecordSpec<'_>> =
        values.iter().map(|v| (None, Some(v.as_slice()), &[][..])).collect();
    let mut batch = build_batch(0, &specs, 1_700_000_000_000 + tag as i64);
    set_producer(&mut batch, pid, epoch, seq);
    batch
}

fn high_watermark(bootstrap: &str, topic: &str) -> i64 {
    raw_fetch(bootstrap, topic, 0, 0).high_watermark
}

fn start_one_shard(dir: &Path) -> Broker {
    let broker = Broker::start_with(dir, &["--cores", "1"]);
    broker.wait_for("sluice broker started");
    broker
}

#[test]
fn resent_produce_requests_are_acknowledged_once_and_dedup_survives_restarts() {
    const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    const INVALID_PRODUCER_EPOCH: i16 = 47;
    let dir = tempfile::tempdir().unwrap();
    let topic = "idempotent-raw";
    let mut broker = start_one_shard(dir.path());
    let mut client = raw::RawClient::connect(&broker.bootstrap());
    create_topic(&broker.bootstrap(), topic, 1);
    let (pid, epoch) = init_producer_id(&mut client);
    assert!(pid >= 0);
    assert_eq!(epoch, 0);
    let (other_pid, _) = init_producer_id(&mut client);
    assert_ne!(pid, other_pid, "producer ids are never reused");

    // 3 rounds x 50 batches x 334 records = 50,100 messages, every request sent twice.
    const BATCHES_PER_ROUND: u64 = 50;
    const RECORDS_PER_BATCH: usize = 334;
    let mut seq = 0i32;
    let mut acked: Vec<(Vec<u8>, i64)> = Vec::new();
    for round in 0..3 {
        for i in 0..BATCHES_PER_ROUND {
            let batch = idempotent_batch(round * 100 + i, RECORDS_PER_BATCH, pid, epoch, seq);
            let (code, base) = raw_produce(&mut client, topic, &batch);
            assert_eq!(code, 0);
            // The same request again, byte for byte: the original offset, nothing written.
            let end = high_watermark(&broker.bootstrap(), topic);
            assert_eq!(raw_produce(&mut client, topic, &batch), (0, base), "duplicate gets the original offset");
            assert_eq!(high_watermark(&broker.bootstrap(), topic), end, "duplicate not written");
            acked.push((batch, base));
            seq += RECORDS_PER_BATCH as i32;
        }
        // A gap and a stale epoch are refused with Kafka's codes.
        let gap = idempotent_batch(9, 1, pid, epoch, seq + 3);
        assert_eq!(raw_produce(&mut client, topic, &gap).0, OUT_OF_ORDER_SEQUENCE_NUMBER);
        let stale = idempotent_batch(9, 1, other_pid, 3, 0);
        assert_eq!(raw_produce(&mut client, topic, &stale).0, 0);
        let older = idempotent_batch(9, 1, other_pid, 2, 1);
        assert_eq!(raw_produce(&mut client, topic, &older).0, INVALID_PRODUCER_EPOCH);
        // Restart: clean after round 0, SIGKILL after round 1.
        drop(client);
        if round == 0 {
            broker.stop();
        } else {
            broker.signal(libc::SIGKILL);
            broker.wait_exit();
        }
        broker = start_one_shard(dir.path());
        client = raw::RawClient::connect(&broker.bootstrap());
        // The last batches before the restart are still recognised.
        let end = high_watermark(&broker.bootstrap(), topic);
        for (batch, base) in acked.iter().rev().take(5) {
            assert_eq!(raw_produce(&mut client, topic, batch), (0, *base), "round {round}: dedup after restart");
        }
        // Plus the one record of `other_pid` (its later resends were duplicates).
        assert_eq!(end, acked.len() as i64 * RECORDS_PER_BATCH as i64 + 1, "nothing lost, nothing twice");
        assert_eq!(high_watermark(&broker.bootstrap(), topic), end);
        let (fresh, _) = init_producer_id(&mut client);
        assert!(fresh > other_pid, "ids after a restart are new ({fresh} after {other_pid})");
    }
    // The log holds every producer batch exactly once, in order.
    let fetched = raw_fetch(&broker.bootstrap(), topic, 0, 0);
    let stored: Vec<_> = batches(&fetched.records, Validation::Stored)
        .map(|b| b.unwrap())
        .filter(|(_, info)| info.producer_id == pid)
        .collect();
    assert_eq!(stored.len(), acked.len());
    for ((pos, info), (batch, base)) in stored.iter().zip(&acked) {
        assert_eq!(info.base_offset, *base);
        assert_eq!(&fetched.records[pos + 16..pos + info.total_len], &batch[16..]);
    }
    drop(client);
    broker.stop();
}

#[test]
fn corrupt_compressed_batches_are_refused_and_nothing_is_written() {
    const CORRUPT_MESSAGE: i16 = 2;
    const INVALID_RECORD: i16 = 87;
    let dir = tempfile::tempdir().unwrap();
    let broker = start_one_shard(dir.path());
    let topic = "corrupt-compressed";
    create_topic(&broker.bootstrap(), topic, 1);
    let mut client = raw::RawClient::connect(&broker.bootstrap());
    let plain = idempotent_batch(1, 50, -1, -1, -1);
    let info = sluice_engine::batch::validate_from_client(&plain).unwrap();
    for (name, codec) in CODECS {
        let mut batch = recompress(&plain, &info, codec, &mut Vec::new()).unwrap();
        let len = batch.len();
        for b in &mut batch[61 + 6..len - 6] {
            *b = b.rotate_left(3) ^ 0xa5;
        }
        reframe(&mut batch, codec); // a correct CRC over garbage: only decompression can tell
        let (code, _) = raw_produce(&mut client, topic, &batch);
        assert!(code == CORRUPT_MESSAGE || code == INVALID_RECORD, "{name}: code {code}");
        // Records that decompress but lie about their count.
        let mut body = plain[61..].to_vec();
        body.truncate(body.len() - 3);
        let mut short = plain[..61].to_vec();
        sluice_engine::compression::compress(codec, &body, &mut short).unwrap();
        reframe(&mut short, codec);
        assert_eq!(raw_produce(&mut client, topic, &short).0, INVALID_RECORD, "{name}");
    }
    assert_eq!(high_watermark(&broker.bootstrap(), topic), 0, "nothing was written");
    // The connection and the broker still serve: a valid compressed batch goes in.
    let good = recompress(&plain, &info, Compression::Zstd, &mut Vec::new()).unwrap();
    assert_eq!(raw_produce(&mut client, topic, &good), (0, 0));
    drop(client);
    broker.stop();
}

#[test]
fn librdkafka_idempotent_producer_delivers_fifty_thousand_messages_exactly_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(dir.path(), &["--cores", "2", "--set", "num.partitions=4"]);
    broker.wait_for("sluice broker started");
    let bootstrap = broker.bootstrap();
    let topic = "idempotent-rdkafka";
    let producer = future_producer(
        &bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("max.in.flight.requests.per.connection", "5"),
            ("linger.ms", "2"),
            ("batch.num.messages", "500"),
            ("compression.codec", "lz4"),
        ],
    );
    const N: u64 = 50_000;
    let futures: Vec<_> = (0..N)
        .map(|i| {
            let key = format!("k{}", i % 64);
            let value = i.to_be_bytes();
            producer.send_result(FutureRecord::to(topic).key(&key).payload(&value[..])).expect("queued")
        })
        .collect();
    let mut acked = BTreeMap::new();
    for (i, r) in block_on(join_all(futures)).into_iter().enumerate() {
        let d = r.expect("report").expect("acked");
        let (partition, offset) = (d.partition, d.offset);
        assert!(acked.insert((partition, offset), i as u64).is_none());
    }
    drop(producer);
    let consumer = assigned_consumer(&bootstrap, topic, &[(0, 0), (1, 0), (2, 0), (3, 0)], &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = BTreeMap::new();
    let mut last_per_key: BTreeMap<String, u64> = BTreeMap::new();
    while got.len() < acked.len() && Instant::now() < deadline {
        if let Some(m) = consumer.poll(POLL) {
            let m = m.expect("message");
            let i = u64::from_be_bytes(m.payload().unwrap().try_into().unwrap());
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            if let Some(prev) = last_per_key.insert(key.clone(), i) {
                assert!(prev < i, "per-key order: {key} saw {i} after {prev}");
            }
            assert!(got.insert((m.partition(), m.offset()), i).is_none());
        }
    }
    assert_eq!(got, acked, "every message exactly once, at its acked offset");
    let hw: i64 = (0..4).map(|p| raw_fetch(&bootstrap, topic, p, 0).high_watermark).sum();
    assert_eq!(hw as u64, N, "no duplicate in the log");
    drop(consumer);
    broker.stop();
}

#[test]
fn init_producer_id_refuses_transactional_ids_and_half_given_pairs() {
    const INVALID_REQUEST: i16 = 42;
    let dir = tempfile::tempdir().unwrap();
    let broker = start_one_shard(dir.path());
    let mut client = raw::RawClient::connect(&broker.bootstrap());
    let txn = InitProducerIdRequest::default()
        .with_transactional_id(Some(kafka_protocol::messages::TransactionalId(StrBytes::from_static_str("tx-1"))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response = client.send(&txn, 4);
    assert_eq!((response.error_code, response.producer_id.0), (INVALID_REQUEST, -1));
    let half = InitProducerIdRequest::default().with_producer_id(ProducerId(5)).with_producer_epoch(-1);
    assert_eq!(client.send(&half, 4).error_code, INVALID_REQUEST);
    // A KIP-360 bump request from a non-transactional producer gets a fresh id.
    let bump = InitProducerIdRequest::default().with_producer_id(ProducerId(0)).with_producer_epoch(0);
    let response = client.send(&bump, 4);
    assert_eq!(response.error_code, 0);
    assert_eq!(response.producer_epoch, 0);
    drop(client);
    broker.stop();
}
