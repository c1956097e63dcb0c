//! A long-poll Fetch over partitions of several shards registers a waiter on each partition's
//! owner shard. When the fetch answers (one partition got data), the waiters it left on other
//! shards must end with it, not stay registered until their own `fetch.max.wait` runs out (up
//! to 30 s each: a busy consumer piled them up). Two real shards, real partition logs, the real
//! Fetch handler; no sockets.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::batch::build_batch_of_size;
use sluice_engine::log_config::LogConfig;
use sluice_engine::shard::{ShardMesh, ShardPool, ShardPoolConfig};
use sluice_engine::{owner_shard, ShardStorage, StorageOptions};
use sluice_net::broker_config::BrokerConfig;
use sluice_net::metadata_image::{MetadataCommand, MetadataImage};
use sluice_net::shard_context::ShardContext;

const TOPIC: &str = "waited";
const SHARDS: usize = 2;

thread_local! {
    static STOP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

async fn install_context(shard: usize, mesh: ShardMesh, dir: PathBuf) -> Rc<ShardContext> {
    let mut image = MetadataImage::new("waiter-test-cluster".into());
    let create = MetadataCommand::CreateTopic {
        name: TOPIC.into(),
        id: [7; 16],
        partitions: SHARDS as i32,
        replication_factor: 1,
        configs: Default::default(),
        assignments: Vec::new(),
    };
    image.apply(&create, &LogConfig::default()).expect("topic");
    let storage = ShardStorage::open(shard, SHARDS, StorageOptions::new(&dir), true, &|_| None).await.expect("storage");
    let ctx = Rc::new(ShardContext {
        shard,
        mesh,
        storage,
        image: RefCell::new(image),
        config: Arc::new(BrokerConfig::new(dir, "127.0.0.1".into(), 9092)),
        controller_lock: glommio::sync::Semaphore::new(1),
        single_node_replica_state: Rc::new(sluice_engine::replica_state::ReplicaState::single_node(1)),
        replica_states: Default::default(),
        fetch_sessions: ShardContext::new_fetch_sessions(Default::default(), shard, SHARDS),
    });
    ShardContext::install(ctx.clone());
    sluice_net::controller::ensure_partitions(&ctx, TOPIC, 0, SHARDS as i32).await;
    ctx
}

fn fetch_request(partitions: &[i32]) -> FetchRequest {
    FetchRequest::default().with_max_wait_ms(20_000).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(vec![
        FetchTopic::default().with_topic(TopicName(StrBytes::from_static_str(TOPIC))).with_partitions(
            partitions
                .iter()
                .map(|p| {
                    FetchPartition::default().with_partition(*p).with_fetch_offset(0).with_partition_max_bytes(1 << 20)
                })
                .collect(),
        ),
    ])
}

#[test]
fn an_answered_fetch_leaves_no_waiter_on_another_shard() {
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_path_buf();
    let ready = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let config = ShardPoolConfig { shard_count: SHARDS, name: "waiter-test".into(), io_memory_bytes: 1 << 20 };
    let pool = ShardPool::start(&config, move |shard, mesh: ShardMesh| {
        let dir = dir_path.clone();
        let ready = ready.clone();
        async move {
            let ctx = install_context(shard, mesh.clone(), dir).await;
            ready.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // Every shard answers calls before the fetch starts (a test-only wait).
            while ready.load(std::sync::atomic::Ordering::SeqCst) < SHARDS {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            if shard != 0 {
                while !STOP.with(|s| s.get()) {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                return None;
            }
            let local = (0..SHARDS as i32).find(|p| owner_shard(TOPIC, *p, SHARDS) == 0).expect("a local partition");
            let remote = (0..SHARDS as i32).find(|p| owner_shard(TOPIC, *p, SHARDS) == 1).expect("a remote partition");
            let remote_waiters = |mesh: ShardMesh| async move {
                mesh.call(1, move || async move {
                    let log = ShardContext::current().storage.partition(TOPIC, remote).expect("remote partition");
                    log.high_watermark_watermark().waiter_count()
                })
                .await
                .expect("shard 1 answers")
            };
            let started = Instant::now();
            let fetcher = ctx.clone();
            let fetch = glommio::spawn_local(async move {
                sluice_net::handlers::fetch::handle(&fetcher, fetch_request(&[local, remote]), 12, "PLAINTEXT", &|_| {
                    true
                })
                .await
            });
            // Data arrives on the local partition once the fetch waits on both shards.
            let mut registered = remote_waiters(mesh.clone()).await;
            while registered == 0 {
                assert!(started.elapsed() < Duration::from_secs(10), "the fetch never waited on shard 1");
                glommio::timer::sleep(Duration::from_millis(1)).await;
                registered = remote_waiters(mesh.clone()).await;
            }
            let log = ctx.storage.partition(TOPIC, local).expect("local partition");
            log.append(&build_batch_of_size(0, 1, 10, 1_000), 0).await.expect("append");
            let (response, _) = fetch.await;
            let answered_after = started.elapsed();
            let answered: Vec<i32> = response.responses[0]
                .partitions
                .iter()
                .filter(|p| p.records.as_ref().is_some_and(|r| !r.is_empty()))
                .map(|p| p.partition_index)
                .collect();
            // The remote waiter ends once the fetch answered: its cancellation crosses shards,
            // so give it a few moments, far less than the 20 s it would otherwise wait.
            let mut waiters_left = remote_waiters(mesh.clone()).await;
            for _ in 0..200 {
                if waiters_left == 0 {
                    break;
                }
                glommio::timer::sleep(Duration::from_millis(5)).await;
                waiters_left = remote_waiters(mesh.clone()).await;
            }
            let _ = mesh.call(1, || async { STOP.with(|s| s.set(true)) }).await;
            Some((answered_after, answered, local, waiters_left))
        }
    })
    .expect("shards start");
    let results = pool.join();
    let (answered_after, answered, local, waiters_left) =
        results.into_iter().next().expect("shard 0").expect("no panic").expect("shard 0 ran the fetch");
    assert!(answered_after < Duration::from_secs(10), "the fetch answered when data arrived ({answered_after:?})");
    assert_eq!(answered, vec![local], "the partition that got data answered");
    assert_eq!(waiters_left, 0, "the fetch left a waiter registered on the other shard");
}
