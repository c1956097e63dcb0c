//! End-to-end: the consumer group protocol (KIP-848) over the raw protocol, for what real
//! clients do not show directly: member epochs on OffsetCommit/OffsetFetch (STALE_MEMBER_EPOCH,
//! FENCED_MEMBER_EPOCH, UNKNOWN_MEMBER_ID), a broker restart keeping the group and its
//! offsets, static members returning to their assignment, eviction after the session timeout,
//! server-side regex subscriptions, and classic and consumer groups keeping their ids apart.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

mod support;
use support::raw::RawClient;
use support::{create_topic, sluice_bin, Broker};

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics};
use kafka_protocol::messages::{
    ApiVersionsRequest, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, JoinGroupRequest,
    OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const NONE: i16 = 0;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const GROUP_ID_NOT_FOUND: i16 = 69;
const FENCED_MEMBER_EPOCH: i16 = 110;
const UNRELEASED_INSTANCE_ID: i16 = 111;
const STALE_MEMBER_EPOCH: i16 = 113;

const SESSION_TIMEOUT_MS: u64 = 2000;

fn start(dir: &std::path::Path, extra: &[&str]) -> Broker {
    let session = format!("group.consumer.session.timeout.ms={SESSION_TIMEOUT_MS}");
    let mut args = vec![
        "--cores",
        "2",
        "--set",
        &session,
        "--set",
        "group.consumer.min.session.timeout.ms=1000",
        "--set",
        "group.consumer.heartbeat.interval.ms=500",
        "--set",
        "group.consumer.min.heartbeat.interval.ms=100",
        "--set",
        "group.initial.rebalance.delay.ms=0",
    ];
    args.extend_from_slice(extra);
    let broker = Broker::start_with(dir, &args);
    broker.wait_for("sluice broker started");
    broker
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Partitions by topic id as the broker assigned them.
type Owned = Vec<TopicPartitions>;

fn assigned(r: &ConsumerGroupHeartbeatResponse) -> Option<Owned> {
    r.assignment.as_ref().map(|a| {
        a.topic_partitions
            .iter()
            .map(|tp| TopicPartitions::default().with_topic_id(tp.topic_id).with_partitions(tp.partitions.clone()))
            .collect()
    })
}

fn count(owned: &Owned) -> usize {
    owned.iter().map(|t| t.partitions.len()).sum()
}

struct Join<'a> {
    group: &'a str,
    member: &'a str,
    instance: Option<&'a str>,
    topics: Vec<&'a str>,
    regex: Option<&'a str>,
}

fn join(client: &mut RawClient, j: Join<'_>) -> ConsumerGroupHeartbeatResponse {
    let request = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(j.group)))
        .with_member_id(s(j.member))
        .with_member_epoch(0)
        .with_instance_id(j.instance.map(s))
        .with_rebalance_timeout_ms(60_000)
        .with_subscribed_topic_names(Some(j.topics.iter().map(|t| TopicName(s(t))).collect()))
        .with_subscribed_topic_regex(j.regex.map(s))
        .with_topic_partitions(Some(Vec::new()));
    client.send(&request, 1)
}

fn beat(
    client: &mut RawClient,
    group: &str,
    member: &str,
    epoch: i32,
    owned: Option<&Owned>,
) -> ConsumerGroupHeartbeatResponse {
    let request = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(-1)
        .with_topic_partitions(owned.cloned());
    client.send(&request, 1)
}

fn leave(
    client: &mut RawClient,
    group: &str,
    member: &str,
    instance: Option<&str>,
    epoch: i32,
) -> ConsumerGroupHeartbeatResponse {
    let request = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_instance_id(instance.map(s))
        .with_rebalance_timeout_ms(-1);
    client.send(&request, 1)
}

fn commit(client: &mut RawClient, group: &str, member: &str, epoch: i32, topic: &str, offset: i64) -> i16 {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_generation_id_or_member_epoch(epoch)
        .with_topics(vec![OffsetCommitRequestTopic::default().with_name(TopicName(s(topic))).with_partitions(vec![
            OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(offset),
        ])]);
    let response = client.send(&request, 9);
    response.topics[0].partitions[0].error_code
}

/// (group error, committed offset of partition 0).
fn fetch(client: &mut RawClient, group: &str, member: Option<&str>, epoch: i32, topic: &str) -> (i16, i64) {
    let request = OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(member.map(s))
        .with_member_epoch(epoch)
        .with_topics(Some(vec![OffsetFetchRequestTopics::default()
            .with_name(TopicName(s(topic)))
            .with_partition_indexes(vec![0])]))]);
    let response = client.send(&request, 9);
    let g = &response.groups[0];
    (g.error_code, g.topics.first().map_or(-1, |t| t.partitions[0].committed_offset))
}

