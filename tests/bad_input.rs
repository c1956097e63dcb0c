//! Bad input over raw TCP against the real binary: malformed frames, protocol violations and
//! invalid record batches. Each case checks what the offending connection gets (closed without
//! a byte, or Kafka's error code), that nothing was written, and afterwards that the broker
//! still serves a fresh client and the data written before is intact, byte for byte.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, BrokerId, FetchRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, HeaderVersion, Request, StrBytes};
use sluice_engine::batch::{batches, build_batch, compute_crc, Validation};
use support::raw::RawClient;
use support::*;

const TOPIC: &str = "seed";
const PARTITIONS: i32 = 2;
const CORRUPT_MESSAGE: i16 = 2;
const UNSUPPORTED_VERSION: i16 = 35;
const INVALID_RECORD: i16 = 87;
/// The broker's `socket.request.max.bytes` default (Kafka's: 100 MiB).
const MAX_REQUEST_BYTES: i32 = 100 * 1024 * 1024;

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// A batch of `n` records whose keys and values are derived from `tag`.
fn batch(tag: &str, n: usize) -> Vec<u8> {
    let keys: Vec<String> = (0..n).map(|i| format!("{tag}-key-{i}")).collect();
    let values: Vec<String> = (0..n).map(|i| format!("{tag}-value-{i}-{}", "x".repeat(i * 10))).collect();
    let records: Vec<_> =
        keys.iter().zip(&values).map(|(k, v)| (Some(k.as_bytes()), Some(v.as_bytes()), &[][..])).collect();
    build_batch(0, &records, now_ms())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn produce_request(acks: i16, partitions: Vec<(i32, Option<Bytes>)>) -> ProduceRequest {
    let data = partitions
        .into_iter()
        .map(|(index, records)| PartitionProduceData::default().with_index(index).with_records(records))
        .collect();
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default().with_name(topic_name(TOPIC)).with_partition_data(data)])
}

/// Sends a Produce v9 with acks=-1 and returns each partition's response, in request order.
fn produce(client: &mut RawClient, partitions: Vec<(i32, Option<Bytes>)>) -> Vec<PartitionProduceResponse> {
    let response = client.send(&produce_request(-1, partitions), 9);
    assert_eq!(response.responses.len(), 1);
    response.responses[0].partition_responses.clone()
}

fn list_offsets_request(timestamp: i64) -> ListOffsetsRequest {
    let partitions = (0..PARTITIONS)
        .map(|p| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(timestamp))
        .collect();
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default().with_name(topic_name(TOPIC)).with_partitions(partitions)])
}

/// ListOffsets latest (v7) of every partition of the seed topic.
fn latest_offsets(client: &mut RawClient) -> Vec<i64> {
    let response = client.send(&list_offsets_request(-1), 7);
    response.topics[0]
        .partitions
        .iter()
        .map(|p| {
            assert_eq!(p.error_code, 0, "ListOffsets partition {}", p.partition_index);
            p.offset
        })
        .collect()
}

/// What each partition of the seed topic must hold: (base offset, batch as the client sent it).
struct Expected {
    bootstrap: String,
    log: Vec<Vec<(i64, Vec<u8>)>>,
}

impl Expected {
    fn end(&self, partition: i32) -> i64 {
        self.log[partition as usize].last().map_or(0, |(base, sent)| base + records_in(sent))
    }

    fn ends(&self) -> Vec<i64> {
        (0..PARTITIONS).map(|p| self.end(p)).collect()
    }

    /// Notes that `partition` accepted `sent` at its end, asserting the response says so.
    fn accepted(&mut self, partition: i32, response: &PartitionProduceResponse, sent: &[u8]) {
        assert_eq!(response.index, partition);
        assert_eq!(response.error_code, 0, "partition {partition}: {:?}", response.error_message);
        assert_eq!(response.base_offset, self.end(partition), "partition {partition}: appended at the end");
        self.log[partition as usize].push((response.base_offset, sent.to_vec()));
    }
}

fn records_in(batch: &[u8]) -> i64 {
    i32::from_be_bytes(batch[57..61].try_into().unwrap()) as i64
}

