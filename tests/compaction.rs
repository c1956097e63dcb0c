//! End-to-end log compaction with librdkafka (the `rdkafka` crate) against the real binary:
//! 20 versions of 1,000 keys and tombstones on a compacted topic with small segments — a
//! consumer from the beginning comes to see exactly the latest record of every key at its
//! original offset, the tombstones go after `delete.retention.ms`, a consumer at a removed
//! offset continues at the next record, the data on disk shrinks; a keyless record is refused
//! with INVALID_RECORD; and a crash inside a cleaning (a deterministic fault point) leaves a log
//! that reads correctly and is cleaned after the restart.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, FutureRecord, Producer};
use rdkafka::Message;
use support::{
    assigned_consumer, base_producer, create_topic_with_configs, free_port, future_producer, wait_for_port_release,
    Broker,
};

const KEYS: usize = 1000;
const VERSIONS: usize = 20;
/// Not one of the tested keys: written after them so their last records leave the active
/// segment (which is never cleaned).
const FILLER_KEY: &str = "filler";

fn topic_configs(delete_retention_ms: &str) -> [(&'static str, String); 5] {
    [
        ("cleanup.policy", "compact".to_string()),
        ("segment.bytes", "16384".to_string()),
        ("min.cleanable.dirty.ratio", "0.01".to_string()),
        ("delete.retention.ms", delete_retention_ms.to_string()),
        ("compression.type", "producer".to_string()),
    ]
}

fn create(broker: &Broker, topic: &str, delete_retention_ms: &str) {
    let configs = topic_configs(delete_retention_ms);
    let configs: Vec<(&str, &str)> = configs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    create_topic_with_configs(&broker.bootstrap(), topic, 1, &configs);
}

fn producer(broker: &Broker) -> BaseProducer {
    // Small batches: segments roll between batches, so the small segments need small batches.
    base_producer(
        &broker.bootstrap(),
        &[("linger.ms", "5"), ("batch.size", "4096"), ("compression.type", "lz4"), ("enable.idempotence", "true")],
    )
}

/// Sends and waits for every acknowledgement.
fn produce(producer: &BaseProducer, topic: &str, records: &[(String, Option<String>)]) {
    for (key, value) in records {
        let mut record = BaseRecord::<str, str>::to(topic).key(key.as_str());
        if let Some(value) = value {
            record = record.payload(value.as_str());
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("send: {e}"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("every record acknowledged");
}

/// The versions, then tombstones for every tenth key, then filler; returns what a reader must
/// see at the end for each tested key: (offset, value or tombstone). Offsets follow the send
/// order (one producer, one partition, a fresh topic).
fn write_versions(producer: &BaseProducer, topic: &str) -> BTreeMap<String, (i64, Option<String>)> {
    let mut records = Vec::new();
    for version in 0..VERSIONS {
        for k in 0..KEYS {
            records.push((format!("key-{k:04}"), Some(format!("{version}:{k}:{}", "x".repeat(20)))));
        }
    }
    for k in (0..KEYS).step_by(10) {
        records.push((format!("key-{k:04}"), None));
    }
    let mut latest = BTreeMap::new();
    for (offset, (key, value)) in records.iter().enumerate() {
        latest.insert(key.clone(), (offset as i64, value.clone()));
    }
    records.extend(filler(200));
    produce(producer, topic, &records);
    latest
}

/// The topic's high watermark (flush returns once nothing is queued, delivered or not).
fn high_watermark(broker: &Broker, topic: &str) -> i64 {
    let consumer: BaseConsumer = assigned_consumer(&broker.bootstrap(), topic, &[(0, 0)], &[]);
    consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).expect("watermarks").1
}

/// Writes the versions into a fresh topic on a broker whose cleaner is off (so what is on disk
/// afterwards is what was written), and checks every record arrived. Returns the latest record
/// of each key, and the bytes of the topic's segments.
fn write_uncleaned(
    dir: &Path,
    port: u16,
    topic: &str,
    delete_retention_ms: &str,
) -> (BTreeMap<String, (i64, Option<String>)>, u64) {
    let broker = Broker::start_on(dir, port, &["--cores", "1", "--set", "log.cleaner.enable=false"]);
    broker.wait_for("sluice broker started");
    create(&broker, topic, delete_retention_ms);
    let latest = write_versions(&producer(&broker), topic);
    assert_eq!(high_watermark(&broker, topic), (KEYS * VERSIONS + KEYS / 10 + 200) as i64, "every record acknowledged");
    broker.stop();
    (latest, data_bytes(dir, topic))
}

/// Records of the filler key with incompressible values (the producer compresses), about
/// 200 bytes each: 200 of them fill more than two segments.
fn filler(count: usize) -> Vec<(String, Option<String>)> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ count as u64;
    (0..count)
        .map(|_| {
            let value: String = (0..12)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    format!("{x:016x}")
                })
                .collect();
            (FILLER_KEY.to_string(), Some(value))
        })
        .collect()
}

