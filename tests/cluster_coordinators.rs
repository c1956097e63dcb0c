//! Coordinators in a cluster: a consumer group's state lives in a replicated
//! `__consumer_offsets` partition and a transactional id's in a replicated
//! `__transaction_state` partition; their coordinator is that partition's leader and moves with
//! it. Real `sluice` processes (tests/support/cluster.rs), real rdkafka clients.

mod support;

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use support::cluster::*;
use support::{base_producer, client_config};

const SETTLE: Duration = Duration::from_secs(60);
/// Few internal partitions: each is replicated and loaded, and tests want to find theirs fast.
const INTERNAL_PARTITIONS: &str = "3";

fn start_cluster() -> Cluster {
    Cluster::start_with(
        3,
        0,
        &[
            ("offsets.topic.num.partitions", INTERNAL_PARTITIONS),
            ("transaction.state.log.num.partitions", INTERNAL_PARTITIONS),
            ("group.initial.rebalance.delay.ms", "0"),
        ],
    )
}

fn bootstrap_of(cluster: &Cluster) -> String {
    cluster.running().iter().map(|i| cluster.bootstrap(*i)).collect::<Vec<_>>().join(",")
}

/// Kafka's partition of a group id or transactional id: Java's `String.hashCode`, absolute
/// value, modulo the partition count.
fn internal_partition(key: &str) -> usize {
    let hash = key.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    (abs % INTERNAL_PARTITIONS.parse::<i32>().unwrap()) as usize
}

/// The leader of `key`'s partition of `internal_topic`, once the topic exists everywhere.
fn coordinator(cluster: &Cluster, internal_topic: &str, key: &str) -> i32 {
    wait_until(&format!("{internal_topic} with leaders"), SETTLE, || {
        let views = partitions(&cluster.bootstrap(cluster.running()[0]), internal_topic)?;
        let leader = views.get(internal_partition(key))?.1;
        (leader > 0).then_some(leader)
    })
}

fn produce(bootstrap: &str, topic: &str, values: impl Iterator<Item = String>) {
    let producer: BaseProducer = base_producer(bootstrap, &[("acks", "all"), ("enable.idempotence", "true")]);
    for v in values {
        producer.send(BaseRecord::<(), str>::to(topic).payload(&v)).expect("queued");
    }
    producer.flush(Duration::from_secs(30)).expect("every record acknowledged");
}

fn group_consumer(bootstrap: &str, group: &str, isolation: &str) -> BaseConsumer {
    let mut c = client_config(bootstrap);
    c.set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("session.timeout.ms", "6000");
    c.create().expect("consumer")
}

/// Polls `consumer` until it has `count` records; their (offset, value).
fn poll_records(consumer: &BaseConsumer, count: usize) -> Vec<(i64, String)> {
    let deadline = Instant::now() + SETTLE;
    let mut out = Vec::new();
    while out.len() < count {
        assert!(Instant::now() < deadline, "only {} of {count} records in {SETTLE:?}", out.len());
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            out.push((m.offset(), value));
        }
    }
    out
}

#[test]
fn a_consumer_group_resumes_from_its_committed_offset_after_its_coordinators_node_is_killed() {
    let mut cluster = start_cluster();
    let (code, message) = create_topic_rf(&cluster.bootstrap(0), "orders", 1, 3);
    assert_eq!(code, 0, "{message:?}");
    produce(&bootstrap_of(&cluster), "orders", (0..20).map(|i| format!("order-{i}")));

    let consumer = group_consumer(&bootstrap_of(&cluster), "billing", "read_uncommitted");
    consumer.subscribe(&["orders"]).expect("subscribe");
    let first = poll_records(&consumer, 10);
    assert_eq!(first.iter().map(|r| r.0).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    let mut committed = TopicPartitionList::new();
    committed.add_partition_offset("orders", 0, Offset::Offset(10)).unwrap();
    consumer.commit(&committed, CommitMode::Sync).expect("commit");
    drop(consumer);

    // Metadata of every topic lists the offsets topic as internal, user topics as not.
    let listing = support::cluster::metadata(&cluster.bootstrap(0), None);
    let is_internal = |topic: &str| {
        listing.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic)).map(|t| t.is_internal)
    };
    assert_eq!((is_internal("__consumer_offsets"), is_internal("orders")), (Some(true), Some(false)));

    let coordinator_id = coordinator(&cluster, "__consumer_offsets", "billing");
    cluster.kill(cluster.index_of(coordinator_id));

    // A new member, through the surviving nodes: the group's new coordinator (the partition's
    // next leader) loaded the commit from its replica.
    let consumer = group_consumer(&bootstrap_of(&cluster), "billing", "read_uncommitted");
    consumer.subscribe(&["orders"]).expect("subscribe");
    let rest = poll_records(&consumer, 10);
    assert_eq!(rest[0], (10, "order-10".to_string()), "resumed at the committed offset");
    let new_coordinator = coordinator(&cluster, "__consumer_offsets", "billing");
    assert_ne!(new_coordinator, coordinator_id, "the coordinator moved");
}

