//! Applies metadata commands: validated and persisted on the controller shard (shard 0), then
//! applied on every shard, each of which creates, reconfigures or deletes the partitions it
//! owns. A command's caller gets its answer only after every shard applied it, so a topic is
//! usable everywhere once CreateTopics returns.
//!
//! Owns: `<data-dir>/metadata.json` (the persisted image, rewritten atomically) and the order of
//! commands. Must never: persist a command that failed validation, or answer before the image
//! is durable.
//!
//! In a cluster (`BrokerConfig::quorum`), the same entry points go to the controller thread
//! ([`crate::controller_quorum`]) instead: a command is committed by the quorum (forwarded to
//! the active controller when this node is not it), and the caller is answered once every
//! local shard applied it ([`crate::controller_quorum::bridge`]); `apply_on_shard` stays the
//! one per-shard entry point, fed in log order.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use sluice_engine::checkpoint_file::{is_storage_full, write_atomic};
use sluice_engine::log_config::LogConfig;

use crate::metadata_image::{codes, MetadataCommand, MetadataError, MetadataImage};
use crate::shard_context::ShardContext;

pub const CONTROLLER_SHARD: usize = 0;
pub const METADATA_FILE: &str = "metadata.json";

pub fn metadata_path(data_dir: &Path) -> PathBuf {
    data_dir.join(METADATA_FILE)
}

/// Loads the persisted image (main thread, at start-up; may block), or a fresh one with a new
/// cluster id.
pub fn load_or_init(data_dir: &Path) -> Result<MetadataImage, String> {
    let path = metadata_path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MetadataImage::new(new_cluster_id())),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Kafka cluster ids are a UUID in URL-safe base64 without padding (22 characters).
pub fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut bits: u128 = u128::from_be_bytes(bytes);
    let mut out = Vec::with_capacity(22);
    for _ in 0..22 {
        out.push(ALPHABET[((bits >> 122) & 63) as usize]);
        bits <<= 6;
    }
    String::from_utf8(out).expect("ascii")
}

/// A fresh topic id (never the all-zero or "metadata topic" ids).
pub fn new_topic_id() -> [u8; 16] {
    uuid::Uuid::new_v4().into_bytes()
}

/// Submits a command from any shard; resolves once every shard applied it. In a cluster the
/// quorum orders commands, so submissions do not wait for each other's round trips here.
pub async fn submit(command: MetadataCommand) -> Result<(), MetadataError> {
    if ShardContext::current().config.quorum.is_some() {
        let ctx = ShardContext::current();
        let result = ctx
            .mesh
            .call(CONTROLLER_SHARD, move || async move {
                let ctx = ShardContext::current();
                commit_to_quorum(&ctx, command).await.map(|_| ())
            })
            .await;
        return result.unwrap_or_else(|e| Err(MetadataError { code: -1, message: e.to_string() }));
    }
    on_controller_locked(move |ctx| async move { commit_locked(&ctx, command).await }).await
}

/// Validates a command against the controller's image without applying it (validate-only). In
/// a cluster, against this node's image, with the replicas the active controller would place.
pub async fn validate(command: MetadataCommand) -> Result<(), MetadataError> {
    let ctx = ShardContext::current();
    let result = ctx
        .mesh
        .call(CONTROLLER_SHARD, move || async move {
            let ctx = ShardContext::current();
            let image = ctx.image.borrow();
            let command = if ctx.config.quorum.is_some() {
                crate::placement::assign_new_partitions(command, &image)?
            } else {
                command
            };
            image.validate(&command, &ctx.config.default_log_config)
        })
        .await;
    result.unwrap_or_else(|e| Err(MetadataError { code: -1, message: e.to_string() }))
}

/// Takes the controller lock: metadata commands are applied one at a time.
async fn lock(ctx: &ShardContext) -> Result<glommio::sync::Permit<'_>, MetadataError> {
    ctx.controller_lock.acquire_permit(1).await.map_err(|_| MetadataError { code: -1, message: "shutting down".into() })
}

