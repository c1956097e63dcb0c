//! The leader's side of replication in process: one shard leading a partition with replicas
//! [1, 2, 3], the real Fetch and Produce handlers, followers played by hand-made replica
//! fetches. Replica fetches read to the log end and move the high watermark, consumers read
//! below it, KIP-320 diverging epochs, the leader-only and epoch checks, and acks=all
//! produces completing only when the followers have the records. No sockets.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{BrokerId, FetchRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::batch::build_batch_of_size;
use sluice_engine::log_config::LogConfig;
use sluice_engine::shard::{ShardMesh, ShardPool, ShardPoolConfig};
use sluice_engine::{ShardStorage, StorageOptions};
use sluice_net::broker_config::BrokerConfig;
use sluice_net::metadata_image::{BrokerRegistration, MetadataCommand, MetadataImage, PartitionAssignment};
use sluice_net::produce_placement::ProducePlacement;
use sluice_net::shard_context::ShardContext;

const TOPIC: &str = "replicated";
const NONE: i16 = 0;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const REQUEST_TIMED_OUT: i16 = 7;
const UNKNOWN_LEADER_EPOCH: i16 = 75;

async fn install_context(mesh: ShardMesh, dir: std::path::PathBuf) -> Rc<ShardContext> {
    let mut image = MetadataImage::new("replica-fetch-test".into());
    let defaults = LogConfig::default();
    for id in 1..=3 {
        let broker = BrokerRegistration {
            id,
            host: "127.0.0.1".into(),
            port: 9092 + id,
            rack: None,
            fenced: false,
            listeners: Vec::new(),
        };
        image.apply(&MetadataCommand::RegisterBroker(broker), &defaults).expect("broker");
    }
    let create = MetadataCommand::CreateTopic {
        name: TOPIC.into(),
        id: [9; 16],
        partitions: 1,
        replication_factor: 3,
        configs: [("min.insync.replicas".to_string(), "2".to_string())].into(),
        assignments: vec![PartitionAssignment::new(vec![1, 2, 3])],
    };
    image.apply(&create, &defaults).expect("topic");
    let elsewhere = MetadataCommand::CreateTopic {
        name: "elsewhere".into(),
        id: [8; 16],
        partitions: 1,
        replication_factor: 2,
        configs: Default::default(),
        // Not on this node: a follower would answer a v11+ consumer's fetch itself (KIP-392).
        assignments: vec![PartitionAssignment::new(vec![2, 3])],
    };
    image.apply(&elsewhere, &defaults).expect("topic");
    let storage = ShardStorage::open(0, 1, StorageOptions::new(&dir), true, &|_| None).await.expect("storage");
    let mut config = BrokerConfig::new(dir, "127.0.0.1".into(), 9092);
    config.node_id = 1;
    config.fetch_sendfile = false; // record bytes in the response, not file markers
    let ctx = Rc::new(ShardContext {
        shard: 0,
        mesh,
        storage,
        image: RefCell::new(image),
        config: Arc::new(config),
        controller_lock: glommio::sync::Semaphore::new(1),
        single_node_replica_state: Rc::new(sluice_engine::replica_state::ReplicaState::single_node(1)),
        replica_states: Default::default(),
        fetch_sessions: ShardContext::new_fetch_sessions(Default::default(), 0, 1),
    });
    ShardContext::install(ctx.clone());
    ctx.refresh_replica_states();
    sluice_net::controller::ensure_partitions(&ctx, TOPIC, 0, 1).await;
    sluice_net::replication::reconcile(&ctx);
    ctx
}

/// A Fetch (v12) of the partition at `offset` by `replica_id` (-1: a consumer).
fn fetch(replica_id: i32, offset: i64, last_fetched_epoch: i32, current_leader_epoch: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(replica_id))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_last_fetched_epoch(last_fetched_epoch)
                .with_current_leader_epoch(current_leader_epoch)
                .with_partition_max_bytes(1 << 20)])])
}

async fn fetched(ctx: &Rc<ShardContext>, request: FetchRequest) -> PartitionData {
    let (response, files) = sluice_net::handlers::fetch::handle(ctx, request, 12, "PLAINTEXT", &|_| true).await;
    assert!(files.is_empty(), "sendfile is off");
    response.responses[0].partitions[0].clone()
}

fn produce_request(timeout_ms: i32) -> ProduceRequest {
    produce_request_to(TOPIC, timeout_ms)
}

fn produce_request_to(topic: &'static str, timeout_ms: i32) -> ProduceRequest {
    let batch = build_batch_of_size(0, 2, 20, 1_000);
    ProduceRequest::default().with_acks(-1).with_timeout_ms(timeout_ms).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(StrBytes::from_static_str(topic))).with_partition_data(vec![
            PartitionProduceData::default().with_index(0).with_records(Some(Bytes::from(batch))),
        ]),
    ])
}

