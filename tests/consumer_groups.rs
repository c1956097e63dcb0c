//! Consumer groups end to end: real librdkafka consumers (and kcat for a SIGKILLed member)
//! sharing partitions, rebalancing, committing and resuming; exact error codes through the raw
//! client.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use support::*;

const TOPIC_PARTITIONS: i32 = 6;

/// A broker with a short initial rebalance delay and 6-partition auto-created topics.
fn start_broker(dir: &std::path::Path) -> Broker {
    let broker = Broker::start_with(
        dir,
        &["--cores", "2", "--set", "group.initial.rebalance.delay.ms=200", "--set", "num.partitions=6"],
    );
    broker.wait_for("sluice broker started");
    broker
}

/// Produces `count` messages round-robin over the topic's partitions; returns (partition,
/// offset) of each.
fn produce(bootstrap: &str, topic: &str, count: usize, tag: &str) -> Vec<(i32, i64)> {
    let producer = future_producer(bootstrap, &[("linger.ms", "5")]);
    let deliveries: Vec<_> = (0..count)
        .map(|i| {
            let value = format!("{tag}-{i}");
            let partition = (i as i32) % TOPIC_PARTITIONS;
            producer
                .send_result(rdkafka::producer::FutureRecord::<(), _>::to(topic).payload(&value).partition(partition))
                .expect("queued")
        })
        .collect();
    deliveries
        .into_iter()
        .map(|d| {
            let delivered = futures::executor::block_on(d).expect("delivered").expect("acked");
            (delivered.partition, delivered.offset)
        })
        .collect()
}

/// One rebalance callback: ("assign"|"revoke", partitions).
type RebalanceEvent = (&'static str, BTreeSet<i32>);

/// Rebalance callbacks a consumer saw, in order.
#[derive(Clone, Default)]
struct RebalanceLog(Arc<Mutex<Vec<RebalanceEvent>>>);

impl ClientContext for RebalanceLog {}

impl ConsumerContext for RebalanceLog {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            self.0.lock().unwrap().push(("revoke", list.elements().iter().map(|e| e.partition()).collect()));
        }
    }
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            self.0.lock().unwrap().push(("assign", list.elements().iter().map(|e| e.partition()).collect()));
        }
    }
}

type GroupConsumer = BaseConsumer<RebalanceLog>;

fn group_consumer(bootstrap: &str, group: &str, topic: &str, extra: &[(&str, &str)]) -> (GroupConsumer, RebalanceLog) {
    let mut c = client_config(bootstrap);
    c.set("group.id", group)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    let log = RebalanceLog::default();
    let consumer: GroupConsumer = c.create_with_context(log.clone()).expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    (consumer, log)
}

fn assigned(consumer: &GroupConsumer) -> BTreeSet<i32> {
    consumer.assignment().expect("assignment").elements().iter().map(|e| e.partition()).collect()
}

/// Polls every consumer once; each message is recorded as (consumer index, partition, offset)
/// and committed synchronously before the next poll.
fn poll_round(consumers: &[&GroupConsumer], seen: &mut Vec<(usize, i32, i64)>) {
    for (i, c) in consumers.iter().enumerate() {
        if let Some(m) = c.poll(Duration::from_millis(20)) {
            let m = m.expect("message");
            seen.push((i, m.partition(), m.offset()));
            match c.commit_message(&m, CommitMode::Sync) {
                Ok(()) => {}
                // A commit racing a rebalance (the member's generation just ended) is refused,
                // as Kafka refuses it; the client rejoins. Anything else is a failure.
                Err(rdkafka::error::KafkaError::ConsumerCommit(
                    rdkafka::types::RDKafkaErrorCode::IllegalGeneration
                    | rdkafka::types::RDKafkaErrorCode::RebalanceInProgress,
                )) => {}
                Err(e) => panic!("commit: {e}"),
            }
        }
    }
}

/// No partition is owned by two consumers at once.
fn assert_disjoint(consumers: &[&GroupConsumer]) {
    let mut owners: BTreeMap<i32, usize> = BTreeMap::new();
    for (i, c) in consumers.iter().enumerate() {
        for p in assigned(c) {
            if let Some(other) = owners.insert(p, i) {
                panic!("partition {p} assigned to consumers {other} and {i} at once");
            }
        }
    }
}

