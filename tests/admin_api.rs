//! Admin APIs end to end: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
//! AlterConfigs, IncrementalAlterConfigs, DeleteRecords, DescribeCluster and
//! OffsetForLeaderEpoch, through librdkafka's AdminClient where it has the API and through the
//! raw protocol client for every API, every error path and `validate_only`. Changes are checked
//! by their effects (produce/consume, data dir, a broker restart on the same data dir).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use kafka_protocol::messages::create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::offset_for_leader_epoch_response::EpochEndOffset;
use kafka_protocol::messages::{
    alter_configs_request, incremental_alter_configs_request, AlterConfigsRequest, ApiVersionsRequest, BrokerId,
    CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest, DeleteTopicsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, IncrementalAlterConfigsRequest, ListOffsetsRequest, MetadataRequest,
    OffsetForLeaderEpochRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice_engine::log_config::LogConfig;
use support::raw::RawClient;
use support::*;

// Kafka error codes.
const NONE: i16 = 0;
const OFFSET_OUT_OF_RANGE: i16 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const TOPIC_ALREADY_EXISTS: i16 = 36;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_REPLICATION_FACTOR: i16 = 38;
const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;
const POLICY_VIOLATION: i16 = 44;
const FENCED_LEADER_EPOCH: i16 = 74;
const UNKNOWN_LEADER_EPOCH: i16 = 75;
const UNKNOWN_TOPIC_ID: i16 = 100;
const MISMATCHED_ENDPOINT_TYPE: i16 = 114;
const UNSUPPORTED_ENDPOINT_TYPE: i16 = 115;

// Config resource types and sources.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const GROUP: i8 = 32;
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

// IncrementalAlterConfigs operations.
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn tn(s: &str) -> TopicName {
    TopicName(sb(s))
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    client_config(bootstrap).create().expect("admin client")
}

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))).request_timeout(Some(Duration::from_secs(20)))
}

fn topic(name: &str, partitions: i32, replication_factor: i16) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(tn(name))
        .with_num_partitions(partitions)
        .with_replication_factor(replication_factor)
}

fn config(name: &str, value: &str) -> CreatableTopicConfig {
    CreatableTopicConfig::default().with_name(sb(name)).with_value(Some(sb(value)))
}

/// CreateTopics v7 with one topic; its result.
fn create_one(client: &mut RawClient, t: CreatableTopic, validate_only: bool) -> CreatableTopicResult {
    let request = CreateTopicsRequest::default().with_topics(vec![t]).with_validate_only(validate_only);
    let mut response = client.send(&request, 7);
    assert_eq!(response.topics.len(), 1);
    response.topics.remove(0)
}

fn expect_error(result: &CreatableTopicResult, code: i16, message_part: &str) {
    assert_eq!(result.error_code, code, "{result:?}");
    let message = result.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default();
    assert!(message.contains(message_part), "{message:?} lacks {message_part:?}");
    assert_eq!((result.num_partitions, result.replication_factor), (-1, -1));
}

/// Partition count of `name` per Metadata v12, None if unknown (never auto-creates).
fn partitions_of(client: &mut RawClient, name: &str) -> Option<usize> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(tn(name)))]))
        .with_allow_auto_topic_creation(false);
    let response = client.send(&request, 12);
    let t = &response.topics[0];
    match t.error_code {
        NONE => Some(t.partitions.len()),
        UNKNOWN_TOPIC_OR_PARTITION => None,
        other => panic!("metadata error {other}"),
    }
}

/// ListOffsets v9 earliest (-2) or latest (-1) of one partition.
fn list_offset(client: &mut RawClient, name: &str, partition: i32, timestamp: i64) -> i64 {
    let request =
        ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
            .with_name(tn(name))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp)])]);
    let response = client.send(&request, 9);
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, NONE, "{p:?}");
    p.offset
}

/// Produces `count` keyed messages to `name`/`partition` through rdkafka; their offsets.
fn produce(bootstrap: &str, name: &str, partition: i32, count: usize) -> Vec<i64> {
    let producer = future_producer(bootstrap, &[("linger.ms", "0")]);
    let mut offsets = Vec::new();
    for i in 0..count {
        let key = format!("k{i}");
        let payload = format!("value-{i}");
        let record = FutureRecord::to(name).partition(partition).key(&key).payload(&payload);
        let delivered = block_on(producer.send(record, Duration::from_secs(20))).expect("delivered");
        assert_eq!(delivered.partition, partition);
        offsets.push(delivered.offset);
    }
    offsets
}

/// Consumes `count` messages of `name`/`partition` from `from`; their (offset, payload).
fn consume(bootstrap: &str, name: &str, partition: i32, from: i64, count: usize) -> Vec<(i64, String)> {
    let consumer = assigned_consumer(bootstrap, name, &[(partition, from)], &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < count && Instant::now() < deadline {
        if let Some(m) = consumer.poll(POLL) {
            let m = m.expect("message");
            got.push((m.offset(), String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap()));
        }
    }
    got
}

fn describe(
    client: &mut RawClient,
    resource_type: i8,
    name: &str,
    keys: Option<&[&str]>,
    version: i16,
) -> DescribeConfigsResult {
    let resource = DescribeConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(sb(name))
        .with_configuration_keys(keys.map(|k| k.iter().map(|k| sb(k)).collect()));
    let request = DescribeConfigsRequest::default()
        .with_resources(vec![resource])
        .with_include_synonyms(true)
        .with_include_documentation(version >= 3);
    let mut response = client.send(&request, version);
    assert_eq!(response.results.len(), 1);
    response.results.remove(0)
}

fn entry<'a>(result: &'a DescribeConfigsResult, name: &str) -> &'a DescribeConfigsResourceResult {
    result.configs.iter().find(|c| c.name.as_str() == name).unwrap_or_else(|| panic!("no config {name}"))
}

fn value_of(result: &DescribeConfigsResult, name: &str) -> String {
    entry(result, name).value.as_ref().expect("value").to_string()
}

/// Topic overrides (source DYNAMIC_TOPIC_CONFIG) as (name, value), sorted.
fn overrides(client: &mut RawClient, name: &str) -> Vec<(String, String)> {
    let result = describe(client, TOPIC, name, None, 4);
    assert_eq!(result.error_code, NONE, "{result:?}");
    result
        .configs
        .iter()
        .filter(|c| c.config_source == DYNAMIC_TOPIC_CONFIG)
        .map(|c| (c.name.to_string(), c.value.as_ref().unwrap().to_string()))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn partition_dir_exists(data_dir: &Path, name: &str, partition: i32) -> bool {
    data_dir.join(format!("{name}-{partition}")).exists()
}

#[test]
fn api_versions_advertises_the_admin_apis() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let mut client = RawClient::connect(&broker.bootstrap());
    let versions = client.send(&ApiVersionsRequest::default(), 3);
    let range = |key: i16| {
        let k = versions.api_keys.iter().find(|k| k.api_key == key).unwrap_or_else(|| panic!("api {key} missing"));
        (k.min_version, k.max_version)
    };
    assert_eq!(range(19), (2, 7), "CreateTopics");
    assert_eq!(range(20), (1, 6), "DeleteTopics");
    assert_eq!(range(37), (0, 3), "CreatePartitions");
    assert_eq!(range(32), (1, 4), "DescribeConfigs");
    assert_eq!(range(33), (0, 2), "AlterConfigs");
    assert_eq!(range(44), (0, 1), "IncrementalAlterConfigs");
    assert_eq!(range(21), (0, 2), "DeleteRecords");
    assert_eq!(range(60), (0, 1), "DescribeCluster");
    assert_eq!(range(23), (2, 4), "OffsetForLeaderEpoch");
    broker.stop();
}

