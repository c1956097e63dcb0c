//! Data replication between real broker processes: followers fetch from the leader, the leader
//! keeps the ISR and the high watermark, acks=all waits for the in-sync replicas.
//!
//! Two kinds of cluster: real ones (tests/support/cluster.rs: the metadata quorum on openraft,
//! elections when a broker is fenced), and a *static* three-node one where each node starts
//! from the same pre-written metadata image (three registered brokers, a topic with replicas
//! [1, 2, 3] led by node 1), its leader's ISR changes applied by its own controller and a
//! leader change made by rewriting the image — data replication alone, without the quorum.
//! Fault timing is derived from a printed seed; every wait polls with a deadline.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{MetadataRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::producer::FutureRecord;
use sluice_net::metadata_image::{BrokerRegistration, MetadataImage, PartitionAssignment, TopicMeta};
use support::cluster::{partitions, wait_until, Cluster};
use support::*;

const TOPIC: &str = "replicated";
const NOT_ENOUGH_REPLICAS: i16 = 19;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;

/// Three brokers started from one pre-written image; node i+1 is `nodes[i]`.
struct StaticCluster {
    dirs: Vec<tempfile::TempDir>,
    ports: Vec<u16>,
    nodes: Vec<Option<Broker>>,
    settings: Vec<String>,
    /// The image every node started from (the test changes it to move the leadership).
    image: MetadataImage,
    cores: usize,
}

impl StaticCluster {
    fn start(settings: &[&str]) -> StaticCluster {
        StaticCluster::start_with(settings, 1, 1)
    }

    /// `partitions` partitions, partition p led by node p % 3 + 1 (replicas rotated), every
    /// node with `cores` shards.
    fn start_with(settings: &[&str], partitions: i32, cores: usize) -> StaticCluster {
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut image = MetadataImage::new("replication-test-cluster".into());
        for (i, port) in ports.iter().enumerate() {
            let id = i as i32 + 1;
            let broker = BrokerRegistration {
                id,
                host: "127.0.0.1".into(),
                port: i32::from(*port),
                rack: None,
                fenced: false,
                listeners: Vec::new(),
            };
            image.brokers.insert(id, broker);
        }
        let configs = BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]);
        let topic = TopicMeta {
            id: *b"replicated-topic",
            partitions,
            replication_factor: 3,
            configs,
            assignments: (0..partitions)
                .map(|p| PartitionAssignment::new((0..3).map(|r| (p + r) % 3 + 1).collect()))
                .collect(),
        };
        image.topics.insert(TOPIC.into(), topic);
        image.version = 1;
        let mut cluster = StaticCluster {
            dirs,
            ports,
            nodes: vec![None, None, None],
            settings: settings.iter().map(|s| s.to_string()).collect(),
            image,
            cores,
        };
        for id in 1..=3 {
            cluster.write_image(id);
            cluster.start_node(id);
        }
        cluster
    }

    /// Writes the test's image into a stopped node's data dir. Each node hands out producer
    /// ids from its own block (the static cluster has no shared controller).
    fn write_image(&self, id: i32) {
        let mut image = self.image.clone();
        image.next_producer_id = i64::from(id) * 10_000_000;
        let path = self.data_dir(id).join("metadata.json");
        std::fs::write(path, serde_json::to_vec(&image).unwrap()).unwrap();
    }

    fn start_node(&mut self, id: i32) {
        let i = (id - 1) as usize;
        let node_id = format!("node.id={id}");
        let cores = self.cores.to_string();
        let mut extra: Vec<&str> = vec!["--cores", &cores, "--set", &node_id];
        for s in &self.settings {
            extra.extend(["--set", s.as_str()]);
        }
        let broker = Broker::start_on(self.dirs[i].path(), self.ports[i], &extra);
        broker.wait_for("sluice broker started");
        self.nodes[i] = Some(broker);
    }

    fn node(&self, id: i32) -> &Broker {
        self.nodes[(id - 1) as usize].as_ref().expect("running")
    }

    fn stop_node(&mut self, id: i32) {
        self.nodes[(id - 1) as usize].take().expect("running").stop();
    }

    fn data_dir(&self, id: i32) -> PathBuf {
        self.dirs[(id - 1) as usize].path().to_path_buf()
    }
}