fn poll_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn commits_check_member_epochs_and_a_restart_keeps_the_group_and_its_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[]);
    create_topic(&broker.bootstrap(), "t", 4);
    let mut c = RawClient::connect(&broker.bootstrap());
    let g = "epochs";
    let a = join(&mut c, Join { group: g, member: "a", instance: None, topics: vec!["t"], regex: None });
    assert_eq!(a.error_code, NONE, "{:?}", a.error_message);
    let (epoch_a, owned_a) = (a.member_epoch, assigned(&a).unwrap());
    assert_eq!((epoch_a, count(&owned_a)), (1, 4));
    assert_eq!(a.heartbeat_interval_ms, 500);

    assert_eq!(commit(&mut c, g, "a", epoch_a, "t", 10), NONE);
    assert_eq!(commit(&mut c, g, "a", epoch_a + 1, "t", 11), FENCED_MEMBER_EPOCH);
    assert_eq!(commit(&mut c, g, "a", epoch_a - 1, "t", 11), STALE_MEMBER_EPOCH);
    assert_eq!(commit(&mut c, g, "nobody", epoch_a, "t", 11), UNKNOWN_MEMBER_ID);
    assert_eq!(commit(&mut c, g, "", -1, "t", 11), UNKNOWN_MEMBER_ID, "not an empty group");

    // b joins: a revokes two partitions, then moves to the new epoch; its old epoch is stale.
    let b = join(&mut c, Join { group: g, member: "b", instance: None, topics: vec!["t"], regex: None });
    assert_eq!((b.error_code, b.member_epoch), (NONE, 2));
    let r = beat(&mut c, g, "a", epoch_a, Some(&owned_a));
    assert_eq!(r.member_epoch, epoch_a, "a keeps its epoch until it revokes");
    let kept = assigned(&r).unwrap();
    assert_eq!(count(&kept), 2);
    let r = beat(&mut c, g, "a", epoch_a, Some(&kept));
    assert_eq!((r.error_code, r.member_epoch), (NONE, 2));
    assert_eq!(commit(&mut c, g, "a", epoch_a, "t", 12), STALE_MEMBER_EPOCH);
    assert_eq!(fetch(&mut c, g, Some("a"), epoch_a, "t").0, STALE_MEMBER_EPOCH);
    assert_eq!(fetch(&mut c, g, Some("a"), 2, "t"), (NONE, 10));
    assert_eq!(fetch(&mut c, g, Some("zz"), 2, "t").0, UNKNOWN_MEMBER_ID);
    assert_eq!(commit(&mut c, g, "a", 2, "t", 20), NONE);
    let b = beat(&mut c, g, "b", 2, Some(&Vec::new()));
    let owned_b = assigned(&b).expect("b gets the two a gave up");
    assert_eq!(count(&owned_b), 2);

    broker.stop();
    let broker = start(dir.path(), &[]);
    let mut c = RawClient::connect(&broker.bootstrap());
    let r = beat(&mut c, g, "a", 2, Some(&kept));
    assert_eq!((r.error_code, r.member_epoch), (NONE, 2), "the member and its epoch survived: {:?}", r.error_message);
    let r = beat(&mut c, g, "b", 2, Some(&owned_b));
    assert_eq!((r.error_code, r.member_epoch), (NONE, 2));
    assert_eq!(fetch(&mut c, g, Some("a"), 2, "t"), (NONE, 20), "the offset survived");
    assert_eq!(commit(&mut c, g, "a", 1, "t", 21), STALE_MEMBER_EPOCH);
    broker.stop();
}

#[test]
fn a_static_member_returns_to_its_assignment_and_a_silent_member_is_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[]);
    create_topic(&broker.bootstrap(), "t", 4);
    let mut c = RawClient::connect(&broker.bootstrap());
    let g = "static";
    let s1 = join(&mut c, Join { group: g, member: "s1", instance: Some("i1"), topics: vec!["t"], regex: None });
    let x = join(&mut c, Join { group: g, member: "x", instance: None, topics: vec!["t"], regex: None });
    assert_eq!((s1.error_code, x.error_code), (NONE, NONE));
    // s1 gives two partitions to x.
    let r = beat(&mut c, g, "s1", s1.member_epoch, Some(&assigned(&s1).unwrap()));
    let s1_owned = assigned(&r).unwrap();
    let r = beat(&mut c, g, "s1", s1.member_epoch, Some(&s1_owned));
    let s1_epoch = r.member_epoch;
    assert_eq!((s1_epoch, count(&s1_owned)), (2, 2));

    let r = leave(&mut c, g, "s1", Some("i1"), -2);
    assert_eq!((r.error_code, r.member_epoch), (NONE, -2));
    let r = join(&mut c, Join { group: g, member: "s2", instance: Some("i1"), topics: vec!["t"], regex: None });
    assert_eq!(r.error_code, NONE, "{:?}", r.error_message);
    assert_eq!(r.member_epoch, s1_epoch, "no new epoch: nothing was reassigned");
    assert_eq!(assigned(&r).unwrap(), s1_owned, "the same partitions");
    let other = join(&mut c, Join { group: g, member: "s3", instance: Some("i1"), topics: vec!["t"], regex: None });
    assert_eq!(other.error_code, UNRELEASED_INSTANCE_ID);

    // x goes silent; s2 keeps heartbeating and gets everything once x's session ended.
    let started = Instant::now();
    let mut owned = s1_owned.clone();
    let mut epoch = s1_epoch;
    poll_until("x evicted and its partitions given to s2", Duration::from_secs(20), || {
        let r = beat(&mut c, g, "s2", epoch, Some(&owned));
        assert_eq!(r.error_code, NONE, "{:?}", r.error_message);
        epoch = r.member_epoch;
        if let Some(a) = assigned(&r) {
            owned = a;
        }
        std::thread::sleep(Duration::from_millis(200));
        (count(&owned) == 4).then_some(())
    });
    assert!(started.elapsed() >= Duration::from_millis(SESSION_TIMEOUT_MS - 500), "not before x's session ended");
    let r = beat(&mut c, g, "x", 2, None);
    assert_eq!(r.error_code, UNKNOWN_MEMBER_ID);
    broker.stop();
}

