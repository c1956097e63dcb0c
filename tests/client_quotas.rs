//! Client quotas end to end: DescribeClientQuotas / AlterClientQuotas over the raw protocol
//! (entity types, defaults, filters, Kafka's validation errors, validate_only, persistence
//! across a restart), and enforcement: a quota'd Produce and Fetch answered with
//! throttle_time_ms and the connection muted for that long, and a quota'd rdkafka producer
//! held near its rate while an unquota'd one on another client id is not.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest, DescribeClientQuotasResponse,
    FetchRequest, MetadataRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::producer::{BaseRecord, Producer};
use sluice_engine::batch::build_batch;
use support::raw::RawClient;
use support::*;

const NONE: i16 = 0;
const UNSUPPORTED_VERSION: i16 = 35;
const INVALID_REQUEST: i16 = 42;
/// The client id RawClient sends.
const RAW_CLIENT_ID: &str = "sluice-raw-test";

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// An AlterClientQuotas entry: entity pairs (type, name; None = default) and ops (key, value;
/// None = remove).
fn entry(entity: &[(&str, Option<&str>)], ops: &[(&str, Option<f64>)]) -> EntryData {
    EntryData::default()
        .with_entity(
            entity
                .iter()
                .map(|(t, n)| EntityData::default().with_entity_type(sb(t)).with_entity_name(n.map(sb)))
                .collect(),
        )
        .with_ops(
            ops.iter()
                .map(|(k, v)| OpData::default().with_key(sb(k)).with_value(v.unwrap_or(0.0)).with_remove(v.is_none()))
                .collect(),
        )
}

fn alter(client: &mut RawClient, entries: Vec<EntryData>, validate_only: bool) -> Vec<i16> {
    let response: AlterClientQuotasResponse =
        client.send(&AlterClientQuotasRequest::default().with_entries(entries).with_validate_only(validate_only), 1);
    response.entries.iter().map(|e| e.error_code).collect()
}

/// Describe with (type, match type, match): every entity as sorted (type=name) pairs with its
/// sorted (key, value)s.
type Described = Vec<(Vec<String>, Vec<(String, f64)>)>;