#[test]
fn rdkafka_creates_topics_that_work_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 2);
    let bootstrap = broker.bootstrap();
    let admin_client = admin(&bootstrap);
    let new = NewTopic::new("orders", 3, TopicReplication::Fixed(1))
        .set("retention.ms", "3600000")
        .set("max.message.bytes", "2000000");
    let results = block_on(admin_client.create_topics([&new], &opts())).expect("create");
    assert_eq!(results, vec![Ok("orders".to_string())]);

    // Every partition takes writes and serves them back.
    for p in 0..3 {
        assert_eq!(produce(&bootstrap, "orders", p, 3), vec![0, 1, 2]);
        let got = consume(&bootstrap, "orders", p, 0, 3);
        assert_eq!(got.iter().map(|(o, _)| *o).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(got[2].1, "value-2");
    }

    // Creating it again fails with TOPIC_ALREADY_EXISTS, through rdkafka too.
    let again = block_on(admin_client.create_topics([&new], &opts())).expect("create");
    assert_eq!(again, vec![Err(("orders".to_string(), RDKafkaErrorCode::TopicAlreadyExists))]);
    let bad = NewTopic::new("bad", 1, TopicReplication::Fixed(3));
    let refused = block_on(admin_client.create_topics([&bad], &opts())).expect("create");
    assert_eq!(refused, vec![Err(("bad".to_string(), RDKafkaErrorCode::InvalidReplicationFactor))]);
    let bad = NewTopic::new("bad", 1, TopicReplication::Fixed(1)).set("retention.ms", "soon");
    let refused = block_on(admin_client.create_topics([&bad], &opts())).expect("create");
    assert_eq!(refused, vec![Err(("bad".to_string(), RDKafkaErrorCode::InvalidConfig))]);

    // rdkafka's DescribeConfigs (v1) sees the overrides and the defaults.
    let described =
        block_on(admin_client.describe_configs([&ResourceSpecifier::Topic("orders")], &opts())).expect("describe");
    let resource = described[0].as_ref().expect("described");
    let retention = resource.get("retention.ms").expect("retention.ms");
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert_eq!(retention.source, ConfigSource::DynamicTopic);
    let segment = resource.get("segment.bytes").expect("segment.bytes");
    assert_eq!(segment.value.as_deref(), Some("1073741824"));
    assert_eq!(segment.source, ConfigSource::Default);
    assert!(segment.is_default);
    assert_eq!(resource.entries.len(), LogConfig::default().describe().len());
    drop(admin_client);

    broker.stop();
    let broker = Broker::start(dir.path(), 2);
    let bootstrap = broker.bootstrap();
    let mut client = RawClient::connect(&bootstrap);
    assert_eq!(partitions_of(&mut client, "orders"), Some(3));
    assert_eq!(
        overrides(&mut client, "orders"),
        pairs(&[("max.message.bytes", "2000000"), ("retention.ms", "3600000")])
    );
    for p in 0..3 {
        assert_eq!(consume(&bootstrap, "orders", p, 0, 3).len(), 3, "partition {p} kept its data");
    }
    broker.stop();
}