/// A 2-shard broker with the 2-partition topic `seed` holding two batches per partition.
fn start_seeded() -> (tempfile::TempDir, Broker, Expected) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(dir.path(), &["--cores", "2", "--set", "num.partitions=2"]);
    broker.wait_for("sluice broker started");
    let bootstrap = broker.bootstrap();
    let mut client = RawClient::connect(&bootstrap);
    let metadata = client.send(
        &MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(TOPIC)))]))
            .with_allow_auto_topic_creation(true),
        12,
    );
    assert_eq!(metadata.topics[0].error_code, 0);
    assert_eq!(metadata.topics[0].partitions.len(), PARTITIONS as usize);
    let mut expected = Expected { bootstrap, log: vec![Vec::new(); PARTITIONS as usize] };
    for round in 0..2 {
        let sent: Vec<Vec<u8>> = (0..PARTITIONS).map(|p| batch(&format!("seed-{p}-{round}"), 3 + p as usize)).collect();
        let responses =
            produce(&mut client, (0..PARTITIONS).map(|p| (p, Some(Bytes::from(sent[p as usize].clone())))).collect());
        for p in 0..PARTITIONS {
            expected.accepted(p, &responses[p as usize], &sent[p as usize]);
        }
    }
    (dir, broker, expected)
}

/// A fresh client is served (ApiVersions, Metadata, ListOffsets) and every partition holds
/// exactly the expected batches: same bytes as sent except the base offset and partition
/// leader epoch the broker assigns (both outside the CRC).
fn assert_serving_and_intact(expected: &Expected) {
    let mut client = RawClient::connect(&expected.bootstrap);
    let versions = client.send(&ApiVersionsRequest::default(), 3);
    assert_eq!(versions.error_code, 0);
    let metadata = client.send(
        &MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(TOPIC)))])),
        12,
    );
    assert_eq!(metadata.topics[0].error_code, 0);
    assert_eq!(metadata.topics[0].partitions.len(), PARTITIONS as usize);
    assert_eq!(latest_offsets(&mut client), expected.ends(), "ListOffsets latest");
    for p in 0..PARTITIONS {
        let fetched = raw_fetch(&expected.bootstrap, TOPIC, p, 0);
        assert_eq!(fetched.error_code, 0);
        assert_eq!(fetched.high_watermark, expected.end(p));
        let stored: Vec<(usize, i64, usize)> = batches(&fetched.records, Validation::Stored)
            .map(|b| {
                let (start, info) = b.expect("stored batch valid");
                (start, info.base_offset, info.total_len)
            })
            .collect();
        let want = &expected.log[p as usize];
        assert_eq!(stored.len(), want.len(), "partition {p}: batch count");
        for ((start, base, len), (want_base, sent)) in stored.into_iter().zip(want) {
            let got = &fetched.records[start..start + len];
            assert_eq!(base, *want_base, "partition {p}: base offset");
            assert_eq!(got.len(), sent.len(), "partition {p} @{base}: batch length");
            assert_eq!(&got[12..16], &0i32.to_be_bytes(), "partition {p} @{base}: leader epoch");
            assert_eq!(&got[8..12], &sent[8..12], "partition {p} @{base}: batch length field");
            assert_eq!(&got[16..], &sent[16..], "partition {p} @{base}: bytes from magic on");
        }
    }
}

/// A plain socket for byte-level abuse.
fn connect(bootstrap: &str) -> TcpStream {
    let stream = TcpStream::connect(bootstrap).expect("connect");
    stream.set_nodelay(true).unwrap();
    stream
}

/// True when the broker closes `stream` within `timeout` without sending a single byte; false
/// if it answers anything or keeps the connection open.
fn closed_within(stream: &mut TcpStream, timeout: Duration) -> bool {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => {
            eprintln!("the broker sent {n} bytes");
            false
        }
        Err(e) => matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe),
    }
}

/// Writes `bytes` (ignoring errors: the broker may close before it read them all) and checks
/// that the broker closes the connection without answering.
fn closed_without_response(stream: &mut TcpStream) -> bool {
    closed_within(stream, Duration::from_secs(10))
}