#[test]
fn regex_subscriptions_pick_up_topics_created_later() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[]);
    create_topic(&broker.bootstrap(), "rx-a", 2);
    create_topic(&broker.bootstrap(), "other", 2);
    let mut c = RawClient::connect(&broker.bootstrap());
    let r = join(&mut c, Join { group: "rx", member: "m", instance: None, topics: vec![], regex: Some("rx-.*") });
    assert_eq!(r.error_code, NONE, "{:?}", r.error_message);
    let mut owned = assigned(&r).unwrap();
    assert_eq!(count(&owned), 2);
    let mut epoch = r.member_epoch;
    create_topic(&broker.bootstrap(), "rx-b", 3);
    poll_until("the new topic's partitions assigned", Duration::from_secs(10), || {
        let r = beat(&mut c, "rx", "m", epoch, Some(&owned));
        assert_eq!(r.error_code, NONE);
        epoch = r.member_epoch;
        if let Some(a) = assigned(&r) {
            owned = a;
        }
        (count(&owned) == 5).then_some(())
    });
    let bad = join(&mut c, Join { group: "rx2", member: "m", instance: None, topics: vec![], regex: Some("(") });
    assert_eq!(bad.error_code, 128, "INVALID_REGULAR_EXPRESSION");
    broker.stop();
}

#[test]
fn classic_and_consumer_groups_keep_their_ids_apart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[]);
    create_topic(&broker.bootstrap(), "t", 2);
    let mut c = RawClient::connect(&broker.bootstrap());
    let r = join(&mut c, Join { group: "modern", member: "m", instance: None, topics: vec!["t"], regex: None });
    assert_eq!(r.error_code, NONE);
    let classic_join = |group: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(s("range"))])
    };
    let r = c.send(&classic_join("modern"), 3);
    assert_eq!(r.error_code, INCONSISTENT_GROUP_PROTOCOL);
    let r = c.send(&classic_join("old"), 3);
    assert_eq!(r.error_code, NONE);
    let r = join(&mut c, Join { group: "old", member: "m", instance: None, topics: vec!["t"], regex: None });
    assert_eq!(r.error_code, GROUP_ID_NOT_FOUND);
    // Once the consumer group is empty, a classic member may take the id over.
    let r = leave(&mut c, "modern", "m", None, -1);
    assert_eq!(r.error_code, NONE);
    let r = c.send(&classic_join("modern"), 3);
    assert_eq!(r.error_code, NONE);
    broker.stop();
}

#[test]
fn without_the_consumer_protocol_the_heartbeat_api_is_not_advertised() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &["--set", "group.coordinator.rebalance.protocols=classic"]);
    let mut c = RawClient::connect(&broker.bootstrap());
    let versions = c.send(&ApiVersionsRequest::default(), 3);
    let keys: BTreeMap<i16, i16> = versions.api_keys.iter().map(|k| (k.api_key, k.max_version)).collect();
    assert!(keys.contains_key(&11), "JoinGroup is");
    assert!(!keys.contains_key(&68), "ConsumerGroupHeartbeat is not");
    broker.stop();
}

/// `sluice group describe --output json` of a consumer-protocol group (ConsumerGroupDescribe).
fn cli_describe(bootstrap: &str, group: &str) -> serde_json::Value {
    let output = std::process::Command::new(sluice_bin())
        .args(["group", "describe", group, "--output", "json", "--bootstrap", bootstrap])
        .output()
        .expect("run sluice group describe");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("json")
}

#[test]
fn the_admin_cli_describes_a_consumer_group() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[]);
    create_topic(&broker.bootstrap(), "t", 2);
    let mut c = RawClient::connect(&broker.bootstrap());
    let r = join(&mut c, Join { group: "cli", member: "m-1", instance: None, topics: vec!["t"], regex: None });
    assert_eq!(r.error_code, NONE);
    assert_eq!(commit(&mut c, "cli", "m-1", r.member_epoch, "t", 5), NONE);
    let doc = cli_describe(&broker.bootstrap(), "cli");
    assert_eq!(doc[0]["state"], "Stable", "{doc}");
    let rows = doc[0]["partitions"].as_array().expect("partitions");
    assert_eq!(rows.len(), 2, "{doc}");
    for row in rows {
        assert_eq!(row["consumer_id"], "m-1", "{doc}");
    }
    assert_eq!(rows[0]["current_offset"], 5, "{doc}");
    broker.stop();
}