#[test]
fn create_topics_raw_validates_like_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(
        dir.path(),
        &["--cores", "2", "--set", "num.partitions=3", "--set", "log.retention.bytes=1048576"],
    );
    broker.wait_for("sluice broker started");
    let bootstrap = broker.bootstrap();
    let mut client = RawClient::connect(&bootstrap);

    // Defaults (-1): num.partitions and replication factor 1; v5+ reports every config.
    let created =
        create_one(&mut client, topic("defaults", -1, -1).with_configs(vec![config("retention.ms", "60000")]), false);
    assert_eq!(created.error_code, NONE, "{created:?}");
    assert!(created.error_message.is_none());
    assert_eq!((created.num_partitions, created.replication_factor), (3, 1));
    assert_ne!(created.topic_id, CreatableTopicResult::default().topic_id, "v7 reports the topic id");
    let configs = created.configs.as_ref().expect("configs");
    assert_eq!(configs.len(), LogConfig::default().describe().len());
    let find = |name: &str| configs.iter().find(|c| c.name.as_str() == name).unwrap();
    assert_eq!(find("retention.ms").value.as_ref().unwrap().as_str(), "60000");
    assert_eq!(find("retention.ms").config_source, DYNAMIC_TOPIC_CONFIG);
    assert_eq!(find("retention.bytes").value.as_ref().unwrap().as_str(), "1048576");
    assert_eq!(find("retention.bytes").config_source, STATIC_BROKER_CONFIG);
    assert_eq!(find("segment.bytes").config_source, DEFAULT_CONFIG);
    assert!(!find("segment.bytes").read_only && !find("segment.bytes").is_sensitive);
    assert_eq!(partitions_of(&mut client, "defaults"), Some(3));

    // The topic id is the one Metadata reports.
    let metadata = client.send(
        &MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(tn("defaults")))])),
        12,
    );
    assert_eq!(metadata.topics[0].topic_id, created.topic_id);

    // Manual assignment on this node.
    let assigned = topic("assigned", -1, -1).with_assignments(vec![
        CreatableReplicaAssignment::default().with_partition_index(0).with_broker_ids(vec![BrokerId(1)]),
        CreatableReplicaAssignment::default().with_partition_index(1).with_broker_ids(vec![BrokerId(1)]),
    ]);
    let created = create_one(&mut client, assigned, false);
    assert_eq!((created.error_code, created.num_partitions, created.replication_factor), (NONE, 2, 1));
    assert_eq!(partitions_of(&mut client, "assigned"), Some(2));

    // Error paths, each with Kafka's code and a message.
    expect_error(&create_one(&mut client, topic("defaults", 1, 1), false), TOPIC_ALREADY_EXISTS, "already exists");
    expect_error(&create_one(&mut client, topic("bad name", 1, 1), false), INVALID_TOPIC_EXCEPTION, "illegal");
    expect_error(
        &create_one(&mut client, topic("a".repeat(250).as_str(), 1, 1), false),
        INVALID_TOPIC_EXCEPTION,
        "249",
    );
    assert_eq!(create_one(&mut client, topic("defaults_x", 1, 1), false).error_code, NONE);
    expect_error(&create_one(&mut client, topic("zero", 0, 1), false), INVALID_PARTITIONS, "non-positive");
    expect_error(&create_one(&mut client, topic("neg", -2, 1), false), INVALID_PARTITIONS, "non-positive");
    expect_error(&create_one(&mut client, topic("rf3", 1, 3), false), INVALID_REPLICATION_FACTOR, "only 1 broker");
    expect_error(&create_one(&mut client, topic("rf0", 1, 0), false), INVALID_REPLICATION_FACTOR, "larger than 0");
    expect_error(
        &create_one(&mut client, topic("cfg", 1, 1).with_configs(vec![config("retention.ms", "soon")]), false),
        INVALID_CONFIG,
        "retention.ms",
    );
    expect_error(
        &create_one(&mut client, topic("cfg", 1, 1).with_configs(vec![config("log.segment.bytes", "4096")]), false),
        INVALID_CONFIG,
        "Unknown topic config name: log.segment.bytes",
    );
    expect_error(
        &create_one(
            &mut client,
            topic("cfg", 1, 1)
                .with_configs(vec![CreatableTopicConfig::default().with_name(sb("retention.ms")).with_value(None)]),
            false,
        ),
        INVALID_CONFIG,
        "Null value",
    );
    expect_error(
        &create_one(
            &mut client,
            topic("cfg", 1, 1)
                .with_configs(vec![config("min.compaction.lag.ms", "10"), config("max.compaction.lag.ms", "5")]),
            false,
        ),
        INVALID_CONFIG,
        "min.compaction.lag.ms",
    );
    let one = |p: i32, ids: &[i32]| {
        CreatableReplicaAssignment::default()
            .with_partition_index(p)
            .with_broker_ids(ids.iter().map(|i| BrokerId(*i)).collect())
    };
    expect_error(
        &create_one(&mut client, topic("asg", -1, -1).with_assignments(vec![one(0, &[2])]), false),
        INVALID_REPLICA_ASSIGNMENT,
        "broker 2",
    );
    expect_error(
        &create_one(&mut client, topic("asg", -1, -1).with_assignments(vec![one(0, &[1, 1])]), false),
        INVALID_REPLICA_ASSIGNMENT,
        "more than once",
    );
    expect_error(
        &create_one(&mut client, topic("asg", -1, -1).with_assignments(vec![one(0, &[])]), false),
        INVALID_REPLICA_ASSIGNMENT,
        "empty replica list",
    );
    expect_error(
        &create_one(&mut client, topic("asg", -1, -1).with_assignments(vec![one(0, &[1]), one(0, &[1])]), false),
        INVALID_REPLICA_ASSIGNMENT,
        "multiple manual partition assignments",
    );
    expect_error(
        &create_one(&mut client, topic("asg", -1, -1).with_assignments(vec![one(0, &[1]), one(2, &[1])]), false),
        INVALID_REPLICA_ASSIGNMENT,
        "consecutive",
    );
    expect_error(
        &create_one(&mut client, topic("asg", 2, -1).with_assignments(vec![one(0, &[1])]), false),
        INVALID_REQUEST,
        "numPartitions",
    );
    expect_error(
        &create_one(&mut client, topic("asg", -1, 1).with_assignments(vec![one(0, &[1])]), false),
        INVALID_REQUEST,
        "replication factor",
    );
    expect_error(&create_one(&mut client, topic("__cluster_metadata", 1, 1), false), INVALID_REQUEST, "prohibited");
    expect_error(&create_one(&mut client, topic("defaults.x", 1, 1), false), INVALID_TOPIC_EXCEPTION, "collides");
    for name in ["zero", "neg", "rf3", "rf0", "cfg", "asg"] {
        assert_eq!(partitions_of(&mut client, name).unwrap_or(0), 0, "{name} was not created");
    }

    // A name twice in one request: INVALID_REQUEST once, nothing created; the rest proceeds.
    let request = CreateTopicsRequest::default().with_topics(vec![
        topic("twice", 1, 1),
        topic("once", 1, 1),
        topic("twice", 2, 1),
    ]);
    let response = client.send(&request, 7);
    let codes: Vec<(String, i16)> = response.topics.iter().map(|t| (t.name.0.to_string(), t.error_code)).collect();
    assert_eq!(codes, vec![("twice".to_string(), INVALID_REQUEST), ("once".to_string(), NONE)]);
    assert_eq!(partitions_of(&mut client, "twice"), None);
    assert_eq!(partitions_of(&mut client, "once"), Some(1));

    // validate_only: validated, answered like a creation, nothing created.
    let validated =
        create_one(&mut client, topic("dry", 4, 1).with_configs(vec![config("cleanup.policy", "compact")]), true);
    assert_eq!((validated.error_code, validated.num_partitions, validated.replication_factor), (NONE, 4, 1));
    assert!(validated
        .configs
        .as_ref()
        .unwrap()
        .iter()
        .any(|c| c.name.as_str() == "cleanup.policy" && c.value.as_ref().unwrap().as_str() == "compact"));
    assert_eq!(partitions_of(&mut client, "dry"), None);
    assert!(!partition_dir_exists(dir.path(), "dry", 0));
    expect_error(
        &create_one(&mut client, topic("dry", 1, 1).with_configs(vec![config("segment.ms", "0")]), true),
        INVALID_CONFIG,
        "segment.ms",
    );
    expect_error(&create_one(&mut client, topic("defaults", 1, 1), true), TOPIC_ALREADY_EXISTS, "already exists");

    // Older versions: v2 (no configs in the result) and v4.
    for version in [2, 4] {
        let name = format!("old-v{version}");
        let response = client.send(&CreateTopicsRequest::default().with_topics(vec![topic(&name, 2, 1)]), version);
        assert_eq!(response.topics[0].error_code, NONE);
        assert_eq!(partitions_of(&mut client, &name), Some(2));
        let response = client.send(&CreateTopicsRequest::default().with_topics(vec![topic(&name, 2, 1)]), version);
        assert_eq!(response.topics[0].error_code, TOPIC_ALREADY_EXISTS);
    }
    broker.stop();
}