fn assert_refused(bootstrap: &str, what: &str, bytes: &[u8]) {
    let mut stream = connect(bootstrap);
    let _ = stream.write_all(bytes);
    let started = Instant::now();
    assert!(closed_without_response(&mut stream), "{what}: connection should be closed without a response");
    assert!(started.elapsed() < Duration::from_secs(10), "{what}: closed promptly");
}

/// A request frame: size, api key, version, correlation id, then `rest` (header remainder and
/// body) verbatim.
fn frame(api_key: i16, version: i16, correlation_id: i32, rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&api_key.to_be_bytes());
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(rest);
    let mut out = (body.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// A request header v1/v2 remainder: client id "bad-input" (and an empty tagged-field section).
fn client_id(flexible: bool) -> Vec<u8> {
    let mut out = 9i16.to_be_bytes().to_vec();
    out.extend_from_slice(b"bad-input");
    if flexible {
        out.push(0);
    }
    out
}

/// Decodes a response frame of request type `R` at `version`: (correlation id, response).
fn decode<R: Request>(mut frame: Bytes, version: i16) -> (i32, R::Response) {
    let header = ResponseHeader::decode(&mut frame, <R::Response as HeaderVersion>::header_version(version)).unwrap();
    (header.correlation_id, R::Response::decode(&mut frame, version).unwrap())
}

/// Deterministic pseudo-random bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
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

#[test]
fn garbage_bytes_close_only_that_connection() {
    let (_dir, broker, expected) = start_seeded();
    let bootstrap = broker.bootstrap();
    // Text: its first four bytes read as a size far above socket.request.max.bytes.
    assert_refused(&bootstrap, "text", b"hello, this is not the Kafka protocol\r\n");
    // Random bytes behind a negative size.
    let mut random = noise(4096, 7);
    random[0] |= 0x80;
    assert_refused(&bootstrap, "random bytes", &random);
    // A well-sized frame for Metadata v12 whose header's client id overruns the frame.
    let mut overrun = 1000i16.to_be_bytes().to_vec();
    overrun.extend_from_slice(&noise(20, 8));
    assert_refused(&bootstrap, "header overrun", &frame(3, 12, 1, &overrun));
    // A valid Metadata v12 header, then a body that claims 1000 topics and holds noise.
    let mut body = client_id(true);
    body.extend_from_slice(&[0x87, 0x0f]); // compact array length 1000 + 1 (varint)
    body.extend_from_slice(&noise(30, 9));
    assert_refused(&bootstrap, "undecodable body", &frame(3, 12, 2, &body));
    // A frame holding only random bytes: unknown API key 0x7fff, random everything else.
    let mut random_frame = 0x7fffi16.to_be_bytes().to_vec();
    random_frame.extend_from_slice(&noise(200, 10));
    let mut framed = (random_frame.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&random_frame);
    assert_refused(&bootstrap, "random frame", &framed);
    assert_serving_and_intact(&expected);
    broker.stop();
}

#[test]
fn an_http_request_gets_no_answer_and_a_closed_connection() {
    let (_dir, broker, expected) = start_seeded();
    let bootstrap = broker.bootstrap();
    let request = format!("GET / HTTP/1.1\r\nHost: {bootstrap}\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n");
    assert_refused(&bootstrap, "HTTP GET", request.as_bytes());
    assert_serving_and_intact(&expected);
    broker.stop();
}

#[test]
fn oversized_negative_and_short_size_prefixes_close_the_connection_at_once() {
    let (_dir, broker, expected) = start_seeded();
    let bootstrap = broker.bootstrap();
    for size in [i32::MAX, MAX_REQUEST_BYTES + 1, -1, i32::MIN, 0, 7] {
        // Only the prefix is sent: a broker that believed it would wait for the rest.
        let mut bytes = size.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 7]);
        assert_refused(&bootstrap, &format!("size prefix {size}"), &bytes);
    }
    // Controls, so the checks above can fail: an acceptable size with the frame still to come
    // keeps the connection open, and a whole request is answered.
    let mut waiting = connect(&bootstrap);
    waiting.write_all(&1000i32.to_be_bytes()).unwrap();
    waiting.write_all(&[0u8; 7]).unwrap();
    assert!(!closed_within(&mut waiting, Duration::from_secs(1)), "a partial frame is waited for");
    let (_, api_versions) = RawClient::connect(&bootstrap).encode(&ApiVersionsRequest::default(), 3);
    let mut answered = connect(&bootstrap);
    answered.write_all(&api_versions).unwrap();
    assert!(!closed_without_response(&mut answered), "a valid request is answered");
    assert_serving_and_intact(&expected);
    broker.stop();
}