fn transactional_producer(bootstrap: &str, id: &str) -> BaseProducer {
    let producer: BaseProducer =
        base_producer(bootstrap, &[("transactional.id", id), ("transaction.timeout.ms", "30000")]);
    producer.init_transactions(Duration::from_secs(60)).expect("init_transactions");
    producer
}

/// One transaction writing `tag`-`i` to every partition of `topic`, committed or aborted.
fn transaction(producer: &BaseProducer, topic: &str, partitions: i32, tag: &str, commit: bool) {
    producer.begin_transaction().expect("begin");
    for p in 0..partitions {
        let value = format!("{tag}-{p}");
        producer.send(BaseRecord::<(), str>::to(topic).partition(p).payload(&value)).expect("queued");
    }
    // Delivery reports are served by polling (a BaseProducer has no thread of its own).
    producer.flush(Duration::from_secs(60)).expect("the transaction's records acknowledged");
    if commit {
        producer.commit_transaction(Duration::from_secs(60)).expect("commit");
    } else {
        producer.abort_transaction(Duration::from_secs(60)).expect("abort");
    }
}

/// Every value a read_committed reader sees in `topic` (all partitions), sorted.
fn committed_values(bootstrap: &str, topic: &str, partitions: i32, expected: usize) -> Vec<String> {
    let mut c = client_config(bootstrap);
    c.set("group.id", format!("reader-{}", std::process::id()))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = c.create().expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&assignment).expect("assign");
    let mut values: Vec<String> = poll_records(&consumer, expected).into_iter().map(|r| r.1).collect();
    // Nothing more arrives (an aborted record would).
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            values.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
        }
    }
    values.sort();
    values
}

#[test]
fn transactions_span_partitions_led_by_other_nodes_and_survive_their_coordinators_node_being_killed() {
    let mut cluster = start_cluster();
    // Three partitions, RF 3: the placement spreads their leaders over the three nodes, so the
    // coordinator's markers go to other nodes (WriteTxnMarkers) and the leaders verify with
    // the coordinator (KIP-890, AddPartitionsToTxn v4) across nodes.
    let (code, message) = create_topic_rf(&cluster.bootstrap(0), "payments", 3, 3);
    assert_eq!(code, 0, "{message:?}");
    let leaders = wait_until("payments leaders", SETTLE, || {
        let views = partitions(&cluster.bootstrap(0), "payments")?;
        views.iter().all(|v| v.1 > 0).then(|| views.iter().map(|v| v.1).collect::<Vec<_>>())
    });
    let mut distinct = leaders.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() > 1, "leaders spread over nodes: {leaders:?}");

    let producer = transactional_producer(&bootstrap_of(&cluster), "payments-tx");
    transaction(&producer, "payments", 3, "committed", true);
    transaction(&producer, "payments", 3, "aborted", false);
    let expected: Vec<String> = (0..3).map(|p| format!("committed-{p}")).collect();
    assert_eq!(committed_values(&bootstrap_of(&cluster), "payments", 3, 3), expected);

    let coordinator_id = coordinator(&cluster, "__transaction_state", "payments-tx");
    drop(producer);
    cluster.kill(cluster.index_of(coordinator_id));

    // The same transactional id through the surviving nodes: the new coordinator (the state
    // partition's next leader) knows the id and fences the old epoch; a new transaction commits.
    let producer = transactional_producer(&bootstrap_of(&cluster), "payments-tx");
    transaction(&producer, "payments", 3, "after", true);
    let mut expected: Vec<String> = (0..3).flat_map(|p| [format!("after-{p}"), format!("committed-{p}")]).collect();
    expected.sort();
    assert_eq!(committed_values(&bootstrap_of(&cluster), "payments", 3, 6), expected);
    let new_coordinator = coordinator(&cluster, "__transaction_state", "payments-tx");
    assert_ne!(new_coordinator, coordinator_id, "the coordinator moved");
}