#[test]
fn delete_topics_by_name_and_id_removes_files_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 2);
    let bootstrap = broker.bootstrap();
    let mut client = RawClient::connect(&bootstrap);
    let mut ids = Vec::new();
    for name in ["gone-by-name", "gone-by-id", "gone-by-rdkafka", "kept"] {
        let created = create_one(&mut client, topic(name, 2, 1), false);
        assert_eq!(created.error_code, NONE);
        ids.push(created.topic_id);
    }
    produce(&bootstrap, "gone-by-name", 1, 2);
    produce(&bootstrap, "kept", 0, 2);
    for p in 0..2 {
        assert!(partition_dir_exists(dir.path(), "gone-by-name", p));
    }

    // By name (v5).
    let response = client.send(&DeleteTopicsRequest::default().with_topic_names(vec![tn("gone-by-name")]), 5);
    assert_eq!(response.responses.len(), 1);
    assert_eq!((response.responses[0].error_code, response.responses[0].error_message.clone()), (NONE, None));
    assert_eq!(partitions_of(&mut client, "gone-by-name"), None);
    wait_until("partition dirs removed", || (0..2).all(|p| !partition_dir_exists(dir.path(), "gone-by-name", p)));
    let response = client.send(&DeleteTopicsRequest::default().with_topic_names(vec![tn("gone-by-name")]), 5);
    assert_eq!(response.responses[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);
    let response = client.send(&DeleteTopicsRequest::default().with_topic_names(vec![tn("never-was")]), 1);
    assert_eq!(response.responses[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);

    // By id (v6): the response names the topic.
    let by_id = DeleteTopicsRequest::default().with_topics(vec![DeleteTopicState::default().with_topic_id(ids[1])]);
    let response = client.send(&by_id, 6);
    let r = &response.responses[0];
    assert_eq!(
        (r.error_code, r.topic_id, r.name.as_ref().map(|n| n.0.to_string())),
        (NONE, ids[1], Some("gone-by-id".into()))
    );
    assert_eq!(partitions_of(&mut client, "gone-by-id"), None);
    let response = client.send(&by_id, 6);
    assert_eq!((response.responses[0].error_code, response.responses[0].topic_id), (UNKNOWN_TOPIC_ID, ids[1]));

    // v6 request checks.
    let both = DeleteTopicState::default().with_name(Some(tn("kept"))).with_topic_id(ids[3]);
    let neither = DeleteTopicState::default();
    let dup = DeleteTopicState::default().with_name(Some(tn("kept")));
    let response = client.send(&DeleteTopicsRequest::default().with_topics(vec![both, neither, dup.clone(), dup]), 6);
    let codes: Vec<i16> = response.responses.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![INVALID_REQUEST, INVALID_REQUEST, INVALID_REQUEST], "{response:?}");
    assert!(response.responses[0].error_message.as_ref().unwrap().contains("both"));
    assert!(response.responses[1].error_message.as_ref().unwrap().contains("Neither"));
    assert!(response.responses[2].error_message.as_ref().unwrap().contains("Duplicate"));
    let by_name_and_id = DeleteTopicsRequest::default().with_topics(vec![
        DeleteTopicState::default().with_name(Some(tn("kept"))),
        DeleteTopicState::default().with_topic_id(ids[3]),
    ]);
    let response = client.send(&by_name_and_id, 6);
    assert!(response.responses.iter().all(|r| r.error_code == INVALID_REQUEST), "{response:?}");
    assert_eq!(partitions_of(&mut client, "kept"), Some(2), "refused entries delete nothing");

    // rdkafka (v1).
    let admin_client = admin(&bootstrap);
    let results = block_on(admin_client.delete_topics(&["gone-by-rdkafka", "never-was"], &opts())).expect("delete");
    assert_eq!(
        results,
        vec![
            Ok("gone-by-rdkafka".to_string()),
            Err(("never-was".to_string(), RDKafkaErrorCode::UnknownTopicOrPartition))
        ]
    );
    drop(admin_client);

    // A deleted name can be created again, empty.
    assert_eq!(create_one(&mut client, topic("gone-by-name", 1, 1), false).error_code, NONE);
    assert_eq!(list_offset(&mut client, "gone-by-name", 0, -1), 0);

    broker.stop();
    let broker = Broker::start(dir.path(), 2);
    let mut client = RawClient::connect(&broker.bootstrap());
    assert_eq!(partitions_of(&mut client, "gone-by-id"), None, "stays deleted after a restart");
    assert_eq!(partitions_of(&mut client, "gone-by-rdkafka"), None);
    assert_eq!(partitions_of(&mut client, "gone-by-name"), Some(1));
    assert_eq!(list_offset(&mut client, "gone-by-name", 0, -1), 0);
    assert_eq!(list_offset(&mut client, "kept", 0, -1), 2);
    for p in 0..2 {
        assert!(!partition_dir_exists(dir.path(), "gone-by-id", p));
        assert!(!partition_dir_exists(dir.path(), "gone-by-rdkafka", p));
    }
    broker.stop();
}

#[test]
fn create_partitions_adds_usable_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 2);
    let bootstrap = broker.bootstrap();
    let mut client = RawClient::connect(&bootstrap);
    assert_eq!(create_one(&mut client, topic("grow", 1, 1), false).error_code, NONE);
    assert_eq!(create_one(&mut client, topic("other", 1, 1), false).error_code, NONE);
    produce(&bootstrap, "grow", 0, 2);

    let admin_client = admin(&bootstrap);
    let results = block_on(admin_client.create_partitions([&NewPartitions::new("grow", 3)], &opts())).expect("grow");
    assert_eq!(results, vec![Ok("grow".to_string())]);
    let results = block_on(admin_client.create_partitions([&NewPartitions::new("grow", 2)], &opts())).expect("grow");
    assert_eq!(results, vec![Err(("grow".to_string(), RDKafkaErrorCode::InvalidPartitions))]);
    drop(admin_client);
    assert_eq!(partitions_of(&mut client, "grow"), Some(3));
    for p in 1..3 {
        assert_eq!(produce(&bootstrap, "grow", p, 2), vec![0, 1], "new partition {p} takes writes");
        assert_eq!(consume(&bootstrap, "grow", p, 0, 2).len(), 2);
    }

    let send = |client: &mut RawClient, topics: Vec<CreatePartitionsTopic>, validate_only: bool| {
        let request = CreatePartitionsRequest::default()
            .with_topics(topics)
            .with_validate_only(validate_only)
            .with_timeout_ms(10_000);
        client.send(&request, 3).results
    };
    let grow = |name: &str, count: i32| {
        CreatePartitionsTopic::default().with_name(tn(name)).with_count(count).with_assignments(None)
    };
    let with = |t: CreatePartitionsTopic, ids: &[&[i32]]| {
        t.with_assignments(Some(
            ids.iter()
                .map(|r| {
                    CreatePartitionsAssignment::default().with_broker_ids(r.iter().map(|i| BrokerId(*i)).collect())
                })
                .collect(),
        ))
    };
    let check = |results: &[kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult],
                 code: i16,
                 part: &str| {
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].error_code, code, "{results:?}");
        let message = results[0].error_message.as_ref().map(|m| m.to_string()).unwrap_or_default();
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    };
    check(&send(&mut client, vec![grow("grow", 3)], false), INVALID_PARTITIONS, "already has 3");
    check(&send(&mut client, vec![grow("grow", 1)], false), INVALID_PARTITIONS, "would not be an increase");
    check(&send(&mut client, vec![grow("missing", 4)], false), UNKNOWN_TOPIC_OR_PARTITION, "");
    check(
        &send(&mut client, vec![with(grow("grow", 5), &[&[1]])], false),
        INVALID_REPLICA_ASSIGNMENT,
        "only 1 assignment",
    );
    check(&send(&mut client, vec![with(grow("grow", 4), &[&[2]])], false), INVALID_REPLICA_ASSIGNMENT, "broker 2");
    check(
        &send(&mut client, vec![with(grow("grow", 4), &[&[1, 1]])], false),
        INVALID_REPLICA_ASSIGNMENT,
        "more than once",
    );
    check(&send(&mut client, vec![grow("grow", 10_001)], false), INVALID_PARTITIONS, "");
    let dup = send(&mut client, vec![grow("other", 2), grow("other", 3)], false);
    check(&dup, INVALID_REQUEST, "Duplicate topic name");
    assert_eq!(partitions_of(&mut client, "other"), Some(1));

    // validate_only changes nothing; a valid manual assignment grows it.
    check(&send(&mut client, vec![grow("grow", 6)], true), NONE, "");
    assert_eq!(partitions_of(&mut client, "grow"), Some(3));
    check(&send(&mut client, vec![with(grow("grow", 5), &[&[1], &[1]])], false), NONE, "");
    assert_eq!(partitions_of(&mut client, "grow"), Some(5));
    // v0 too.
    let response = client.send(&CreatePartitionsRequest::default().with_topics(vec![grow("other", 2)]), 0);
    assert_eq!(response.results[0].error_code, NONE);

    broker.stop();
    let broker = Broker::start(dir.path(), 2);
    let bootstrap = broker.bootstrap();
    let mut client = RawClient::connect(&bootstrap);
    assert_eq!(partitions_of(&mut client, "grow"), Some(5));
    assert_eq!(partitions_of(&mut client, "other"), Some(2));
    assert_eq!(list_offset(&mut client, "grow", 0, -1), 2);
    assert_eq!(list_offset(&mut client, "grow", 2, -1), 2);
    assert_eq!(produce(&bootstrap, "grow", 4, 1), vec![0]);
    broker.stop();
}

