//! The newest versions advertised answer as Kafka 4.x does: ListOffsets v10 (its TimeoutMs is
//! for tiered storage, which sluice has none of) refusing duplicated partitions with
//! INVALID_REQUEST on every occurrence, Metadata v13 (a top-level error code, 0) with user
//! topics not internal. Fetch v17 is covered in fetch_sessions.rs.

mod support;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequest;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, BrokerId, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use support::*;

const INVALID_REQUEST: i16 = 42;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.into()))
}

#[test]
fn newest_versions_are_advertised_and_answered() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let b = broker.bootstrap();
    create_topic(&b, "v", 2);
    let mut client = raw::RawClient::connect(&b);

    let versions = client.send(&ApiVersionsRequest::default(), 3);
    let max = |api: ApiKey| versions.api_keys.iter().find(|k| k.api_key == api as i16).map(|k| k.max_version);
    assert_eq!(max(ApiKey::Fetch), Some(17));
    assert_eq!(max(ApiKey::ListOffsets), Some(10));
    assert_eq!(max(ApiKey::Metadata), Some(13));
    assert_eq!(max(ApiKey::DescribeTopicPartitions), Some(0));
    assert_eq!(max(ApiKey::Produce), Some(11), "Produce v12 needs KIP-890 part 2");

    // ListOffsets v10: partition 0 twice, partition 1 once.
    let latest = |p: i32| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(-1);
    let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_timeout_ms(1000).with_topics(vec![
        ListOffsetsTopic::default().with_name(name("v")).with_partitions(vec![latest(0), latest(1)]),
        ListOffsetsTopic::default().with_name(name("v")).with_partitions(vec![latest(0)]),
    ]);
    let response = client.send(&request, 10);
    let answers: Vec<(i32, i16, i64)> = response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.error_code, p.offset)))
        .collect();
    assert_eq!(answers, vec![(0, INVALID_REQUEST, -1), (1, 0, 0), (0, INVALID_REQUEST, -1)]);

    // Metadata v13: no top-level error, the topic is not internal.
    let response = client.send(&MetadataRequest::default().with_topics(None), 13);
    assert_eq!(response.error_code, 0);
    let topic = response.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "v")).expect("listed");
    assert!(!topic.is_internal);
    assert_eq!(topic.partitions.len(), 2);
    broker.stop();
}