/// Everything a consumer from offset 0 reads up to the log end, by offset.
fn read_all(broker: &Broker, topic: &str) -> BTreeMap<i64, (String, Option<String>)> {
    let consumer: BaseConsumer = assigned_consumer(&broker.bootstrap(), topic, &[(0, 0)], &[]);
    let (_, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).expect("watermarks");
    let mut out = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = -1;
    while last + 1 < high {
        assert!(Instant::now() < deadline, "read only up to {last} of {high}");
        let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
        let message = message.expect("no consume error");
        let key = String::from_utf8(message.key().expect("keyed").to_vec()).unwrap();
        let value = message.payload().map(|v| String::from_utf8(v.to_vec()).unwrap());
        assert!(message.offset() > last, "offsets increase");
        last = message.offset();
        out.insert(last, (key, value));
    }
    out
}

/// The tested keys' records of a read, by key (panics if a key appears twice).
fn by_key(read: &BTreeMap<i64, (String, Option<String>)>) -> BTreeMap<String, Vec<(i64, Option<String>)>> {
    let mut out: BTreeMap<String, Vec<(i64, Option<String>)>> = BTreeMap::new();
    for (offset, (key, value)) in read {
        if key != FILLER_KEY {
            out.entry(key.clone()).or_default().push((*offset, value.clone()));
        }
    }
    out
}

/// Polls until `done(read)` (a cleaning runs in the background every `log.cleaner.backoff.ms`);
/// returns the read that satisfied it.
fn wait_for_read(
    broker: &Broker,
    topic: &str,
    what: &str,
    done: impl Fn(&BTreeMap<i64, (String, Option<String>)>) -> bool,
) -> BTreeMap<i64, (String, Option<String>)> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let read = read_all(broker, topic);
        if done(&read) {
            return read;
        }
        if Instant::now() >= deadline {
            let doubled: Vec<_> = by_key(&read).into_iter().filter(|(_, v)| v.len() > 1).take(3).collect();
            let log: Vec<String> = broker.drain_lines().into_iter().filter(|l| l.contains("clean")).collect();
            panic!(
                "{what}: not reached; {} records; keys with several records: {doubled:?}\n{}",
                read.len(),
                log.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn exactly_latest(
    read: &BTreeMap<i64, (String, Option<String>)>,
    latest: &BTreeMap<String, (i64, Option<String>)>,
) -> bool {
    let keys = by_key(read);
    keys.len() == latest.len()
        && latest.iter().all(|(k, want)| keys.get(k).is_some_and(|got| got == &vec![want.clone()]))
}

fn data_bytes(dir: &Path, topic: &str) -> u64 {
    std::fs::read_dir(dir.join(format!("{topic}-0")))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn a_compacted_topic_keeps_the_latest_record_of_every_key_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let topic = "changelog";
    let (latest, written_bytes) = write_uncleaned(dir.path(), port, topic, "500");
    let broker = Broker::start_on(dir.path(), port, &["--cores", "1", "--set", "log.cleaner.backoff.ms=100"]);
    broker.wait_for("sluice broker started");
    let producer = producer(&broker);

    // The cleaner catches up: one record per key, the latest, at its own offset (tombstones
    // survive their first cleaning).
    let read = wait_for_read(&broker, topic, "one record per key", |read| exactly_latest(read, &latest));
    assert!(
        data_bytes(dir.path(), topic) * 4 < written_bytes,
        "{} bytes of segments left of {written_bytes}",
        data_bytes(dir.path(), topic)
    );
    // A consumer at a removed offset continues at the next record kept.
    let removed = 5i64;
    assert!(!read.contains_key(&removed));
    let next_kept = *read.range(removed..).next().unwrap().0;
    let consumer = assigned_consumer(&broker.bootstrap(), topic, &[(0, removed)], &[]);
    let first = loop {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            break m.expect("no consume error").offset();
        }
    };
    assert_eq!(first, next_kept);

    // New writes dirty the log again; delete.retention.ms (500 ms) has passed for the
    // tombstones, so the next cleaning removes them and their keys vanish.
    std::thread::sleep(Duration::from_millis(600));
    produce(&producer, topic, &filler(200));
    let survivors: BTreeMap<String, (i64, Option<String>)> =
        latest.iter().filter(|(_, (_, v))| v.is_some()).map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(survivors.len(), KEYS - KEYS / 10);
    wait_for_read(&broker, topic, "tombstoned keys gone", |read| exactly_latest(read, &survivors));
    broker.stop();
}

#[test]
fn a_record_without_a_key_is_refused_by_a_compacted_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    create(&broker, "keyed-only", "86400000");
    let producer = future_producer(&broker.bootstrap(), &[("message.send.max.retries", "0")]);
    let record = FutureRecord::<(), str>::to("keyed-only").payload("no key");
    match block_on(producer.send(record, Duration::from_secs(10))) {
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord), _)) => {}
        other => panic!("expected INVALID_RECORD, got {:?}", other.map_err(|(e, _)| e)),
    }
    let keyed = FutureRecord::to("keyed-only").key("k").payload("with a key");
    block_on(producer.send(keyed, Duration::from_secs(10))).expect("a keyed record is accepted");
    broker.stop();
}

