//! An incremental fetch reads partitions the request does not list (they come from its
//! session), so the Fetch handler checks the principal's access to each of them on every
//! fetch: a topic whose READ was revoked after the session was created is answered
//! TOPIC_AUTHORIZATION_FAILED, not read. In process, the real handler, no sockets.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::batch::build_batch_of_size;
use sluice_engine::log_config::LogConfig;
use sluice_engine::shard::{ShardMesh, ShardPool, ShardPoolConfig};
use sluice_engine::{ShardStorage, StorageOptions};
use sluice_net::broker_config::BrokerConfig;
use sluice_net::metadata_image::{MetadataCommand, MetadataImage};
use sluice_net::shard_context::ShardContext;

const TOPIC: &str = "guarded";
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;

async fn install_context(mesh: ShardMesh, dir: std::path::PathBuf) -> Rc<ShardContext> {
    let mut image = MetadataImage::new("fetch-session-auth-test".into());
    let create = MetadataCommand::CreateTopic {
        name: TOPIC.into(),
        id: [7; 16],
        partitions: 2,
        replication_factor: 1,
        configs: Default::default(),
        assignments: Vec::new(),
    };
    image.apply(&create, &LogConfig::default()).expect("topic");
    let storage = ShardStorage::open(0, 1, StorageOptions::new(&dir), true, &|_| None).await.expect("storage");
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
    ctx.refresh_replica_states();
    sluice_net::controller::ensure_partitions(&ctx, TOPIC, 0, 2).await;
    ctx
}

fn fetch(session_id: i32, epoch: i32, partitions: &[i32]) -> FetchRequest {
    let topics = if partitions.is_empty() {
        vec![]
    } else {
        vec![FetchTopic::default().with_topic(TopicName(StrBytes::from_static_str(TOPIC))).with_partitions(
            partitions
                .iter()
                .map(|p| {
                    FetchPartition::default().with_partition(*p).with_fetch_offset(0).with_partition_max_bytes(1 << 20)
                })
                .collect(),
        )]
    };
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(topics)
}

/// (partition, error, record bytes) of every answered partition.
fn answered(response: &FetchResponse) -> Vec<(i32, i16, usize)> {
    response
        .responses
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| (p.partition_index, p.error_code, p.records.as_ref().map_or(0, |r| r.len())))
        })
        .collect()
}

#[test]
fn session_partitions_are_authorized_on_every_incremental_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_path_buf();
    let config = ShardPoolConfig { shard_count: 1, name: "fetch-session-auth".into(), io_memory_bytes: 1 << 20 };
    let pool = ShardPool::start(&config, move |_shard, mesh: ShardMesh| {
        let dir = dir_path.clone();
        async move {
            let ctx = install_context(mesh, dir).await;
            let log = ctx.storage.partition(TOPIC, 1).expect("partition 1");
            log.append(&build_batch_of_size(0, 1, 50, 1_000), 0).await.unwrap();
            let handle = |request, allowed: bool| {
                let ctx = ctx.clone();
                async move {
                    let may_fetch = move |_: &str| allowed;
                    sluice_net::handlers::fetch::handle(&ctx, request, 12, "PLAINTEXT", &may_fetch).await.0
                }
            };
            let created = handle(fetch(0, 0, &[0, 1]), true).await;
            let session = created.session_id;
            assert!(session > 0);
            assert_eq!(answered(&created).len(), 2);

            // READ revoked: the session's partitions are refused, not read.
            let refused = handle(fetch(session, 1, &[]), false).await;
            assert_eq!(refused.session_id, session);
            let refused = answered(&refused);
            assert_eq!(refused.len(), 2, "errors are always answered: {refused:?}");
            assert!(refused.iter().all(|(_, error, bytes)| *error == TOPIC_AUTHORIZATION_FAILED && *bytes == 0));

            // Granted again: the records come back (the error reset what the client was told).
            let allowed = answered(&handle(fetch(session, 2, &[]), true).await);
            assert!(allowed.iter().all(|(_, error, _)| *error == 0), "{allowed:?}");
            assert!(allowed.iter().any(|(p, _, bytes)| *p == 1 && *bytes > 0), "{allowed:?}");
        }
    })
    .expect("pool");
    for result in pool.join() {
        result.expect("shard");
    }
}
