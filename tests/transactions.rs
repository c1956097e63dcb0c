//! Transactions end to end (issue #14, the coordinator side): librdkafka's transactional
//! producer (the `rdkafka` crate) against the real binary — init/commit/abort, fencing by a
//! second producer with the same transactional id, the broker's own abort of a transaction
//! that outlived its timeout, coordinator state across a restart, offsets committed through
//! `send_offsets_to_transaction` — and raw requests for what a client library does not expose
//! (KIP-890 produce verification, INVALID_TRANSACTION_TIMEOUT, FindCoordinator key type 1).
//! State is observed through DescribeTransactions / ListTransactions / OffsetFetch, never
//! through log wording; what consumers see through librdkafka under both isolation levels.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, DescribeTransactionsRequest, FindCoordinatorRequest, GroupId, InitProducerIdRequest,
    ListTransactionsRequest, MetadataRequest, OffsetFetchRequest, ProduceRequest, ProducerId, TopicName,
    TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use sluice_engine::batch::{build_batch, compute_crc};
use support::raw::RawClient;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(30);
const INVALID_PRODUCER_EPOCH: i16 = 47;
const UNSTABLE_OFFSET_COMMIT: i16 = 88;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const INVALID_TXN_STATE: i16 = 48;
const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A broker with two shards whose coordinator looks for timed-out transactions every 200 ms.
fn start_broker(dir: &std::path::Path, port: u16) -> Broker {
    start_broker_with(dir, port, &[])
}

fn start_broker_with(dir: &std::path::Path, port: u16, extra: &[&str]) -> Broker {
    let mut args = vec!["--cores", "2", "--set", "transaction.abort.timed.out.transaction.cleanup.interval.ms=200"];
    args.extend_from_slice(extra);
    let broker = Broker::start_on(dir, port, &args);
    broker.wait_for("sluice broker started");
    broker
}

/// Stops `broker` and starts it again on the same port and data dir, once the port is free
/// (std's bind sets SO_REUSEADDR like the broker's own probe: sockets a live client still holds
/// to the old broker can keep it busy for a moment).
fn restart(broker: Broker, dir: &std::path::Path) -> Broker {
    restart_with(broker, dir, &[])
}

fn restart_with(broker: Broker, dir: &std::path::Path, extra: &[&str]) -> Broker {
    let port = broker.port;
    broker.stop();
    let deadline = Instant::now() + TIMEOUT;
    while std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} stayed busy after the broker stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
    start_broker_with(dir, port, extra)
}

fn txn_producer(bootstrap: &str, id: &str, extra: &[(&str, &str)]) -> BaseProducer {
    let mut all = vec![("transactional.id", id)];
    all.extend_from_slice(extra);
    let producer = base_producer(bootstrap, &all);
    producer.init_transactions(TIMEOUT).expect("init_transactions");
    producer
}

fn send(producer: &BaseProducer, topic: &str, partition: i32, value: &str) {
    producer
        .send(BaseRecord::<(), str>::to(topic).payload(value).partition(partition))
        .map_err(|(e, _)| e)
        .expect("enqueue");
    producer.flush(TIMEOUT).expect("flush");
}

/// What DescribeTransactions says of `id`: (error, state, producer id, epoch, partitions).
#[derive(Debug, Clone, PartialEq)]
struct Described {
    error: i16,
    state: String,
    producer_id: i64,
    epoch: i16,
    start_ms: i64,
    partitions: BTreeMap<String, Vec<i32>>,
}

fn describe(bootstrap: &str, id: &str) -> Described {
    let mut client = RawClient::connect(bootstrap);
    let response =
        client.send(&DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(s(id))]), 0);
    let t = &response.transaction_states[0];
    assert_eq!(t.transactional_id.0.as_str(), id);
    Described {
        error: t.error_code,
        state: t.transaction_state.to_string(),
        producer_id: t.producer_id.0,
        epoch: t.producer_epoch,
        start_ms: t.transaction_start_time_ms,
        partitions: t
            .topics
            .iter()
            .map(|d| {
                let mut ps = d.partitions.clone();
                ps.sort_unstable();
                (d.topic.0.to_string(), ps)
            })
            .collect(),
    }
}

