//! Cluster administration end to end: ElectLeaders (preferred and unclean) and partition
//! reassignments on real `sluice` processes (tests/support/cluster.rs), through raw Kafka requests.

mod support;

use std::time::Duration;

use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ElectLeadersRequest, ListPartitionReassignmentsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::producer::{BaseRecord, Producer};
use support::cluster::*;
use support::raw::RawClient;

const SETTLE: Duration = Duration::from_secs(60);
const ELECTION_NOT_NEEDED: i16 = 84;

/// ElectLeaders v2 for partition 0 of `topic`: its error code.
fn elect(bootstrap: &str, topic: &str, election_type: i8) -> i16 {
    let request = ElectLeadersRequest::default()
        .with_election_type(election_type)
        .with_timeout_ms(30_000)
        .with_topic_partitions(Some(vec![TopicPartitions::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![0])]));
    let response = RawClient::connect(bootstrap).send(&request, 2);
    assert_eq!(response.error_code, 0);
    response.replica_election_results[0].partition_result[0].error_code
}

#[test]
fn a_preferred_election_moves_leadership_back_to_the_first_replica() {
    let mut cluster = Cluster::start(3, 0);
    let (code, message) = create_topic_rf(&cluster.bootstrap(0), "elections", 1, 3);
    assert_eq!(code, 0, "{message:?}");
    let (preferred, epoch) = wait_until("a leader", SETTLE, || {
        let p = partitions(&cluster.bootstrap(0), "elections")?.remove(0);
        (p.1 > 0 && p.4.len() == 3).then_some((p.3[0], p.2))
    });
    assert_eq!(elect(&cluster.bootstrap(0), "elections", 0), ELECTION_NOT_NEEDED, "the preferred replica leads");
    assert_eq!(elect(&cluster.bootstrap(0), "elections", 1), ELECTION_NOT_NEEDED, "unclean: there is a leader");

    // The preferred leader's node dies: another replica leads; back, it only follows.
    let index = cluster.index_of(preferred);
    cluster.kill(index);
    let witness = cluster.running()[0];
    wait_until("another leader", SETTLE, || {
        let p = partitions(&cluster.bootstrap(witness), "elections")?.remove(0);
        (p.1 > 0 && p.1 != preferred).then_some(())
    });
    cluster.restart(index);
    let epoch_before = wait_until("the preferred replica back in sync, not leading", SETTLE, || {
        let p = partitions(&cluster.bootstrap(witness), "elections")?.remove(0);
        (p.4.contains(&preferred) && p.1 != preferred && p.1 > 0).then_some(p.2)
    });
    assert!(epoch_before > epoch);

    assert_eq!(elect(&cluster.bootstrap(witness), "elections", 0), 0, "elected");
    for i in 0..3 {
        wait_until("every node sees the preferred leader", SETTLE, || {
            let p = partitions(&cluster.bootstrap(i), "elections")?.remove(0);
            (p.1 == preferred && p.2 == epoch_before + 1).then_some(())
        });
    }
    assert_eq!(elect(&cluster.bootstrap(index), "elections", 0), ELECTION_NOT_NEEDED);
}

fn list_reassignments(bootstrap: &str) -> usize {
    let response =
        RawClient::connect(bootstrap).send(&ListPartitionReassignmentsRequest::default().with_timeout_ms(10_000), 0);
    assert_eq!(response.error_code, 0);
    response.topics.iter().map(|t| t.partitions.len()).sum()
}

#[test]
fn a_reassignment_moves_a_replica_to_another_broker_once_it_caught_up() {
    let cluster = Cluster::start(3, 1);
    let (code, message) = create_topic_rf(&cluster.bootstrap(0), "moving", 1, 3);
    assert_eq!(code, 0, "{message:?}");
    let replicas = wait_until("all replicas in sync", SETTLE, || {
        let p = partitions(&cluster.bootstrap(0), "moving")?.remove(0);
        (p.1 > 0 && p.4.len() == 3).then_some(p.3)
    });
    let producer = support::base_producer(&cluster.bootstrap(0), &[("acks", "all")]);
    for i in 0..200 {
        producer.send(BaseRecord::<(), str>::to("moving").payload(&format!("r{i}"))).expect("queued");
    }
    producer.flush(Duration::from_secs(30)).expect("acknowledged");

    // Replace the last replica with the broker that has none.
    let spare = (1..=4).find(|id| !replicas.contains(id)).expect("a fourth broker");
    let leaving = replicas[2];
    let target = vec![replicas[0], replicas[1], spare];
    let request = AlterPartitionReassignmentsRequest::default().with_timeout_ms(30_000).with_topics(vec![
        ReassignableTopic::default().with_name(TopicName(StrBytes::from_static_str("moving"))).with_partitions(vec![
            ReassignablePartition::default()
                .with_partition_index(0)
                .with_replicas(Some(target.iter().map(|r| BrokerId(*r)).collect())),
        ]),
    ]);
    let response = RawClient::connect(&cluster.bootstrap(3)).send(&request, 1);
    assert_eq!(response.responses[0].partitions[0].error_code, 0, "{:?}", response.responses[0].partitions[0]);

    // Complete once the spare caught up: the target is the replica set and the ISR.
    wait_until("the reassignment complete", SETTLE, || {
        let p = partitions(&cluster.bootstrap(0), "moving")?.remove(0);
        let mut isr = p.4.clone();
        isr.sort_unstable();
        let mut want = target.clone();
        want.sort_unstable();
        (p.3 == target && isr == want && list_reassignments(&cluster.bootstrap(0)) == 0).then_some(())
    });
    let leaving_dir = cluster.nodes[cluster.index_of(leaving)].data_dir.join("moving-0");
    wait_until("the removed replica's log deleted", SETTLE, || (!leaving_dir.exists()).then_some(()));
    let spare_dir = cluster.nodes[cluster.index_of(spare)].data_dir.join("moving-0");
    assert!(spare_dir.exists(), "the new replica has the partition");
    // Cancelling now: nothing in progress.
    let cancel = AlterPartitionReassignmentsRequest::default().with_timeout_ms(30_000).with_topics(vec![
        ReassignableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("moving")))
            .with_partitions(vec![ReassignablePartition::default().with_partition_index(0).with_replicas(None)]),
    ]);
    let response = RawClient::connect(&cluster.bootstrap(0)).send(&cancel, 1);
    assert_eq!(response.responses[0].partitions[0].error_code, 85, "NO_REASSIGNMENT_IN_PROGRESS");
}
