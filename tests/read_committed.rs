//! Transactions, the partition side (issue 14, part 2): transactional batches produced raw,
//! commit and abort markers written through WriteTxnMarkers, then real consumers (rdkafka)
//! under both isolation levels — read_committed sees only committed records, at offsets that
//! skip the markers, and never past the last stable offset; read_uncommitted sees everything.
//! A SIGKILL and a clean restart keep the last stable offset and the aborted-transaction index.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, InitProducerIdRequest, ListOffsetsRequest, ProduceRequest, ProducerId, TopicName,
    WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use sluice_engine::batch::{build_batch, set_producer};
use support::*;

const TOPIC: &str = "txn";
const PARTITIONS: i32 = 3;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const DEADLINE: Duration = Duration::from_secs(30);

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.into()))
}

/// A transactional producer whose open transaction holds every partition of `TOPIC` (the
/// coordinator must know them: KIP-890 refuses a transactional batch for a partition outside
/// the producer's transaction). Its markers are then written here through WriteTxnMarkers, as
/// the coordinator would.
fn init_producer_id(client: &mut raw::RawClient, transactional_id: &str) -> (i64, i16) {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use kafka_protocol::messages::{AddPartitionsToTxnRequest, TransactionalId};
    let id = TransactionalId(StrBytes::from_string(transactional_id.into()));
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(id.clone()))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response = client.send(&request, 4);
    assert_eq!(response.error_code, 0);
    let (producer_id, epoch) = (response.producer_id.0, response.producer_epoch);
    let add = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(id)
        .with_v3_and_below_producer_id(ProducerId(producer_id))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(name(TOPIC))
            .with_partitions((0..PARTITIONS).collect())]);
    let added = client.send(&add, 3);
    let codes: Vec<i16> = added
        .results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| t.results_by_partition.iter().map(|p| p.partition_error_code))
        .collect();
    assert_eq!(codes, vec![0; PARTITIONS as usize]);
    (producer_id, epoch)
}

/// A batch of `values`; transactional (attributes bit 4) for a producer when `producer` is set.
fn batch(values: &[String], producer: Option<(i64, i16, i32)>) -> Vec<u8> {
    let specs: Vec<sluice_engine::batch::RecordSpec<'_>> =
        values.iter().map(|v| (None, Some(v.as_bytes()), &[][..])).collect();
    let mut b = build_batch(0, &specs, sluice_engine::clock::now_ms());
    if let Some((pid, epoch, seq)) = producer {
        b[21..23].copy_from_slice(&0x10i16.to_be_bytes());
        set_producer(&mut b, pid, epoch, seq); // recomputes the CRC
    }
    b
}

/// Produces one batch to `TOPIC`/`partition` (a transactional one with its producer's
/// transactional id); returns its base offset.
fn produce(client: &mut raw::RawClient, partition: i32, batch: &[u8], transactional_id: Option<&str>) -> i64 {
    let data = PartitionProduceData::default().with_index(partition).with_records(Some(Bytes::copy_from_slice(batch)));
    let topic = TopicProduceData::default().with_name(name(TOPIC)).with_partition_data(vec![data]);
    let request = ProduceRequest::default()
        .with_transactional_id(
            transactional_id.map(|id| kafka_protocol::messages::TransactionalId(StrBytes::from_string(id.into()))),
        )
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![topic]);
    let response = client.send(&request, 9);
    let p = &response.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0, "{:?}", p.error_message);
    p.base_offset
}

/// WriteTxnMarkers v1 with one marker per (producer id, epoch, commit, partitions of a topic):
/// the error code per (producer id, topic, partition).
fn write_markers(
    client: &mut raw::RawClient,
    markers: &[(i64, i16, bool, &str, Vec<i32>)],
) -> BTreeMap<(i64, String, i32), i16> {
    let request = WriteTxnMarkersRequest::default().with_markers(
        markers
            .iter()
            .map(|(pid, epoch, commit, topic, partitions)| {
                WritableTxnMarker::default()
                    .with_producer_id(ProducerId(*pid))
                    .with_producer_epoch(*epoch)
                    .with_transaction_result(*commit)
                    .with_coordinator_epoch(0)
                    .with_topics(vec![WritableTxnMarkerTopic::default()
                        .with_name(name(topic))
                        .with_partition_indexes(partitions.clone())])
            })
            .collect(),
    );
    let response = client.send(&request, 1);
    let mut out = BTreeMap::new();
    for marker in &response.markers {
        for topic in &marker.topics {
            for p in &topic.partitions {
                out.insert((marker.producer_id.0, topic.name.0.to_string(), p.partition_index), p.error_code);
            }
        }
    }
    out
}