/// Validates, persists and broadcasts a command. The caller holds `controller_lock`.
async fn commit_locked(ctx: &ShardContext, command: MetadataCommand) -> Result<(), MetadataError> {
    if ctx.config.quorum.is_some() {
        return commit_to_quorum(ctx, command).await.map(|_| ());
    }
    let defaults = ctx.config.default_log_config.clone();
    let mut next = ctx.image.borrow().clone();
    next.apply(&command, &defaults)?;
    let json = serde_json::to_vec_pretty(&next).map_err(|e| MetadataError { code: -1, message: e.to_string() })?;
    let path = metadata_path(&ctx.config.data_dir);
    let mut persisted = write_atomic(&path, &json).await;
    if let (Err(e), MetadataCommand::DeleteTopic { name }) = (&persisted, &command) {
        if is_storage_full(e) {
            // The disk is full, and deleting a topic is how an operator frees it: delete the
            // topic's partitions first, then persist. A crash in between leaves the topic in
            // the metadata with empty partitions (recreated at start-up), never data without
            // a topic.
            tracing::warn!(topic = %name, "disk full: deleting the topic's partitions before persisting its deletion");
            for shard in 0..ctx.mesh.shard_count() {
                let name = name.clone();
                let deleted = ctx.mesh.call(shard, move || async move { delete_topic_partitions(&name).await }).await;
                if let Err(e) = deleted {
                    tracing::error!(shard, error = %e, "a shard could not delete a topic's partitions");
                }
            }
            persisted = write_atomic(&path, &json).await;
        }
    }
    persisted.map_err(|e| MetadataError { code: 56, message: format!("persisting metadata: {e}") })?;
    for shard in 0..ctx.mesh.shard_count() {
        let command = command.clone();
        let applied = ctx.mesh.call(shard, move || async move { apply_on_shard(command).await }).await;
        if let Err(e) = applied {
            sluice_engine::error_limited!(shard, error = %e, "a shard could not apply a metadata command");
        }
    }
    tracing::info!(?command, "metadata command applied");
    Ok(())
}

/// In a cluster (on the controller shard): hands the command to the controller thread, then
/// waits until every local shard applied it. A full queue or a late answer is
/// REQUEST_TIMED_OUT; no reachable active controller NOT_CONTROLLER (after retries).
async fn commit_to_quorum(
    ctx: &ShardContext,
    command: MetadataCommand,
) -> Result<crate::controller_quorum::Submitted, MetadataError> {
    let timeout = std::time::Duration::from_millis(ctx.config.quorum.as_ref().map_or(30_000, |q| q.request_timeout_ms));
    commit_to_quorum_within(command, timeout).await
}

/// [`commit_to_quorum`] looking for an active controller for at most `timeout`. The controller
/// thread answers within it, so no waiter of a shard outlives it by much.
async fn commit_to_quorum_within(
    command: MetadataCommand,
    timeout: std::time::Duration,
) -> Result<crate::controller_quorum::Submitted, MetadataError> {
    use crate::controller_quorum::node::{handle, Call};
    let handle = handle().ok_or_else(|| MetadataError::new(codes::NOT_CONTROLLER, "no controller thread"))?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    handle
        .calls
        .try_send(Call::Submit { command, timeout, reply })
        .map_err(|_| MetadataError::new(codes::REQUEST_TIMED_OUT, "the controller's queue is full or closed"))?;
    // The controller thread bounds its own wait by the request timeout; this one is a backstop.
    let answered = futures_lite::future::or(async { answer.await.ok() }, async {
        glommio::timer::sleep(timeout + std::time::Duration::from_secs(1)).await;
        None
    })
    .await;
    let submitted =
        answered.ok_or_else(|| MetadataError::new(codes::REQUEST_TIMED_OUT, "no answer from the controller"))??;
    crate::controller_quorum::bridge::wait_applied(submitted.index, timeout).await?;
    Ok(submitted)
}

/// Controlled shutdown (SIGTERM, from the main thread's shutdown): asks the active controller
/// to fence this broker so its leaderships move, waiting at most `wait`. Blocks: main thread
/// only. A no-op on a single node.
pub fn controlled_shutdown_blocking(wait: std::time::Duration) {
    use crate::controller_quorum::node::{handle, Call};
    let Some(handle) = handle() else { return };
    let (reply, answer) = tokio::sync::oneshot::channel();
    if handle.calls.try_send(Call::ControlledShutdown { wait, reply }).is_err() {
        return;
    }
    match answer.blocking_recv() {
        Ok(Ok(())) => tracing::info!("controlled shutdown: leaderships moved"),
        Ok(Err(e)) => tracing::warn!(code = e.code, error = %e.message, "controlled shutdown incomplete"),
        Err(_) => tracing::warn!("controlled shutdown: no answer from the controller thread"),
    }
    crate::controller_quorum::bridge::stop();
}

