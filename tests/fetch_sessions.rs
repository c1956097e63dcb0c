//! Incremental fetch sessions (KIP-227) over the raw protocol: a full fetch creates a session,
//! incremental fetches carry only partitions with news, forgotten partitions leave the session,
//! each session error, closing with epoch -1, the slot limit; then a real consumer (rdkafka,
//! which fetches without sessions) of many partitions still reads everything.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{FetchRequest, FetchResponse, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use support::*;

const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
const FETCH_SESSION_TOPIC_ID_ERROR: i16 = 106;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.into()))
}

/// Produces one record to each of `partitions` of `topic` and waits for the acks.
fn produce(bootstrap: &str, topic: &str, partitions: &[i32]) {
    let producer = future_producer(bootstrap, &[]);
    let deliveries: Vec<_> = partitions
        .iter()
        .map(|p| producer.send_result(FutureRecord::<(), _>::to(topic).payload("v").partition(*p)).expect("queued"))
        .collect();
    for d in deliveries {
        futures::executor::block_on(d).expect("delivered").expect("acked");
    }
}

fn partition(p: i32, fetch_offset: i64) -> FetchPartition {
    FetchPartition::default().with_partition(p).with_fetch_offset(fetch_offset).with_partition_max_bytes(1 << 20)
}

/// A fetch that answers at once (min_bytes 0) with the session fields given.
fn fetch(session_id: i32, epoch: i32, topics: Vec<FetchTopic>, forgotten: Vec<ForgottenTopic>) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(8 << 20)
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(topics)
        .with_forgotten_topics_data(forgotten)
}

fn by_name(topic: &str, partitions: Vec<FetchPartition>) -> FetchTopic {
    FetchTopic::default().with_topic(name(topic)).with_partitions(partitions)
}

/// (partition → (high watermark, record bytes)) of a response, all topics together.
fn answered(response: &FetchResponse) -> BTreeMap<i32, (i64, usize)> {
    assert_eq!(response.error_code, 0, "fetch error");
    let mut out = BTreeMap::new();
    for t in &response.responses {
        for p in &t.partitions {
            assert_eq!(p.error_code, 0, "partition {} error", p.partition_index);
            let bytes = p.records.as_ref().map_or(0, |r| r.len());
            assert!(out.insert(p.partition_index, (p.high_watermark, bytes)).is_none(), "answered twice");
        }
    }
    out
}

fn start(dir: &std::path::Path, extra: &[&str]) -> Broker {
    let mut args = vec!["--cores", "1"];
    args.extend_from_slice(extra);
    let broker = Broker::start_with(dir, &args);
    broker.wait_for("sluice broker started");
    broker
}

#[test]
fn incremental_fetches_carry_only_partitions_with_news() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[]);
    let b = broker.bootstrap();
    create_topic(&b, "s", 3);
    produce(&b, "s", &[0, 1, 2]);
    let mut client = raw::RawClient::connect(&b);

    // Full fetch, epoch 0: a session is created and every partition answered.
    let all = vec![by_name("s", (0..3).map(|p| partition(p, 0)).collect())];
    let response = client.send(&fetch(0, 0, all, vec![]), 12);
    let session = response.session_id;
    assert!(session > 0, "a session id");
    let first = answered(&response);
    assert_eq!(first.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!(first.values().all(|(hw, bytes)| *hw == 1 && *bytes > 0));

    // Epoch 1 moves every fetch offset past the record; nothing new: nothing answered.
    let moved = vec![by_name("s", (0..3).map(|p| partition(p, 1)).collect())];
    let response = client.send(&fetch(session, 1, moved, vec![]), 12);
    assert_eq!(response.session_id, session);
    assert!(answered(&response).is_empty(), "nothing changed: {:?}", answered(&response));

    // A record on partition 1 only: epoch 2 lists nothing and gets just partition 1.
    produce(&b, "s", &[1]);
    let response = client.send(&fetch(session, 2, vec![], vec![]), 12);
    let got = answered(&response);
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), vec![1]);
    assert_eq!(got[&1].0, 2);
    assert!(got[&1].1 > 0, "its new record");

    // Its offset moves on: nothing to say about it any more.
    let response = client.send(&fetch(session, 3, vec![by_name("s", vec![partition(1, 2)])], vec![]), 12);
    assert!(answered(&response).is_empty());

    // Forget partition 0; records on 0 and 2: only 2 is answered.
    let forget = ForgottenTopic::default().with_topic(name("s")).with_partitions(vec![0]);
    let response = client.send(&fetch(session, 4, vec![], vec![forget]), 12);
    assert!(answered(&response).is_empty());
    produce(&b, "s", &[0, 2]);
    let response = client.send(&fetch(session, 5, vec![], vec![]), 12);
    assert_eq!(answered(&response).keys().copied().collect::<Vec<_>>(), vec![2]);

    // Adding partition 0 back (at its old offset): answered although nothing changed since.
    let response = client.send(&fetch(session, 6, vec![by_name("s", vec![partition(0, 1)])], vec![]), 12);
    let got = answered(&response);
    assert!(got.contains_key(&0), "the added partition: {got:?}");
    assert!(!got.contains_key(&1), "partition 1 has nothing new");

    // Epoch -1 closes the session: a full, sessionless answer; the id is gone.
    let all = vec![by_name("s", (0..3).map(|p| partition(p, 0)).collect())];
    let response = client.send(&fetch(session, -1, all, vec![]), 12);
    assert_eq!(response.session_id, 0);
    assert_eq!(answered(&response).len(), 3);
    let response = client.send(&fetch(session, 7, vec![], vec![]), 12);
    assert_eq!(response.error_code, FETCH_SESSION_ID_NOT_FOUND);
    broker.stop();
}