/// The ISR node 1 (the leader) reports for the partition.
fn isr(bootstrap: &str) -> Vec<i32> {
    let mut client = raw::RawClient::connect(bootstrap);
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str(TOPIC))))
    ]));
    let response = client.send(&request, 9);
    let mut isr: Vec<i32> = response.topics[0].partitions[0].isr_nodes.iter().map(|b| b.0).collect();
    isr.sort();
    isr
}

/// One acks=all produce of one record through a raw connection: the partition's error code.
fn produce_acks_all(bootstrap: &str, value: &str, timeout_ms: i32) -> i16 {
    produce(bootstrap, value, -1, timeout_ms)
}

/// acks=1 records into a leader whose followers are stopped: the first may still reach them
/// (a follower's fetch in flight when it stopped is answered into its socket), those after a
/// pause cannot — only the leader ever has them.
fn produce_leader_only(bootstrap: &str) {
    assert_eq!(produce(bootstrap, "leader-only-early", 1, 5_000), 0);
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..5 {
        assert_eq!(produce(bootstrap, &format!("leader-only-late-{i}"), 1, 5_000), 0);
    }
}

fn produce(bootstrap: &str, value: &str, acks: i16, timeout_ms: i32) -> i16 {
    produce_to(bootstrap, 0, value, acks, timeout_ms)
}

fn produce_to(bootstrap: &str, partition: i32, value: &str, acks: i16, timeout_ms: i32) -> i16 {
    let record = (Some(value.as_bytes()), Some(value.as_bytes()), &[][..]);
    let batch = sluice_engine::batch::build_batch(0, &[record], 1_700_000_000_000);
    let request = ProduceRequest::default().with_acks(acks).with_timeout_ms(timeout_ms).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(StrBytes::from_static_str(TOPIC))).with_partition_data(vec![
            PartitionProduceData::default().with_index(partition).with_records(Some(Bytes::from(batch))),
        ]),
    ]);
    let mut client = raw::RawClient::connect(bootstrap);
    let response = client.send(&request, 9);
    response.responses[0].partition_responses[0].error_code
}

