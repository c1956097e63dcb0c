//! The cluster metadata quorum end to end: real `sluice` processes forming a KRaft-style
//! quorum on 127.0.0.1 (tests/support/cluster.rs), checked through Kafka's Metadata,
//! DescribeCluster and CreateTopics.

mod support;

use std::time::Duration;

use support::cluster::*;

const SETTLE: Duration = Duration::from_secs(30);

/// Polls until every running node shows `topic` with the same partitions; returns them.
fn agreed_partitions(cluster: &Cluster, topic: &str) -> Vec<PartitionView> {
    wait_until(&format!("every node to agree on {topic}"), SETTLE, || {
        let views: Vec<Option<Vec<PartitionView>>> =
            cluster.running().iter().map(|i| partitions(&cluster.bootstrap(*i), topic)).collect();
        let first = views[0].clone()?;
        views.iter().all(|v| v.as_ref() == Some(&first)).then_some(first)
    })
}

#[test]
fn three_controllers_form_a_cluster_and_agree_on_topics() {
    let cluster = Cluster::start(3, 0);
    for i in 0..3 {
        let ids = wait_until("3 brokers in Metadata", SETTLE, || {
            let ids = metadata_broker_ids(&cluster.bootstrap(i));
            (ids.len() == 3).then_some(ids)
        });
        assert_eq!(ids, vec![1, 2, 3]);
    }
    let controller = wait_until("one active controller everyone agrees on", SETTLE, || {
        let seen: Vec<i32> = (0..3).map(|i| describe_cluster(&cluster.bootstrap(i)).0).collect();
        (seen[0] > 0 && seen.iter().all(|c| *c == seen[0])).then_some(seen[0])
    });
    assert!((1..=3).contains(&controller));
    assert_eq!(metadata(&cluster.bootstrap(0), None).controller_id.0, controller);

    // Through a node that is (probably) not the controller: forwarded.
    assert_eq!(create_topic_rf(&cluster.bootstrap(1), "replicated", 3, 3), (0, None));
    let parts = agreed_partitions(&cluster, "replicated");
    assert_eq!(parts.len(), 3);
    let mut leaders: Vec<i32> = parts.iter().map(|p| p.1).collect();
    leaders.sort_unstable();
    assert_eq!(leaders, vec![1, 2, 3], "preferred leaders are spread round-robin: {parts:?}");
    for (_, leader, epoch, replicas, isr) in &parts {
        let mut sorted = replicas.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![1, 2, 3]);
        assert_eq!((replicas[0], *epoch, isr.len()), (*leader, 0, 3));
    }
    // Partitions exist only where a replica is: here on every node.
    for node in &cluster.nodes {
        assert!(node.data_dir.join("replicated-0").is_dir());
    }

    let (code, message) = create_topic_rf(&cluster.bootstrap(2), "too-many", 1, 4);
    assert_eq!(code, 38, "INVALID_REPLICATION_FACTOR");
    assert_eq!(message.as_deref(), Some("Replication factor: 4 larger than available brokers: 3."));
    assert_eq!(create_topic_rf(&cluster.bootstrap(0), "replicated", 1, 1).0, 36, "TOPIC_ALREADY_EXISTS");
    let (code, _) = create_topic_rf(&cluster.bootstrap(0), "single", 2, 1);
    assert_eq!(code, 0);
    let single = agreed_partitions(&cluster, "single");
    assert!(single.iter().all(|p| p.3.len() == 1 && p.4 == p.3));
}