/// Polls until `done` or the deadline; checks disjoint ownership after every round.
fn poll_until(
    consumers: &[&GroupConsumer],
    seen: &mut Vec<(usize, i32, i64)>,
    secs: u64,
    done: impl Fn(&[(usize, i32, i64)]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done(seen) {
        assert!(Instant::now() < deadline, "timed out; seen {} messages", seen.len());
        poll_round(consumers, seen);
        assert_disjoint(consumers);
    }
}

fn exactly_once(seen: &[(usize, i32, i64)], expected: &[(i32, i64)]) {
    let got: Vec<(i32, i64)> = seen.iter().map(|(_, p, o)| (*p, *o)).collect();
    let unique: HashSet<(i32, i64)> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len(), "a message was consumed twice");
    let want: HashSet<(i32, i64)> = expected.iter().copied().collect();
    assert_eq!(unique, want, "every message consumed");
}

#[test]
fn three_consumers_share_six_partitions_exactly_once_then_survivors_take_over() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let bootstrap = broker.bootstrap();
    let first = produce(&bootstrap, "shared", 600, "a");
    let consumers: Vec<_> = (0..3).map(|_| group_consumer(&bootstrap, "g-shared", "shared", &[]).0).collect();
    let refs: Vec<&GroupConsumer> = consumers.iter().collect();
    let mut seen = Vec::new();
    poll_until(&refs, &mut seen, 60, |s| s.len() >= first.len() && refs.iter().all(|c| assigned(c).len() == 2));
    for c in &refs {
        assert_eq!(assigned(c).len(), 2, "each of 3 consumers owns 2 of 6 partitions");
    }
    exactly_once(&seen, &first);

    // One leaves (close sends LeaveGroup); the other two take over every partition.
    let mut consumers = consumers;
    let leaving = consumers.pop().unwrap();
    let left_at = Instant::now();
    drop(leaving);
    let second = produce(&bootstrap, "shared", 300, "b");
    let refs: Vec<&GroupConsumer> = consumers.iter().collect();
    let mut seen_after = Vec::new();
    poll_until(&refs, &mut seen_after, 60, |s| {
        s.len() >= second.len() && refs.iter().map(|c| assigned(c).len()).sum::<usize>() == 6
    });
    println!("two survivors own all partitions {} ms after the third left", left_at.elapsed().as_millis());
    assert_eq!(refs.iter().map(|c| assigned(c).len()).sum::<usize>(), 6);
    exactly_once(&seen_after, &second);
    drop(consumers);
    broker.stop();
}

#[test]
fn two_groups_each_read_everything() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let bootstrap = broker.bootstrap();
    let produced = produce(&bootstrap, "fanout", 120, "x");
    for group in ["g-one", "g-two"] {
        let (c, _) = group_consumer(&bootstrap, group, "fanout", &[]);
        let mut seen = Vec::new();
        poll_until(&[&c], &mut seen, 30, |s| s.len() >= produced.len());
        exactly_once(&seen, &produced);
    }
    broker.stop();
}

#[test]
fn commit_half_close_and_resume_exactly_after_the_commit_across_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let bootstrap = broker.bootstrap();
    let producer = future_producer(&bootstrap, &[]);
    for i in 0..200 {
        let v = format!("m{i}");
        futures::executor::block_on(producer.send(
            rdkafka::producer::FutureRecord::<(), _>::to("resume").payload(&v).partition(0),
            Duration::from_secs(10),
        ))
        .expect("acked");
    }
    let (c, _) = group_consumer(&bootstrap, "g-resume", "resume", &[]);
    let mut last = -1;
    let deadline = Instant::now() + Duration::from_secs(30);
    while last < 99 {
        assert!(Instant::now() < deadline);
        if let Some(m) = c.poll(POLL) {
            last = m.expect("message").offset();
        }
    }
    let mut commit = TopicPartitionList::new();
    commit.add_partition_offset("resume", 0, Offset::Offset(100)).unwrap();
    commit.elements_for_topic("resume")[0].set_metadata("checkpoint-100");
    c.commit(&commit, CommitMode::Sync).expect("commit");
    drop(c);
    broker.stop();
    let broker = start_broker(dir.path());
    let bootstrap = broker.bootstrap();
    let (c, _) = group_consumer(&bootstrap, "g-resume", "resume", &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        assert!(Instant::now() < deadline, "no message after restart");
        if let Some(m) = c.poll(POLL) {
            break m.expect("message").offset();
        }
    };
    assert_eq!(first, 100, "resumes exactly after the commit");
    // The committed offset and its metadata, through OffsetFetch v5 (single group). (rdkafka's
    // `committed()` works too, but a BaseConsumer with a custom context then hangs in drop.)
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{GroupId, OffsetFetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let mut raw = support::raw::RawClient::connect(&bootstrap);
    let fetched = raw.send(
        &OffsetFetchRequest::default().with_group_id(GroupId(StrBytes::from_static_str("g-resume"))).with_topics(Some(
            vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("resume")))
                .with_partition_indexes(vec![0])],
        )),
        5,
    );
    assert_eq!(fetched.error_code, 0);
    let p = &fetched.topics[0].partitions[0];
    assert_eq!(p.committed_offset, 100);
    assert_eq!(p.metadata.as_deref(), Some("checkpoint-100"), "commit metadata preserved across restart");
    drop(c);
    broker.stop();
}