/// ListOffsets v9 latest under `isolation_level` for every partition.
fn latest(client: &mut raw::RawClient, isolation_level: i8) -> Vec<i64> {
    let partitions =
        (0..PARTITIONS).map(|p| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(-1));
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation_level)
        .with_topics(vec![ListOffsetsTopic::default().with_name(name(TOPIC)).with_partitions(partitions.collect())]);
    let response = client.send(&request, 9);
    let mut out: Vec<(i32, i64)> = response.topics[0]
        .partitions
        .iter()
        .map(|p| {
            assert_eq!(p.error_code, 0);
            (p.partition_index, p.offset)
        })
        .collect();
    out.sort_unstable();
    out.into_iter().map(|(_, o)| o).collect()
}

/// A raw read_committed Fetch v12 of `partition` from 0: (high watermark, last stable offset,
/// aborted transactions as (producer id, first offset)).
fn fetch_committed(client: &mut raw::RawClient, partition: i32) -> (i64, i64, Vec<(i64, i64)>) {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(8 << 20)
        .with_isolation_level(1)
        .with_topics(vec![FetchTopic::default().with_topic(name(TOPIC)).with_partitions(vec![
            FetchPartition::default().with_partition(partition).with_fetch_offset(0).with_partition_max_bytes(8 << 20),
        ])]);
    let response = client.send(&request, 12);
    let p = &response.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let aborted = p.aborted_transactions.as_ref().expect("read_committed answers a list");
    (p.high_watermark, p.last_stable_offset, aborted.iter().map(|a| (a.producer_id.0, a.first_offset)).collect())
}