/// Polls DescribeTransactions until `id` is in `state` (panics with the last answer after 30 s).
fn wait_for_state(bootstrap: &str, id: &str, state: &str) -> Described {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let d = describe(bootstrap, id);
        if d.state == state {
            return d;
        }
        assert!(Instant::now() < deadline, "{id} never reached {state}: {d:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// ListTransactions v1 with `states` as the filter: (listed (id, state), unknown filters).
fn list(bootstrap: &str, states: &[&str]) -> (Vec<(String, String)>, Vec<String>) {
    let mut client = RawClient::connect(bootstrap);
    let response = client.send(
        &ListTransactionsRequest::default()
            .with_state_filters(states.iter().map(|x| s(x)).collect())
            .with_duration_filter(-1),
        1,
    );
    assert_eq!(response.error_code, 0);
    (
        response
            .transaction_states
            .iter()
            .map(|t| (t.transactional_id.0.to_string(), t.transaction_state.to_string()))
            .collect(),
        response.unknown_state_filters.iter().map(|x| x.to_string()).collect(),
    )
}

fn partitions(entries: &[(&str, &[i32])]) -> BTreeMap<String, Vec<i32>> {
    entries.iter().map(|(t, ps)| (t.to_string(), ps.to_vec())).collect()
}

#[test]
fn commit_and_abort_across_two_topics_reach_their_complete_states() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), free_port());
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "a", 3);
    create_topic(&bootstrap, "b", 1);
    let producer = txn_producer(&bootstrap, "tx-basic", &[]);
    let initial = describe(&bootstrap, "tx-basic");
    assert_eq!((initial.error, initial.state.as_str(), initial.epoch), (0, "Empty", 0), "{initial:?}");

    producer.begin_transaction().unwrap();
    send(&producer, "a", 0, "c1");
    send(&producer, "a", 2, "c2");
    send(&producer, "b", 0, "c3");
    let open = describe(&bootstrap, "tx-basic");
    assert_eq!(open.state, "Ongoing");
    assert_eq!(open.partitions, partitions(&[("a", &[0, 2]), ("b", &[0])]));
    assert!(open.start_ms > 0);
    // DescribeProducers: the partition tracks the producer and its open transaction's start.
    assert_eq!(describe_producers(&bootstrap, "a", 2), vec![(initial.producer_id, 0, 0, 0)]);
    assert_eq!(list(&bootstrap, &["Ongoing"]).0, vec![("tx-basic".to_string(), "Ongoing".to_string())]);
    producer.commit_transaction(TIMEOUT).expect("commit");
    let committed = wait_for_state(&bootstrap, "tx-basic", "CompleteCommit");
    assert_eq!(
        describe_producers(&bootstrap, "a", 2),
        vec![(initial.producer_id, 0, 0, -1)],
        "no open transaction after the commit marker"
    );
    assert!(committed.partitions.is_empty());
    assert_eq!((committed.producer_id, committed.epoch), (initial.producer_id, 0));

    producer.begin_transaction().unwrap();
    send(&producer, "a", 1, "x1");
    send(&producer, "b", 0, "x2");
    producer.abort_transaction(TIMEOUT).expect("abort");
    wait_for_state(&bootstrap, "tx-basic", "CompleteAbort");
    let (listed, unknown) = list(&bootstrap, &["completeabort", "Bogus"]);
    assert_eq!(listed, vec![("tx-basic".to_string(), "CompleteAbort".to_string())]);
    assert_eq!(unknown, vec!["Bogus".to_string()]);
    assert_eq!(describe(&bootstrap, "tx-never-seen").error, TRANSACTIONAL_ID_NOT_FOUND);

    // What consumers see, now that the markers are in the partitions: read_committed only the
    // committed records, at offsets that skip the markers; read_uncommitted both transactions.
    let committed_view = read_values(&bootstrap, &[("a", 3), ("b", 1)], "read_committed");
    assert_eq!(
        committed_view,
        vec![
            ("a".to_string(), 0, 0, "c1".to_string()),
            ("a".to_string(), 2, 0, "c2".to_string()),
            ("b".to_string(), 0, 0, "c3".to_string())
        ]
    );
    let everything = read_values(&bootstrap, &[("a", 3), ("b", 1)], "read_uncommitted");
    assert_eq!(
        everything,
        vec![
            ("a".to_string(), 0, 0, "c1".to_string()),
            ("a".to_string(), 1, 0, "x1".to_string()),
            ("a".to_string(), 2, 0, "c2".to_string()),
            ("b".to_string(), 0, 0, "c3".to_string()),
            // offset 1 of b-0 is the commit marker
            ("b".to_string(), 0, 2, "x2".to_string()),
        ]
    );
}