#[test]
fn describe_configs_of_topics_and_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(
        dir.path(),
        &["--cores", "1", "--set", "log.segment.bytes=4194304", "--set", "num.partitions=2"],
    );
    broker.wait_for("sluice broker started");
    let bootstrap = broker.bootstrap();
    let mut client = RawClient::connect(&bootstrap);
    let created = create_one(
        &mut client,
        topic("described", 1, 1)
            .with_configs(vec![config("retention.ms", "1000"), config("cleanup.policy", "compact,delete")]),
        false,
    );
    assert_eq!(created.error_code, NONE);

    let result = describe(&mut client, TOPIC, "described", None, 4);
    assert_eq!((result.error_code, result.error_message.clone()), (NONE, None));
    assert_eq!((result.resource_type, result.resource_name.as_str()), (TOPIC, "described"));
    let expected = LogConfig::default().describe();
    assert_eq!(result.configs.len(), expected.len(), "every topic config is listed");
    for e in &expected {
        let c = entry(&result, e.name);
        assert_eq!(c.config_type, e.config_type.wire_id(), "{}", e.name);
        assert!(!c.documentation.as_ref().unwrap().is_empty(), "{} has documentation", e.name);
        assert!(!c.read_only && !c.is_sensitive);
    }
    // An override: its own synonym first, then the broker's default.
    let retention = entry(&result, "retention.ms");
    assert_eq!((retention.value.as_ref().unwrap().as_str(), retention.config_source), ("1000", DYNAMIC_TOPIC_CONFIG));
    let synonyms: Vec<(String, String, i8)> = retention
        .synonyms
        .iter()
        .map(|s| (s.name.to_string(), s.value.as_ref().unwrap().to_string(), s.source))
        .collect();
    assert_eq!(
        synonyms,
        vec![
            ("retention.ms".into(), "1000".into(), DYNAMIC_TOPIC_CONFIG),
            ("log.retention.ms".into(), "604800000".into(), DEFAULT_CONFIG)
        ]
    );
    assert_eq!(value_of(&result, "cleanup.policy"), "compact,delete");
    // Inherited from a static broker setting.
    let segment = entry(&result, "segment.bytes");
    assert_eq!((value_of(&result, "segment.bytes").as_str(), segment.config_source), ("4194304", STATIC_BROKER_CONFIG));
    let names: Vec<(&str, i8)> = segment.synonyms.iter().map(|s| (s.name.as_str(), s.source)).collect();
    assert_eq!(names, vec![("log.segment.bytes", STATIC_BROKER_CONFIG), ("log.segment.bytes", DEFAULT_CONFIG)]);
    // Kafka's default.
    assert_eq!(entry(&result, "flush.ms").config_source, DEFAULT_CONFIG);
    assert_eq!(value_of(&result, "flush.ms"), i64::MAX.to_string());

    // Filtering by key; unknown keys are just absent.
    let filtered = describe(&mut client, TOPIC, "described", Some(&["segment.ms", "nope", "retention.ms"]), 4);
    let names: Vec<&str> = filtered.configs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["retention.ms", "segment.ms"]);

    // Older versions: v1 (no type or documentation on the wire), v2, v3.
    for version in [1, 2, 3] {
        let old = describe(&mut client, TOPIC, "described", None, version);
        assert_eq!(old.configs.len(), expected.len(), "v{version}");
        assert_eq!(value_of(&old, "retention.ms"), "1000");
        assert_eq!(entry(&old, "retention.ms").synonyms.len(), 2);
    }
    // Without synonyms and documentation.
    let plain = client.send(
        &DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(sb("described"))
            .with_configuration_keys(None)]),
        4,
    );
    let c = entry(&plain.results[0], "retention.ms");
    assert!(c.synonyms.is_empty() && c.documentation.is_none());
    assert_eq!(c.config_source, DYNAMIC_TOPIC_CONFIG);

    // Errors.
    let unknown = describe(&mut client, TOPIC, "missing", None, 4);
    assert_eq!((unknown.error_code, unknown.configs.len()), (UNKNOWN_TOPIC_OR_PARTITION, 0));
    assert_eq!(describe(&mut client, TOPIC, "bad/name", None, 4).error_code, INVALID_TOPIC_EXCEPTION);
    assert_eq!(describe(&mut client, BROKER, "2", None, 4).error_code, INVALID_REQUEST);
    assert_eq!(describe(&mut client, BROKER, "one", None, 4).error_code, INVALID_REQUEST);
    assert_eq!(describe(&mut client, GROUP, "g", None, 4).error_code, INVALID_REQUEST);
    assert_eq!(describe(&mut client, 99, "x", None, 4).error_code, INVALID_REQUEST);

    // The broker: broker-level names with their values.
    let b = describe(&mut client, BROKER, "1", None, 4);
    assert_eq!(b.error_code, NONE);
    let log_segment = entry(&b, "log.segment.bytes");
    assert_eq!(
        (value_of(&b, "log.segment.bytes").as_str(), log_segment.config_source),
        ("4194304", STATIC_BROKER_CONFIG)
    );
    assert!(!log_segment.read_only);
    assert_eq!(value_of(&b, "log.retention.ms"), "604800000");
    assert_eq!(entry(&b, "log.retention.ms").config_source, DEFAULT_CONFIG);
    assert_eq!(value_of(&b, "log.roll.ms"), "604800000");
    assert_eq!(value_of(&b, "message.max.bytes"), "1048588");
    assert_eq!(value_of(&b, "num.partitions"), "2");
    assert!(entry(&b, "num.partitions").read_only);
    assert_eq!(value_of(&b, "auto.create.topics.enable"), "true");
    assert_eq!(value_of(&b, "socket.request.max.bytes"), "104857600");
    assert_eq!(value_of(&b, "node.id"), "1");
    assert!(entry(&b, "node.id").read_only);
    assert_eq!(b.configs.len(), expected.len() + 5);
    let cluster_defaults = describe(&mut client, BROKER, "", None, 4);
    assert_eq!((cluster_defaults.error_code, cluster_defaults.configs.len()), (NONE, 0));

    // Several resources in one request, answered in order.
    let request = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default().with_resource_type(TOPIC).with_resource_name(sb("missing")),
        DescribeConfigsResource::default().with_resource_type(BROKER).with_resource_name(sb("1")),
        DescribeConfigsResource::default().with_resource_type(TOPIC).with_resource_name(sb("described")),
    ]);
    let response = client.send(&request, 4);
    let codes: Vec<i16> = response.results.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![UNKNOWN_TOPIC_OR_PARTITION, NONE, NONE]);

    // rdkafka: topic and broker resources.
    let admin_client = admin(&bootstrap);
    let described = block_on(admin_client.describe_configs(
        [&ResourceSpecifier::Topic("described"), &ResourceSpecifier::Broker(1), &ResourceSpecifier::Topic("missing")],
        &opts(),
    ))
    .expect("describe");
    let topic_result = described[0].as_ref().expect("topic");
    assert_eq!(topic_result.get("retention.ms").unwrap().value.as_deref(), Some("1000"));
    assert_eq!(topic_result.get("segment.bytes").unwrap().source, ConfigSource::StaticBroker);
    let broker_result = described[1].as_ref().expect("broker");
    assert_eq!(broker_result.get("log.segment.bytes").unwrap().value.as_deref(), Some("4194304"));
    assert!(broker_result.get("node.id").unwrap().is_read_only);
    // rust-rdkafka drops DescribeConfigs' per-resource errors: an unknown topic comes back as
    // an empty resource (the raw checks above see UNKNOWN_TOPIC_OR_PARTITION).
    assert!(described[2].as_ref().expect("no per-resource errors in rust-rdkafka").entries.is_empty());
    drop(admin_client);
    broker.stop();
}