#[test]
fn a_leader_serves_followers_to_its_log_end_and_moves_its_high_watermark_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_path_buf();
    let config = ShardPoolConfig { shard_count: 1, name: "replica-fetch-test".into(), io_memory_bytes: 1 << 20 };
    let pool = ShardPool::start(&config, move |_shard, mesh: ShardMesh| {
        let dir = dir_path.clone();
        async move {
            let ctx = install_context(mesh, dir).await;
            let log = ctx.storage.partition(TOPIC, 0).expect("the partition");
            assert!(!log.high_watermark_follows_durable_end(), "replicated: the HW is replication's");
            for i in 0..3 {
                log.append(&build_batch_of_size(0, 2, 50, 1_000 + i), 0).await.unwrap();
            }
            let log_end = log.log_end_offset();
            assert_eq!((log_end, log.high_watermark()), (6, 0));

            // A consumer sees nothing below the HW; a follower reads to the log end.
            let consumer = fetched(&ctx, fetch(-1, 0, -1, -1)).await;
            assert_eq!((consumer.error_code, consumer.high_watermark), (NONE, 0));
            assert!(consumer.records.unwrap_or_default().is_empty());
            let follower = fetched(&ctx, fetch(2, 0, -1, 0)).await;
            assert_eq!(follower.error_code, NONE);
            let records = follower.records.unwrap_or_default();
            assert_eq!(sluice_engine::batch::batches(&records, sluice_engine::batch::Validation::Stored).count(), 3);
            // The HW is the slowest in-sync replica: 3 at the end, 2 still at 0.
            assert_eq!(fetched(&ctx, fetch(3, log_end, 0, 0)).await.high_watermark, 0);
            assert_eq!(fetched(&ctx, fetch(2, 4, 0, 0)).await.high_watermark, 4);
            assert_eq!(fetched(&ctx, fetch(2, log_end, 0, 0)).await.high_watermark, log_end);
            let consumer = fetched(&ctx, fetch(-1, 0, -1, -1)).await;
            assert_eq!(consumer.high_watermark, log_end);
            assert!(!consumer.records.unwrap_or_default().is_empty());

            // KIP-320: a follower with more of epoch 0 than the leader is told where it ends.
            let diverged = fetched(&ctx, fetch(2, log_end + 5, 0, 0)).await;
            assert_eq!((diverged.diverging_epoch.epoch, diverged.diverging_epoch.end_offset), (0, log_end));
            assert!(diverged.records.unwrap_or_default().is_empty());
            let in_line = fetched(&ctx, fetch(2, log_end, 0, 0)).await;
            assert_eq!((in_line.diverging_epoch.epoch, in_line.diverging_epoch.end_offset), (-1, -1));

            // A partition other brokers hold: its leader, epoch and endpoint (KIP-951).
            let mut request = fetch(-1, 0, -1, -1);
            request.topics[0].topic_id = uuid::Uuid::from_bytes([8; 16]); // v13+: by topic id
            let (response, _) = sluice_net::handlers::fetch::handle(&ctx, request, 16, "PLAINTEXT", &|_| true).await;
            let partition = &response.responses[0].partitions[0];
            assert_eq!(partition.error_code, NOT_LEADER_OR_FOLLOWER);
            assert_eq!((partition.current_leader.leader_id.0, partition.current_leader.leader_epoch), (2, 0));
            let endpoints: Vec<(i32, i32)> = response.node_endpoints.iter().map(|e| (e.node_id.0, e.port)).collect();
            assert_eq!(endpoints, vec![(2, 9094)]);
            let mut placement = ProducePlacement::default();
            let ack = sluice_net::handlers::produce::handle(
                &ctx,
                produce_request_to("elsewhere", 1_000),
                10,
                &mut placement,
                "PLAINTEXT".into(),
            )
            .await;
            let response = ack.await.expect("acks=all answers");
            let partition = &response.responses[0].partition_responses[0];
            assert_eq!(partition.error_code, NOT_LEADER_OR_FOLLOWER);
            assert_eq!((partition.current_leader.leader_id.0, partition.current_leader.leader_epoch), (2, 0));
            let endpoints: Vec<(i32, i32)> = response.node_endpoints.iter().map(|e| (e.node_id.0, e.port)).collect();
            assert_eq!(endpoints, vec![(2, 9094)]);

            // Not a replica; a leader epoch from the future.
            assert_eq!(fetched(&ctx, fetch(9, 0, -1, -1)).await.error_code, NOT_LEADER_OR_FOLLOWER);
            assert_eq!(fetched(&ctx, fetch(2, 0, -1, 5)).await.error_code, UNKNOWN_LEADER_EPOCH);

            // acks=all completes once both followers fetched past the append.
            let mut placement = ProducePlacement::default();
            let ack = sluice_net::handlers::produce::handle(
                &ctx,
                produce_request(30_000),
                9,
                &mut placement,
                "PLAINTEXT".into(),
            )
            .await;
            let ack = glommio::spawn_local(ack);
            glommio::timer::sleep(Duration::from_millis(100)).await;
            assert_eq!(log.log_end_offset(), log_end + 2);
            assert_eq!(log.high_watermark(), log_end, "not replicated yet");
            fetched(&ctx, fetch(2, log_end + 2, 0, 0)).await;
            fetched(&ctx, fetch(3, log_end + 2, 0, 0)).await;
            let response = ack.await.expect("acks=all answers");
            let partition = &response.responses[0].partition_responses[0];
            assert_eq!((partition.error_code, partition.base_offset), (NONE, log_end));

            // Nobody fetches: the request's timeout.
            let ack = sluice_net::handlers::produce::handle(
                &ctx,
                produce_request(200),
                9,
                &mut placement,
                "PLAINTEXT".into(),
            )
            .await;
            let response = ack.await.expect("acks=all answers");
            assert_eq!(response.responses[0].partition_responses[0].error_code, REQUEST_TIMED_OUT);
            let counters = sluice_net::replication::counters::snapshot();
            assert_eq!(counters.under_replicated_partitions, 0);
            Some(())
        }
    })
    .expect("shards start");
    let results = pool.join();
    results.into_iter().next().expect("shard 0").expect("no panic").expect("ran");
}