#[test]
fn auto_offset_reset_earliest_and_latest() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let bootstrap = broker.bootstrap();
    let old = produce(&bootstrap, "reset", 60, "old");
    let (earliest, _) = group_consumer(&bootstrap, "g-earliest", "reset", &[]);
    let (latest, log) = group_consumer(&bootstrap, "g-latest", "reset", &[("auto.offset.reset", "latest")]);
    let mut seen = Vec::new();
    poll_until(&[&earliest], &mut seen, 30, |s| s.len() >= old.len());
    exactly_once(&seen, &old);
    // `latest` starts at the end once assigned: it sees only what is produced after.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.0.lock().unwrap().iter().any(|(k, _)| *k == "assign") {
        assert!(Instant::now() < deadline, "latest consumer never assigned");
        assert!(latest.poll(POLL).is_none(), "latest consumer read an old message");
    }
    // Positions resolve lazily: poll a little more before producing.
    for _ in 0..10 {
        assert!(latest.poll(POLL).is_none(), "latest consumer read an old message");
    }
    let new = produce(&bootstrap, "reset", 12, "new");
    let mut seen = Vec::new();
    poll_until(&[&latest], &mut seen, 30, |s| s.len() >= new.len());
    exactly_once(&seen, &new);
    broker.stop();
}

#[test]
fn cooperative_sticky_keeps_unaffected_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let bootstrap = broker.bootstrap();
    produce(&bootstrap, "coop", 12, "c");
    let strategy = [("partition.assignment.strategy", "cooperative-sticky")];
    let (a, a_log) = group_consumer(&bootstrap, "g-coop", "coop", &strategy);
    let mut seen = Vec::new();
    poll_until(&[&a], &mut seen, 30, |_| assigned(&a).len() == 6);
    let before = assigned(&a);
    a_log.0.lock().unwrap().clear();
    let (b, _) = group_consumer(&bootstrap, "g-coop", "coop", &strategy);
    poll_until(&[&a, &b], &mut seen, 30, |_| assigned(&a).len() == 3 && assigned(&b).len() == 3);
    let kept = assigned(&a);
    assert!(kept.is_subset(&before));
    // Incremental: `a` revoked only what moved to `b`, never the partitions it kept.
    let events = a_log.0.lock().unwrap().clone();
    for (kind, partitions) in &events {
        if *kind == "revoke" {
            assert!(partitions.is_disjoint(&kept), "cooperative rebalance revoked kept partitions: {events:?}");
        }
    }
    assert!(events.iter().any(|(k, p)| *k == "revoke" && !p.is_empty()), "a gave partitions up: {events:?}");
    drop((a, b));
    broker.stop();
}

#[test]
fn static_member_restart_within_session_timeout_keeps_assignment_without_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let bootstrap = broker.bootstrap();
    produce(&bootstrap, "static", 12, "s");
    let (a, _) = group_consumer(&bootstrap, "g-static", "static", &[("group.instance.id", "instance-a")]);
    let (b, b_log) = group_consumer(&bootstrap, "g-static", "static", &[("group.instance.id", "instance-b")]);
    let mut seen = Vec::new();
    poll_until(&[&a, &b], &mut seen, 30, |_| assigned(&a).len() == 3 && assigned(&b).len() == 3);
    let a_partitions = assigned(&a);
    b_log.0.lock().unwrap().clear();
    drop(a); // a static member's close sends no LeaveGroup
    let (a2, _) = group_consumer(&bootstrap, "g-static", "static", &[("group.instance.id", "instance-a")]);
    poll_until(&[&a2, &b], &mut seen, 30, |_| assigned(&a2).len() == 3);
    assert_eq!(assigned(&a2), a_partitions, "the restarted instance gets its old partitions back");
    for _ in 0..20 {
        poll_round(&[&a2, &b], &mut seen);
    }
    assert!(b_log.0.lock().unwrap().is_empty(), "the other member saw no rebalance: {:?}", b_log.0.lock().unwrap());
    drop((a2, b));
    broker.stop();
}