/// DescribeProducers of `topic`/`partition`: (producer id, epoch, last sequence, open
/// transaction's first offset or -1) of each producer.
fn describe_producers(bootstrap: &str, topic: &str, partition: i32) -> Vec<(i64, i32, i32, i64)> {
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    use kafka_protocol::messages::DescribeProducersRequest;
    let request = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
        .with_name(TopicName(s(topic)))
        .with_partition_indexes(vec![partition])]);
    let response = RawClient::connect(bootstrap).send(&request, 0);
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.active_producers
        .iter()
        .map(|a| (a.producer_id.0, a.producer_epoch, a.last_sequence, a.current_txn_start_offset))
        .collect()
}

/// Every record of the partitions, read from the start with `isolation.level`, as (topic,
/// partition, offset, value) in that order.
fn read_values(bootstrap: &str, topics: &[(&str, i32)], isolation_level: &str) -> Vec<(String, i32, i64, String)> {
    let mut c = client_config(bootstrap);
    c.set("group.id", "tx-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation_level);
    let consumer: BaseConsumer = c.create().expect("consumer");
    let mut list = TopicPartitionList::new();
    for (topic, partitions) in topics {
        for p in 0..*partitions {
            list.add_partition_offset(topic, p, Offset::Beginning).unwrap();
        }
    }
    consumer.assign(&list).unwrap();
    let total: usize = topics.iter().map(|(_, n)| *n as usize).sum();
    let mut at_end = std::collections::BTreeSet::new();
    let mut got = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while at_end.len() < total {
        assert!(Instant::now() < deadline, "{isolation_level}: not at the end of {at_end:?}");
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                use rdkafka::Message;
                let value = String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap();
                got.push((m.topic().to_string(), m.partition(), m.offset(), value));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {
                // One end-of-partition event per partition (nothing is written meanwhile; the
                // error does not name the topic). The assertions on `got` catch an early stop.
                at_end.insert(at_end.len());
            }
            Some(Err(e)) => panic!("{isolation_level}: {e}"),
        }
    }
    got.sort();
    got
}

#[test]
fn a_second_producer_with_the_same_id_fences_the_first_and_aborts_its_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), free_port());
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "a", 2);
    let zombie = txn_producer(&bootstrap, "tx-fence", &[]);
    zombie.begin_transaction().unwrap();
    send(&zombie, "a", 0, "zombie");
    let before = describe(&bootstrap, "tx-fence");
    assert_eq!(before.state, "Ongoing");

    // The new incarnation's init fences the zombie (epoch + 1, its transaction aborted), then
    // bumps once more for itself.
    let successor = txn_producer(&bootstrap, "tx-fence", &[]);
    let after = describe(&bootstrap, "tx-fence");
    assert_eq!(after.state, "Empty", "{after:?}");
    assert_eq!((after.producer_id, after.epoch), (before.producer_id, before.epoch + 2));

    // The zombie can no longer commit.
    let commit = zombie.commit_transaction(TIMEOUT);
    assert!(commit.is_err(), "a fenced producer committed: {commit:?}");
    let still = describe(&bootstrap, "tx-fence");
    assert_eq!((still.state.as_str(), still.epoch), ("Empty", after.epoch));

    // The successor works normally.
    successor.begin_transaction().unwrap();
    send(&successor, "a", 1, "successor");
    successor.commit_transaction(TIMEOUT).expect("successor commits");
    let done = wait_for_state(&bootstrap, "tx-fence", "CompleteCommit");
    assert_eq!(done.epoch, after.epoch);
}