fn describe(client: &mut RawClient, components: &[(&str, i8, Option<&str>)], strict: bool) -> (i16, Described) {
    let request = DescribeClientQuotasRequest::default()
        .with_components(
            components
                .iter()
                .map(|(t, m, n)| {
                    ComponentData::default().with_entity_type(sb(t)).with_match_type(*m).with_match(n.map(sb))
                })
                .collect(),
        )
        .with_strict(strict);
    let response: DescribeClientQuotasResponse = client.send(&request, 1);
    let mut out: Described = response
        .entries
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let mut entity: Vec<String> = e
                .entity
                .iter()
                .map(|d| format!("{}={}", d.entity_type, d.entity_name.as_deref().unwrap_or("<default>")))
                .collect();
            entity.sort();
            let mut values: Vec<(String, f64)> = e.values.iter().map(|v| (v.key.to_string(), v.value)).collect();
            values.sort_by(|a, b| a.0.cmp(&b.0));
            (entity, values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    (response.error_code, out)
}

#[test]
fn alter_and_describe_client_quotas_round_trip_validate_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let broker = Broker::start_on(dir.path(), port, &["--cores", "2"]);
    broker.wait_for("sluice broker started");
    let mut client = RawClient::connect(&broker.bootstrap());

    let codes = alter(
        &mut client,
        vec![
            entry(&[("user", Some("alice"))], &[("producer_byte_rate", Some(1_048_576.0))]),
            entry(&[("user", Some("alice")), ("client-id", Some("app"))], &[("consumer_byte_rate", Some(2048.0))]),
            entry(&[("client-id", None)], &[("producer_byte_rate", Some(4096.0)), ("request_percentage", Some(12.5))]),
            entry(&[("user", None)], &[("consumer_byte_rate", Some(100.0))]),
            entry(&[("ip", Some("10.1.2.3"))], &[("connection_creation_rate", Some(5.0))]),
            entry(&[("ip", None)], &[("connection_creation_rate", Some(50.0))]),
        ],
        false,
    );
    assert_eq!(codes, vec![NONE; 6]);

    // Kafka's validation, per entry; the good entry of the same request still applies.
    let codes = alter(
        &mut client,
        vec![
            entry(&[("user", Some("bob"))], &[("bogus_key", Some(1.0))]),
            entry(&[("ip", Some("10.1.2.3"))], &[("producer_byte_rate", Some(1.0))]),
            entry(&[("user", Some("bob"))], &[("connection_creation_rate", Some(1.0))]),
            entry(&[], &[("producer_byte_rate", Some(1.0))]),
            entry(&[("group", Some("g"))], &[("producer_byte_rate", Some(1.0))]),
            entry(&[("user", Some(""))], &[("producer_byte_rate", Some(1.0))]),
            entry(&[("user", Some("bob")), ("ip", Some("10.0.0.1"))], &[("producer_byte_rate", Some(1.0))]),
            entry(&[("user", Some("carol"))], &[("producer_byte_rate", Some(10.5))]),
            entry(&[("user", Some("dave"))], &[("producer_byte_rate", Some(-5.0))]),
            entry(&[("ip", Some("not-an-ip"))], &[("connection_creation_rate", Some(1.0))]),
            entry(&[("user", Some("erin"))], &[("producer_byte_rate", Some(1.0)), ("producer_byte_rate", Some(2.0))]),
            entry(&[("user", Some("frank"))], &[("producer_byte_rate", Some(777.0))]),
        ],
        false,
    );
    let mut expected = vec![INVALID_REQUEST; 11];
    expected.push(NONE);
    assert_eq!(codes, expected);
    // validate_only changes nothing.
    assert_eq!(
        alter(&mut client, vec![entry(&[("user", Some("ghost"))], &[("producer_byte_rate", Some(1.0))])], true),
        vec![NONE]
    );

    let (code, all) = describe(&mut client, &[], false);
    assert_eq!(code, NONE);
    let names: Vec<Vec<String>> = all.iter().map(|(e, _)| e.clone()).collect();
    assert_eq!(
        names,
        vec![
            vec!["client-id=<default>".to_string()],
            vec!["client-id=app".into(), "user=alice".into()],
            vec!["ip=10.1.2.3".into()],
            vec!["ip=<default>".into()],
            vec!["user=<default>".into()],
            vec!["user=alice".into()],
            vec!["user=frank".into()],
        ]
    );
    let default_client = &all[0].1;
    assert_eq!(default_client, &vec![("producer_byte_rate".into(), 4096.0), ("request_percentage".into(), 12.5)]);
    // Filters: exact, default, any (strict or not); ip alone.
    assert_eq!(describe(&mut client, &[("user", 0, Some("alice"))], false).1.len(), 2);
    assert_eq!(describe(&mut client, &[("user", 0, Some("alice"))], true).1.len(), 1);
    assert_eq!(describe(&mut client, &[("user", 1, None)], true).1.len(), 1);
    assert_eq!(describe(&mut client, &[("client-id", 2, None)], false).1.len(), 2);
    assert_eq!(describe(&mut client, &[("ip", 2, None)], false).1.len(), 2);
    assert_eq!(
        describe(&mut client, &[("ip", 0, Some("10.1.2.3"))], false).1[0].1,
        vec![("connection_creation_rate".into(), 5.0)]
    );
    assert_eq!(describe(&mut client, &[("user", 0, None)], false).0, INVALID_REQUEST);
    assert_eq!(describe(&mut client, &[("ip", 2, None), ("user", 2, None)], false).0, INVALID_REQUEST);
    assert_eq!(describe(&mut client, &[("group", 2, None)], false).0, UNSUPPORTED_VERSION);

    // Removing a key; removing the last key removes the entity.
    let codes = alter(
        &mut client,
        vec![
            entry(&[("client-id", None)], &[("request_percentage", None)]),
            entry(&[("user", Some("frank"))], &[("producer_byte_rate", None)]),
        ],
        false,
    );
    assert_eq!(codes, vec![NONE, NONE]);
    let (_, all) = describe(&mut client, &[], false);
    assert_eq!(all.len(), 6);
    assert_eq!(all[0].1, vec![("producer_byte_rate".to_string(), 4096.0)]);

    // The quotas are in the metadata: a restarted broker has them.
    broker.stop();
    wait_for_port_release(port);
    let broker = Broker::start_on(dir.path(), port, &["--cores", "2"]);
    broker.wait_for("sluice broker started");
    let mut client = RawClient::connect(&broker.bootstrap());
    assert_eq!(describe(&mut client, &[], false).1, all);
    broker.stop();
}

