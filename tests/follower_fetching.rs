//! Follower fetching for consumers (KIP-392) on a real three-node cluster whose brokers sit in
//! racks `rack-1`..`rack-3` with `replica.selector.class=RackAwareReplicaSelector`: a leader
//! points a consumer of another rack at the in-sync follower there, the follower serves it up
//! to its own high watermark, and librdkafka with `client.rack` really reads from that
//! follower. Every wait polls with a deadline.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use support::cluster::{partitions, wait_until, Cluster};
use support::*;

const TOPIC: &str = "racked";
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const OFFSET_OUT_OF_RANGE: i16 = 1;
const RACK_AWARE: &str = "org.apache.kafka.common.replica.RackAwareReplicaSelector";

/// Three broker,controller nodes, node i+1 in `rack-{i+1}`, replicas chosen by rack.
fn racked_cluster() -> Cluster {
    let mut cluster = Cluster::new(3, 0, &[("replica.selector.class", RACK_AWARE)]);
    for (i, node) in cluster.nodes.iter_mut().enumerate() {
        node.extra.push(("broker.rack".into(), format!("rack-{}", i + 1)));
    }
    for i in 0..3 {
        cluster.spawn(i);
    }
    for i in 0..3 {
        cluster.wait_started(i);
    }
    wait_until("every broker registered", Duration::from_secs(30), || {
        (support::cluster::metadata_broker_ids(&cluster.bootstrap(0)).len() == 3).then_some(())
    });
    // One partition on [1, 2, 3], led by node 1, every replica in sync.
    let mut request = create_topics_request(TOPIC, -1, &[("min.insync.replicas", "2")]);
    request.topics[0].replication_factor = -1;
    request.topics[0].assignments = vec![CreatableReplicaAssignment::default()
        .with_partition_index(0)
        .with_broker_ids(vec![BrokerId(1), BrokerId(2), BrokerId(3)])];
    let response = raw::RawClient::connect(&cluster.bootstrap(0)).send(&request, 7);
    assert_eq!(response.topics[0].error_code, 0, "{:?}", response.topics[0].error_message);
    for i in 0..3 {
        wait_until("the topic with every replica in sync", Duration::from_secs(30), || {
            let p = partitions(&cluster.bootstrap(i), TOPIC)?;
            let mut isr = p[0].4.clone();
            isr.sort_unstable();
            (p[0].1 == 1 && isr == vec![1, 2, 3]).then_some(())
        });
    }
    cluster
}

/// `count` acks=all records with keys `k-0..`, at offsets 0..count.
fn produce(bootstrap: &str, count: usize) {
    let producer = future_producer(bootstrap, &[("enable.idempotence", "true"), ("acks", "all"), ("linger.ms", "5")]);
    futures::executor::block_on(async {
        for i in 0..count {
            let key = format!("k-{i}");
            let record = FutureRecord::to(TOPIC).key(&key).payload("v").partition(0);
            let delivery = producer.send(record, Duration::from_secs(30)).await.unwrap_or_else(|(e, _)| panic!("{e}"));
            assert_eq!(delivery.offset, i as i64);
        }
    });
}

/// One consumer Fetch of partition 0 at `offset`, at `version`, from `rack`.
fn consumer_fetch(bootstrap: &str, version: i16, rack: &str, offset: i64) -> PartitionData {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(8 << 20)
        .with_rack_id(StrBytes::from_string(rack.to_string()))
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(8 << 20)])]);
    let response = raw::RawClient::connect(bootstrap).send(&request, version);
    assert_eq!(response.error_code, 0);
    response.responses[0].partitions[0].clone()
}

/// The offsets of the records in a fetch response's record bytes.
fn record_offsets(data: &PartitionData) -> Vec<i64> {
    let records = data.records.clone().unwrap_or_default();
    let mut offsets = Vec::new();
    for item in sluice_engine::batch::batches(&records, sluice_engine::batch::Validation::Stored) {
        let Ok((_, info)) = item else { break };
        offsets.extend(info.base_offset..info.next_offset());
    }
    offsets
}