#[test]
fn a_truncated_produce_frame_then_close_writes_nothing() {
    let (_dir, broker, expected) = start_seeded();
    let bootstrap = broker.bootstrap();
    let mut client = RawClient::connect(&bootstrap);
    let request = produce_request(-1, vec![(0, Some(Bytes::from(batch("truncated", 5))))]);
    let (_, framed) = client.encode(&request, 9);
    for cut in [3, framed.len() / 2, framed.len() - 1] {
        let mut stream = connect(&bootstrap);
        stream.write_all(&framed[..cut]).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        assert!(closed_without_response(&mut stream), "truncated at {cut} of {}", framed.len());
    }
    assert_serving_and_intact(&expected);
    broker.stop();
}

#[test]
fn unknown_api_keys_and_unsupported_versions_close_the_connection() {
    let (_dir, broker, expected) = start_seeded();
    let bootstrap = broker.bootstrap();
    assert_refused(&bootstrap, "unknown API key 9999", &frame(9999, 0, 1, &client_id(false)));
    assert_refused(&bootstrap, "negative API key", &frame(-2, 0, 1, &client_id(false)));
    // The ranges the broker advertises decide what is unsupported.
    let advertised = RawClient::connect(&bootstrap).send(&ApiVersionsRequest::default(), 3).api_keys;
    let range = |key: i16| advertised.iter().find(|k| k.api_key == key).map(|k| (k.min_version, k.max_version));
    // A Kafka API this broker does not implement (yet): the first one it does not advertise.
    let unimplemented = (0..100i16)
        .find(|k| ApiKey::try_from(*k).is_ok() && range(*k).is_none())
        .expect("some Kafka API is not implemented");
    assert_refused(
        &bootstrap,
        &format!("unimplemented API {unimplemented}"),
        &frame(unimplemented, 0, 1, &client_id(false)),
    );
    // One past each end of the advertised ranges (the version is refused before the body is
    // read, so the body is noise).
    for (name, key) in [("Produce", 0i16), ("Fetch", 1), ("ListOffsets", 2), ("Metadata", 3)] {
        let (min, max) = range(key).unwrap_or_else(|| panic!("{name} advertised"));
        let mut rest = client_id(true);
        rest.extend_from_slice(&noise(64, key as u64));
        assert_refused(&bootstrap, &format!("{name} v{}", max + 1), &frame(key, max + 1, 1, &rest));
        // Produce v0-2 are advertised for librdkafka's sake but are not served (see
        // supported_apis.rs); only probe below the advertised minimum.
        assert_refused(&bootstrap, &format!("{name} v{}", min - 1), &frame(key, min - 1, 1, &rest));
    }
    assert_serving_and_intact(&expected);
    broker.stop();
}

#[test]
fn an_unsupported_api_versions_version_gets_a_v0_error_and_the_connection_stays_usable() {
    let (_dir, broker, expected) = start_seeded();
    let bootstrap = broker.bootstrap();
    let mut client = RawClient::connect(&bootstrap);
    let advertised = client.send(&ApiVersionsRequest::default(), 3);
    let advertised = advertised.api_keys.iter().find(|k| k.api_key == 18).expect("ApiVersions advertised").clone();
    for (version, correlation_id) in [(i16::MAX, 1000), (advertised.max_version + 1, 1001)] {
        // A future client's header (v2) and a body this broker cannot know.
        let mut rest = client_id(true);
        rest.extend_from_slice(&noise(17, version as u64));
        client.write_bytes(&frame(18, version, correlation_id, &rest));
        let response = client.read_frame().expect("ApiVersions answers instead of closing");
        // KIP-511: the answer is a v0 response (header v0), whatever version was asked.
        let (id, body) = decode::<ApiVersionsRequest>(response, 0);
        assert_eq!(id, correlation_id);
        assert_eq!(body.error_code, UNSUPPORTED_VERSION);
        assert!(!body.api_keys.is_empty(), "the error response lists the supported versions");
        // Kafka lists at least ApiVersions itself, so the client can retry with a version the
        // broker knows.
        let listed = body.api_keys.iter().find(|k| k.api_key == 18).expect("ApiVersions listed");
        // The same connection then negotiates normally.
        let versions = client.send(&ApiVersionsRequest::default(), 3);
        assert_eq!(versions.error_code, 0);
        assert!(versions.api_keys.contains(&advertised));
        assert_eq!((listed.min_version, listed.max_version), (advertised.min_version, advertised.max_version));
    }
    assert_serving_and_intact(&expected);
    broker.stop();
}