/// The node coordinating `group` as FindCoordinator (v4) on a running node names it, once
/// there is one.
fn find_group_coordinator(cluster: &Cluster, group: &str) -> i32 {
    use kafka_protocol::messages::FindCoordinatorRequest;
    use kafka_protocol::protocol::StrBytes;
    wait_until("a group coordinator", SETTLE, || {
        let node = *cluster.running().first()?;
        let mut client = try_connect(&cluster.bootstrap(node))?;
        let request = FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![StrBytes::from_string(group.to_string())]);
        let response = client.send(&request, 4);
        let c = response.coordinators.first()?;
        (c.error_code == 0 && c.node_id.0 > 0).then_some(c.node_id.0)
    })
}

/// One ConsumerGroupHeartbeat (v1) to `bootstrap`: (error, member epoch, assigned partitions).
fn consumer_heartbeat(
    bootstrap: &str,
    group: &str,
    member: &str,
    epoch: i32,
    owned: &[i32],
) -> Option<(i16, i32, Option<Vec<i32>>)> {
    use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
    use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, GroupId, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let mut client = try_connect(bootstrap)?;
    let topic_id = metadata(bootstrap, Some(&["orders-kip848"])).topics.first()?.topic_id;
    let mut request = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(-1)
        .with_topic_partitions(Some(vec![TopicPartitions::default()
            .with_topic_id(topic_id)
            .with_partitions(owned.to_vec())]));
    if epoch == 0 {
        request = request
            .with_rebalance_timeout_ms(60_000)
            .with_subscribed_topic_names(Some(vec![TopicName(s("orders-kip848"))]))
            .with_topic_partitions(Some(Vec::new()));
    }
    let r = client.send(&request, 1);
    let assigned = r.assignment.map(|a| a.topic_partitions.iter().flat_map(|t| t.partitions.clone()).collect());
    Some((r.error_code, r.member_epoch, assigned))
}

#[test]
fn a_consumer_protocol_group_keeps_its_members_epochs_after_its_coordinators_node_is_killed() {
    let mut cluster = start_cluster();
    let (code, message) = create_topic_rf(&cluster.bootstrap(0), "orders-kip848", 2, 3);
    assert_eq!(code, 0, "{message:?}");
    let group = "kip848-failover";
    let first = find_group_coordinator(&cluster, group);
    let at = |cluster: &Cluster, node: i32| cluster.bootstrap(cluster.index_of(node));
    let (error, epoch, assigned) = wait_until("the member joined", SETTLE, || {
        consumer_heartbeat(&at(&cluster, first), group, "m1", 0, &[]).filter(|r| r.0 == 0)
    });
    assert_eq!((error, epoch), (0, 1));
    let mut owned = assigned.expect("an assignment");
    owned.sort_unstable();
    assert_eq!(owned, vec![0, 1]);
    // The answers came once the group's records were written (and replicated).
    let (error, epoch_again, _) = consumer_heartbeat(&at(&cluster, first), group, "m1", epoch, &owned).unwrap();
    assert_eq!((error, epoch_again), (0, epoch));

    cluster.kill(cluster.index_of(first));
    let second = wait_until("a new coordinator", SETTLE, || {
        let c = find_group_coordinator(&cluster, group);
        (c != first).then_some(c)
    });
    // The new coordinator loaded the group from its replica: the member keeps its epoch.
    let (error, epoch_after, _) = wait_until("the member's heartbeat on the new coordinator", SETTLE, || {
        consumer_heartbeat(&at(&cluster, second), group, "m1", epoch, &owned).filter(|r| r.0 != 14 && r.0 != 16)
    });
    assert_eq!((error, epoch_after), (0, epoch), "the group and the member's epoch moved with the coordinator");
}