#[test]
fn a_producer_that_vanishes_mid_transaction_is_aborted_after_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), free_port());
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "a", 1);
    let timeout_ms = 3_000;
    let t = timeout_ms.to_string();
    let short = [("transaction.timeout.ms", t.as_str()), ("message.timeout.ms", &t), ("socket.timeout.ms", &t)];
    let vanished = txn_producer(&bootstrap, "tx-vanish", &short);
    vanished.begin_transaction().unwrap();
    let began = Instant::now();
    send(&vanished, "a", 0, "left open");
    let open = describe(&bootstrap, "tx-vanish");
    assert_eq!(open.state, "Ongoing");
    // The producer sends nothing more; the coordinator aborts on its own, fencing it.
    let aborted = wait_for_state(&bootstrap, "tx-vanish", "CompleteAbort");
    assert!(began.elapsed() >= Duration::from_millis(timeout_ms - 500), "aborted before the timeout");
    assert_eq!(aborted.epoch, open.epoch + 1, "the timeout abort fences the producer");
    assert!(list(&bootstrap, &["Ongoing"]).0.is_empty());
    // A new incarnation starts without any open transaction to abort.
    drop(vanished);
    let next = txn_producer(&bootstrap, "tx-vanish", &[]);
    let fresh = describe(&bootstrap, "tx-vanish");
    assert_eq!((fresh.state.as_str(), fresh.epoch), ("Empty", aborted.epoch + 1));
    drop(next);
}

#[test]
fn a_restart_mid_transaction_restores_the_coordinator_state() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), free_port());
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "a", 2);
    create_topic(&bootstrap, "b", 1);
    let producer = txn_producer(&bootstrap, "tx-restart", &[]);
    producer.begin_transaction().unwrap();
    send(&producer, "a", 1, "before restart");
    send(&producer, "b", 0, "before restart");
    let before = describe(&bootstrap, "tx-restart");
    assert_eq!(before.state, "Ongoing");
    let broker = restart(broker, dir.path());
    let after = describe(&bootstrap, "tx-restart");
    assert_eq!(after, before, "the replayed state equals the state before the restart");
    // The same producer finishes its transaction against the restarted coordinator.
    producer.commit_transaction(TIMEOUT).expect("commit after restart");
    let done = wait_for_state(&bootstrap, "tx-restart", "CompleteCommit");
    assert_eq!((done.producer_id, done.epoch), (before.producer_id, before.epoch));
    drop(broker);
}

/// OffsetFetch v7 of one partition: (error, committed offset or None). With `require_stable`
/// a partition whose offset a transaction holds answers UNSTABLE_OFFSET_COMMIT.
fn offset_fetch(bootstrap: &str, group: &str, topic: &str, partition: i32, require_stable: bool) -> (i16, Option<i64>) {
    let mut client = RawClient::connect(bootstrap);
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_require_stable(require_stable)
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partition_indexes(vec![partition])]));
    let response = client.send(&request, 7);
    assert_eq!(response.error_code, 0);
    let p = &response.topics[0].partitions[0];
    (p.error_code, (p.committed_offset >= 0).then_some(p.committed_offset))
}

/// The committed offset as a consumer sees it (librdkafka, read_committed: it asks for stable
/// offsets and retries while one is pending).
fn committed_offset(bootstrap: &str, group: &str, topic: &str, partition: i32) -> Option<i64> {
    let mut c = client_config(bootstrap);
    c.set("group.id", group).set("enable.auto.commit", "false");
    let consumer: BaseConsumer = c.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let committed = consumer.committed_offsets(tpl, TIMEOUT).expect("OffsetFetch");
    match committed.find_partition(topic, partition).unwrap().offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

#[test]
fn offsets_sent_to_a_transaction_are_visible_only_once_it_commits_also_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), free_port());
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "in", 1);
    create_topic(&bootstrap, "out", 1);
    let mut c = client_config(&bootstrap);
    c.set("group.id", "eos-group").set("enable.auto.commit", "false");
    let consumer: BaseConsumer = c.create().unwrap();
    let metadata = consumer.group_metadata().expect("group metadata");
    let producer = txn_producer(&bootstrap, "tx-offsets", &[]);
    let offsets = |o: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("in", 0, Offset::Offset(o)).unwrap();
        tpl
    };
    let transaction = |o: i64| {
        producer.begin_transaction().unwrap();
        send(&producer, "out", 0, &format!("from input offset {o}"));
        producer.send_offsets_to_transaction(&offsets(o), &metadata, TIMEOUT).expect("send offsets");
    };

    transaction(5);
    assert_eq!(offset_fetch(&bootstrap, "eos-group", "in", 0, false), (0, None), "pending until the commit");
    assert_eq!(offset_fetch(&bootstrap, "eos-group", "in", 0, true), (UNSTABLE_OFFSET_COMMIT, None));
    producer.commit_transaction(TIMEOUT).unwrap();
    wait_for_state(&bootstrap, "tx-offsets", "CompleteCommit");
    assert_eq!(committed_offset(&bootstrap, "eos-group", "in", 0), Some(5));

    transaction(9);
    producer.abort_transaction(TIMEOUT).unwrap();
    wait_for_state(&bootstrap, "tx-offsets", "CompleteAbort");
    assert_eq!(committed_offset(&bootstrap, "eos-group", "in", 0), Some(5), "aborted offsets are dropped");

    // Open across a restart: still pending after replay, visible once committed.
    transaction(12);
    let broker = restart(broker, dir.path());
    assert_eq!(offset_fetch(&bootstrap, "eos-group", "in", 0, false), (0, Some(5)));
    assert_eq!(offset_fetch(&bootstrap, "eos-group", "in", 0, true), (UNSTABLE_OFFSET_COMMIT, None));
    producer.commit_transaction(TIMEOUT).unwrap();
    wait_for_state(&bootstrap, "tx-offsets", "CompleteCommit");
    assert_eq!(committed_offset(&bootstrap, "eos-group", "in", 0), Some(12));
    // And replay of the offsets log after the commit gives the same answer.
    let broker = restart(broker, dir.path());
    assert_eq!(committed_offset(&bootstrap, "eos-group", "in", 0), Some(12));
    drop(broker);
}