#[test]
fn a_consumer_killed_with_sigkill_is_evicted_after_the_session_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let bootstrap = broker.bootstrap();
    produce(&bootstrap, "killed", 12, "k");
    let mut kcat = std::process::Command::new("kcat")
        .args(["-b", &bootstrap, "-G", "g-killed", "-q", "-X", "session.timeout.ms=6000", "killed"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kcat is installed (scripts/setup.sh)");
    let (c, _) = group_consumer(&bootstrap, "g-killed", "killed", &[]);
    let mut seen = Vec::new();
    poll_until(&[&c], &mut seen, 30, |_| assigned(&c).len() == 3);
    kcat.kill().expect("SIGKILL kcat");
    let killed_at = Instant::now();
    kcat.wait().unwrap();
    poll_until(&[&c], &mut seen, 30, |_| assigned(&c).len() == 6);
    let took = killed_at.elapsed();
    println!("survivor owns every partition {} ms after SIGKILL", took.as_millis());
    assert!(took >= Duration::from_millis(5000), "evicted only by the session timeout, took {took:?}");
    drop(c);
    broker.stop();
}

/// Exact error codes through the raw protocol.
mod raw_codes {
    use super::*;
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    use support::raw::RawClient;

    fn s(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_string())
    }

    fn join(member: &str, instance: Option<&str>, session_ms: i32) -> JoinGroupRequest {
        join_group("g-raw", member, instance, session_ms)
    }

    fn join_group(group: &str, member: &str, instance: Option<&str>, session_ms: i32) -> JoinGroupRequest {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(session_ms)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(s(member))
            .with_group_instance_id(instance.map(s))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(bytes::Bytes::from_static(b"meta"))])
    }

    fn commit(generation: i32, member: &str, version_topic: &str) -> OffsetCommitRequest {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s("g-raw")))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(member))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(version_topic)))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(3)
                    .with_committed_metadata(Some(s("md")))])])
    }

    #[test]
    fn group_api_error_codes_match_kafka() {
        let dir = tempfile::tempdir().unwrap();
        let broker = start_broker(dir.path());
        let bootstrap = broker.bootstrap();
        produce(&bootstrap, "raw-topic", 6, "r");
        let mut client = RawClient::connect(&bootstrap);

        let found =
            client.send(&FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g-raw"), s("other")]), 4);
        assert_eq!(found.coordinators.len(), 2);
        assert!(found.coordinators.iter().all(|c| c.error_code == 0 && c.port == broker.port as i32));

        assert_eq!(client.send(&join("", None, 10), 5).error_code, 26, "INVALID_SESSION_TIMEOUT");
        let first = client.send(&join("", None, 10_000), 5);
        assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
        let member = first.member_id.to_string();
        assert!(!member.is_empty());
        let joined = client.send(&join(&member, None, 10_000), 5);
        assert_eq!(joined.error_code, 0);
        assert_eq!(joined.generation_id, 1);
        assert_eq!(joined.leader.as_str(), member);
        assert_eq!(joined.members.len(), 1);
        assert_eq!(client.send(&join("nobody", None, 10_000), 5).error_code, 25, "UNKNOWN_MEMBER_ID");

        let sync = |generation: i32, m: &str| {
            SyncGroupRequest::default()
                .with_group_id(GroupId(s("g-raw")))
                .with_generation_id(generation)
                .with_member_id(s(m))
                .with_assignments(vec![
                    kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(bytes::Bytes::from_static(b"assigned")),
                ])
        };
        assert_eq!(client.send(&sync(7, &member), 3).error_code, 22, "ILLEGAL_GENERATION");
        let synced = client.send(&sync(1, &member), 3);
        assert_eq!(synced.error_code, 0);
        assert_eq!(&synced.assignment[..], b"assigned");

        let hb = |generation: i32, m: &str| {
            HeartbeatRequest::default()
                .with_group_id(GroupId(s("g-raw")))
                .with_generation_id(generation)
                .with_member_id(s(m))
        };
        assert_eq!(client.send(&hb(1, &member), 3).error_code, 0);
        assert_eq!(client.send(&hb(0, &member), 3).error_code, 22, "ILLEGAL_GENERATION");
        assert_eq!(client.send(&hb(1, "nobody"), 3).error_code, 25, "UNKNOWN_MEMBER_ID");

        let code = |r: &OffsetCommitResponse| r.topics[0].partitions[0].error_code;
        assert_eq!(code(&client.send(&commit(0, &member, "raw-topic"), 8)), 22, "stale generation");
        assert_eq!(code(&client.send(&commit(1, "nobody", "raw-topic"), 8)), 25, "unknown member");
        assert_eq!(code(&client.send(&commit(-1, "", "raw-topic"), 8)), 25, "simple commit to a live group");
        assert_eq!(code(&client.send(&commit(1, &member, "no-such-topic"), 8)), 3, "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(code(&client.send(&commit(1, &member, "raw-topic"), 8)), 0);

        let fetched = client.send(
            &OffsetFetchRequest::default().with_groups(vec![
                kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("g-raw")))
                    .with_topics(None),
                kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("g-none")))
                    .with_topics(None),
            ]),
            8,
        );
        let p = &fetched.groups[0].topics[0].partitions[0];
        assert_eq!((p.committed_offset, p.metadata.as_ref().map(|m| m.to_string())), (3, Some("md".to_string())));
        assert!(fetched.groups[1].topics.is_empty());

        let described = client
            .send(&DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g-raw")), GroupId(s("g-none"))]), 5);
        assert_eq!(described.groups[0].group_state.as_str(), "Stable");
        assert_eq!(described.groups[0].protocol_data.as_str(), "range");
        assert_eq!(&described.groups[0].members[0].member_assignment[..], b"assigned");
        assert_eq!(described.groups[1].group_state.as_str(), "Dead");

        let listed = client.send(&ListGroupsRequest::default().with_states_filter(vec![s("stable")]), 4);
        assert_eq!(
            listed.groups.iter().map(|g| g.group_id.0.to_string()).collect::<Vec<_>>(),
            vec!["g-raw".to_string()]
        );

        let deleted = client.send(
            &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g-raw")), GroupId(s("g-none"))]),
            2,
        );
        assert_eq!(deleted.results[0].error_code, 68, "NON_EMPTY_GROUP");
        assert_eq!(deleted.results[1].error_code, 69, "GROUP_ID_NOT_FOUND");

        // Static membership: a second join with the same instance id fences the first.
        let s1 = client.send(&join_group("g-static-raw", "", Some("inst"), 10_000), 5);
        assert_eq!(s1.error_code, 0, "a static member needs no MEMBER_ID_REQUIRED round");
        let s2 = client.send(&join_group("g-static-raw", "", Some("inst"), 10_000), 5);
        assert_eq!(s2.error_code, 0);
        assert_eq!(s2.generation_id, s1.generation_id, "no rebalance for a static rejoin");
        assert_ne!(s1.member_id, s2.member_id);
        let hb_static = HeartbeatRequest::default()
            .with_group_id(GroupId(s("g-static-raw")))
            .with_generation_id(s2.generation_id)
            .with_member_id(s1.member_id.clone())
            .with_group_instance_id(Some(s("inst")));
        assert_eq!(client.send(&hb_static, 3).error_code, 82, "FENCED_INSTANCE_ID");

        // Everyone leaves (batch leave); then the group can be deleted.
        let leave = LeaveGroupRequest::default().with_group_id(GroupId(s("g-raw"))).with_members(vec![
            MemberIdentity::default().with_member_id(s(&member)),
            MemberIdentity::default().with_member_id(s("")).with_group_instance_id(Some(s("inst"))),
            MemberIdentity::default().with_member_id(s("nobody")),
        ]);
        let left = client.send(&leave, 3);
        assert_eq!(
            left.members.iter().map(|m| m.error_code).collect::<Vec<_>>(),
            vec![0, 25, 25],
            "inst is in another group"
        );
        let offset_delete = OffsetDeleteRequest::default().with_group_id(GroupId(s("g-raw"))).with_topics(vec![
            kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s("raw-topic")))
                .with_partitions(vec![
                    kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestPartition::default()
                        .with_partition_index(0),
                ]),
        ]);
        let od = client.send(&offset_delete, 0);
        assert_eq!((od.error_code, od.topics[0].partitions[0].error_code), (0, 0));
        let deleted = client.send(&DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g-raw"))]), 2);
        assert_eq!(deleted.results[0].error_code, 0);
        let described = client.send(&DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g-raw"))]), 6);
        assert_eq!(described.groups[0].error_code, 69, "v6: GROUP_ID_NOT_FOUND once deleted");

        // The internal offsets topic is neither auto-created nor writable by clients.
        let produce = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![
            kafka_protocol::messages::produce_request::TopicProduceData::default()
                .with_name(TopicName(s("__consumer_offsets")))
                .with_partition_data(vec![kafka_protocol::messages::produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(bytes::Bytes::from(sluice_engine::batch::build_batch(
                        0,
                        &[(None, Some(b"x".as_slice()), &[])],
                        0,
                    ))))]),
        ]);
        let produced = client.send(&produce, 9);
        assert_eq!(produced.responses[0].partition_responses[0].error_code, 17, "INVALID_TOPIC_EXCEPTION");
        let metadata = client.send(
            &MetadataRequest::default()
                .with_topics(Some(vec![kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(s("__consumer_offsets"))))]))
                .with_allow_auto_topic_creation(true),
            12,
        );
        assert_ne!(metadata.topics[0].error_code, 0, "not auto-created as a client topic");
        broker.stop();
    }

    /// The group's committed offsets of `topics` through OffsetFetch v7: (topic, partition,
    /// offset), offsets of -1 (none) left out.
    fn committed(client: &mut RawClient, group: &str, topics: &[&str]) -> Vec<(String, i32, i64)> {
        use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
        let request = OffsetFetchRequest::default().with_group_id(GroupId(s(group))).with_topics(Some(
            topics
                .iter()
                .map(|t| {
                    OffsetFetchRequestTopic::default().with_name(TopicName(s(t))).with_partition_indexes(vec![0, 1])
                })
                .collect(),
        ));
        let response = client.send(&request, 7);
        assert_eq!(response.error_code, 0);
        let mut out = Vec::new();
        for t in &response.topics {
            for p in &t.partitions {
                if p.committed_offset >= 0 {
                    out.push((t.name.0.to_string(), p.partition_index, p.committed_offset));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn deleting_a_topic_removes_its_committed_offsets_from_every_group_even_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let broker = start_broker(dir.path());
        let bootstrap = broker.bootstrap();
        let mut client = RawClient::connect(&bootstrap);
        create_topic(&bootstrap, "doomed", 2);
        create_topic(&bootstrap, "kept", 2);
        // Two groups (on whichever shards their ids hash to) commit to both topics, without
        // membership (generation -1, as admin tools and assign()-ing consumers do).
        for group in ["g-del-a", "g-del-b"] {
            let request = OffsetCommitRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_generation_id_or_member_epoch(-1)
                .with_member_id(s(""))
                .with_topics(
                    ["doomed", "kept"]
                        .iter()
                        .map(|t| {
                            OffsetCommitRequestTopic::default().with_name(TopicName(s(t))).with_partitions(
                                (0..2)
                                    .map(|p| {
                                        OffsetCommitRequestPartition::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(10 + p as i64)
                                    })
                                    .collect(),
                            )
                        })
                        .collect(),
                );
            let response = client.send(&request, 8);
            for t in &response.topics {
                assert!(t.partitions.iter().all(|p| p.error_code == 0), "{group}: {t:?}");
            }
            assert_eq!(committed(&mut client, group, &["doomed", "kept"]).len(), 4);
        }
        let deleted = client.send(&DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s("doomed"))]), 5);
        assert_eq!(deleted.responses[0].error_code, 0);
        create_topic(&bootstrap, "doomed", 2);
        let kept = vec![("kept".to_string(), 0, 10), ("kept".to_string(), 1, 11)];
        for group in ["g-del-a", "g-del-b"] {
            assert_eq!(committed(&mut client, group, &["doomed", "kept"]), kept, "{group} right after the delete");
            // A barrier: this commit's record follows the tombstones in the group's
            // `__consumer_offsets` partition (appends are in call order), so once it is
            // acknowledged they are on file too.
            let barrier = OffsetCommitRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_generation_id_or_member_epoch(-1)
                .with_member_id(s(""))
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s("kept")))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(10)])]);
            assert_eq!(client.send(&barrier, 8).topics[0].partitions[0].error_code, 0);
        }
        drop(client);
        broker.stop();
        // The tombstones are on file: replay does not bring the offsets back.
        let broker = start_broker(dir.path());
        let bootstrap = broker.bootstrap();
        let mut client = RawClient::connect(&bootstrap);
        for group in ["g-del-a", "g-del-b"] {
            assert_eq!(committed(&mut client, group, &["doomed", "kept"]), kept, "{group} after a restart");
        }
        drop(client);
        broker.stop();
    }
}