/// Polls `check` until it holds or `what` times out.
fn eventually(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// The partition's batches on disk under `data_dir`, segment by segment (a killed broker's
/// active segment may end in preallocated zeros: each file is read up to its last whole batch).
fn segment_bytes(data_dir: &Path) -> Vec<u8> {
    partition_bytes(data_dir, 0)
}

fn partition_bytes(data_dir: &Path, partition: i32) -> Vec<u8> {
    let dir = data_dir.join(format!("{TOPIC}-{partition}"));
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    let mut out = Vec::new();
    for path in logs {
        let bytes = std::fs::read(&path).unwrap();
        let mut batches = sluice_engine::batch::batches(&bytes, sluice_engine::batch::Validation::Stored);
        for item in batches.by_ref() {
            if item.is_err() {
                break;
            }
        }
        let whole = batches.position();
        out.extend_from_slice(&bytes[..whole]);
    }
    out
}

fn seed() -> u64 {
    let seed = std::env::var("SLUICE_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    println!("seed {seed} (SLUICE_TEST_SEED={seed} repeats it)");
    seed
}

#[test]
fn an_idempotent_acks_all_producer_leaves_the_same_log_on_every_replica() {
    let seed = seed();
    let count = 200 + (seed % 300) as usize;
    let mut cluster = StaticCluster::start(&[]);
    let leader = cluster.node(1).bootstrap();
    eventually("the ISR of all three", Duration::from_secs(30), || isr(&leader) == vec![1, 2, 3]);
    let producer = future_producer(&leader, &[("enable.idempotence", "true"), ("acks", "all"), ("linger.ms", "5")]);
    let mut acked = Vec::new();
    let values: Vec<(String, String)> = (0..count).map(|i| (format!("k{}", i % 13), format!("record-{i}"))).collect();
    futures::executor::block_on(async {
        let sends: Vec<_> = values
            .iter()
            .map(|(key, value)| {
                producer.send(FutureRecord::to(TOPIC).key(key).payload(value).partition(0), Duration::from_secs(30))
            })
            .collect();
        for (i, send) in sends.into_iter().enumerate() {
            let delivery = send.await.unwrap_or_else(|(e, _)| panic!("record {i}: {e}"));
            acked.push(delivery.offset);
        }
    });
    assert_eq!(acked, (0..count as i64).collect::<Vec<_>>(), "every record at its own offset, in order");
    let fetched = raw_fetch(&leader, TOPIC, 0, 0);
    assert_eq!(fetched.high_watermark, count as i64, "acks=all: the high watermark passed every record");
    drop(producer);
    // DeleteRecords on the leader only; the followers follow its log start as they fetch (the
    // acks=all produce after it makes sure each fetched since).
    let trimmed = (count / 2) as i64;
    assert_eq!(delete_records(&cluster.node(2).bootstrap(), trimmed), NOT_LEADER_OR_FOLLOWER);
    assert_eq!(delete_records(&leader, trimmed), 0);
    assert_eq!(produce_acks_all(&leader, "after-delete", 10_000), 0);
    // Every replica holds the same bytes at the same offsets.
    for id in [2, 3, 1] {
        cluster.stop_node(id);
    }
    let leader_log = segment_bytes(&cluster.data_dir(1));
    assert!(!leader_log.is_empty());
    for id in [2, 3] {
        assert!(segment_bytes(&cluster.data_dir(id)) == leader_log, "node {id}'s log differs from the leader's");
    }
    for id in [1, 2, 3] {
        let start =
            std::fs::read_to_string(cluster.data_dir(id).join(format!("{TOPIC}-0/log-start-offset.checkpoint")));
        assert_eq!(start.unwrap(), format!("0\n{trimmed}\n"), "node {id}'s log start offset");
    }
}

/// DeleteRecords (v2) of the partition below `offset` on `bootstrap`: the partition's error.
fn delete_records(bootstrap: &str, offset: i64) -> i16 {
    use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
    use kafka_protocol::messages::DeleteRecordsRequest;
    let request =
        DeleteRecordsRequest::default().with_timeout_ms(10_000).with_topics(vec![DeleteRecordsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(vec![DeleteRecordsPartition::default().with_partition_index(0).with_offset(offset)])]);
    raw::RawClient::connect(bootstrap).send(&request, 2).topics[0].partitions[0].error_code
}

#[test]
fn partitions_led_by_every_node_replicate_between_shards() {
    let seed = seed();
    let partitions = 6;
    let mut cluster = StaticCluster::start_with(&[], partitions, 2);
    for round in 0..(3 + seed % 5) {
        for p in 0..partitions {
            let leader = cluster.node(p % 3 + 1).bootstrap();
            assert_eq!(produce_to(&leader, p, &format!("p{p}-r{round}"), -1, 10_000), 0, "partition {p}");
            if p == 0 {
                let follower = cluster.node(2).bootstrap();
                assert_eq!(produce_to(&follower, p, "to-a-follower", -1, 10_000), NOT_LEADER_OR_FOLLOWER);
            }
        }
    }
    for id in [1, 2, 3] {
        cluster.stop_node(id);
    }
    for p in 0..partitions {
        let leader_log = partition_bytes(&cluster.data_dir(p % 3 + 1), p);
        assert!(!leader_log.is_empty());
        for id in [1, 2, 3] {
            assert!(partition_bytes(&cluster.data_dir(id), p) == leader_log, "partition {p} differs on node {id}");
        }
    }
}

#[test]
fn a_stopped_follower_leaves_the_isr_and_rejoins_when_it_continues() {
    let seed = seed();
    let cluster = StaticCluster::start(&["replica.lag.time.max.ms=1000"]);
    let leader = cluster.node(1).bootstrap();
    eventually("the ISR of all three", Duration::from_secs(30), || isr(&leader) == vec![1, 2, 3]);
    assert_eq!(produce_acks_all(&leader, "before", 10_000), 0);

    // SIGSTOP one follower (which one from the seed): acks=all still succeeds with two.
    let (first, second) = if seed.is_multiple_of(2) { (2, 3) } else { (3, 2) };
    cluster.node(first).signal(libc::SIGSTOP);
    assert_eq!(produce_acks_all(&leader, "one stopped", 20_000), 0, "the ISR shrinks and the produce completes");
    let mut expected: Vec<i32> = vec![1, second];
    expected.sort();
    eventually("the stopped follower out of the ISR", Duration::from_secs(20), || isr(&leader) == expected);

    // A second one: fewer in-sync replicas than min.insync.replicas.
    cluster.node(second).signal(libc::SIGSTOP);
    eventually("NOT_ENOUGH_REPLICAS", Duration::from_secs(30), || {
        produce_acks_all(&leader, "two stopped", 3_000) == NOT_ENOUGH_REPLICAS
    });
    assert_eq!(isr(&leader), vec![1]);

    // Both continue: they catch up, rejoin, and acks=all succeeds again.
    cluster.node(first).signal(libc::SIGCONT);
    cluster.node(second).signal(libc::SIGCONT);
    eventually("both back in the ISR", Duration::from_secs(30), || isr(&leader) == vec![1, 2, 3]);
    assert_eq!(produce_acks_all(&leader, "after", 10_000), 0);
}

/// Every record's key and offset the partition holds, read from `bootstrap` (its leader).
fn keys_by_offset(bootstrap: &str) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let fetched = raw_fetch(bootstrap, TOPIC, 0, offset);
        assert_eq!(fetched.error_code, 0);
        if fetched.records.is_empty() {
            return out;
        }
        let mut scratch = Vec::new();
        for item in sluice_engine::batch::batches(&fetched.records, sluice_engine::batch::Validation::Stored) {
            let Ok((pos, info)) = item else { break };
            let batch = &fetched.records[pos..pos + info.total_len];
            if !info.is_control() {
                sluice_engine::cleaner::record_filter::for_each_record(batch, &mut scratch, |record, _| {
                    out.push((record.offset, String::from_utf8_lossy(record.key.unwrap_or_default()).into_owned()));
                })
                .unwrap();
            }
            offset = info.next_offset();
        }
    }
}