/// A one-record transactional batch of producer `pid`/`epoch` (sequence `seq`).
fn transactional_batch(pid: i64, epoch: i16, seq: i32) -> Bytes {
    let mut b = build_batch(0, &[(Some(&b"k"[..]), Some(&b"v"[..]), &[][..])], 1_700_000_000_000);
    b[21..23].copy_from_slice(&0x10i16.to_be_bytes()); // attributes: transactional
    b[43..51].copy_from_slice(&pid.to_be_bytes());
    b[51..53].copy_from_slice(&epoch.to_be_bytes());
    b[53..57].copy_from_slice(&seq.to_be_bytes());
    let crc = compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

fn produce_txn(client: &mut RawClient, id: &str, topic: &str, partition: i32, batch: Bytes) -> i16 {
    let request = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(s(id))))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default().with_name(TopicName(s(topic))).with_partition_data(vec![
            PartitionProduceData::default().with_index(partition).with_records(Some(batch)),
        ])]);
    client.send(&request, 9).responses[0].partition_responses[0].error_code
}

#[test]
fn raw_coordinator_lookup_timeout_limit_and_produce_verification() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), free_port());
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "v", 2);
    let mut client = RawClient::connect(&bootstrap);

    let found = client
        .send(&FindCoordinatorRequest::default().with_key_type(1).with_coordinator_keys(vec![s("tx-raw"), s("")]), 4);
    assert_eq!(found.coordinators[0].error_code, 0);
    assert_eq!(found.coordinators[0].port, broker.port as i32);
    assert_eq!(found.coordinators[1].error_code, 42, "an empty transactional id is INVALID_REQUEST");

    let init = |client: &mut RawClient, timeout_ms: i32| {
        client.send(
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(s("tx-raw"))))
                .with_transaction_timeout_ms(timeout_ms)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
            4,
        )
    };
    assert_eq!(init(&mut client, 900_001).error_code, INVALID_TRANSACTION_TIMEOUT, "above transaction.max.timeout.ms");
    assert_eq!(init(&mut client, 0).error_code, INVALID_TRANSACTION_TIMEOUT);
    let ok = init(&mut client, 60_000);
    assert_eq!(ok.error_code, 0);
    let (pid, epoch) = (ok.producer_id.0, ok.producer_epoch);

    // KIP-890 part 1: a transactional batch into a partition not added to the transaction is
    // refused, and nothing is appended.
    let before = latest_offsets(&mut client, "v", 2);
    assert_eq!(produce_txn(&mut client, "tx-raw", "v", 0, transactional_batch(pid, epoch, 0)), INVALID_TXN_STATE);
    assert_eq!(latest_offsets(&mut client, "v", 2), before);

    let add = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s("tx-raw")))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(s("v")))
            .with_partitions(vec![0])]);
    let added = client.send(&add, 3);
    assert_eq!(added.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code, 0);
    assert_eq!(produce_txn(&mut client, "tx-raw", "v", 0, transactional_batch(pid, epoch, 0)), 0);
    // Partition 1 is still outside the transaction; a stale epoch is fenced.
    assert_eq!(produce_txn(&mut client, "tx-raw", "v", 1, transactional_batch(pid, epoch, 0)), INVALID_TXN_STATE);
    assert_eq!(
        produce_txn(&mut client, "tx-raw", "v", 0, transactional_batch(pid, epoch - 1, 1)),
        INVALID_PRODUCER_EPOCH
    );
    let after = latest_offsets(&mut client, "v", 2);
    assert_eq!(after, vec![(0, before[0].1 + 1), before[1]]);
    let described = describe(&bootstrap, "tx-raw");
    assert_eq!((described.state.as_str(), described.partitions.clone()), ("Ongoing", partitions(&[("v", &[0])])));
}

