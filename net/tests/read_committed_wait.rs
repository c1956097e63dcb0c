//! A long-poll read_committed Fetch waits for the last stable offset, not the high watermark:
//! an open transaction's batches move the HW but must not answer it with nothing; the commit
//! marker (written through `txn_markers::write_txn_markers`, the coordinator's seam) moves the
//! LSO and answers it with the transaction's records. One real shard, a real partition log, the
//! real Fetch handler; no sockets.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::batch::{build_batch_of_size, set_producer};
use sluice_engine::error_code::ErrorCode;
use sluice_engine::log_config::LogConfig;
use sluice_engine::shard::{ShardMesh, ShardPool, ShardPoolConfig};
use sluice_engine::{ShardStorage, StorageOptions};
use sluice_net::broker_config::BrokerConfig;
use sluice_net::metadata_image::{MetadataCommand, MetadataImage};
use sluice_net::shard_context::ShardContext;

const TOPIC: &str = "committed";

async fn install_context(mesh: ShardMesh, dir: PathBuf) -> Rc<ShardContext> {
    let mut image = MetadataImage::new("read-committed-test".into());
    let create = MetadataCommand::CreateTopic {
        name: TOPIC.into(),
        id: [9; 16],
        partitions: 1,
        replication_factor: 1,
        configs: Default::default(),
        assignments: Vec::new(),
    };
    image.apply(&create, &LogConfig::default()).expect("topic");
    let storage = ShardStorage::open(0, 1, StorageOptions::new(&dir), true, &|_| None).await.expect("storage");
    // Records as bytes in the response (not sendfile markers), so the test can read them.
    let mut config = BrokerConfig::new(dir, "127.0.0.1".into(), 9092);
    config.fetch_sendfile = false;
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
    sluice_net::controller::ensure_partitions(&ctx, TOPIC, 0, 1).await;
    ctx
}

fn transactional_batch(producer_id: i64, records: usize) -> Vec<u8> {
    let mut batch = build_batch_of_size(0, records, 10, sluice_engine::clock::now_ms());
    batch[21..23].copy_from_slice(&0x10i16.to_be_bytes()); // attributes: transactional
    set_producer(&mut batch, producer_id, 0, 0);
    batch
}

fn read_committed_fetch() -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(20_000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_isolation_level(1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])])
}

#[test]
fn a_read_committed_long_poll_wakes_when_the_last_stable_offset_moves() {
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_path_buf();
    let config = ShardPoolConfig { shard_count: 1, name: "read-committed-test".into(), io_memory_bytes: 1 << 20 };
    let pool = ShardPool::start(&config, move |_shard, mesh: ShardMesh| {
        let dir = dir_path.clone();
        async move {
            let ctx = install_context(mesh, dir).await;
            let log = ctx.storage.partition(TOPIC, 0).expect("partition");
            log.append(&transactional_batch(7, 3), 0).await.expect("append"); // offsets 0..2, open
            assert_eq!((log.high_watermark(), log.last_stable_offset()), (3, 0));
            let started = Instant::now();
            let fetcher = ctx.clone();
            let fetch = glommio::spawn_local(async move {
                sluice_net::handlers::fetch::handle(&fetcher, read_committed_fetch(), 12, "PLAINTEXT", &|_| true).await
            });
            while log.last_stable_watermark().waiter_count() == 0 {
                assert!(started.elapsed() < Duration::from_secs(10), "the fetch never waited on the LSO");
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            // More of the open transaction: the HW moves, the LSO does not; the fetch waits on.
            log.append(&transactional_batch(8, 1), 0).await.expect("append"); // offset 3, open
            assert_eq!((log.high_watermark(), log.last_stable_offset()), (4, 0));
            let waiting_after_hw_moved = log.last_stable_watermark().waiter_count();
            let written = sluice_net::txn_markers::write_txn_markers(
                &ctx,
                7,
                0,
                0,
                true,
                vec![(TOPIC.to_string(), 0), ("missing".to_string(), 0)],
            )
            .await;
            let (response, _) = fetch.await;
            Some((started.elapsed(), waiting_after_hw_moved, written, response, log.last_stable_offset()))
        }
    })
    .expect("shard starts");
    let (answered_after, waiting_after_hw_moved, written, response, lso) =
        pool.join().into_iter().next().expect("shard 0").expect("no panic").expect("ran");
    assert_eq!(waiting_after_hw_moved, 1, "a HW move alone does not answer a read_committed fetch");
    assert_eq!(
        written,
        vec![
            ((TOPIC.to_string(), 0), ErrorCode::NONE),
            (("missing".to_string(), 0), ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
        ]
    );
    assert!(answered_after < Duration::from_secs(10), "answered when the marker moved the LSO ({answered_after:?})");
    assert_eq!(lso, 3, "held at producer 8's open transaction");
    let p = &response.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark, p.last_stable_offset), (0, 5, 3));
    assert_eq!(p.aborted_transactions.as_deref(), Some(&[][..]));
    let records = p.records.clone().unwrap_or_default();
    let stored: Vec<(i64, bool)> = sluice_engine::batch::batches(&records, sluice_engine::batch::Validation::Stored)
        .map(|b| b.expect("whole batch").1)
        .map(|info| (info.base_offset, info.is_control()))
        .collect();
    assert_eq!(stored, vec![(0, false)], "producer 7's committed batch, nothing at or past the LSO");
}
