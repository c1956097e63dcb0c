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

    // CreatePartitions and DeleteTopics through another node reach every node.
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    use kafka_protocol::messages::{CreatePartitionsRequest, DeleteTopicsRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let name = |n: &str| TopicName(StrBytes::from_string(n.to_string()));
    let grow = CreatePartitionsRequest::default()
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(name("replicated"))
            .with_count(5)
            .with_assignments(None)])
        .with_timeout_ms(10_000);
    let results = support::raw::RawClient::connect(&cluster.bootstrap(2)).send(&grow, 3).results;
    assert_eq!(results[0].error_code, 0, "{:?}", results[0].error_message);
    let grown = wait_until("5 partitions everywhere", SETTLE, || {
        let p = agreed_partitions(&cluster, "replicated");
        (p.len() == 5).then_some(p)
    });
    assert!(grown.iter().all(|p| p.3.len() == 3 && p.4.len() == 3), "{grown:?}");
    assert_eq!(&grown[..3], &parts[..], "existing partitions unchanged");
    let delete = DeleteTopicsRequest::default().with_topic_names(vec![name("single")]).with_timeout_ms(10_000);
    let response = support::raw::RawClient::connect(&cluster.bootstrap(1)).send(&delete, 5);
    assert_eq!(response.responses[0].error_code, 0);
    wait_until("the topic gone everywhere", SETTLE, || {
        cluster.running().iter().all(|i| partitions(&cluster.bootstrap(*i), "single").is_none()).then_some(())
    });
}

/// The active controller every running node agrees on.
fn agreed_controller(cluster: &Cluster, not: i32) -> i32 {
    wait_until("one active controller everyone running agrees on", SETTLE, || {
        let seen: Vec<i32> = cluster.running().iter().map(|i| describe_cluster(&cluster.bootstrap(*i)).0).collect();
        (seen[0] > 0 && seen[0] != not && seen.iter().all(|c| *c == seen[0])).then_some(seen[0])
    })
}

#[test]
fn killing_the_active_controller_elects_another_and_the_killed_node_catches_up() {
    let mut cluster = Cluster::start(3, 0);
    let first = agreed_controller(&cluster, -1);
    assert_eq!(create_topic_rf(&cluster.bootstrap(0), "before", 2, 3).0, 0);
    cluster.kill(cluster.index_of(first));
    let second = agreed_controller(&cluster, first);
    assert_ne!(second, first);
    let survivor = cluster.running()[0];
    assert_eq!(create_topic_rf(&cluster.bootstrap(survivor), "after", 2, 2).0, 0, "topic creation keeps working");
    // (Its replicas may include the dead node: it is fenced only after a whole session from
    // the new controller's election, as in Kafka.)
    let after = agreed_partitions(&cluster, "after");

    cluster.restart(cluster.index_of(first));
    let before = agreed_partitions(&cluster, "before");
    let after_again = agreed_partitions(&cluster, "after");
    // The same replicas (leaders and ISRs may have moved if it was fenced meanwhile).
    let replicas = |v: &[PartitionView]| v.iter().map(|p| p.3.clone()).collect::<Vec<_>>();
    assert_eq!(replicas(&after_again), replicas(&after));
    assert_eq!(before.len(), 2);
    wait_until("the restarted node listed again everywhere", SETTLE, || {
        cluster.running().iter().all(|i| metadata_broker_ids(&cluster.bootstrap(*i)) == vec![1, 2, 3]).then_some(())
    });
}

#[test]
fn a_killed_broker_is_fenced_and_its_partitions_get_new_leaders() {
    let mut cluster = Cluster::start(3, 0);
    let controller = agreed_controller(&cluster, -1);
    assert_eq!(create_topic_rf(&cluster.bootstrap(0), "led", 3, 3).0, 0);
    let parts = agreed_partitions(&cluster, "led");
    let victim = (1..=3).find(|id| *id != controller).unwrap();
    let led: Vec<PartitionView> = parts.iter().filter(|p| p.1 == victim).cloned().collect();
    assert!(!led.is_empty(), "round-robin gives every broker a partition to lead: {parts:?}");
    cluster.kill(cluster.index_of(victim));
    let survivor = cluster.index_of(controller);
    let moved = wait_until("the killed broker fenced and its partitions re-led", SETTLE, || {
        let now = partitions(&cluster.bootstrap(survivor), "led")?;
        let fenced = !metadata_broker_ids(&cluster.bootstrap(survivor)).contains(&victim);
        (fenced && now.iter().all(|p| p.1 != victim)).then_some(now)
    });
    for before in &led {
        let after = moved.iter().find(|p| p.0 == before.0).unwrap();
        assert_eq!(after.2, before.2 + 1, "leader epoch bumped: {before:?} -> {after:?}");
        assert!(after.1 != -1 && after.4.contains(&after.1) && !after.4.contains(&victim), "{after:?}");
    }
    // Partitions it only followed lose it from the ISR, leader unchanged.
    for p in moved.iter().filter(|p| !led.iter().any(|l| l.0 == p.0)) {
        let before = parts.iter().find(|b| b.0 == p.0).unwrap();
        assert_eq!((p.1, p.2), (before.1, before.2));
        assert!(!p.4.contains(&victim));
    }
    // It comes back: unfenced and listed again.
    cluster.restart(cluster.index_of(victim));
    wait_until("the restarted broker listed again", SETTLE, || {
        (metadata_broker_ids(&cluster.bootstrap(survivor)) == vec![1, 2, 3]).then_some(())
    });
}