#[test]
fn session_errors_answer_no_partitions_and_no_session() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[]);
    let b = broker.bootstrap();
    create_topic(&b, "e", 2);
    let mut client = raw::RawClient::connect(&b);
    let all = || vec![by_name("e", (0..2).map(|p| partition(p, 0)).collect())];
    let session = client.send(&fetch(0, 0, all(), vec![]), 12).session_id;
    assert!(session > 0);

    let unknown = if session == i32::MAX { session - 1 } else { session + 1 };
    let response = client.send(&fetch(unknown, 1, all(), vec![]), 12);
    assert_eq!(
        (response.error_code, response.session_id, response.responses.len()),
        (FETCH_SESSION_ID_NOT_FOUND, 0, 0)
    );
    // An incremental request without a session id.
    let response = client.send(&fetch(0, 1, all(), vec![]), 12);
    assert_eq!(response.error_code, FETCH_SESSION_ID_NOT_FOUND);

    let response = client.send(&fetch(session, 5, all(), vec![]), 12);
    assert_eq!(
        (response.error_code, response.session_id, response.responses.len()),
        (INVALID_FETCH_SESSION_EPOCH, 0, 0)
    );

    // A session of topic names, used by a v13 request (topic ids).
    let id = topic_id(&b, "e");
    let by_id = vec![FetchTopic::default().with_topic_id(id).with_partitions(vec![partition(0, 0)])];
    let response = client.send(&fetch(session, 1, by_id, vec![]), 13);
    assert_eq!(response.error_code, FETCH_SESSION_TOPIC_ID_ERROR);

    // The errors left the session as it was: epoch 1 still works.
    let response = client.send(&fetch(session, 1, vec![], vec![]), 12);
    assert_eq!((response.error_code, response.session_id), (0, session));
    // Replaying epoch 1 does not.
    let response = client.send(&fetch(session, 1, vec![], vec![]), 12);
    assert_eq!(response.error_code, INVALID_FETCH_SESSION_EPOCH);
    broker.stop();
}

fn topic_id(bootstrap: &str, topic: &str) -> uuid::Uuid {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(name(topic)))]));
    let response = raw::RawClient::connect(bootstrap).send(&request, 12);
    response.topics[0].topic_id
}

#[test]
fn sessions_by_topic_id_with_the_newest_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[]);
    let b = broker.bootstrap();
    create_topic(&b, "ids", 2);
    produce(&b, "ids", &[0]);
    let id = topic_id(&b, "ids");
    let mut client = raw::RawClient::connect(&b);
    let version = 17;
    let all = vec![FetchTopic::default().with_topic_id(id).with_partitions(vec![partition(0, 1), partition(1, 0)])];
    let response = client.send(&fetch(0, 0, all, vec![]), version);
    assert!(response.session_id > 0);
    assert!(response.responses.iter().all(|t| t.topic_id == id));
    assert_eq!(answered(&response).len(), 2);
    produce(&b, "ids", &[1]);
    let response = client.send(&fetch(response.session_id, 1, vec![], vec![]), version);
    let got = answered(&response);
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), vec![1]);
    assert_eq!(response.responses[0].topic_id, id);
    // Forgetting by topic id.
    let forget = ForgottenTopic::default().with_topic_id(id).with_partitions(vec![0, 1]);
    let response2 = client.send(&fetch(response.session_id, 2, vec![], vec![forget]), version);
    // Forgetting every partition closes the session.
    assert_eq!((response2.error_code, response2.session_id), (0, 0));
    broker.stop();
}

#[test]
fn the_slot_limit_is_per_broker_and_young_sessions_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &["--set", "max.incremental.fetch.session.cache.slots=1"]);
    let b = broker.bootstrap();
    create_topic(&b, "slots", 2);
    let mut client = raw::RawClient::connect(&b);
    let topics = |n: i32| vec![by_name("slots", (0..n).map(|p| partition(p, 0)).collect())];
    let first = client.send(&fetch(0, 0, topics(1), vec![]), 12).session_id;
    assert!(first > 0);
    // The only slot holds a young session: no session, but a full answer.
    let response = client.send(&fetch(0, 0, topics(2), vec![]), 12);
    assert_eq!(response.session_id, 0);
    assert_eq!(answered(&response).len(), 2);
    // Closing the first frees the slot.
    client.send(&fetch(first, -1, vec![], vec![]), 12);
    assert!(client.send(&fetch(0, 0, topics(2), vec![]), 12).session_id > 0);
    broker.stop();
}

