//! Cluster administration end to end: ElectLeaders (preferred and unclean) on real `sluice`
//! processes (tests/support/cluster.rs), through raw Kafka requests.

mod support;

use std::time::Duration;

use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{ElectLeadersRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
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