#[test]
fn a_partition_without_an_eligible_replica_goes_leaderless_and_returns_with_its_broker() {
    let mut cluster = Cluster::start(3, 0);
    let controller = agreed_controller(&cluster, -1);
    let victim = (1..=3).find(|id| *id != controller).unwrap();
    // A one-replica partition on the victim (manual assignment through CreateTopics).
    let mut request = support::create_topics_request("lonely", -1, &[]);
    request.topics[0].replication_factor = -1;
    request.topics[0].assignments =
        vec![kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment::default()
            .with_partition_index(0)
            .with_broker_ids(vec![kafka_protocol::messages::BrokerId(victim)])];
    let response = support::raw::RawClient::connect(&cluster.bootstrap(0)).send(&request, 7);
    assert_eq!(response.topics[0].error_code, 0, "{:?}", response.topics[0].error_message);
    let before = agreed_partitions(&cluster, "lonely");
    assert_eq!((before[0].1, before[0].3.clone()), (victim, vec![victim]));
    cluster.kill(cluster.index_of(victim));
    let survivor = cluster.index_of(controller);
    let leaderless = wait_until("no leader (no unclean election)", SETTLE, || {
        let p = partitions(&cluster.bootstrap(survivor), "lonely")?;
        (p[0].1 == -1).then_some(p)
    });
    assert_eq!(
        (leaderless[0].2, leaderless[0].4.clone()),
        (before[0].2 + 1, vec![victim]),
        "the last ISR member stays"
    );
    cluster.restart(cluster.index_of(victim));
    let back = wait_until("its leader back", SETTLE, || {
        let p = partitions(&cluster.bootstrap(survivor), "lonely")?;
        (p[0].1 == victim).then_some(p)
    });
    assert_eq!(back[0].2, before[0].2 + 2);
}

#[test]
fn sigterm_moves_leaderships_away_before_stopping() {
    let mut cluster = Cluster::start(3, 0);
    let controller = agreed_controller(&cluster, -1);
    assert_eq!(create_topic_rf(&cluster.bootstrap(0), "moving", 3, 3).0, 0);
    agreed_partitions(&cluster, "moving");
    let leaving = (1..=3).find(|id| *id != controller).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(cluster.stop(cluster.index_of(leaving)), 0, "a clean stop");
    let survivor = cluster.index_of(controller);
    // Controlled shutdown fenced it before it stopped: no session timeout to wait for. The
    // survivor's shards apply the committed fence a moment later (under load, after the exit):
    // poll for well under the 2 s session timeout, so only the controlled fence can pass.
    wait_until("leaderships and ISR without the stopped node", Duration::from_millis(1000), || {
        let now = partitions(&cluster.bootstrap(survivor), "moving")?;
        now.iter().all(|p| p.1 != leaving && !p.4.contains(&leaving)).then_some(())
    });
    assert!(!metadata_broker_ids(&cluster.bootstrap(survivor)).contains(&leaving));
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn a_broker_only_node_joins_and_serves_metadata() {
    let cluster = Cluster::start_with(3, 1, &[("default.replication.factor", "3"), ("num.partitions", "2")]);
    let broker = cluster.index_of(4);
    let ids = wait_until("4 brokers in the broker-only node's Metadata", SETTLE, || {
        let ids = metadata_broker_ids(&cluster.bootstrap(broker));
        (ids.len() == 4).then_some(ids)
    });
    assert_eq!(ids, vec![1, 2, 3, 4]);
    assert!(cluster.nodes[broker].data_dir.join("__cluster_metadata-0").is_dir());
    let controller = agreed_controller(&cluster, -1);
    assert!((1..=3).contains(&controller), "a broker-only node is never the controller");
    // Through the broker-only node: forwarded to a voter.
    assert_eq!(create_topic_rf(&cluster.bootstrap(broker), "from-broker", 4, 2).0, 0);
    let parts = agreed_partitions(&cluster, "from-broker");
    assert!(parts.iter().any(|p| p.3.contains(&4)), "the broker-only node holds replicas too: {parts:?}");
    // Auto-creation uses default.replication.factor and num.partitions.
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let request = kafka_protocol::messages::MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(kafka_protocol::messages::TopicName(
            kafka_protocol::protocol::StrBytes::from_static_str("auto"),
        )))]))
        .with_allow_auto_topic_creation(true);
    let response = support::raw::RawClient::connect(&cluster.bootstrap(broker)).send(&request, 12);
    assert_eq!(response.topics[0].error_code, 0);
    let auto = agreed_partitions(&cluster, "auto");
    assert_eq!(auto.len(), 2);
    assert!(auto.iter().all(|p| p.3.len() == 3), "{auto:?}");
}