#[test]
fn idle_transactional_ids_expire_and_the_state_log_stays_internal() {
    let dir = tempfile::tempdir().unwrap();
    let expiring = [
        "--set",
        "transactional.id.expiration.ms=1000",
        "--set",
        "transaction.remove.expired.transaction.cleanup.interval.ms=200",
    ];
    let broker = start_broker_with(dir.path(), free_port(), &expiring);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "a", 1);
    let producer = txn_producer(&bootstrap, "tx-expire", &[]);
    producer.begin_transaction().unwrap();
    send(&producer, "a", 0, "v");
    producer.commit_transaction(TIMEOUT).unwrap();
    wait_for_state(&bootstrap, "tx-expire", "CompleteCommit");
    drop(producer);
    let deadline = Instant::now() + TIMEOUT;
    while describe(&bootstrap, "tx-expire").error != TRANSACTIONAL_ID_NOT_FOUND {
        assert!(Instant::now() < deadline, "the idle id never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The tombstone is replayed: still gone after a restart.
    let broker = restart_with(broker, dir.path(), &expiring);
    assert_eq!(describe(&bootstrap, "tx-expire").error, TRANSACTIONAL_ID_NOT_FOUND);

    // __transaction_state is on disk but not a topic clients see or write.
    assert!(dir.path().read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("__transaction_state-")));
    let mut client = RawClient::connect(&bootstrap);
    let metadata = client.send(&MetadataRequest::default().with_topics(None), 12);
    let names: Vec<String> = metadata.topics.iter().filter_map(|t| t.name.as_ref().map(|n| n.0.to_string())).collect();
    assert_eq!(names, vec!["a".to_string()]);
    let refused = produce_txn(&mut client, "", "__transaction_state", 0, transactional_batch(1, 0, 0));
    assert_eq!(refused, INVALID_TOPIC_EXCEPTION);
    drop(broker);
}

#[test]
fn a_crash_between_prepare_commit_and_the_markers_completes_the_commit_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // The fault point holds every ending transaction in its Prepare state.
    let broker =
        Broker::start_on_with_env(dir.path(), port, &["--cores", "2"], &[("SLUICE_FAULT_TXN_HOLD_MARKERS", "1")]);
    broker.wait_for("sluice broker started");
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "in", 1);
    create_topic(&bootstrap, "out", 1);
    let mut c = client_config(&bootstrap);
    c.set("group.id", "crash-group").set("enable.auto.commit", "false");
    let consumer: BaseConsumer = c.create().unwrap();
    let metadata = consumer.group_metadata().expect("group metadata");
    let producer = txn_producer(&bootstrap, "tx-crash", &[]);
    producer.begin_transaction().unwrap();
    send(&producer, "out", 0, "output");
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset("in", 0, Offset::Offset(7)).unwrap();
    producer.send_offsets_to_transaction(&offsets, &metadata, TIMEOUT).unwrap();
    // EndTxn is answered once PrepareCommit is on file; the markers are held.
    producer.commit_transaction(TIMEOUT).expect("commit answered");
    let prepared = describe(&bootstrap, "tx-crash");
    assert_eq!(prepared.state, "PrepareCommit");
    assert_eq!(prepared.partitions.len(), 2, "out-0 and the group's __consumer_offsets partition: {prepared:?}");
    assert_eq!(offset_fetch(&bootstrap, "crash-group", "in", 0, false), (0, None));

    broker.signal(libc::SIGKILL);
    broker.wait_exit();
    drop(producer);
    drop(consumer);
    let deadline = Instant::now() + TIMEOUT;
    while std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} stayed busy after the broker died");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Replay finds PrepareCommit and finishes the commit on its own: markers, then the
    // group's offsets, then CompleteCommit.
    let broker = start_broker(dir.path(), port);
    let done = wait_for_state(&bootstrap, "tx-crash", "CompleteCommit");
    assert_eq!((done.producer_id, done.epoch), (prepared.producer_id, prepared.epoch));
    assert_eq!(offset_fetch(&bootstrap, "crash-group", "in", 0, true), (0, Some(7)));
    drop(broker);
}