fn produce_request(topic: &str, batch: &[u8]) -> ProduceRequest {
    let partition = PartitionProduceData::default().with_index(0).with_records(Some(Bytes::copy_from_slice(batch)));
    let topic = TopicProduceData::default().with_name(TopicName(sb(topic))).with_partition_data(vec![partition]);
    ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![topic])
}

fn fetch_request(topic: &str) -> FetchRequest {
    FetchRequest::default().with_max_wait_ms(0).with_min_bytes(0).with_max_bytes(8 << 20).with_topics(vec![
        FetchTopic::default().with_topic(TopicName(sb(topic))).with_partitions(vec![FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(0)
            .with_partition_max_bytes(8 << 20)]),
    ])
}

#[test]
fn over_quota_produce_and_fetch_get_throttle_time_and_a_muted_connection() {
    let dir = tempfile::tempdir().unwrap();
    // Three 1 s samples: a new sensor measures over at least 2 s.
    let metrics = format!("127.0.0.1:{}", free_port());
    let broker = Broker::start_with(
        dir.path(),
        &[
            "--cores",
            "2",
            "--set",
            "quota.window.num=3",
            "--set",
            "quota.window.size.seconds=1",
            "--metrics-addr",
            &metrics,
        ],
    );
    broker.wait_for("sluice broker started");
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "throttled", 1);
    let value = vec![b'v'; 20_000];
    let batch = build_batch(0, &[(None, Some(&value[..]), &[][..])], 1_700_000_000_000);

    // No quota yet: no throttle.
    let mut client = RawClient::connect(&bootstrap);
    let response = client.send(&produce_request("throttled", &batch), 9);
    assert_eq!(response.responses[0].partition_responses[0].error_code, NONE);
    assert_eq!(response.throttle_time_ms, 0);

    // ~20 KB against 6000 B/s over a 2 s window: 10 KB/s, throttled for about
    // (10000 - 6000) / 6000 × 2000 ms.
    let codes = alter(
        &mut client,
        vec![entry(
            &[("client-id", Some(RAW_CLIENT_ID))],
            &[("producer_byte_rate", Some(6000.0)), ("consumer_byte_rate", Some(6000.0))],
        )],
        false,
    );
    assert_eq!(codes, vec![NONE]);
    let response = client.send(&produce_request("throttled", &batch), 9);
    assert_eq!(response.responses[0].partition_responses[0].error_code, NONE, "a throttled produce is still appended");
    let throttle_ms = response.throttle_time_ms;
    assert!((800..=3_000).contains(&throttle_ms), "throttle_time_ms {throttle_ms}");
    // The connection is muted: the next request is read only once the throttle time is over.
    let sent = Instant::now();
    client.send(&MetadataRequest::default().with_topics(Some(Vec::new())), 12);
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(throttle_ms as u64 - 100),
        "answered after {waited:?}, throttle {throttle_ms} ms"
    );

    // A fetch over the consumer quota answers nothing, with its throttle time. It asked for a
    // fetch session (epoch 0): the session its handling created is dropped with the data, so
    // the client is not left holding a session whose state moved past what it was told.
    let mut fetcher = RawClient::connect(&bootstrap);
    let response = fetcher.send(&fetch_request("throttled").with_session_epoch(0), 12);
    assert_eq!(response.error_code, NONE);
    assert!(response.throttle_time_ms > 0, "fetch of ~40 KB against 6000 B/s");
    assert!(response.responses.is_empty(), "a throttled fetch carries no data: {:?}", response.responses);
    assert_eq!(response.session_id, 0, "a throttled fetch leaves no session behind");

    // Another client id has no quota: its fetch returns the data at once.
    let other = raw_fetch_as("someone-else", &bootstrap, "throttled");
    assert!(other >= 40_000, "{other} bytes");

    // The metrics endpoint counts the throttles.
    let scrape = http_get(&metrics, "/metrics");
    let value = |line_start: &str| -> f64 {
        let line =
            scrape.lines().find(|l| l.starts_with(line_start)).unwrap_or_else(|| panic!("{line_start} in {scrape}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("sluice_quota_throttled_total{kind=\"produce\"}"), 1.0);
    assert_eq!(value("sluice_quota_throttled_total{kind=\"fetch\"}"), 1.0);
    assert_eq!(value("sluice_quota_throttled_total{kind=\"connection\"}"), 0.0);
    assert!(value("sluice_quota_throttle_seconds_total{kind=\"produce\"}") >= 0.8);
    broker.stop();
}

/// The body of an HTTP GET of `path` from `addr`.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

/// Bytes a Fetch of `topic`/0 from offset 0 returns to a client with `client_id`.
fn raw_fetch_as(client_id: &str, bootstrap: &str, topic: &str) -> usize {
    let consumer = assigned_consumer(bootstrap, topic, &[(0, 0)], &[("client.id", client_id)]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut bytes = 0;
    while bytes < 40_000 && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(POLL) {
            bytes += rdkafka::Message::payload(&m).map_or(0, |p| p.len());
        }
    }
    bytes
}

/// Produces 10 KB records to `topic` with `client_id` as fast as the client is allowed until
/// `stop`; returns the thread.
fn produce_until(bootstrap: &str, topic: &str, client_id: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let producer = base_producer(
        bootstrap,
        &[("client.id", client_id), ("linger.ms", "5"), ("queue.buffering.max.kbytes", "2048"), ("acks", "1")],
    );
    let topic = topic.to_string();
    std::thread::spawn(move || {
        let value = vec![b'q'; 10_000];
        while !stop.load(Ordering::Relaxed) {
            match producer.send(BaseRecord::<(), _>::to(&topic).partition(0).payload(&value)) {
                Ok(()) => {}
                Err(_) => {
                    producer.poll(Duration::from_millis(20));
                }
            }
            producer.poll(Duration::ZERO);
        }
        let _ = producer.flush(Duration::from_secs(5));
    })
}

fn end_offset(client: &mut RawClient, topic: &str) -> i64 {
    let offsets = latest_offsets(client, topic, 1);
    assert_eq!(offsets[0].0, NONE);
    offsets[0].1
}

#[test]
fn a_quotad_producer_converges_to_its_rate_and_others_are_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(
        dir.path(),
        &["--cores", "2", "--set", "quota.window.num=3", "--set", "quota.window.size.seconds=1"],
    );
    broker.wait_for("sluice broker started");
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "slow-lane", 1);
    create_topic(&bootstrap, "fast-lane", 1);
    let quota = 256.0 * 1024.0;
    let mut client = RawClient::connect(&bootstrap);
    let codes =
        alter(&mut client, vec![entry(&[("client-id", Some("slow"))], &[("producer_byte_rate", Some(quota))])], false);
    assert_eq!(codes, vec![NONE]);

    let stop = Arc::new(AtomicBool::new(false));
    let slow = produce_until(&bootstrap, "slow-lane", "slow", stop.clone());
    let fast = produce_until(&bootstrap, "fast-lane", "fast", stop.clone());
    // Past the first burst (a new sensor allows 2 windows' worth at once), then 9 s: three
    // burst periods of 3 s.
    std::thread::sleep(Duration::from_secs(3));
    let (slow_start, fast_start, started) =
        (end_offset(&mut client, "slow-lane"), end_offset(&mut client, "fast-lane"), Instant::now());
    std::thread::sleep(Duration::from_secs(9));
    let (slow_end, fast_end, elapsed) =
        (end_offset(&mut client, "slow-lane"), end_offset(&mut client, "fast-lane"), started.elapsed().as_secs_f64());
    stop.store(true, Ordering::Relaxed);
    slow.join().unwrap();
    fast.join().unwrap();
    let slow_rate = (slow_end - slow_start) as f64 * 10_000.0 / elapsed;
    let fast_rate = (fast_end - fast_start) as f64 * 10_000.0 / elapsed;
    eprintln!("quota {quota} B/s: throttled {slow_rate:.0} B/s, unthrottled {fast_rate:.0} B/s");
    assert!(slow_rate <= 1.5 * quota, "throttled producer at {slow_rate:.0} B/s against {quota} B/s");
    assert!(slow_rate >= 0.3 * quota, "throttled producer starved: {slow_rate:.0} B/s against {quota} B/s");
    assert!(fast_rate >= 4.0 * quota, "unquota'd producer held back: {fast_rate:.0} B/s");
    broker.stop();
}