fn alter_legacy(
    client: &mut RawClient,
    resource_type: i8,
    name: &str,
    configs: &[(&str, Option<&str>)],
    validate_only: bool,
) -> (i16, String) {
    let resource = alter_configs_request::AlterConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(sb(name))
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| alter_configs_request::AlterableConfig::default().with_name(sb(k)).with_value(v.map(sb)))
                .collect(),
        );
    let request = AlterConfigsRequest::default().with_resources(vec![resource]).with_validate_only(validate_only);
    let response = client.send(&request, 2);
    let r = &response.responses[0];
    assert_eq!((r.resource_type, r.resource_name.as_str()), (resource_type, name));
    (r.error_code, r.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default())
}

fn alter_incremental(
    client: &mut RawClient,
    resource_type: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> (i16, String) {
    let resource = incremental_alter_configs_request::AlterConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(sb(name))
        .with_configs(
            ops.iter()
                .map(|(k, op, v)| {
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(sb(k))
                        .with_config_operation(*op)
                        .with_value(v.map(sb))
                })
                .collect(),
        );
    let request =
        IncrementalAlterConfigsRequest::default().with_resources(vec![resource]).with_validate_only(validate_only);
    let response = client.send(&request, 1);
    let r = &response.responses[0];
    (r.error_code, r.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default())
}

#[test]
fn alter_configs_legacy_and_incremental_persist_and_take_effect() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 2);
    let bootstrap = broker.bootstrap();
    let mut client = RawClient::connect(&bootstrap);
    let created =
        create_one(&mut client, topic("tuned", 2, 1).with_configs(vec![config("retention.ms", "100000")]), false);
    assert_eq!(created.error_code, NONE);

    // Legacy AlterConfigs replaces the whole override set.
    assert_eq!(
        alter_legacy(&mut client, TOPIC, "tuned", &[("segment.bytes", Some("1048576"))], false),
        (NONE, String::new())
    );
    assert_eq!(overrides(&mut client, "tuned"), pairs(&[("segment.bytes", "1048576")]));
    // validate_only checks but changes nothing.
    assert_eq!(alter_legacy(&mut client, TOPIC, "tuned", &[("segment.ms", Some("1000"))], true).0, NONE);
    assert_eq!(overrides(&mut client, "tuned"), pairs(&[("segment.bytes", "1048576")]));
    let (code, message) = alter_legacy(&mut client, TOPIC, "tuned", &[("segment.ms", Some("0"))], true);
    assert_eq!(code, INVALID_CONFIG);
    assert!(message.contains("segment.ms"), "{message}");
    // Errors.
    let (code, message) = alter_legacy(&mut client, TOPIC, "tuned", &[("retention.ms", Some("-7"))], false);
    assert_eq!(code, INVALID_CONFIG);
    assert!(message.contains("retention.ms"), "{message}");
    let (code, message) = alter_legacy(&mut client, TOPIC, "tuned", &[("no.such.config", Some("1"))], false);
    assert_eq!((code, message.as_str()), (INVALID_CONFIG, "Unknown topic config name: no.such.config"));
    assert_eq!(alter_legacy(&mut client, TOPIC, "tuned", &[("retention.ms", None)], false).0, INVALID_REQUEST);
    let dup = [("retention.ms", Some("1")), ("retention.ms", Some("2"))];
    assert_eq!(alter_legacy(&mut client, TOPIC, "tuned", &dup, false).0, INVALID_REQUEST);
    assert_eq!(alter_legacy(&mut client, TOPIC, "missing", &[], false).0, UNKNOWN_TOPIC_OR_PARTITION);
    assert_eq!(alter_legacy(&mut client, TOPIC, "", &[], false).0, INVALID_REQUEST);
    assert_eq!(alter_legacy(&mut client, TOPIC, "bad name", &[], false).0, INVALID_TOPIC_EXCEPTION);
    let (code, message) = alter_legacy(&mut client, BROKER, "1", &[("log.retention.ms", Some("1000"))], false);
    assert_eq!(code, INVALID_REQUEST);
    assert!(message.contains("dynamic broker configs"), "{message}");
    assert_eq!(alter_legacy(&mut client, BROKER, "", &[("log.retention.ms", Some("1000"))], false).0, INVALID_REQUEST);
    assert_eq!(alter_legacy(&mut client, BROKER, "7", &[], false).0, INVALID_REQUEST);
    assert_eq!(
        overrides(&mut client, "tuned"),
        pairs(&[("segment.bytes", "1048576")]),
        "refused alters change nothing"
    );
    // The same resource twice: both refused.
    let request = AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(sb("tuned")),
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(sb("tuned")),
    ]);
    let response = client.send(&request, 0);
    assert!(response.responses.iter().all(|r| r.error_code == INVALID_REQUEST), "{response:?}");
    assert_eq!(response.responses.len(), 2);

    // IncrementalAlterConfigs: SET, DELETE, APPEND, SUBTRACT.
    let ops = [
        ("retention.ms", SET, Some("5000")),
        ("segment.bytes", DELETE, None),
        ("cleanup.policy", APPEND, Some("compact")),
    ];
    assert_eq!(alter_incremental(&mut client, TOPIC, "tuned", &ops, false), (NONE, String::new()));
    assert_eq!(
        overrides(&mut client, "tuned"),
        pairs(&[("cleanup.policy", "delete,compact"), ("retention.ms", "5000")])
    );
    assert_eq!(
        alter_incremental(&mut client, TOPIC, "tuned", &[("cleanup.policy", APPEND, Some("delete"))], false).0,
        NONE
    );
    assert_eq!(
        overrides(&mut client, "tuned"),
        pairs(&[("cleanup.policy", "delete,compact"), ("retention.ms", "5000")])
    );
    assert_eq!(
        alter_incremental(&mut client, TOPIC, "tuned", &[("cleanup.policy", SUBTRACT, Some("delete"))], false).0,
        NONE
    );
    assert_eq!(overrides(&mut client, "tuned"), pairs(&[("cleanup.policy", "compact"), ("retention.ms", "5000")]));
    // validate_only.
    assert_eq!(alter_incremental(&mut client, TOPIC, "tuned", &[("retention.ms", DELETE, None)], true).0, NONE);
    assert_eq!(overrides(&mut client, "tuned").len(), 2);
    // Errors.
    let (code, message) = alter_incremental(&mut client, TOPIC, "tuned", &[("retention.ms", APPEND, Some("1"))], false);
    assert_eq!(code, INVALID_CONFIG);
    assert!(message.contains("not LIST"), "{message}");
    let (code, message) =
        alter_incremental(&mut client, TOPIC, "tuned", &[("cleanup.policy", APPEND, Some("shred"))], false);
    assert_eq!(code, INVALID_CONFIG);
    assert!(message.contains("cleanup.policy"), "{message}");
    let bad_pair = [("min.compaction.lag.ms", SET, Some("100")), ("max.compaction.lag.ms", SET, Some("10"))];
    assert_eq!(alter_incremental(&mut client, TOPIC, "tuned", &bad_pair, false).0, INVALID_CONFIG);
    assert_eq!(
        alter_incremental(&mut client, TOPIC, "tuned", &[("retention.ms", SET, None)], false).0,
        INVALID_REQUEST
    );
    assert_eq!(
        alter_incremental(&mut client, TOPIC, "tuned", &[("retention.ms", 7, Some("1"))], false).0,
        INVALID_REQUEST
    );
    let dup = [("retention.ms", SET, Some("1")), ("retention.ms", DELETE, None)];
    assert_eq!(alter_incremental(&mut client, TOPIC, "tuned", &dup, false).0, INVALID_REQUEST);
    assert_eq!(
        alter_incremental(&mut client, TOPIC, "missing", &[("retention.ms", SET, Some("1"))], false).0,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    let (code, message) = alter_incremental(&mut client, BROKER, "1", &[("log.retention.ms", SET, Some("1"))], false);
    assert_eq!(code, INVALID_REQUEST);
    assert!(message.contains("dynamic broker configs"), "{message}");
    assert_eq!(alter_incremental(&mut client, BROKER, "x", &[], false).0, INVALID_REQUEST);
    assert_eq!(alter_incremental(&mut client, GROUP, "g", &[], false).0, INVALID_REQUEST);
    assert_eq!(overrides(&mut client, "tuned"), pairs(&[("cleanup.policy", "compact"), ("retention.ms", "5000")]));

    // A change applies to the live partitions: a small max.message.bytes refuses a big batch.
    assert_eq!(
        alter_incremental(
            &mut client,
            TOPIC,
            "tuned",
            &[("cleanup.policy", DELETE, None), ("max.message.bytes", SET, Some("1000"))],
            false
        )
        .0,
        NONE
    );
    let producer = future_producer(&bootstrap, &[("linger.ms", "0"), ("message.send.max.retries", "0")]);
    let big = vec![7u8; 5000];
    for p in 0..2 {
        let outcome = block_on(
            producer.send(FutureRecord::to("tuned").partition(p).key("k").payload(&big), Duration::from_secs(20)),
        );
        let (err, _) = outcome.expect_err("too large for the topic");
        assert_eq!(err.rdkafka_error_code(), Some(RDKafkaErrorCode::MessageSizeTooLarge), "partition {p}: {err}");
    }
    assert_eq!(produce(&bootstrap, "tuned", 1, 1), vec![0], "small messages still pass");

    // rdkafka's AlterConfigs (legacy, replaces).
    let admin_client = admin(&bootstrap);
    let alter = AlterConfig::new(ResourceSpecifier::Topic("tuned"))
        .set("retention.ms", "7777")
        .set("max.message.bytes", "3000");
    let results = block_on(admin_client.alter_configs([&alter], &opts())).expect("alter");
    assert!(results[0].is_ok(), "{results:?}");
    // rust-rdkafka drops AlterConfigs' per-resource errors, so a refused change is checked by
    // its (lack of) effect; the raw checks above see INVALID_CONFIG.
    let bad = AlterConfig::new(ResourceSpecifier::Topic("tuned")).set("retention.ms", "later");
    block_on(admin_client.alter_configs([&bad], &opts())).expect("alter");
    drop(admin_client);
    assert_eq!(overrides(&mut client, "tuned"), pairs(&[("max.message.bytes", "3000"), ("retention.ms", "7777")]));

    broker.stop();
    let broker = Broker::start(dir.path(), 2);
    let bootstrap = broker.bootstrap();
    let mut client = RawClient::connect(&bootstrap);
    assert_eq!(
        overrides(&mut client, "tuned"),
        pairs(&[("max.message.bytes", "3000"), ("retention.ms", "7777")]),
        "configs survive a restart"
    );
    let producer = future_producer(&bootstrap, &[("linger.ms", "0"), ("message.send.max.retries", "0")]);
    let outcome =
        block_on(producer.send(FutureRecord::to("tuned").partition(0).key("k").payload(&big), Duration::from_secs(20)));
    assert_eq!(
        outcome.expect_err("still too large").0.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge)
    );
    broker.stop();
}