/// Everything a real consumer (rdkafka) under `isolation_level` reads from offset 0 of every
/// partition up to its end (partition EOF): (partition, offset, value), in order per partition.
fn consume_all(bootstrap: &str, isolation_level: &str) -> Vec<(i32, i64, String)> {
    let assignment: Vec<(i32, i64)> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    let consumer = assigned_consumer(
        bootstrap,
        TOPIC,
        &assignment,
        &[("isolation.level", isolation_level), ("enable.partition.eof", "true")],
    );
    let mut got = Vec::new();
    let mut at_end = std::collections::BTreeSet::new();
    let deadline = Instant::now() + DEADLINE;
    while at_end.len() < PARTITIONS as usize {
        assert!(Instant::now() < deadline, "{isolation_level}: no end of partitions {at_end:?} by the deadline");
        match consumer.poll(POLL) {
            None => {}
            Some(Ok(m)) => {
                let value = String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap();
                got.push((m.partition(), m.offset(), value));
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("{isolation_level}: {e}"),
        }
    }
    got.sort_by_key(|(p, o, _)| (*p, *o));
    got
}

/// Per partition: "plain" (1 record), A's transaction (2 records, aborted), B's (2 records,
/// committed), both markers, then "after" (1 record). Returns the expected read_committed and
/// read_uncommitted records as (partition, offset, value), A's first offset per partition and
/// A's producer id.
#[allow(clippy::type_complexity)]
fn scenario(bootstrap: &str) -> (Vec<(i32, i64, String)>, Vec<(i32, i64, String)>, Vec<i64>, i64) {
    let mut client = raw::RawClient::connect(bootstrap);
    let (a, a_epoch) = init_producer_id(&mut client, "read-committed-a");
    let (b, b_epoch) = init_producer_id(&mut client, "read-committed-b");
    let (mut committed, mut uncommitted, mut a_first) = (Vec::new(), Vec::new(), Vec::new());
    let mut before_markers = Vec::new();
    for p in 0..PARTITIONS {
        let plain = vec![format!("plain-{p}")];
        let a_values = vec![format!("a-{p}-0"), format!("a-{p}-1")];
        let b_values = vec![format!("b-{p}-0"), format!("b-{p}-1")];
        let plain_at = produce(&mut client, p, &batch(&plain, None), None);
        let a_at = produce(&mut client, p, &batch(&a_values, Some((a, a_epoch, 0))), Some("read-committed-a"));
        let b_at = produce(&mut client, p, &batch(&b_values, Some((b, b_epoch, 0))), Some("read-committed-b"));
        assert_eq!((a_at, b_at), (plain_at + 1, plain_at + 3));
        a_first.push(a_at);
        before_markers.push((a_at, b_at + 2));
        committed.push((p, plain_at, plain[0].clone()));
        uncommitted.push((p, plain_at, plain[0].clone()));
        for (i, v) in a_values.iter().enumerate() {
            uncommitted.push((p, a_at + i as i64, v.clone()));
        }
        for (i, v) in b_values.iter().enumerate() {
            committed.push((p, b_at + i as i64, v.clone()));
            uncommitted.push((p, b_at + i as i64, v.clone()));
        }
    }
    // Open transactions hold the last stable offset at A's first offset.
    let lso: Vec<i64> = before_markers.iter().map(|(a_at, _)| *a_at).collect();
    let hw: Vec<i64> = before_markers.iter().map(|(_, end)| *end).collect();
    assert_eq!(latest(&mut client, 1), lso, "read_committed latest is the LSO");
    assert_eq!(latest(&mut client, 0), hw, "read_uncommitted latest is the HW");
    let (fetched_hw, fetched_lso, aborted) = fetch_committed(&mut client, 0);
    assert_eq!((fetched_hw, fetched_lso, aborted), (hw[0], lso[0], vec![]));

    let all: Vec<i32> = (0..PARTITIONS).collect();
    let answers = write_markers(
        &mut client,
        &[
            (a, a_epoch, false, TOPIC, all.clone()),
            (b, b_epoch, true, TOPIC, all.clone()),
            (a, a_epoch, false, "nope", vec![0]),
        ],
    );
    for p in 0..PARTITIONS {
        assert_eq!(answers[&(a, TOPIC.to_string(), p)], 0);
        assert_eq!(answers[&(b, TOPIC.to_string(), p)], 0);
    }
    assert_eq!(answers[&(a, "nope".to_string(), 0)], UNKNOWN_TOPIC_OR_PARTITION);
    // A marker from an older epoch is fenced and writes nothing.
    let stale = write_markers(&mut client, &[(a, a_epoch - 1, true, TOPIC, vec![0])]);
    assert_eq!(stale[&(a, TOPIC.to_string(), 0)], INVALID_PRODUCER_EPOCH);

    for p in 0..PARTITIONS {
        let after = vec![format!("after-{p}")];
        let at = produce(&mut client, p, &batch(&after, None), None);
        // The markers took two offsets.
        assert_eq!(at, before_markers[p as usize].1 + 2);
        committed.push((p, at, after[0].clone()));
        uncommitted.push((p, at, after[0].clone()));
    }
    committed.sort_by_key(|(p, o, _)| (*p, *o));
    uncommitted.sort_by_key(|(p, o, _)| (*p, *o));
    (committed, uncommitted, a_first, a)
}

/// What the scenario leaves, checked through real consumers, ListOffsets and a raw fetch.
fn check(
    bootstrap: &str,
    committed: &[(i32, i64, String)],
    uncommitted: &[(i32, i64, String)],
    a_first: &[i64],
    a: i64,
) {
    assert_eq!(consume_all(bootstrap, "read_committed"), committed, "read_committed: committed records only");
    assert_eq!(consume_all(bootstrap, "read_uncommitted"), uncommitted, "read_uncommitted: everything");
    let mut client = raw::RawClient::connect(bootstrap);
    for p in 0..PARTITIONS {
        let (hw, lso, aborted) = fetch_committed(&mut client, p);
        assert_eq!(lso, hw, "partition {p}: no open transaction");
        assert_eq!(aborted, vec![(a, a_first[p as usize])], "partition {p}: A's aborted transaction");
    }
}

#[test]
fn read_committed_sees_only_committed_records_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 2);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TOPIC, PARTITIONS);
    let (committed, uncommitted, a_first, a) = scenario(&bootstrap);
    check(&bootstrap, &committed, &uncommitted, &a_first, a);

    // Leave a transaction open in partition 1: it holds that partition's LSO.
    let mut client = raw::RawClient::connect(&bootstrap);
    let (c, c_epoch) = init_producer_id(&mut client, "read-committed-c");
    let c_at = produce(&mut client, 1, &batch(&["c-1".to_string()], Some((c, c_epoch, 0))), Some("read-committed-c"));
    let lso_open = latest(&mut client, 1);
    assert_eq!(lso_open[1], c_at);
    drop(client);

    // SIGKILL: the restart replays the log after the last producer snapshot.
    drop(broker);
    let broker = Broker::start(dir.path(), 2);
    let bootstrap = broker.bootstrap();
    let mut client = raw::RawClient::connect(&bootstrap);
    assert_eq!(latest(&mut client, 1), lso_open, "the LSO survives a SIGKILL");
    let (_, lso, aborted) = fetch_committed(&mut client, 1);
    assert_eq!((lso, aborted), (c_at, vec![(a, a_first[1])]), "so does the aborted index");
    assert_eq!(consume_all(&bootstrap, "read_committed").len(), committed.len(), "c-1 is not visible");

    // A clean restart, then C commits.
    broker.stop();
    let broker = Broker::start(dir.path(), 2);
    let bootstrap = broker.bootstrap();
    let mut client = raw::RawClient::connect(&bootstrap);
    assert_eq!(latest(&mut client, 1), lso_open, "the LSO survives a clean restart");
    let answers = write_markers(&mut client, &[(c, c_epoch, true, TOPIC, vec![1])]);
    assert_eq!(answers[&(c, TOPIC.to_string(), 1)], 0);
    let mut committed = committed;
    committed.push((1, c_at, "c-1".to_string()));
    committed.sort_by_key(|(p, o, _)| (*p, *o));
    let mut uncommitted = uncommitted;
    uncommitted.push((1, c_at, "c-1".to_string()));
    uncommitted.sort_by_key(|(p, o, _)| (*p, *o));
    check(&bootstrap, &committed, &uncommitted, &a_first, a);
    broker.stop();
}