/// Exactly once across a crash (the consume-transform-produce case): a loop reads
/// `in`, writes each record transformed to `out` and sends the input offsets to its transaction.
/// The broker is SIGKILLed while the second transaction is open; after the restart a new
/// incarnation with the same transactional id resumes from the group's committed offset,
/// replays the uncommitted input and commits. A read_committed reader of `out` sees every input
/// record transformed exactly once.
#[test]
fn a_sigkill_before_the_commit_replays_the_input_without_a_visible_duplicate() {
    const INPUTS: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let broker = start_broker(dir.path(), port);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "in", 1);
    create_topic(&bootstrap, "out", 1);
    let plain = base_producer(&bootstrap, &[]);
    for i in 0..INPUTS {
        plain.send(BaseRecord::<(), str>::to("in").partition(0).payload(&format!("i{i}"))).map_err(|(e, _)| e).unwrap();
    }
    plain.flush(TIMEOUT).unwrap();
    drop(plain);

    // One pass of the loop: `count` input records from the group's committed offset, transformed
    // into one transaction, committed or left open. Returns the clients (the producer must stay
    // alive for an open transaction to stay open).
    let pass = |bootstrap: &str, count: usize, commit: bool| -> (BaseProducer, BaseConsumer) {
        let mut c = client_config(bootstrap);
        c.set("group.id", "ctp")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed");
        let consumer: BaseConsumer = c.create().unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("in", 0, Offset::Stored).unwrap();
        consumer.assign(&tpl).unwrap();
        let producer = txn_producer(bootstrap, "ctp-loop", &[]);
        producer.begin_transaction().unwrap();
        let mut next = -1;
        let deadline = Instant::now() + TIMEOUT;
        for _ in 0..count {
            let message = loop {
                assert!(Instant::now() < deadline, "input not delivered");
                if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                    break m.expect("no consume error");
                }
            };
            use rdkafka::Message;
            let value = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
            send(&producer, "out", 0, &format!("t-{value}"));
            next = message.offset() + 1;
        }
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset("in", 0, Offset::Offset(next)).unwrap();
        let metadata = consumer.group_metadata().expect("group metadata");
        producer.send_offsets_to_transaction(&offsets, &metadata, TIMEOUT).expect("send offsets");
        if commit {
            producer.commit_transaction(TIMEOUT).expect("commit");
        }
        (producer, consumer)
    };

    drop(pass(&bootstrap, INPUTS / 2, true));
    let open = pass(&bootstrap, INPUTS / 2, false);
    assert_eq!(describe(&bootstrap, "ctp-loop").state, "Ongoing");
    drop(broker); // SIGKILL, the second transaction open
    drop(open);
    let deadline = Instant::now() + TIMEOUT;
    while std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} stayed busy");
        std::thread::sleep(Duration::from_millis(50));
    }
    let broker = start_broker(dir.path(), port);
    // The new incarnation fences the old one (aborting its open transaction) and replays inputs
    // 5..9 from the committed offset.
    drop(pass(&bootstrap, INPUTS / 2, true));
    let out = read_values(&bootstrap, &[("out", 1)], "read_committed");
    let values: Vec<&str> = out.iter().map(|(_, _, _, v)| v.as_str()).collect();
    let expected: Vec<String> = (0..INPUTS).map(|i| format!("t-i{i}")).collect();
    assert_eq!(values, expected, "each input exactly once, in order");
    assert_eq!(committed_offset(&bootstrap, "ctp", "in", 0), Some(INPUTS as i64));
    drop(broker);
}