/// Read-modify-write of a topic's config overrides, run on the controller shard under its
/// lock so concurrent updates (IncrementalAlterConfigs) never overwrite each other. `update`
/// gets the current overrides and the broker defaults and returns the new overrides.
pub async fn update_topic_configs<F>(topic: String, validate_only: bool, update: F) -> Result<(), MetadataError>
where
    F: Fn(
            &std::collections::BTreeMap<String, String>,
            &LogConfig,
        ) -> Result<std::collections::BTreeMap<String, String>, MetadataError>
        + Send
        + 'static,
{
    on_controller_locked(move |ctx| async move {
        if ctx.config.quorum.is_some() && !validate_only {
            // This node's image may lag the log: compare-and-set, re-read on a conflict.
            for _ in 0..CONFIG_UPDATE_ATTEMPTS {
                let expected = ctx.image.borrow().topic(&topic).map(|t| t.configs.clone()).ok_or_else(|| {
                    MetadataError::new(
                        codes::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("The topic '{topic}' does not exist."),
                    )
                })?;
                let configs = update(&expected, &ctx.config.default_log_config)?;
                let command = MetadataCommand::SetTopicConfigsIfUnchanged { name: topic.clone(), expected, configs };
                match commit_to_quorum(&ctx, command).await {
                    Err(e) if e.code == codes::INVALID_UPDATE_VERSION => {
                        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    other => return other.map(|_| ()),
                }
            }
            return Err(MetadataError::new(
                codes::REQUEST_TIMED_OUT,
                format!("the configs of topic {topic} kept changing concurrently"),
            ));
        }
        let current = ctx.image.borrow().topic(&topic).map(|t| t.configs.clone()).ok_or_else(|| MetadataError {
            code: crate::metadata_image::codes::UNKNOWN_TOPIC_OR_PARTITION,
            message: format!("The topic '{topic}' does not exist."),
        })?;
        let configs = update(&current, &ctx.config.default_log_config)?;
        let command = MetadataCommand::SetTopicConfigs { name: topic, configs };
        if validate_only {
            let image = ctx.image.borrow();
            image.validate(&command, &ctx.config.default_log_config)
        } else {
            commit_locked(&ctx, command).await
        }
    })
    .await
}

/// Runs `f` on the controller shard holding the controller lock (metadata commands one at a
/// time); a failed cross-shard call becomes a `-1` error.
async fn on_controller_locked<T, F, Fut>(f: F) -> Result<T, MetadataError>
where
    T: Send + 'static,
    F: FnOnce(Rc<ShardContext>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, MetadataError>> + 'static,
{
    let ctx = ShardContext::current();
    let result = ctx
        .mesh
        .call(CONTROLLER_SHARD, move || async move {
            let ctx = ShardContext::current();
            let _permit = lock(&ctx).await?;
            f(ctx.clone()).await
        })
        .await;
    result.unwrap_or_else(|e| Err(MetadataError { code: -1, message: e.to_string() }))
}

/// In a cluster, creates an internal topic (`__consumer_offsets`, `__transaction_state`) the
/// first time a coordinator is looked up (Kafka creates them the same way), with its
/// replication factor (`offsets.topic.replication.factor`,
/// `transaction.state.log.replication.factor`) and compacted log settings. Fails — logged, the
/// caller answers COORDINATOR_NOT_AVAILABLE and the client retries — while fewer brokers are
/// up than that factor (INVALID_REPLICATION_FACTOR from the placement), as in Kafka.
pub async fn ensure_internal_topic(topic: &str, partitions: i32) {
    let ctx = ShardContext::current();
    let replication_factor = if topic == crate::txn::state_log::TXN_STATE_TOPIC {
        ctx.config.txn.state_log_replication_factor
    } else {
        ctx.config.group.offsets_topic_replication_factor
    };
    let log_config = crate::internal_topic::internal_topic_log_config(&ctx.config.default_log_config);
    let configs = [
        ("cleanup.policy", "compact".to_string()),
        ("retention.ms", "-1".to_string()),
        ("retention.bytes", "-1".to_string()),
        ("segment.bytes", log_config.segment_bytes.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let command = MetadataCommand::CreateTopic {
        name: topic.to_string(),
        id: new_topic_id(),
        partitions,
        replication_factor,
        configs,
        // The active controller places the replicas (crate::placement).
        assignments: Vec::new(),
    };
    match submit(command).await {
        Ok(()) => tracing::info!(topic, partitions, replication_factor, "internal topic created"),
        Err(e) if e.code == crate::metadata_image::codes::TOPIC_ALREADY_EXISTS => {}
        Err(e) => sluice_engine::warn_limited!(topic, error = ?e, "internal topic not created"),
    }
}

/// Compare-and-set tries of one config update in a cluster.
const CONFIG_UPDATE_ATTEMPTS: usize = 20;

/// Producer ids reserved per metadata command (Kafka's block size).
const PRODUCER_ID_BLOCK: i64 = 1000;

thread_local! {
    /// The controller shard's current block of reserved producer ids: `(next, end)`.
    static PRODUCER_ID_BLOCK_RANGE: std::cell::Cell<(i64, i64)> = const { std::cell::Cell::new((0, 0)) };
}

/// A producer id never handed out before (InitProducerId): taken from a block reserved in the
/// metadata image, reserving the next block when this one runs out. Ids skipped by a restart
/// are simply never used, as in Kafka.
pub async fn allocate_producer_id() -> Result<i64, MetadataError> {
    on_controller_locked(move |ctx| async move {
        let (next, end) = PRODUCER_ID_BLOCK_RANGE.with(|b| b.get());
        if next < end {
            PRODUCER_ID_BLOCK_RANGE.with(|b| b.set((next + 1, end)));
            return Ok(next);
        }
        let command = MetadataCommand::AllocateProducerIds { count: PRODUCER_ID_BLOCK };
        let start = if ctx.config.quorum.is_some() {
            commit_to_quorum(&ctx, command).await?.producer_id_start
        } else {
            let start = ctx.image.borrow().next_producer_id;
            commit_locked(&ctx, command).await?;
            start
        };
        PRODUCER_ID_BLOCK_RANGE.with(|b| b.set((start + 1, start + PRODUCER_ID_BLOCK)));
        Ok(start)
    })
    .await
}

/// Applies a committed command to this shard's image and its partitions.
pub async fn apply_on_shard(command: MetadataCommand) {
    let ctx = ShardContext::current();
    let defaults = ctx.config.default_log_config.clone();
    if let Err(e) = ctx.image.borrow_mut().apply(&command, &defaults) {
        sluice_engine::error_limited!(?command, error = ?e, "committed metadata command failed on a shard");
        return;
    }
    if let MetadataCommand::Security(_) | MetadataCommand::ClientQuotas(_) = command {
        return; // ACLs, credentials and quotas: nothing else on the shard changes
    }
    ctx.refresh_replica_states();
    match &command {
        MetadataCommand::CreateTopic { name, partitions, .. } => ensure_partitions(&ctx, name, 0, *partitions).await,
        MetadataCommand::CreatePartitions { name, total, .. } => ensure_partitions(&ctx, name, 0, *total).await,
        MetadataCommand::DeleteTopic { name } => {
            if let Some(groups) = crate::group::service::GroupShard::try_current() {
                groups.forget_deleted_topic(name);
            }
            delete_topic_partitions(name).await
        }
        // A reassignment adds replicas (their logs are created here) and, once complete,
        // removes some (their logs go).
        MetadataCommand::Reassign { topic, partition, .. }
        | MetadataCommand::AlterPartition { topic, partition, .. } => {
            ensure_partitions(&ctx, topic, *partition, *partition + 1).await;
            remove_if_not_a_replica(&ctx, topic, *partition).await;
        }
        MetadataCommand::AllocateProducerIds { .. }
        | MetadataCommand::RegisterBroker(_)
        | MetadataCommand::FenceBroker { .. }
        | MetadataCommand::UnfenceBroker { .. }
        | MetadataCommand::ElectLeaders { .. }
        | MetadataCommand::InitCluster { .. }
        | MetadataCommand::Security(_)
        | MetadataCommand::ClientQuotas(_) => {}
        MetadataCommand::SetTopicConfigs { name, .. } | MetadataCommand::SetTopicConfigsIfUnchanged { name, .. } => {
            let config = ctx.image.borrow().log_config(name, &defaults);
            if let Some(config) = config {
                for log in ctx.storage.partitions() {
                    if log.topic() == name {
                        log.set_config(config.clone());
                    }
                }
            }
        }
    }
    crate::replication::reconcile(&ctx);
    reconcile_coordinators().await;
}

/// The group and transaction coordinators follow their internal partitions' leadership.
async fn reconcile_coordinators() {
    if let Some(groups) = crate::group::service::GroupShard::try_current() {
        if let Err(e) = groups.reconcile().await {
            sluice_engine::error_limited!(error = %e, "loading consumer groups failed");
        }
    }
    if let Some(txns) = crate::txn::service::TxnShard::try_current() {
        if let Err(e) = txns.reconcile().await {
            sluice_engine::error_limited!(error = %e, "loading transactions failed");
        }
    }
}

/// Replaces this shard's image with `image` (an installed snapshot, or a broker-only node's
/// fetch that was too far behind for commands): replica states are rebuilt and partitions of
/// known topics this node holds are created. (Partitions of topics that vanished meanwhile
/// are left on disk.)
pub async fn install_image_on_shard(image: MetadataImage) {
    let ctx = ShardContext::current();
    *ctx.image.borrow_mut() = image;
    ctx.refresh_replica_states();
    let topics: Vec<(String, i32)> = ctx.image.borrow().topics.iter().map(|(n, t)| (n.clone(), t.partitions)).collect();
    for (topic, partitions) in topics {
        ensure_partitions(&ctx, &topic, 0, partitions).await;
    }
    crate::replication::reconcile(&ctx);
    reconcile_coordinators().await;
}

/// Deletes this shard's copy of a partition whose replicas no longer include this node (a
/// completed reassignment moved it away).
async fn remove_if_not_a_replica(ctx: &ShardContext, topic: &str, partition: i32) {
    let assigned = ctx.replica_states.borrow().contains_key(topic);
    if !assigned || ctx.replica_state(topic, partition).replicas.contains(&ctx.config.node_id) {
        return;
    }
    if ctx.storage.partition(topic, partition).is_some() {
        match ctx.storage.delete_partition(topic, partition).await {
            Ok(_) => tracing::info!(topic, partition, "replica removed: reassigned away from this node"),
            Err(e) => {
                sluice_engine::error_limited!(topic, partition, error = %e, "deleting a reassigned replica failed")
            }
        }
    }
}

/// Deletes this shard's partitions of `topic` (their directories).
async fn delete_topic_partitions(topic: &str) {
    let ctx = ShardContext::current();
    for log in ctx.storage.partitions() {
        if log.topic() == topic {
            if let Err(e) = ctx.storage.delete_partition(topic, log.partition()).await {
                sluice_engine::error_limited!(topic, partition = log.partition(), error = %e, "deleting partition failed");
            }
        }
    }
}

/// Creates (or opens) this shard's partitions `from..to` of `topic`: those this node holds a
/// replica of (every one on a single node).
pub async fn ensure_partitions(ctx: &ShardContext, topic: &str, from: i32, to: i32) {
    let config: Option<LogConfig> = ctx.image.borrow().log_config(topic, &ctx.config.default_log_config);
    let Some(config) = config else { return };
    for p in from..to {
        if ctx.owner_of(topic, p) != ctx.shard || ctx.storage.partition(topic, p).is_some() {
            continue;
        }
        let replica = ctx.replica_state(topic, p);
        if !replica.replicas.contains(&ctx.config.node_id) {
            continue;
        }
        let log = match ctx.storage.create_partition(topic, p, config.clone()).await {
            Ok(log) => log,
            Err(e) => {
                sluice_engine::error_limited!(topic, partition = p, error = %e, "creating partition failed");
                continue;
            }
        };
        // The leader's epoch starts here, not in its first produce request (Kafka's makeLeader).
        if replica.leader_id == ctx.config.node_id {
            if let Err(e) = log.assign_leader_epoch(replica.leader_epoch).await {
                sluice_engine::error_limited!(topic, partition = p, error = %e, "recording the leader epoch failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_look_like_kafkas() {
        let a = new_cluster_id();
        assert_eq!(a.len(), 22);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(a, new_cluster_id());
    }
}
