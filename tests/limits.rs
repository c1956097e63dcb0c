//! End-to-end: the broker's descriptors stay bounded however many partitions are read
//! (`sluice.reader.cache.fds` caps the sendfile handles; `max.connections` the connections), and
//! over-limit connections are closed without disturbing the ones being served.

mod support;
use support::raw::RawClient;
use support::{base_producer, create_topic, raw_fetch, Broker};

use rdkafka::producer::{BaseRecord, Producer};
use std::time::Duration;

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