#[test]
fn a_leader_points_a_consumer_at_the_in_sync_follower_in_its_rack_which_serves_up_to_its_high_watermark() {
    let cluster = racked_cluster();
    let count = 50;
    produce(&cluster.bootstrap(0), count);
    // Node 2's high watermark follows the leader's with its next fetch.
    wait_until("the follower's high watermark at the end", Duration::from_secs(30), || {
        (consumer_fetch(&cluster.bootstrap(1), 12, "rack-2", 0).high_watermark == count as i64).then_some(())
    });

    // The leader (rack-1) sends a rack-2 consumer to node 2, with no records but its offsets.
    let directed = consumer_fetch(&cluster.bootstrap(0), 12, "rack-2", 0);
    assert_eq!(directed.error_code, 0);
    assert_eq!(directed.preferred_read_replica.0, 2);
    assert!(record_offsets(&directed).is_empty());
    assert_eq!(directed.high_watermark, count as i64);
    // A consumer in the leader's rack, in no rack, or in a rack with no replica reads here.
    for rack in ["rack-1", "", "rack-9"] {
        let here = consumer_fetch(&cluster.bootstrap(0), 12, rack, 0);
        assert_eq!((here.error_code, here.preferred_read_replica.0), (0, -1), "rack {rack:?}");
        assert_eq!(record_offsets(&here), (0..count as i64).collect::<Vec<_>>());
    }

    // The follower serves v11+ consumers every record below its high watermark ...
    let served = consumer_fetch(&cluster.bootstrap(1), 12, "rack-2", 0);
    assert_eq!((served.error_code, served.preferred_read_replica.0), (0, -1));
    assert_eq!(record_offsets(&served), (0..count as i64).collect::<Vec<_>>());
    assert_eq!(served.records, consumer_fetch(&cluster.bootstrap(0), 12, "", 0).records, "the same bytes");
    // ... nothing past its log end, and nothing to a consumer of before KIP-392 (v10).
    assert_eq!(consumer_fetch(&cluster.bootstrap(1), 12, "rack-2", count as i64 + 5).error_code, OFFSET_OUT_OF_RANGE);
    assert_eq!(consumer_fetch(&cluster.bootstrap(1), 10, "", 0).error_code, NOT_LEADER_OR_FOLLOWER);
}

/// Remembers, per broker id, whether librdkafka's statistics ever showed partition 0 fetched
/// from it.
#[derive(Clone, Default)]
struct FetchedFrom(Arc<Mutex<Vec<i32>>>);

impl ClientContext for FetchedFrom {
    fn stats(&self, statistics: Statistics) {
        let broker = statistics.topics.get(TOPIC).and_then(|t| t.partitions.get(&0)).map(|p| p.broker);
        if let Some(broker) = broker.filter(|b| *b >= 0) {
            let mut seen = self.0.lock().unwrap();
            if !seen.contains(&broker) {
                seen.push(broker);
            }
        }
    }
}

impl ConsumerContext for FetchedFrom {}

#[test]
fn librdkafka_with_client_rack_reads_every_record_from_the_follower_in_its_rack() {
    let cluster = racked_cluster();
    let count = 200;
    produce(&cluster.bootstrap(0), count);
    let fetched_from = FetchedFrom::default();
    let consumer: BaseConsumer<FetchedFrom> = client_config(&cluster.bootstrap(0))
        .set("group.id", "follower-fetching")
        .set("client.rack", "rack-3")
        .set("enable.auto.commit", "false")
        .set("statistics.interval.ms", "100")
        .create_with_context(fetched_from.clone())
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(TOPIC, 0, Offset::Offset(0)).unwrap();
    consumer.assign(&assignment).unwrap();
    let mut keys = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while keys.len() < count {
        assert!(std::time::Instant::now() < deadline, "read {} of {count} records", keys.len());
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("no consumer error");
            assert_eq!(message.offset(), keys.len() as i64, "every record once, in order");
            keys.push(String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned());
        }
    }
    assert_eq!(keys, (0..count).map(|i| format!("k-{i}")).collect::<Vec<_>>());
    // librdkafka moved to the rack-3 follower (its statistics name the broker it fetches from).
    wait_until("librdkafka fetching from node 3", Duration::from_secs(10), || {
        if let Some(message) = consumer.poll(Duration::from_millis(50)) {
            panic!("a record past the end: {:?}", message.map(|m| m.offset()));
        }
        fetched_from.0.lock().unwrap().contains(&3).then_some(())
    });
}