#[test]
fn a_crash_inside_a_cleaning_leaves_a_log_that_reads_correctly_and_is_cleaned_after_restart() {
    for step in ["before-swap:0", "after-swap:0", "before-swap:1"] {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let topic = "crashy";
        let (latest, _) = write_uncleaned(dir.path(), port, topic, "86400000");
        let args = ["--cores", "1", "--set", "log.cleaner.backoff.ms=100"];
        let mut broker = Broker::start_on_with_env(dir.path(), port, &args, &[("SLUICE_FAULT_ABORT_IN_CLEANER", step)]);
        // The cleaner reaches the fault point and the process dies.
        let deadline = Instant::now() + Duration::from_secs(60);
        while broker.is_running() {
            assert!(Instant::now() < deadline, "{step}: the cleaner never reached the fault point");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_ne!(broker.wait_exit(), 0, "{step}: an abort");
        wait_for_port_release(port);
        // First without the cleaner: the interrupted replacement is settled by the start alone.
        let broker = Broker::start_on(dir.path(), port, &["--cores", "1", "--set", "log.cleaner.enable=false"]);
        broker.wait_for("sluice broker started");
        // Right after the restart: every latest record is there at its offset (older versions
        // may still be too, until the restarted cleaner gets to them).
        let read = read_all(&broker, topic);
        for (key, want) in &latest {
            assert_eq!(read.get(&want.0), Some(&(key.clone(), want.1.clone())), "{step}: latest record of {key}");
        }
        let leftovers: Vec<String> = std::fs::read_dir(dir.path().join(format!("{topic}-0")))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap") || n.ends_with(".deleted"))
            .collect();
        assert!(leftovers.is_empty(), "{step}: {leftovers:?}");
        broker.stop();
        let broker = Broker::start_on(dir.path(), port, &args);
        broker.wait_for("sluice broker started");
        wait_for_read(&broker, topic, "cleaned after the restart", |read| exactly_latest(read, &latest));
        broker.stop();
    }
}

/// `__consumer_offsets` is compacted: a group committing the same partition over and over
/// (100,000 times: about 15 MB of commit records) keeps the internal topic's segments under
/// 1 MiB once the cleaner has run (segments of 64 KiB here; the bound is a few segments, not the
/// history), and the last commit is what the group reads back, also after a restart. CI runs
/// 20,000 commits (the debug broker takes about a millisecond each);
/// `SLUICE_TEST_OFFSET_COMMITS=100000` runs the count.
#[test]
fn a_group_committing_over_and_over_keeps_the_offsets_topic_bounded() {
    use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use support::raw::RawClient;

    let commits: i64 = std::env::var("SLUICE_TEST_OFFSET_COMMITS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    const BOUND_BYTES: u64 = 1 << 20;
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let commit = |offset: i64| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s("committer")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default().with_name(TopicName(s("input"))).with_partitions(
                vec![OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(offset)],
            )])
    };
    let offsets_bytes = |dir: &Path| -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("__consumer_offsets-"))
            .flat_map(|d| std::fs::read_dir(d.path()).unwrap().filter_map(|e| e.ok()))
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| e.metadata().unwrap().len())
            .sum()
    };
    let fetch_committed = |broker: &Broker| -> i64 {
        let request = OffsetFetchRequest::default().with_group_id(GroupId(s("committer"))).with_topics(Some(vec![
            OffsetFetchRequestTopic::default().with_name(TopicName(s("input"))).with_partition_indexes(vec![0]),
        ]));
        let response = RawClient::connect(&broker.bootstrap()).send(&request, 7);
        assert_eq!(response.error_code, 0);
        response.topics[0].partitions[0].committed_offset
    };

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let args = ["--cores", "1", "--set", "log.segment.bytes=65536", "--set", "log.cleaner.backoff.ms=100"];
    let broker = Broker::start_on(dir.path(), port, &args);
    broker.wait_for("sluice broker started");
    support::create_topic(&broker.bootstrap(), "input", 1);
    let mut client = RawClient::connect(&broker.bootstrap());
    // Pipelined, 100 requests at a time, answered in order.
    for chunk in 0..commits / 100 {
        let mut frames = bytes::BytesMut::new();
        for i in 0..100 {
            frames.extend_from_slice(&client.encode(&commit(chunk * 100 + i + 1), 8).1);
        }
        client.write_bytes(&frames);
        for _ in 0..100 {
            client.read_frame().expect("an OffsetCommit response");
        }
    }
    assert_eq!(fetch_committed(&broker), commits);
    let deadline = Instant::now() + Duration::from_secs(90);
    while offsets_bytes(dir.path()) > BOUND_BYTES {
        assert!(Instant::now() < deadline, "__consumer_offsets holds {} bytes", offsets_bytes(dir.path()));
        std::thread::sleep(Duration::from_millis(100));
    }
    broker.stop();
    let broker = Broker::start_on(dir.path(), port, &args);
    broker.wait_for("sluice broker started");
    assert_eq!(fetch_committed(&broker), commits, "the last commit survives compaction and a restart");
    broker.stop();
}