#[test]
fn connections_over_an_ips_connection_creation_rate_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(
        dir.path(),
        &["--cores", "2", "--set", "quota.window.num=3", "--set", "quota.window.size.seconds=1"],
    );
    broker.wait_for("sluice broker started");
    let bootstrap = broker.bootstrap();
    let mut admin = RawClient::connect(&bootstrap);
    // 2 per second over a window of at least 2 s: 4 connections at once are within it.
    let codes =
        alter(&mut admin, vec![entry(&[("ip", Some("127.0.0.1"))], &[("connection_creation_rate", Some(2.0))])], false);
    assert_eq!(codes, vec![NONE]);
    let mut clients: Vec<RawClient> = (0..10).map(|_| RawClient::connect(&bootstrap)).collect();
    let mut answered = 0;
    for c in clients.iter_mut() {
        let (_, framed) = c.encode(&kafka_protocol::messages::ApiVersionsRequest::default(), 0);
        c.write_bytes_lossy(&framed);
        answered += usize::from(c.read_frame().is_some());
    }
    assert!((1..=5).contains(&answered), "{answered} of 10 connections answered");
    // Without the quota every connection is served again.
    assert_eq!(
        alter(&mut admin, vec![entry(&[("ip", Some("127.0.0.1"))], &[("connection_creation_rate", None)])], false),
        vec![NONE]
    );
    for _ in 0..10 {
        let mut c = RawClient::connect(&bootstrap);
        let response = c.send(&kafka_protocol::messages::ApiVersionsRequest::default(), 0);
        assert_eq!(response.error_code, NONE);
    }
    broker.stop();
}