#[test]
fn a_corrupt_batch_is_refused_for_its_partition_only_and_nothing_is_written() {
    let (_dir, broker, mut expected) = start_seeded();
    let mut client = RawClient::connect(&broker.bootstrap());

    // A flipped byte in a record value (inside the CRC-covered region).
    let mut flipped_value = batch("flipped", 3);
    let at = flipped_value.len() - 2;
    flipped_value[at] ^= 0x01;
    // A flipped byte in the header's CRC-covered part (max timestamp).
    let mut flipped_header = batch("flipped-header", 3);
    flipped_header[40] ^= 0x10;

    for corrupt in [flipped_value, flipped_header] {
        let before = latest_offsets(&mut client);
        let good = batch("good-neighbour", 4);
        let responses =
            produce(&mut client, vec![(0, Some(Bytes::from(corrupt))), (1, Some(Bytes::from(good.clone())))]);
        assert_eq!(responses[0].index, 0);
        assert_eq!(responses[0].error_code, CORRUPT_MESSAGE, "{:?}", responses[0].error_message);
        assert_eq!(responses[0].base_offset, -1);
        expected.accepted(1, &responses[1], &good);
        let after = latest_offsets(&mut client);
        assert_eq!(after[0], before[0], "nothing written to the partition with the corrupt batch");
        assert_eq!(after[1], before[1] + 4, "the other partition in the same request is written");
    }
    assert_serving_and_intact(&expected);
    broker.stop();
}