#[test]
fn garbage_on_the_controller_port_closes_the_connection_without_harm() {
    use std::io::{Read, Write};
    let cluster = Cluster::start(3, 0);
    let port = cluster.nodes[0].controller_port.unwrap();
    let garbage: Vec<Vec<u8>> = vec![
        vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],          // a length over the limit
        vec![0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o'], // a body that is not a request
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect(),
    ];
    for bytes in garbage {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = stream.write_all(&bytes);
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "the connection is closed without an answer");
    }
    // Still a working cluster.
    assert_eq!(create_topic_rf(&cluster.bootstrap(0), "still-fine", 1, 3).0, 0);
    agreed_partitions(&cluster, "still-fine");
}

#[test]
fn bad_cluster_configs_are_refused_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["--set", "process.roles=controller", "--set", "controller.quorum.voters=1@127.0.0.1:1"],
        vec!["--set", "process.roles=broker"],
        vec![
            "--set",
            "process.roles=broker,controller",
            "--set",
            "controller.quorum.voters=2@127.0.0.1:1,3@127.0.0.1:2",
        ],
        vec!["--set", "process.roles=broker", "--set", "controller.quorum.voters=1@127.0.0.1:1,2@127.0.0.1:2"],
        vec!["--set", "process.roles=broker,controller", "--set", "controller.quorum.voters=1@x"],
        vec!["--set", "broker.session.timeout.ms=0"],
        vec![
            "--set",
            "process.roles=broker,controller",
            "--set",
            "controller.quorum.voters=1@127.0.0.1:1,2@127.0.0.1:2",
            "--set",
            "listeners=PLAINTEXT://127.0.0.1:3,CONTROLLER://127.0.0.1:4",
            "--set",
            "controller.quorum.fetch.timeout.ms=5",
        ],
    ];
    for extra in cases {
        let broker = support::Broker::start_with(dir.path(), &extra);
        assert_eq!(broker.wait_exit(), 2, "{extra:?}");
    }
}

#[test]
fn a_voter_without_its_quorum_serves_nobody_and_still_stops_on_sigterm() {
    let mut cluster = Cluster::new(3, 0, &[]);
    cluster.spawn(0);
    cluster.process(0).wait_for("registering with the metadata quorum");
    assert!(std::net::TcpStream::connect(cluster.bootstrap(0)).is_err(), "no client before registration");
    let code = cluster.stop(0);
    assert_eq!(code, 0, "stopped before it opened anything: a clean stop");
    // With its quorum it starts (a majority suffices: two of three).
    cluster.spawn(0);
    cluster.spawn(1);
    cluster.wait_started(0);
    cluster.wait_started(1);
    assert_eq!(create_topic_rf(&cluster.bootstrap(0), "two-of-three", 1, 2).0, 0);
}

/// IncrementalAlterConfigs SET of one topic config through `bootstrap`: the error code.
fn set_topic_config(bootstrap: &str, topic: &str, key: &str, value: &str) -> i16 {
    use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::IncrementalAlterConfigsRequest;
    use kafka_protocol::protocol::StrBytes;
    let sb = |s: &str| StrBytes::from_string(s.to_string());
    let resource =
        AlterConfigsResource::default().with_resource_type(2).with_resource_name(sb(topic)).with_configs(vec![
            AlterableConfig::default().with_name(sb(key)).with_config_operation(0).with_value(Some(sb(value))),
        ]);
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![resource]);
    support::raw::RawClient::connect(bootstrap).send(&request, 1).responses[0].error_code
}