/// `cleanup.policy` changes at run time (AlterConfigs): a topic written under `delete` keeps
/// every version; switched to `compact`, the running cleaner reduces it to the latest record of
/// each key.
#[test]
fn a_topic_switched_to_compact_at_run_time_is_cleaned() {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;

    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(dir.path(), &["--cores", "1", "--set", "log.cleaner.backoff.ms=100"]);
    broker.wait_for("sluice broker started");
    let topic = "switched";
    create_topic_with_configs(
        &broker.bootstrap(),
        topic,
        1,
        &[("cleanup.policy", "delete"), ("segment.bytes", "16384")],
    );
    let latest = write_versions(&producer(&broker), topic);
    let total = (KEYS * VERSIONS + KEYS / 10 + 200) as i64;
    assert_eq!(high_watermark(&broker, topic), total);
    // The cleaner runs every 100 ms but leaves a `delete` topic alone.
    assert_eq!(read_all(&broker, topic).len() as i64, total);

    let admin: AdminClient<DefaultClientContext> =
        support::client_config(&broker.bootstrap()).create().expect("admin client");
    // AlterConfigs replaces the topic's whole override set.
    let alter = AlterConfig::new(ResourceSpecifier::Topic(topic))
        .set("cleanup.policy", "compact")
        .set("segment.bytes", "16384")
        .set("min.cleanable.dirty.ratio", "0.01")
        .set("delete.retention.ms", "86400000");
    let results = block_on(admin.alter_configs([&alter], &AdminOptions::new())).expect("alter");
    assert!(results[0].is_ok(), "{results:?}");
    wait_for_read(&broker, topic, "cleaned after the switch", |read| exactly_latest(read, &latest));
    broker.stop();
}