#[test]
fn acknowledged_records_survive_the_leaders_crash_exactly_once_and_the_old_leader_truncates_and_rejoins() {
    let seed = seed();
    let mut cluster = StaticCluster::start(&["replica.lag.time.max.ms=3000"]);
    let leader = cluster.node(1).bootstrap();
    eventually("the ISR of all three", Duration::from_secs(30), || isr(&leader) == vec![1, 2, 3]);

    // An idempotent acks=all producer writes until the leader is killed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked_count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let producer_thread = {
        let (leader, stop, acked_count) = (leader.clone(), stop.clone(), acked_count.clone());
        std::thread::spawn(move || {
            let producer = future_producer(
                &leader,
                &[("enable.idempotence", "true"), ("acks", "all"), ("linger.ms", "2"), ("message.timeout.ms", "4000")],
            );
            let mut acked: Vec<(i64, String)> = Vec::new();
            let mut next = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let keys: Vec<String> = (next..next + 20).map(|i| format!("a-{i}")).collect();
                next += 20;
                let sends: Vec<_> = keys
                    .iter()
                    .map(|k| producer.send_result(FutureRecord::to(TOPIC).key(k).payload("v").partition(0)).ok())
                    .collect();
                for (key, send) in keys.iter().zip(sends) {
                    let Some(delivery) = send else { continue };
                    if let Ok(Ok(d)) = futures::executor::block_on(delivery) {
                        acked.push((d.offset, key.clone()));
                        acked_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }
            acked
        })
    };
    let kill_after = Duration::from_millis(500 + seed % 1500);
    println!("killing the leader {kill_after:?} after the first acknowledgement");
    wait_until("the producer's first acknowledgement", Duration::from_secs(30), || {
        (acked_count.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(())
    });
    std::thread::sleep(kill_after);
    // The followers stop, the leader takes a few acks=1 records only it will ever have, and dies.
    cluster.node(2).signal(libc::SIGSTOP);
    cluster.node(3).signal(libc::SIGSTOP);
    produce_leader_only(&leader);
    let old_leader = cluster.nodes[0].take().unwrap();
    old_leader.signal(libc::SIGKILL);
    let _ = old_leader.wait_exit();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let acked = producer_thread.join().unwrap();
    assert!(!acked.is_empty(), "nothing was acknowledged before the crash");
    println!("{} records acknowledged before the crash", acked.len());

    // The "controller" elects node 2 (in the ISR) at epoch 1; node 3 follows it.
    cluster.node(2).signal(libc::SIGCONT);
    cluster.node(3).signal(libc::SIGCONT);
    cluster.stop_node(2);
    cluster.stop_node(3);
    {
        let assignment = &mut cluster.image.topics.get_mut(TOPIC).unwrap().assignments[0];
        assignment.leader = 2;
        assignment.leader_epoch = 1;
        assignment.isr = vec![2, 3];
        assignment.partition_epoch = 100;
    }
    for id in [2, 3] {
        cluster.write_image(id);
        cluster.start_node(id);
    }
    let new_leader = cluster.node(2).bootstrap();
    assert_eq!(produce_acks_all(&new_leader, "after-failover", 20_000), 0);

    // The old leader comes back on its port and data dir: it truncates what it alone had and
    // rejoins the ISR.
    cluster.write_image(1);
    cluster.start_node(1);
    eventually("the old leader back in the ISR", Duration::from_secs(30), || isr(&new_leader) == vec![1, 2, 3]);
    assert_eq!(produce_acks_all(&new_leader, "all-three-again", 20_000), 0);

    // Every acknowledged record is there exactly once, at its acknowledged offset.
    let held = keys_by_offset(&new_leader);
    let by_offset: BTreeMap<i64, &String> = held.iter().map(|(o, k)| (*o, k)).collect();
    for (offset, key) in &acked {
        assert_eq!(by_offset.get(offset).copied(), Some(key), "acknowledged {key} at {offset}");
        assert_eq!(held.iter().filter(|(_, k)| k == key).count(), 1, "{key} held once");
    }
    // What only the old leader had is gone: with the byte-equal logs below, it truncated.
    assert!(!held.iter().any(|(_, k)| k.starts_with("leader-only-late")), "the new leader never had those");
    // And all three logs are the same bytes.
    for id in [1, 3, 2] {
        cluster.stop_node(id);
    }
    let leader_log = segment_bytes(&cluster.data_dir(2));
    for id in [1, 3] {
        assert!(segment_bytes(&cluster.data_dir(id)) == leader_log, "node {id}'s log differs from the leader's");
    }
}

// ---- Real clusters: three controllers, and two broker-only nodes where a test stops
// followers (so the quorum keeps its majority).

/// Creates the test topic on `cluster` with one partition on `replicas` (the first leads),
/// `min.insync.replicas=2`; returns once every running node shows it with all in sync.
fn create_replicated_topic(cluster: &Cluster, replicas: &[i32]) {
    use kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment;
    use kafka_protocol::messages::BrokerId;
    let mut request = create_topics_request(TOPIC, -1, &[("min.insync.replicas", "2")]);
    request.topics[0].replication_factor = -1;
    request.topics[0].assignments = vec![CreatableReplicaAssignment::default()
        .with_partition_index(0)
        .with_broker_ids(replicas.iter().map(|r| BrokerId(*r)).collect())];
    let nodes = cluster.nodes.len();
    wait_until("every broker registered", Duration::from_secs(30), || {
        (support::cluster::metadata_broker_ids(&cluster.bootstrap(0)).len() == nodes).then_some(())
    });
    let response = raw::RawClient::connect(&cluster.bootstrap(0)).send(&request, 7);
    assert_eq!(response.topics[0].error_code, 0, "{:?}", response.topics[0].error_message);
    let mut sorted = replicas.to_vec();
    sorted.sort_unstable();
    for i in cluster.running() {
        wait_until("the topic with every replica in sync", Duration::from_secs(30), || {
            let p = partitions(&cluster.bootstrap(i), TOPIC)?;
            let mut isr = p[0].4.clone();
            isr.sort_unstable();
            (p[0].1 == replicas[0] && isr == sorted).then_some(())
        });
    }
}

/// The partition's (leader, leader epoch, ISR sorted) as node `i` sees it.
fn leadership(cluster: &Cluster, i: usize) -> Option<(i32, i32, Vec<i32>)> {
    let p = partitions(&cluster.bootstrap(i), TOPIC)?;
    let mut isr = p[0].4.clone();
    isr.sort_unstable();
    Some((p[0].1, p[0].2, isr))
}

fn bootstrap_all(cluster: &Cluster) -> String {
    cluster.running().iter().map(|i| cluster.bootstrap(*i)).collect::<Vec<_>>().join(",")
}

/// Every record of an idempotent acks=all producer, at offsets 0..n in order.
fn produce_idempotent(bootstrap: &str, n: usize, prefix: &str) {
    let producer = future_producer(bootstrap, &[("enable.idempotence", "true"), ("acks", "all"), ("linger.ms", "5")]);
    let keys: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    futures::executor::block_on(async {
        let sends: Vec<_> = keys
            .iter()
            .map(|k| producer.send(FutureRecord::to(TOPIC).key(k).payload("v").partition(0), Duration::from_secs(30)))
            .collect();
        for (i, send) in sends.into_iter().enumerate() {
            let delivery = send.await.unwrap_or_else(|(e, _)| panic!("record {i}: {e}"));
            assert_eq!(delivery.offset, i as i64, "record {i} at its own offset");
        }
    });
}

#[test]
fn in_a_real_cluster_every_replica_holds_the_records_and_the_next_leader_serves_them() {
    let seed = seed();
    let count = 100 + (seed % 200) as usize;
    let mut cluster = Cluster::start(3, 0);
    create_replicated_topic(&cluster, &[1, 2, 3]);
    produce_idempotent(&bootstrap_all(&cluster), count, "k");
    let expected: Vec<(i64, String)> = (0..count).map(|i| (i as i64, format!("k-{i}"))).collect();
    assert_eq!(keys_by_offset(&cluster.bootstrap(0)), expected);

    // The leader dies: the controller elects another in-sync replica, which has every record.
    cluster.kill(0);
    let (new_leader, epoch, _) = wait_until("a new leader", Duration::from_secs(30), || {
        leadership(&cluster, 1).filter(|(leader, epoch, _)| *leader > 1 && *epoch > 0)
    });
    println!("node {new_leader} leads at epoch {epoch}");
    let new_leader_index = cluster.index_of(new_leader);
    // Its epoch starts at its log end when it becomes leader (Kafka's makeLeader), not in the
    // epoch's first produce request: nothing is produced from here on.
    let checkpoint = cluster.nodes[new_leader_index].data_dir.join(format!("{TOPIC}-0/leader-epoch-checkpoint"));
    let entry = format!("{epoch} {count}");
    wait_until("the new epoch in the new leader's epoch checkpoint", Duration::from_secs(30), || {
        std::fs::read_to_string(&checkpoint).ok()?.lines().any(|l| l.trim() == entry).then_some(())
    });
    // Its high watermark (what consumers read below) was its follower one: it reaches the end
    // once the remaining follower fetched from it.
    wait_until("every record below the new leader's high watermark", Duration::from_secs(30), || {
        (keys_by_offset(&cluster.bootstrap(new_leader_index)) == expected).then_some(())
    });
    // And the three logs are the same bytes.
    for i in cluster.running() {
        assert_eq!(cluster.stop(i), 0);
    }
    let logs: Vec<Vec<u8>> = cluster.nodes.iter().map(|n| segment_bytes(&n.data_dir)).collect();
    assert!(!logs[0].is_empty());
    assert!(logs.iter().all(|l| *l == logs[0]), "the replicas' logs differ");
}

#[test]
fn in_a_real_cluster_stopped_followers_leave_the_isr_then_not_enough_replicas_then_they_rejoin() {
    let seed = seed();
    let cluster = Cluster::start_with(3, 2, &[("replica.lag.time.max.ms", "1000")]);
    create_replicated_topic(&cluster, &[1, 4, 5]);
    let leader = cluster.bootstrap(0);
    assert_eq!(produce_acks_all(&leader, "before", 10_000), 0);

    let (first, second) = if seed.is_multiple_of(2) { (4, 5) } else { (5, 4) };
    cluster.process(cluster.index_of(first)).signal(libc::SIGSTOP);
    assert_eq!(produce_acks_all(&leader, "one stopped", 20_000), 0, "the ISR shrinks and the produce completes");
    let mut expected = vec![1, second];
    expected.sort_unstable();
    wait_until("the stopped follower out of the ISR", Duration::from_secs(20), || {
        (leadership(&cluster, 0)?.2 == expected).then_some(())
    });

    cluster.process(cluster.index_of(second)).signal(libc::SIGSTOP);
    wait_until("NOT_ENOUGH_REPLICAS", Duration::from_secs(30), || {
        (produce_acks_all(&leader, "two stopped", 3_000) == NOT_ENOUGH_REPLICAS).then_some(())
    });
    assert_eq!(leadership(&cluster, 0).unwrap().2, vec![1]);

    cluster.process(cluster.index_of(first)).signal(libc::SIGCONT);
    cluster.process(cluster.index_of(second)).signal(libc::SIGCONT);
    wait_until("both back in the ISR", Duration::from_secs(30), || {
        (leadership(&cluster, 0)?.2 == vec![1, 4, 5]).then_some(())
    });
    assert_eq!(produce_acks_all(&leader, "after", 10_000), 0);
}

#[test]
fn in_a_real_cluster_acknowledged_records_survive_the_leaders_crash_and_the_old_leader_rejoins() {
    let seed = seed();
    // Node 4 (a broker-only node) leads; its followers are node 5 and node 1 (a controller).
    let mut cluster = Cluster::start_with(3, 2, &[("replica.lag.time.max.ms", "5000")]);
    create_replicated_topic(&cluster, &[4, 5, 1]);
    let leader_index = cluster.index_of(4);
    let bootstrap = bootstrap_all(&cluster);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked_count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let producer_thread = {
        let (stop, acked_count) = (stop.clone(), acked_count.clone());
        std::thread::spawn(move || {
            let producer = future_producer(
                &bootstrap,
                &[("enable.idempotence", "true"), ("acks", "all"), ("linger.ms", "2"), ("message.timeout.ms", "30000")],
            );
            let mut acked: Vec<(i64, String)> = Vec::new();
            let mut next = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let keys: Vec<String> = (next..next + 20).map(|i| format!("a-{i}")).collect();
                next += 20;
                let sends: Vec<_> = keys
                    .iter()
                    .map(|k| producer.send_result(FutureRecord::to(TOPIC).key(k).payload("v").partition(0)).ok())
                    .collect();
                for (key, send) in keys.iter().zip(sends) {
                    let Some(delivery) = send else { continue };
                    if let Ok(Ok(d)) = futures::executor::block_on(delivery) {
                        acked.push((d.offset, key.clone()));
                        acked_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }
            acked
        })
    };
    let kill_after = Duration::from_millis(500 + seed % 1500);
    println!("killing the leader {kill_after:?} after the first acknowledgement");
    wait_until("the producer's first acknowledgement", Duration::from_secs(30), || {
        (acked_count.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(())
    });
    std::thread::sleep(kill_after);
    // The followers pause, the leader takes acks=1 records only it will have, and dies.
    let follower_indexes = [cluster.index_of(5), cluster.index_of(1)];
    for i in follower_indexes {
        cluster.process(i).signal(libc::SIGSTOP);
    }
    produce_leader_only(&cluster.bootstrap(leader_index));
    cluster.kill(leader_index);
    for i in follower_indexes {
        cluster.process(i).signal(libc::SIGCONT);
    }
    let (new_leader, _, _) = wait_until("a new leader", Duration::from_secs(30), || {
        leadership(&cluster, 0).filter(|(leader, epoch, _)| *leader != 4 && *leader > 0 && *epoch > 0)
    });
    // The producer goes on against the new leader for a moment, then stops.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let acked = producer_thread.join().unwrap();
    println!("{} records acknowledged; node {new_leader} leads", acked.len());
    assert!(!acked.is_empty());

    // The old leader restarts on its ports and data dir, truncates and rejoins the ISR.
    cluster.restart(leader_index);
    wait_until("the old leader back in the ISR", Duration::from_secs(30), || {
        (leadership(&cluster, 0)?.2 == vec![1, 4, 5]).then_some(())
    });
    let new_leader_bootstrap = cluster.bootstrap(cluster.index_of(new_leader));
    assert_eq!(produce_acks_all(&new_leader_bootstrap, "all-three-again", 20_000), 0);

    let held = keys_by_offset(&new_leader_bootstrap);
    let by_offset: BTreeMap<i64, &String> = held.iter().map(|(o, k)| (*o, k)).collect();
    for (offset, key) in &acked {
        assert_eq!(by_offset.get(offset).copied(), Some(key), "acknowledged {key} at {offset}");
        assert_eq!(held.iter().filter(|(_, k)| k == key).count(), 1, "{key} held once");
    }
    // What only the old leader had is gone: with the byte-equal logs below, it truncated.
    assert!(!held.iter().any(|(_, k)| k.starts_with("leader-only-late")), "the new leader never had those");
    for i in cluster.running() {
        assert_eq!(cluster.stop(i), 0);
    }
    let replica_logs: Vec<Vec<u8>> =
        [4, 5, 1].iter().map(|id| segment_bytes(&cluster.nodes[cluster.index_of(*id)].data_dir)).collect();
    assert!(replica_logs.iter().all(|l| *l == replica_logs[0]), "the replicas' logs differ");
}

/// Every value a read_committed reader of the partition sees through `bootstrap`, sorted, once
/// it has `expected` of them (and nothing more arrived for a moment); `None` on a deadline.
fn read_committed_values(bootstrap: &str, expected: usize) -> Option<Vec<String>> {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::Message;
    let consumer: BaseConsumer =
        assigned_consumer(bootstrap, TOPIC, &[(0, 0)], &[("isolation.level", "read_committed")]);
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut quiet_until = None;
    while Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            values.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
        }
        if values.len() >= expected {
            let until = *quiet_until.get_or_insert_with(|| Instant::now() + Duration::from_secs(1));
            if Instant::now() >= until {
                values.sort();
                return Some(values);
            }
        }
    }
    None
}

#[test]
fn in_a_real_cluster_read_committed_readers_see_the_same_transactions_on_the_next_leader() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let mut cluster = Cluster::start(3, 0);
    create_replicated_topic(&cluster, &[2, 3, 1]);
    let producer: BaseProducer = base_producer(
        &bootstrap_all(&cluster),
        &[("transactional.id", "replicated-tx"), ("transaction.timeout.ms", "30000")],
    );
    producer.init_transactions(Duration::from_secs(60)).expect("init_transactions");
    let mut committed = Vec::new();
    for round in 0..7 {
        let commit = round % 2 == 0;
        producer.begin_transaction().expect("begin");
        for i in 0..4 {
            let value = format!("{}{round}-{i}", if commit { "c" } else { "x" });
            producer.send(BaseRecord::<(), str>::to(TOPIC).partition(0).payload(&value)).expect("queued");
            if commit {
                committed.push(value);
            }
        }
        producer.flush(Duration::from_secs(60)).expect("acknowledged");
        if commit {
            producer.commit_transaction(Duration::from_secs(60)).expect("commit");
        } else {
            producer.abort_transaction(Duration::from_secs(60)).expect("abort");
        }
    }
    drop(producer);
    committed.sort();
    // Through the leader: the committed ones only. The last commit is visible, so every
    // marker is below the high watermark: on every in-sync replica.
    let leader = cluster.bootstrap(cluster.index_of(2));
    assert_eq!(read_committed_values(&leader, committed.len()), Some(committed.clone()));

    cluster.kill(cluster.index_of(2));
    let (new_leader, _, _) = wait_until("a new leader", Duration::from_secs(30), || {
        leadership(&cluster, cluster.index_of(1)).filter(|(leader, epoch, _)| *leader != 2 && *leader > 0 && *epoch > 0)
    });
    let new_leader = cluster.bootstrap(cluster.index_of(new_leader));
    wait_until("the same committed records through the new leader", Duration::from_secs(60), || {
        (read_committed_values(&new_leader, committed.len()).as_ref() == Some(&committed)).then_some(())
    });
    // The followers indexed the same aborted transactions.
    for i in cluster.running() {
        assert_eq!(cluster.stop(i), 0);
    }
    let txn_index = |id: i32| -> Vec<u8> {
        let dir = cluster.nodes[cluster.index_of(id)].data_dir.join(format!("{TOPIC}-0"));
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "txnindex"))
            .collect();
        files.sort();
        files.iter().flat_map(|p| std::fs::read(p).unwrap()).collect()
    };
    assert!(!txn_index(1).is_empty(), "three aborted transactions are indexed");
    assert_eq!(txn_index(1), txn_index(3));
}
