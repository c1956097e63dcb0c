//! End-to-end: the real `sluice broker` process on a temp data dir. Clean stops leave the
//! marker and skip recovery; SIGKILL leaves none and the next start recovers; data written by
//! the engine survives both; bad flags and configs exit with an error instead of starting.

use std::path::Path;

mod support;
use support::Broker;

use sluice_engine::batch::build_batch_of_size;
use sluice_engine::log_config::LogConfig;
use sluice_engine::partition_log::{LogOptions, PartitionLog, ReadBound};
use sluice_net::controller::{metadata_path, new_cluster_id, new_topic_id};
use sluice_net::metadata_image::{MetadataCommand, MetadataImage};

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).io_memory(512 << 10).make().unwrap().run(f)
}

/// Writes `batches` batches to topic `orders` partition `p` and crashes (no close).
fn write_unclean(data_dir: &Path, partition: i32, batches: usize) {
    run(async {
        let log = PartitionLog::open(data_dir, "orders", partition, LogConfig::default(), LogOptions::default(), true)
            .await
            .unwrap();
        for i in 0..batches {
            log.append(&build_batch_of_size(0, 4, 100, 1000 + i as i64), 0).await.unwrap();
        }
        log.flush().await.unwrap();
    });
}

fn count_records(data_dir: &Path, partition: i32) -> i64 {
    run(async {
        let log = PartitionLog::open(data_dir, "orders", partition, LogConfig::default(), LogOptions::default(), true)
            .await
            .unwrap();
        let r = log.read(0, 1 << 20, ReadBound::HighWatermark, true).await.unwrap();
        assert!(!r.is_empty());
        let end = log.log_end_offset();
        log.close().await.unwrap();
        end
    })
}

/// Registers topic `orders` with `partitions` partitions in the broker's metadata file.
fn register_topic(data_dir: &Path, partitions: i32) {
    let mut image = MetadataImage::new(new_cluster_id());
    let create = MetadataCommand::CreateTopic {
        name: "orders".into(),
        id: new_topic_id(),
        partitions,
        replication_factor: 1,
        configs: Default::default(),
        assignments: Vec::new(),
    };
    image.apply(&create, &LogConfig::default()).unwrap();
    std::fs::write(metadata_path(data_dir), serde_json::to_vec(&image).unwrap()).unwrap();
}

#[test]
fn clean_stop_marks_and_sigkill_forces_recovery_without_losing_data() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join(".clean_shutdown");
    register_topic(dir.path(), 2);
    write_unclean(dir.path(), 0, 25);
    write_unclean(dir.path(), 1, 10);

    // First start after an engine "crash": no marker → recovery; both shards listen and every
    // record is served.
    assert!(!marker.exists());
    let broker = Broker::start(dir.path(), 2);
    assert_eq!(support::listening_sockets(broker.port), 2, "one listener per shard");
    assert_eq!(offsets(&broker), vec![(0, 100), (0, 40)]);
    broker.signal(libc::SIGTERM);
    assert_eq!(broker.wait_exit(), 0);
    assert!(marker.exists(), "a clean stop leaves the marker");

    // Clean start: marker consumed.
    let broker = Broker::start(dir.path(), 2);
    assert!(!marker.exists(), "marker is consumed at start");
    assert_eq!(offsets(&broker), vec![(0, 100), (0, 40)]);
    let stored = support::raw_fetch(&broker.bootstrap(), "orders", 0, 0).records;
    // SIGKILL: no marker, and a torn batch after partition 0's last whole one; the next start
    // recovers: the torn bytes are cut, and every record is served.
    broker.signal(libc::SIGKILL);
    assert_ne!(broker.wait_exit(), 0);
    assert!(!marker.exists());
    let segment = support::only_segment_file(dir.path(), "orders", 0);
    support::tear_segment_tail(&segment, stored.len() as u64, &stored);
    let broker = Broker::start(dir.path(), 2);
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), stored.len() as u64, "the torn tail is cut");
    assert_eq!(offsets(&broker), vec![(0, 100), (0, 40)]);
    assert_eq!(support::raw_fetch(&broker.bootstrap(), "orders", 0, 0).records, stored, "every batch intact");
    broker.signal(libc::SIGINT);
    assert_eq!(broker.wait_exit(), 0);

    // Nothing was lost across the restarts.
    assert_eq!(count_records(dir.path(), 0), 100);
    assert_eq!(count_records(dir.path(), 1), 40);
}

/// Latest offsets of `orders` partitions 0 and 1.
fn offsets(broker: &Broker) -> Vec<(i16, i64)> {
    let mut client = support::raw::RawClient::connect(&broker.bootstrap());
    support::latest_offsets(&mut client, "orders", 2)
}

#[test]
fn bad_flags_and_configs_exit_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for extra in [
        vec!["--set", "log.segment.bytes=-1"],
        vec!["--set", "no.such.setting=1"],
        vec!["--set", "sluice.flush.mode=sometimes"],
        vec!["--cores", "0"],
    ] {
        let broker = Broker::start_with(dir.path(), &extra);
        let code = broker.wait_exit();
        assert_eq!(code, 2, "{extra:?} should be refused with exit code 2");
    }
    let props = dir.path().join("server.properties");
    std::fs::write(&props, "log.segment.bytes=2097152\nsluice.flush.mode=interval:100\nlog.retention.hours.bogus\n")
        .unwrap();
    let broker = Broker::start_with(dir.path(), &["--config", props.to_str().unwrap()]);
    assert_eq!(broker.wait_exit(), 2, "a malformed properties line is refused");
    std::fs::write(&props, "# ok\nlog.segment.bytes=2097152\nsluice.flush.mode=interval:100\n").unwrap();
    let broker = Broker::start_with(dir.path(), &["--config", props.to_str().unwrap()]);
    broker.wait_for("sluice broker started");
    broker.signal(libc::SIGTERM);
    assert_eq!(broker.wait_exit(), 0);
}

/// Shards bind with SO_REUSEPORT; a second broker on a port already in use must fail like
/// Kafka ("Address already in use"), not silently take half of the first one's connections.
#[test]
fn a_second_broker_on_a_busy_port_exits_instead_of_sharing_it() {
    let first_dir = tempfile::tempdir().unwrap();
    let first = Broker::start(first_dir.path(), 2);
    let second_dir = tempfile::tempdir().unwrap();
    let second = Broker::start_on(second_dir.path(), first.port, &["--cores", "1"]);
    assert_eq!(second.wait_exit(), 3, "exit code 3: in use (its data dir is its own: the port)");
    // The first broker still owns the port and serves.
    let mut client = support::raw::RawClient::connect(&first.bootstrap());
    let versions = client.send(&kafka_protocol::messages::ApiVersionsRequest::default(), 3);
    assert_eq!(versions.error_code, 0);
    drop(client);
    first.stop();
}
