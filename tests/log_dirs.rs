//! DescribeLogDirs (API 35) end to end over the raw protocol: the one log dir (the data dir,
//! absolute) with every partition from every shard, sizes that grow as records are produced
//! (through rdkafka), the topic filter (null = all, empty = none, unknown topics left out),
//! KIP-827's total/usable bytes on v4 and the older versions' shape.

mod support;

use std::time::Duration;

use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::describe_log_dirs_response::DescribeLogDirsResponse;
use kafka_protocol::messages::{DescribeLogDirsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::producer::FutureRecord;
use support::cluster::wait_until;
use support::raw::RawClient;
use support::*;

fn tn(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// (partition, size) of `topic` in the response's only log dir, in partition order.
fn sizes(response: &DescribeLogDirsResponse, topic: &str) -> Vec<(i32, i64)> {
    assert_eq!(response.results.len(), 1, "sluice has one log dir");
    let mut out: Vec<(i32, i64)> = response.results[0]
        .topics
        .iter()
        .filter(|t| *t.name.0 == *topic)
        .flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.partition_size)))
        .collect();
    out.sort_unstable();
    out
}

#[test]
fn log_dirs_list_every_partition_with_sizes_that_grow_and_volume_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 2);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "disk-a", 4);
    create_topic(&bootstrap, "disk-b", 1);
    let mut client = RawClient::connect(&bootstrap);

    let all = client.send(&DescribeLogDirsRequest::default().with_topics(None), 4);
    assert_eq!(all.error_code, 0);
    let result = &all.results[0];
    assert_eq!(result.error_code, 0);
    let expected_dir = std::path::absolute(dir.path()).unwrap();
    assert_eq!(result.log_dir.to_string(), expected_dir.display().to_string());
    assert!(result.total_bytes > 0 && result.usable_bytes > 0, "KIP-827 volume bytes: {result:?}");
    assert!(result.usable_bytes <= result.total_bytes);
    // Partitions of both shards are there, none of them a future replica or lagging.
    assert_eq!(sizes(&all, "disk-a").iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    assert_eq!(sizes(&all, "disk-b").len(), 1);
    for p in result.topics.iter().flat_map(|t| &t.partitions) {
        assert!(!p.is_future_key && p.offset_lag == 0 && p.partition_size >= 0, "{p:?}");
    }
    let before = sizes(&all, "disk-a");

    // 200 records of 1 KiB to partition 2: its size grows by at least that, the others stay.
    let producer = future_producer(&bootstrap, &[("linger.ms", "5"), ("compression.type", "none")]);
    let value = vec![b'x'; 1024];
    for i in 0..200 {
        let key = format!("k{i}");
        let record = FutureRecord::to("disk-a").partition(2).key(&key).payload(&value);
        futures::executor::block_on(producer.send(record, Duration::from_secs(20))).expect("produced");
    }
    let after = wait_until("partition 2's size to grow by the produced bytes", Duration::from_secs(20), || {
        let now = sizes(&client.send(&DescribeLogDirsRequest::default().with_topics(None), 4), "disk-a");
        (now[2].1 >= before[2].1 + 200 * 1024).then_some(now)
    });
    for p in [0usize, 1, 3] {
        assert_eq!(after[p], before[p], "partition {p} got nothing");
    }

    // The filter: two partitions of one topic, an unknown topic (left out, as in Kafka).
    let filtered = client.send(
        &DescribeLogDirsRequest::default().with_topics(Some(vec![
            DescribableLogDirTopic::default().with_topic(tn("disk-a")).with_partitions(vec![1, 2, 9]),
            DescribableLogDirTopic::default().with_topic(tn("no-such-topic")).with_partitions(vec![0]),
        ])),
        4,
    );
    assert_eq!(sizes(&filtered, "disk-a"), vec![after[1], after[2]]);
    assert_eq!(filtered.results[0].topics.len(), 1, "only disk-a: {:?}", filtered.results[0].topics);
    // An empty list asks for no partitions (null asks for all).
    let none = client.send(&DescribeLogDirsRequest::default().with_topics(Some(Vec::new())), 4);
    assert!(none.results[0].topics.is_empty());

    // v1 (no volume bytes, no top-level error code) and v3 decode and answer the same sizes.
    for version in [1, 2, 3] {
        let old = client.send(&DescribeLogDirsRequest::default().with_topics(None), version);
        assert_eq!(sizes(&old, "disk-a")[2].0, 2, "v{version}");
        assert!(sizes(&old, "disk-a")[2].1 >= after[2].1, "v{version}");
    }
    broker.stop();
}