#[test]
fn delete_records_moves_the_log_start_offset() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 2);
    let bootstrap = broker.bootstrap();
    let mut client = RawClient::connect(&bootstrap);
    assert_eq!(create_one(&mut client, topic("trimmed", 2, 1), false).error_code, NONE);
    assert_eq!(
        create_one(
            &mut client,
            topic("compacted", 1, 1).with_configs(vec![config("cleanup.policy", "compact")]),
            false
        )
        .error_code,
        NONE
    );
    // The group coordinator's internal topic always exists (like Kafka's), so clients cannot create it.
    assert_eq!(create_one(&mut client, topic("__consumer_offsets", 1, 1), false).error_code, TOPIC_ALREADY_EXISTS);
    assert_eq!(produce(&bootstrap, "trimmed", 0, 10).last(), Some(&9));
    produce(&bootstrap, "trimmed", 1, 3);

    // rdkafka (DeleteRecords v1).
    let admin_client = admin(&bootstrap);
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset("trimmed", 0, Offset::Offset(4)).unwrap();
    let result = block_on(admin_client.delete_records(&offsets, &opts())).expect("delete records");
    let p = result.find_partition("trimmed", 0).expect("partition");
    assert_eq!((p.offset(), p.error()), (Offset::Offset(4), Ok(())));
    drop(admin_client);
    assert_eq!(list_offset(&mut client, "trimmed", 0, -2), 4);
    let got = consume(&bootstrap, "trimmed", 0, 4, 6);
    assert_eq!(got.first().map(|(o, v)| (*o, v.as_str())), Some((4, "value-4")));

    let send = |client: &mut RawClient, name: &str, parts: &[(i32, i64)], version: i16| {
        let request =
            DeleteRecordsRequest::default().with_timeout_ms(10_000).with_topics(vec![DeleteRecordsTopic::default()
                .with_name(tn(name))
                .with_partitions(
                    parts
                        .iter()
                        .map(|(p, o)| DeleteRecordsPartition::default().with_partition_index(*p).with_offset(*o))
                        .collect(),
                )]);
        let response = client.send(&request, version);
        response.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.error_code, p.low_watermark))
            .collect::<Vec<_>>()
    };
    // Below the current start: no change; -1: up to the high watermark; past it: OFFSET_OUT_OF_RANGE.
    assert_eq!(send(&mut client, "trimmed", &[(0, 2)], 2), vec![(0, NONE, 4)]);
    assert_eq!(
        send(&mut client, "trimmed", &[(0, 11), (1, -1), (2, 0)], 2),
        vec![(0, OFFSET_OUT_OF_RANGE, -1), (1, NONE, 3), (2, UNKNOWN_TOPIC_OR_PARTITION, -1),]
    );
    assert_eq!(send(&mut client, "trimmed", &[(0, -5)], 0), vec![(0, OFFSET_OUT_OF_RANGE, -1)]);
    assert_eq!(send(&mut client, "trimmed", &[(0, 10)], 1), vec![(0, NONE, 10)]);
    assert_eq!(send(&mut client, "missing", &[(0, 0)], 2), vec![(0, UNKNOWN_TOPIC_OR_PARTITION, -1)]);
    assert_eq!(send(&mut client, "compacted", &[(0, -1)], 2), vec![(0, POLICY_VIOLATION, -1)]);
    assert_eq!(send(&mut client, "__consumer_offsets", &[(0, -1)], 2), vec![(0, INVALID_TOPIC_EXCEPTION, -1)]);
    assert_eq!(list_offset(&mut client, "trimmed", 0, -2), 10);
    assert_eq!(list_offset(&mut client, "trimmed", 0, -1), 10);
    assert_eq!(list_offset(&mut client, "trimmed", 1, -2), 3);
    // Writes continue after the start.
    assert_eq!(produce(&bootstrap, "trimmed", 0, 1), vec![10]);

    broker.stop();
    let broker = Broker::start(dir.path(), 2);
    let mut client = RawClient::connect(&broker.bootstrap());
    assert_eq!(list_offset(&mut client, "trimmed", 0, -2), 10, "the log start offset survives a restart");
    assert_eq!(list_offset(&mut client, "trimmed", 0, -1), 11);
    assert_eq!(list_offset(&mut client, "trimmed", 1, -2), 3);
    broker.stop();
}

