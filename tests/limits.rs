//! End-to-end: the broker's descriptors stay bounded however many partitions and segments are
//! read (`sluice.reader.cache.fds` caps the sendfile handles, `sluice.segment.cache.fds` the
//! sealed segment files, `max.connections` the connections), and over-limit connections are
//! closed without disturbing the ones being served.

mod support;
use support::raw::RawClient;
use support::{assigned_consumer, base_producer, create_topic, raw_fetch, Broker};

use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::Message;
use std::path::Path;
use std::time::Duration;

/// Files the broker holds open under `dir` (its data directory).
fn files_open_under(broker: &Broker, dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(format!("/proc/{}/fd", broker.pid()))
        .expect("/proc/PID/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .collect()
}

/// A sealed segment used to keep its file open for its whole life: a log of N segments held N
/// descriptors from start-up on. Now only the active segments and `sluice.segment.cache.fds`
/// sealed ones are open — after a restart, and after a consumer read every segment.
#[test]
fn sealed_segments_hold_descriptors_only_while_recently_used() {
    const PARTITIONS: i32 = 2;
    const RECORDS_PER_PARTITION: usize = 200;
    const SEGMENT_FDS: usize = 4;
    const READER_FDS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--cores",
        "1",
        "--set",
        "log.segment.bytes=4096",
        "--set",
        "sluice.segment.cache.fds=4",
        "--set",
        "sluice.reader.cache.fds=4",
    ];
    let broker = Broker::start_with(dir.path(), &args);
    broker.wait_for("sluice broker started");
    create_topic(&broker.bootstrap(), "deep", PARTITIONS);
    let producer = base_producer(&broker.bootstrap(), &[("linger.ms", "0"), ("batch.num.messages", "4")]);
    let value = vec![b'v'; 500];
    for i in 0..RECORDS_PER_PARTITION {
        for p in 0..PARTITIONS {
            producer.send(BaseRecord::<(), _>::to("deep").partition(p).payload(&value)).expect("queued");
        }
        if i % 4 == 3 {
            producer.flush(Duration::from_secs(30)).expect("acknowledged");
        }
    }
    producer.flush(Duration::from_secs(30)).expect("acknowledged");
    drop(producer);
    broker.stop();

    let segments = std::fs::read_dir(dir.path())
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).into_iter().flatten())
        .filter(|f| f.as_ref().unwrap().file_name().to_string_lossy().ends_with(".log"))
        .count();
    // Active segments, sealed ones, sendfile handles, and the data directory's `.lock`.
    let bound = PARTITIONS as usize + SEGMENT_FDS + READER_FDS + 1;
    assert!(segments > 3 * bound, "only {segments} segments: the test needs many more than {bound}");

    let broker = Broker::start_with(dir.path(), &args);
    broker.wait_for("sluice broker started");
    let after_start = files_open_under(&broker, dir.path());
    assert!(after_start.len() <= bound, "{after_start:?} open after start-up ({segments} segments)");
    let consumer = assigned_consumer(
        &broker.bootstrap(),
        "deep",
        &(0..PARTITIONS).map(|p| (p, 0)).collect::<Vec<_>>(),
        &[("max.partition.fetch.bytes", "4096")],
    );
    let mut next = vec![0i64; PARTITIONS as usize];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while next.iter().any(|n| *n < RECORDS_PER_PARTITION as i64) {
        assert!(std::time::Instant::now() < deadline, "consumed only up to {next:?}");
        let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
        let message = message.expect("no consume error");
        let p = message.partition() as usize;
        assert_eq!(message.offset(), next[p], "records in order, none missing, partition {p}");
        assert_eq!(message.payload(), Some(value.as_slice()));
        next[p] += 1;
    }
    drop(consumer);
    let after_reads = files_open_under(&broker, dir.path());
    assert!(after_reads.len() <= bound, "{after_reads:?} open after reading all {segments} segments");
    broker.stop();
}

/// Reading every partition once used to leave one sendfile handle open per segment read (19,999
/// of 20,000 descriptors after a consumer read 10,000 partitions).
#[test]
fn reading_every_partition_keeps_descriptors_bounded() {
    const PARTITIONS: i32 = 300;
    const READER_FDS: usize = 32;
    let dir = tempfile::tempdir().unwrap();
    let broker =
        Broker::start_with(dir.path(), &["--cores", "2", "--set", &format!("sluice.reader.cache.fds={READER_FDS}")]);
    broker.wait_for("sluice broker started");
    create_topic(&broker.bootstrap(), "wide", PARTITIONS);
    let producer = base_producer(&broker.bootstrap(), &[("linger.ms", "5")]);
    for p in 0..PARTITIONS {
        producer.send(BaseRecord::<(), _>::to("wide").partition(p).payload("v")).expect("queued");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("acknowledged");
    drop(producer);
    let idle = broker.open_fds();
    for p in 0..PARTITIONS {
        let fetched = raw_fetch(&broker.bootstrap(), "wide", p, 0);
        assert_eq!((fetched.error_code, fetched.high_watermark), (0, 1), "partition {p}");
        assert!(!fetched.records.is_empty(), "partition {p} returned its record");
    }
    let after = broker.open_fds();
    assert!(
        after <= idle + READER_FDS + 8,
        "descriptors grew from {idle} to {after} reading {PARTITIONS} partitions (cache of {READER_FDS})"
    );
    broker.stop();
}

/// `max.connections`: connections past the limit are closed at once; those within it are served.
#[test]
fn connections_past_max_connections_are_closed_and_the_rest_served() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(dir.path(), &["--cores", "1", "--set", "max.connections=4"]);
    broker.wait_for("sluice broker started");
    let mut served: Vec<RawClient> = (0..4).map(|_| RawClient::connect(&broker.bootstrap())).collect();
    for client in &mut served {
        assert_eq!(client.send(&kafka_protocol::messages::ApiVersionsRequest::default(), 3).error_code, 0);
    }
    let mut refused = RawClient::connect(&broker.bootstrap());
    let (_, frame) = refused.encode(&kafka_protocol::messages::ApiVersionsRequest::default(), 3);
    refused.write_bytes_lossy(&frame);
    assert!(refused.read_frame().is_none(), "the fifth connection is closed");
    for client in &mut served {
        assert_eq!(client.send(&kafka_protocol::messages::ApiVersionsRequest::default(), 3).error_code, 0);
    }
    drop(served);
    broker.stop();
}