#[test]
fn a_batch_with_a_wrong_record_count_is_invalid_record() {
    let (_dir, broker, mut expected) = start_seeded();
    let mut client = RawClient::connect(&broker.bootstrap());
    // (recordsCount, lastOffsetDelta) written over a 3-record batch, CRC recomputed so the
    // batch is intact but lies about its contents.
    for (count, last_offset_delta) in [(4i32, 3i32), (2, 2), (2, 1), (0, 2), (-1, 2)] {
        let mut lying = batch("lying", 3);
        lying[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
        lying[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = compute_crc(&lying);
        lying[17..21].copy_from_slice(&crc.to_be_bytes());
        let before = latest_offsets(&mut client);
        let good = batch("good", 1);
        let responses = produce(&mut client, vec![(1, Some(Bytes::from(lying))), (0, Some(Bytes::from(good.clone())))]);
        assert_eq!(
            responses[0].error_code, INVALID_RECORD,
            "recordsCount {count}, lastOffsetDelta {last_offset_delta}: {:?}",
            responses[0].error_message
        );
        expected.accepted(0, &responses[1], &good);
        assert_eq!(latest_offsets(&mut client)[1], before[1], "nothing written");
    }
    assert_serving_and_intact(&expected);
    broker.stop();
}

#[test]
fn absent_empty_or_truncated_records_get_an_error_not_a_crash() {
    let (_dir, broker, expected) = start_seeded();
    let mut client = RawClient::connect(&broker.bootstrap());
    let before = latest_offsets(&mut client);
    let whole = batch("cut", 3);
    let responses =
        produce(&mut client, vec![(0, None), (1, Some(Bytes::new())), (0, Some(Bytes::copy_from_slice(&whole[..30])))]);
    assert_eq!(responses.len(), 3);
    assert_ne!(responses[0].error_code, 0, "null records");
    assert_eq!(responses[1].error_code, INVALID_RECORD, "empty records: Kafka wants at least one batch");
    assert_ne!(responses[2].error_code, 0, "a batch cut inside its header");
    let mut cut_in_records = whole.clone();
    cut_in_records.truncate(whole.len() - 5);
    let responses = produce(&mut client, vec![(1, Some(Bytes::from(cut_in_records)))]);
    assert_ne!(responses[0].error_code, 0, "a batch cut inside its records");
    assert_eq!(latest_offsets(&mut client), before, "nothing written");
    assert_serving_and_intact(&expected);
    broker.stop();
}

#[test]
fn pipelined_requests_are_answered_in_order_and_acks_zero_gets_no_response() {
    let (_dir, broker, mut expected) = start_seeded();
    let mut client = RawClient::connect(&broker.bootstrap());

    // Ten different requests written back to back in one write.
    let mut wire = BytesMut::new();
    let mut sent: Vec<(i32, &str, Option<Vec<u8>>)> = Vec::new();
    for i in 0..10 {
        let (id, bytes, kind, batch_sent) = match i % 5 {
            0 => {
                let (id, b) = client.encode(&ApiVersionsRequest::default(), 3);
                (id, b, "ApiVersions", None)
            }
            1 => {
                let (id, b) = client.encode(&MetadataRequest::default().with_topics(None), 12);
                (id, b, "Metadata", None)
            }
            2 => {
                let (id, b) = client.encode(&list_offsets_request(-1), 7);
                (id, b, "ListOffsets", None)
            }
            3 => {
                let fetch = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20);
                let (id, b) = client.encode(&fetch, 12);
                (id, b, "Fetch", None)
            }
            _ => {
                let sent_batch = batch(&format!("pipelined-{i}"), 2);
                let (id, b) = client.encode(&produce_request(1, vec![(1, Some(Bytes::from(sent_batch.clone())))]), 9);
                (id, b, "Produce", Some(sent_batch))
            }
        };
        wire.extend_from_slice(&bytes);
        sent.push((id, kind, batch_sent));
    }
    client.write_bytes(&wire);
    for (id, kind, batch_sent) in sent {
        let response = client.read_frame().expect("a response per request");
        assert_eq!(RawClient::correlation_id_of(&response), id, "{kind}: responses come in request order");
        if let Some(batch_sent) = batch_sent {
            let (_, produced) = decode::<ProduceRequest>(response, 9);
            expected.accepted(1, &produced.responses[0].partition_responses[0], &batch_sent);
        }
    }

    // ListOffsets, two acks=0 produces, ListOffsets: two responses, and the second sees both
    // produces (requests on one connection are handled in order).
    let acks_zero: Vec<Vec<u8>> = (0..2).map(|i| batch(&format!("acks0-{i}"), 3)).collect();
    let mut wire = BytesMut::new();
    let (first_id, b) = client.encode(&list_offsets_request(-1), 7);
    wire.extend_from_slice(&b);
    for sent_batch in &acks_zero {
        let (_, b) = client.encode(&produce_request(0, vec![(0, Some(Bytes::from(sent_batch.clone())))]), 9);
        wire.extend_from_slice(&b);
    }
    let (last_id, b) = client.encode(&list_offsets_request(-1), 7);
    wire.extend_from_slice(&b);
    client.write_bytes(&wire);
    let (id, first) = decode::<ListOffsetsRequest>(client.read_frame().unwrap(), 7);
    assert_eq!(id, first_id);
    let (id, last) = decode::<ListOffsetsRequest>(client.read_frame().unwrap(), 7);
    assert_eq!(id, last_id, "no response for acks=0 produce requests");
    let (p0_before, p0_after) = (first.topics[0].partitions[0].offset, last.topics[0].partitions[0].offset);
    assert_eq!(p0_before, expected.end(0));
    assert_eq!(p0_after, p0_before + 6, "both acks=0 batches were written, in order, before the next request");
    for sent_batch in &acks_zero {
        let base = expected.end(0);
        expected.log[0].push((base, sent_batch.clone()));
    }
    // Nothing stray follows: the next response is the next request's.
    let (id, b) = client.encode(&ApiVersionsRequest::default(), 3);
    client.write_bytes(&b);
    assert_eq!(RawClient::correlation_id_of(&client.read_frame().unwrap()), id);
    assert_serving_and_intact(&expected);
    broker.stop();
}

/// Kafka's `ProduceRequest.validateRecords` (v3+): a partition's records must hold exactly one
/// batch, else INVALID_RECORD and nothing of the partition is written.
#[test]
fn a_partition_with_two_batches_is_invalid_record() {
    let (_dir, broker, mut expected) = start_seeded();
    let mut client = RawClient::connect(&broker.bootstrap());
    let mut corrupt = batch("corrupt-second", 2);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x01;
    for second in [batch("second", 2), corrupt] {
        let two = [batch("first", 1), second].concat();
        let good = batch("neighbour", 1);
        let before = latest_offsets(&mut client);
        let responses = produce(&mut client, vec![(0, Some(Bytes::from(two))), (1, Some(Bytes::from(good.clone())))]);
        assert_eq!(responses[0].error_code, INVALID_RECORD, "{:?}", responses[0].error_message);
        expected.accepted(1, &responses[1], &good);
        assert_eq!(latest_offsets(&mut client)[0], before[0], "nothing written");
    }
    assert_serving_and_intact(&expected);
    broker.stop();
}

/// Kafka reads a partial batch as no batch at all: INVALID_RECORD ("must have at least one
/// record batch per partition"), not CORRUPT_MESSAGE, which clients retry.
#[test]
fn records_holding_a_partial_batch_are_invalid_record() {
    let (_dir, broker, expected) = start_seeded();
    let mut client = RawClient::connect(&broker.bootstrap());
    let whole = batch("partial", 3);
    for cut in [30, whole.len() - 5] {
        let responses = produce(&mut client, vec![(0, Some(Bytes::copy_from_slice(&whole[..cut])))]);
        assert_eq!(responses[0].error_code, INVALID_RECORD, "cut at {cut}: {:?}", responses[0].error_message);
    }
    assert_serving_and_intact(&expected);
    broker.stop();
}

/// Kafka's ListOffsets refuses a partition named twice in one request (for every
/// occurrence), while the other partitions are answered.
#[test]
fn list_offsets_with_a_partition_listed_twice_is_invalid_request_for_it_only() {
    const INVALID_REQUEST: i16 = 42;
    let (_dir, broker, expected) = start_seeded();
    let mut client = RawClient::connect(&broker.bootstrap());
    let partition = |p: i32| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(-1);
    let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
        ListOffsetsTopic::default().with_name(topic_name(TOPIC)).with_partitions(vec![partition(0), partition(1)]),
        ListOffsetsTopic::default().with_name(topic_name(TOPIC)).with_partitions(vec![partition(0)]),
    ]);
    let response = client.send(&request, 7);
    let codes: Vec<(i32, i16)> =
        response.topics.iter().flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.error_code))).collect();
    assert_eq!(codes, vec![(0, INVALID_REQUEST), (1, 0), (0, INVALID_REQUEST)]);
    assert_eq!(response.topics[0].partitions[1].offset, expected.end(1));
    assert_serving_and_intact(&expected);
    broker.stop();
}

#[test]
fn huge_array_counts_in_tiny_frames_are_refused_not_allocated() {
    // Found by fuzz/request_decode: kafka-protocol 0.18.0 reserved Vec capacity from array
    // counts on the wire, so these frames made the broker allocate 150+ GB and abort
    // (third_party/README.md). Each must now close only its connection.
    let (_dir, broker, expected) = start_seeded();
    let bootstrap = broker.bootstrap();
    let cases: [(&str, Vec<u8>); 3] = [
        // Metadata v1 (header v1, null client id), topics = 2^31-1.
        ("metadata v1", vec![0, 0, 0, 0x0e, 0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff]),
        // Metadata v12 (header v2), compact topics = u32::MAX - 1.
        ("metadata v12", vec![0, 0, 0, 0x10, 0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]),
        // Produce v3: no transactional id, acks 1, timeout 0, topic_data = 2^31-1.
        (
            "produce v3",
            vec![
                0, 0, 0, 0x16, 0, 0, 0, 3, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 1, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff,
            ],
        ),
    ];
    for (what, bytes) in cases {
        assert_refused(&bootstrap, what, &bytes);
    }
    assert_serving_and_intact(&expected);
    broker.stop();
}