#[test]
fn describe_cluster_and_offset_for_leader_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 2);
    let bootstrap = broker.bootstrap();
    let mut client = RawClient::connect(&bootstrap);

    let metadata = client.send(&MetadataRequest::default().with_topics(None), 12);
    for version in [0, 1] {
        let request = DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
        let response = client.send(&request, version);
        assert_eq!((response.error_code, response.error_message.clone()), (NONE, None));
        assert_eq!(Some(response.cluster_id.clone()), metadata.cluster_id);
        assert_eq!(response.controller_id, BrokerId(1));
        assert_eq!(response.brokers.len(), 1);
        let b = &response.brokers[0];
        assert_eq!((b.broker_id, b.host.as_str(), b.port), (BrokerId(1), "127.0.0.1", broker.port as i32));
        assert_eq!(response.cluster_authorized_operations, i32::MIN);
        assert_eq!(response.endpoint_type, 1);
    }
    let response = client.send(&DescribeClusterRequest::default().with_endpoint_type(2), 1);
    assert_eq!(response.error_code, MISMATCHED_ENDPOINT_TYPE);
    assert!(response.brokers.is_empty());
    let response = client.send(&DescribeClusterRequest::default().with_endpoint_type(9), 1);
    assert_eq!(response.error_code, UNSUPPORTED_ENDPOINT_TYPE);

    assert_eq!(create_one(&mut client, topic("epochs", 2, 1), false).error_code, NONE);
    let ask = |client: &mut RawClient, name: &str, parts: &[(i32, i32, i32)], version: i16| -> Vec<EpochEndOffset> {
        let request = OffsetForLeaderEpochRequest::default().with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(tn(name))
            .with_partitions(
                parts
                    .iter()
                    .map(|(p, current, epoch)| {
                        OffsetForLeaderPartition::default()
                            .with_partition(*p)
                            .with_current_leader_epoch(*current)
                            .with_leader_epoch(*epoch)
                    })
                    .collect(),
            )]);
        let mut response = client.send(&request, version);
        assert_eq!(response.topics[0].topic.0.as_str(), name);
        response.topics.remove(0).partitions
    };
    let summary = |parts: Vec<EpochEndOffset>| -> Vec<(i32, i16, i32, i64)> {
        parts.iter().map(|p| (p.partition, p.error_code, p.leader_epoch, p.end_offset)).collect()
    };
    // Empty partitions: epoch 0 ends at the log end offset, as on a fresh Kafka leader.
    assert_eq!(summary(ask(&mut client, "epochs", &[(0, -1, 0)], 4)), vec![(0, NONE, 0, 0)]);
    produce(&bootstrap, "epochs", 0, 5);
    assert_eq!(
        summary(ask(&mut client, "epochs", &[(0, 0, 0), (0, -1, 1), (1, -1, 0), (0, -1, -1)], 4)),
        vec![(0, NONE, 0, 5), (0, NONE, -1, -1), (1, NONE, 0, 0), (0, NONE, -1, -1)]
    );
    assert_eq!(
        summary(ask(&mut client, "epochs", &[(0, 1, 0), (0, -2, 0), (7, -1, 0)], 3)),
        vec![
            (0, UNKNOWN_LEADER_EPOCH, -1, -1),
            (0, FENCED_LEADER_EPOCH, -1, -1),
            (7, UNKNOWN_TOPIC_OR_PARTITION, -1, -1)
        ]
    );
    assert_eq!(summary(ask(&mut client, "missing", &[(0, -1, 0)], 2)), vec![(0, UNKNOWN_TOPIC_OR_PARTITION, -1, -1)]);
    assert_eq!(summary(ask(&mut client, "epochs", &[(0, -1, 0)], 2)), vec![(0, NONE, 0, 5)]);
    broker.stop();
}

#[test]
fn concurrent_incremental_alters_of_one_topic_all_survive() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 2);
    let bootstrap = broker.bootstrap();
    let mut client = RawClient::connect(&bootstrap);
    assert_eq!(create_one(&mut client, topic("contended", 1, 1), false).error_code, NONE);
    // Eight clients (spread over both shards by the kernel) each SET a different key at once.
    let keys = [
        ("retention.ms", "111111"),
        ("segment.ms", "222222"),
        ("flush.ms", "333333"),
        ("flush.messages", "444444"),
        ("max.message.bytes", "555555"),
        ("retention.bytes", "666666"),
        ("segment.bytes", "7777777"),
        ("delete.retention.ms", "888888"),
    ];
    let handles: Vec<_> = keys
        .iter()
        .map(|(k, v)| {
            let bootstrap = bootstrap.clone();
            let (k, v) = (k.to_string(), v.to_string());
            std::thread::spawn(move || {
                let mut c = RawClient::connect(&bootstrap);
                alter_incremental(&mut c, 2, "contended", &[(&k, 0, Some(&v))], false)
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().0, NONE);
    }
    let got = overrides(&mut client, "contended");
    let want = pairs(&keys);
    for kv in &want {
        assert!(got.contains(kv), "override {kv:?} lost; overrides are {got:?}");
    }
    broker.stop();
}