#[test]
fn zero_slots_disable_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &["--set", "max.incremental.fetch.session.cache.slots=0"]);
    let b = broker.bootstrap();
    create_topic(&b, "none", 1);
    let mut client = raw::RawClient::connect(&b);
    let response = client.send(&fetch(0, 0, vec![by_name("none", vec![partition(0, 0)])], vec![]), 12);
    assert_eq!((response.error_code, response.session_id), (0, 0));
    assert_eq!(answered(&response).len(), 1);
    broker.stop();
}

/// rdkafka fetches without sessions (librdkafka has none for Fetch): a consumer of 120
/// partitions on a two-shard broker reads every record.
#[test]
fn a_consumer_of_many_partitions_reads_everything() {
    const PARTITIONS: i32 = 120;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 2);
    let b = broker.bootstrap();
    create_topic(&b, "many", PARTITIONS);
    let all: Vec<i32> = (0..PARTITIONS).flat_map(|p| [p, p, p]).collect();
    produce(&b, "many", &all);
    let assignment: Vec<(i32, i64)> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    let consumer = assigned_consumer(&b, "many", &assignment, &[]);
    let mut per_partition = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while per_partition.values().sum::<usize>() < all.len() {
        assert!(Instant::now() < deadline, "read {} of {}", per_partition.values().sum::<usize>(), all.len());
        if let Some(m) = consumer.poll(POLL) {
            let m = m.expect("message");
            *per_partition.entry(m.partition()).or_insert(0usize) += 1;
        }
    }
    assert_eq!(per_partition.len(), PARTITIONS as usize);
    assert!(per_partition.values().all(|n| *n == 3), "{per_partition:?}");
    broker.stop();
}

/// Sessions live on the shard of the connection that created them (their id says which): an
/// incremental fetch on a connection of the other shard is FETCH_SESSION_ID_NOT_FOUND, and a
/// full fetch there naming the session closes it on its own shard.
#[test]
fn a_session_belongs_to_its_shard_and_is_closed_from_any() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 2);
    let b = broker.bootstrap();
    create_topic(&b, "shards", 1);
    let shard_of = |id: i32| id / (i32::MAX / 2);
    let all = || vec![by_name("shards", vec![partition(0, 0)])];
    let mut first = raw::RawClient::connect(&b);
    let session = first.send(&fetch(0, 0, all(), vec![]), 12).session_id;
    assert!(session > 0);
    // Connections land on shards by the kernel's hash: open until one is on the other shard.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut other = loop {
        assert!(Instant::now() < deadline, "no connection landed on the other shard");
        let mut client = raw::RawClient::connect(&b);
        let id = client.send(&fetch(0, 0, all(), vec![]), 12).session_id;
        assert!(id > 0);
        if shard_of(id) != shard_of(session) {
            break client;
        }
    };
    let response = other.send(&fetch(session, 1, vec![], vec![]), 12);
    assert_eq!(response.error_code, FETCH_SESSION_ID_NOT_FOUND);
    // The session is still fine on its own shard.
    assert_eq!(first.send(&fetch(session, 1, vec![], vec![]), 12).error_code, 0);
    // Closed from the other shard (epoch -1), then gone on its own.
    let response = other.send(&fetch(session, -1, all(), vec![]), 12);
    assert_eq!((response.error_code, response.session_id), (0, 0));
    assert_eq!(first.send(&fetch(session, 2, vec![], vec![]), 12).error_code, FETCH_SESSION_ID_NOT_FOUND);
    broker.stop();
}

/// A full cache gives the slot of a session unused for `min.incremental.fetch.session.eviction.ms`
/// to a new one; the evicted session's next fetch is FETCH_SESSION_ID_NOT_FOUND.
#[test]
fn a_stale_session_is_evicted_for_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(
        dir.path(),
        &[
            "--set",
            "max.incremental.fetch.session.cache.slots=1",
            "--set",
            "min.incremental.fetch.session.eviction.ms=1000",
        ],
    );
    let b = broker.bootstrap();
    create_topic(&b, "stale", 1);
    let mut client = raw::RawClient::connect(&b);
    let all = || vec![by_name("stale", vec![partition(0, 0)])];
    let old = client.send(&fetch(0, 0, all(), vec![]), 12).session_id;
    assert!(old > 0);
    // Refused while the old session is fresh; granted once it has been idle long enough.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refused = 0;
    let new = loop {
        assert!(Instant::now() < deadline, "no eviction");
        let id = client.send(&fetch(0, 0, all(), vec![]), 12).session_id;
        if id > 0 {
            break id;
        }
        refused += 1;
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(refused > 0, "the young session was kept at first");
    assert_ne!(new, old);
    assert_eq!(client.send(&fetch(old, 1, vec![], vec![]), 12).error_code, FETCH_SESSION_ID_NOT_FOUND);
    assert_eq!(client.send(&fetch(new, 1, vec![], vec![]), 12).error_code, 0);
    broker.stop();
}