/// A topic's config overrides as DescribeConfigs on `bootstrap` reports them (dynamic ones).
fn topic_overrides(bootstrap: &str, topic: &str) -> Vec<(String, String)> {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::DescribeConfigsRequest;
    use kafka_protocol::protocol::StrBytes;
    let request = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_string(topic.to_string()))
        .with_configuration_keys(None)]);
    let response = support::raw::RawClient::connect(bootstrap).send(&request, 4);
    let mut out: Vec<(String, String)> = response.results[0]
        .configs
        .iter()
        .filter(|c| c.config_source == 1)
        .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()).unwrap_or_default()))
        .collect();
    out.sort();
    out
}

#[test]
fn config_updates_from_different_nodes_all_land() {
    let cluster = Cluster::start(3, 0);
    assert_eq!(create_topic_rf(&cluster.bootstrap(0), "configured", 1, 3).0, 0);
    agreed_partitions(&cluster, "configured");
    // Three read-modify-writes through three nodes at once: none is lost.
    let handles: Vec<_> = [("retention.ms", "1000"), ("segment.bytes", "1048576"), ("cleanup.policy", "compact")]
        .into_iter()
        .enumerate()
        .map(|(i, (k, v))| {
            let bootstrap = cluster.bootstrap(i);
            std::thread::spawn(move || set_topic_config(&bootstrap, "configured", k, v))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 0);
    }
    let expected: Vec<(String, String)> =
        [("cleanup.policy", "compact"), ("retention.ms", "1000"), ("segment.bytes", "1048576")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    for i in 0..3 {
        wait_until("every override on every node", SETTLE, || {
            (topic_overrides(&cluster.bootstrap(i), "configured") == expected).then_some(())
        });
    }
}

#[test]
fn a_whole_cluster_stopped_and_started_again_keeps_its_metadata() {
    let mut cluster = Cluster::start(3, 0);
    assert_eq!(create_topic_rf(&cluster.bootstrap(0), "kept", 3, 3).0, 0);
    agreed_partitions(&cluster, "kept");
    let cluster_id = metadata(&cluster.bootstrap(0), None).cluster_id.unwrap().to_string();
    assert_eq!(cluster_id.len(), 22);
    for i in 0..3 {
        assert_eq!(cluster.stop(i), 0);
    }
    for i in 0..3 {
        cluster.spawn(i);
    }
    for i in 0..3 {
        cluster.wait_started(i);
    }
    for i in 0..3 {
        assert_eq!(metadata(&cluster.bootstrap(i), None).cluster_id.unwrap().to_string(), cluster_id);
    }
    // Every broker was fenced on the way down; registering again unfences it, and partitions
    // whose ISR it is in get a leader back.
    let parts = wait_until("every partition led again", SETTLE, || {
        let p = agreed_partitions(&cluster, "kept");
        p.iter().all(|p| p.1 > 0).then_some(p)
    });
    assert_eq!(parts.len(), 3);
    wait_until("3 brokers", SETTLE, || (metadata_broker_ids(&cluster.bootstrap(0)) == vec![1, 2, 3]).then_some(()));
}

#[test]
fn a_broker_only_node_heartbeats_to_stay_unfenced_and_is_fenced_when_killed() {
    let mut cluster = Cluster::start(3, 1);
    // Two sessions (2 s each) without anything else: still listed, so its heartbeats reach the
    // active controller (a bounded check of something that must not happen).
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(metadata_broker_ids(&cluster.bootstrap(0)), vec![1, 2, 3, 4]);
    let mut request = support::create_topics_request("on-four", -1, &[]);
    request.topics[0].replication_factor = -1;
    request.topics[0].assignments =
        vec![kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment::default()
            .with_partition_index(0)
            .with_broker_ids(vec![kafka_protocol::messages::BrokerId(4), kafka_protocol::messages::BrokerId(1)])];
    let response = support::raw::RawClient::connect(&cluster.bootstrap(3)).send(&request, 7);
    assert_eq!(response.topics[0].error_code, 0, "{:?}", response.topics[0].error_message);
    let before = agreed_partitions(&cluster, "on-four");
    assert_eq!((before[0].1, before[0].3.clone()), (4, vec![4, 1]), "the manual assignment is kept");
    cluster.kill(cluster.index_of(4));
    let after = wait_until("the broker-only node fenced and its partition re-led", SETTLE, || {
        let p = partitions(&cluster.bootstrap(0), "on-four")?;
        (p[0].1 == 1).then_some(p)
    });
    assert_eq!((after[0].2, after[0].4.clone()), (before[0].2 + 1, vec![1]));
    assert_eq!(metadata_broker_ids(&cluster.bootstrap(0)), vec![1, 2, 3]);
    let response = metadata(&cluster.bootstrap(0), Some(&["on-four"]));
    let offline: Vec<i32> = response.topics[0].partitions[0].offline_replicas.iter().map(|b| b.0).collect();
    assert_eq!(offline, vec![4], "a fenced broker's replica is offline");
}

#[test]
fn a_node_far_behind_catches_up_on_restart() {
    let mut cluster = Cluster::start(3, 0);
    assert_eq!(create_topic_rf(&cluster.bootstrap(0), "busy", 1, 2).0, 0);
    agreed_partitions(&cluster, "busy");
    cluster.kill(2);
    // More commands than the bridge's queue holds (1024) while it is down.
    for i in 0..1100 {
        assert_eq!(set_topic_config(&cluster.bootstrap(0), "busy", "retention.ms", &(1000 + i).to_string()), 0);
    }
    cluster.restart(2);
    // It serves only once caught up with its registration, so the last value is there at once.
    let overrides = topic_overrides(&cluster.bootstrap(2), "busy");
    assert_eq!(overrides, vec![("retention.ms".to_string(), "2099".to_string())]);
    assert_eq!(create_topic_rf(&cluster.bootstrap(2), "after-catch-up", 1, 3).0, 0);
    agreed_partitions(&cluster, "after-catch-up");
}

#[test]
fn a_node_behind_the_snapshot_is_sent_the_snapshot() {
    let mut cluster = Cluster::start_with(3, 0, &[("sluice.metadata.snapshot.entries", "50")]);
    assert_eq!(create_topic_rf(&cluster.bootstrap(0), "snapped", 1, 2).0, 0);
    agreed_partitions(&cluster, "snapped");
    cluster.kill(2);
    // The others snapshot and drop their log several times meanwhile.
    for i in 0..300 {
        assert_eq!(set_topic_config(&cluster.bootstrap(0), "snapped", "retention.ms", &(1000 + i).to_string()), 0);
    }
    cluster.spawn(2);
    cluster.process(2).wait_for("installed a metadata snapshot");
    cluster.wait_started(2);
    assert_eq!(
        topic_overrides(&cluster.bootstrap(2), "snapped"),
        vec![("retention.ms".to_string(), "1299".to_string())]
    );
    assert_eq!(create_topic_rf(&cluster.bootstrap(2), "after-snapshot", 1, 3).0, 0);
    agreed_partitions(&cluster, "after-snapshot");
    cluster.kill(0);
    cluster.restart(0);
    agreed_partitions(&cluster, "after-snapshot");
}

#[test]
fn nodes_with_several_shards_apply_metadata_on_every_shard() {
    let mut cluster = Cluster::new(3, 0, &[]);
    cluster.cores = 2;
    for i in 0..3 {
        cluster.spawn(i);
    }
    for i in 0..3 {
        cluster.wait_started(i);
    }
    assert_eq!(create_topic_rf(&cluster.bootstrap(1), "sharded", 6, 3).0, 0);
    let parts = agreed_partitions(&cluster, "sharded");
    assert_eq!(parts.len(), 6);
    // Every node holds every partition (RF 3 of 3), each created by its owner shard.
    for node in &cluster.nodes {
        for p in 0..6 {
            let dir = node.data_dir.join(format!("sharded-{p}"));
            wait_until(&format!("{}", dir.display()), SETTLE, || dir.is_dir().then_some(()));
        }
    }
}

#[test]
fn producer_ids_from_different_nodes_never_collide() {
    use kafka_protocol::messages::InitProducerIdRequest;
    let cluster = Cluster::start(3, 0);
    let mut ids = Vec::new();
    for round in 0..3 {
        for i in 0..3 {
            let request = InitProducerIdRequest::default()
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(kafka_protocol::messages::ProducerId(-1));
            let response = support::raw::RawClient::connect(&cluster.bootstrap(i)).send(&request, 4);
            assert_eq!(response.error_code, 0, "round {round} node {i}");
            ids.push(response.producer_id.0);
        }
    }
    let distinct: std::collections::BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "{ids:?}");
    assert!(ids.iter().all(|id| *id >= 0));
}