#[test]
fn quotas_altered_on_one_broker_reach_every_broker_of_a_cluster() {
    use support::cluster::{wait_until, Cluster};
    let mut cluster = Cluster::start(3, 0);
    // Altered through one node (forwarded to the active controller), committed to the metadata
    // log.
    let mut client = RawClient::connect(&cluster.bootstrap(1));
    let codes =
        alter(&mut client, vec![entry(&[("user", Some("alice"))], &[("producer_byte_rate", Some(4096.0))])], false);
    assert_eq!(codes, vec![NONE]);
    let expected: Described = vec![(vec!["user=alice".to_string()], vec![("producer_byte_rate".to_string(), 4096.0)])];
    for i in 0..3 {
        let bootstrap = cluster.bootstrap(i);
        wait_until(&format!("node {} to have the quota", i + 1), Duration::from_secs(20), || {
            let mut c = RawClient::connect(&bootstrap);
            (describe(&mut c, &[], false).1 == expected).then_some(())
        });
    }
    // A restarted broker has it from the log.
    assert_eq!(cluster.stop(1), 0);
    cluster.restart(1);
    let mut client = RawClient::connect(&cluster.bootstrap(1));
    assert_eq!(describe(&mut client, &[], false).1, expected);
}

#[test]
fn a_quotad_consumer_is_slowed_but_gets_everything() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(
        dir.path(),
        &["--cores", "2", "--set", "quota.window.num=3", "--set", "quota.window.size.seconds=1"],
    );
    broker.wait_for("sluice broker started");
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "slow-read", 1);
    let producer = future_producer(&bootstrap, &[("linger.ms", "5"), ("compression.type", "none")]);
    let value = vec![b'r'; 1_000];
    for _ in 0..150 {
        let record = rdkafka::producer::FutureRecord::<(), _>::to("slow-read").partition(0).payload(&value);
        futures::executor::block_on(producer.send(record, Duration::from_secs(20))).expect("produced");
    }
    // 20 KB/s over windows of at least 2 s: a fetch may return 40 KB at most. Without that cap
    // librdkafka's 50 MB fetches would return all 150 KB, be over the quota every time and be
    // answered empty forever.
    let mut client = RawClient::connect(&bootstrap);
    let quota = 20_000.0;
    let codes = alter(
        &mut client,
        vec![entry(&[("client-id", Some("slow-reader"))], &[("consumer_byte_rate", Some(quota))])],
        false,
    );
    assert_eq!(codes, vec![NONE]);
    let consumer = assigned_consumer(&bootstrap, "slow-read", &[(0, 0)], &[("client.id", "slow-reader")]);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(40);
    let mut bytes = 0;
    while bytes < 150_000 && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(POLL) {
            bytes += rdkafka::Message::payload(&m).map_or(0, |p| p.len());
        }
    }
    let took = started.elapsed().as_secs_f64();
    assert_eq!(bytes, 150_000, "the consumer got everything within 40 s");
    // 150 KB: 40 KB at once, the rest at about 20 KB/s.
    assert!(took >= 2.0, "150 KB against 20 KB/s took only {took:.1} s");
    broker.stop();
}
