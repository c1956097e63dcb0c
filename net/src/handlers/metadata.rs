//! Metadata: brokers (this node; in a cluster every unfenced registered broker), cluster id,
//! controller (in a cluster the active one), and topics with partitions, topic
//! ids and leaders. Requested topics that don't exist are created when the request allows it
//! and `auto.create.topics.enable` is on (with `num.partitions`), like Kafka.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::controller;
use crate::handlers::{codes, str_bytes};
use crate::metadata_image::{MetadataCommand, TopicMeta};
use crate::shard_context::ShardContext;
use crate::topic_name::validate_topic_name;

/// Kafka's LEADER_NOT_AVAILABLE (not in the shared table, which B's replication may extend).
const LEADER_NOT_AVAILABLE: i16 = 5;

/// Kafka's "authorized operations not requested" marker.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// `listener`: the one the request came in on; brokers are listed at its endpoints.
pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: MetadataRequest,
    version: i16,
    listener: &str,
) -> MetadataResponse {
    let mut topics = Vec::new();
    match request.topics {
        None => {
            let image = ctx.image.borrow();
            for (name, meta) in &image.topics {
                topics.push(topic_entry(ctx, name, meta));
            }
        }
        Some(requested) => {
            for t in requested {
                let name = match (&t.name, t.topic_id) {
                    (Some(name), _) => name.0.to_string(),
                    (None, id) if !id.is_nil() => {
                        let found = ctx.image.borrow().topic_by_id(id.as_bytes()).map(|(n, _)| n.clone());
                        match found {
                            Some(n) => n,
                            None => {
                                topics.push(error_topic(None, id, codes::UNKNOWN_TOPIC_ID));
                                continue;
                            }
                        }
                    }
                    _ => {
                        topics.push(error_topic(None, Uuid::nil(), codes::INVALID_REQUEST));
                        continue;
                    }
                };
                if validate_topic_name(&name).is_err() {
                    topics.push(error_topic(Some(name), Uuid::nil(), codes::INVALID_TOPIC_EXCEPTION));
                    continue;
                }
                let mut meta = ctx.image.borrow().topic(&name).cloned();
                let may_create = request.allow_auto_topic_creation || version < 4;
                if meta.is_none() && may_create && ctx.config.auto_create_topics {
                    let command = MetadataCommand::CreateTopic {
                        name: name.clone(),
                        id: controller::new_topic_id(),
                        partitions: ctx.config.num_partitions,
                        replication_factor: ctx.config.default_replication_factor,
                        configs: BTreeMap::new(),
                        assignments: Vec::new(),
                    };
                    match controller::submit(command).await {
                        Ok(()) => {}
                        // Created concurrently by someone else: fine.
                        Err(e) if e.code == crate::metadata_image::codes::TOPIC_ALREADY_EXISTS => {}
                        Err(e) => {
                            sluice_engine::warn_limited!(topic = %name, error = ?e, "auto-create failed");
                            topics.push(error_topic(Some(name), Uuid::nil(), e.code));
                            continue;
                        }
                    }
                    meta = ctx.image.borrow().topic(&name).cloned();
                }
                match meta {
                    Some(meta) => topics.push(topic_entry(ctx, &name, &meta)),
                    None => topics.push(error_topic(Some(name), Uuid::nil(), codes::UNKNOWN_TOPIC_OR_PARTITION)),
                }
            }
        }
    }
    let brokers = crate::handlers::cluster_brokers::brokers(ctx, listener)
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(str_bytes(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(str_bytes))
        })
        .collect();
    MetadataResponse::default()
        .with_throttle_time_ms(0)
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(ctx.image.borrow().cluster_id.clone())))
        .with_controller_id(BrokerId(crate::handlers::cluster_brokers::controller_id(ctx)))
        .with_topics(topics)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

/// Replicas on fenced (or unregistered) brokers are offline, as in Kafka's KRaft metadata
/// cache; a single node has no registrations and no offline replicas.
pub(crate) fn offline_replicas(ctx: &ShardContext, replicas: &[i32]) -> Vec<BrokerId> {
    if ctx.config.quorum.is_none() {
        return Vec::new();
    }
    let image = ctx.image.borrow();
    replicas.iter().filter(|r| image.brokers.get(r).is_none_or(|b| b.fenced)).map(|r| BrokerId(*r)).collect()
}

fn topic_entry(ctx: &ShardContext, name: &str, meta: &TopicMeta) -> MetadataResponseTopic {
    let partitions = (0..meta.partitions)
        .map(|p| {
            let replica = ctx.replica_state(name, p);
            // No eligible leader (its ISR is fenced): Kafka's LEADER_NOT_AVAILABLE, with the
            // replicas and ISR still listed.
            let error = if replica.leader_id < 0 { LEADER_NOT_AVAILABLE } else { codes::NONE };
            let offline = offline_replicas(ctx, &replica.replicas);
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(p)
                .with_leader_id(BrokerId(replica.leader_id))
                .with_leader_epoch(replica.leader_epoch)
                .with_replica_nodes(replica.replicas.iter().map(|r| BrokerId(*r)).collect())
                .with_isr_nodes(replica.in_sync_replicas.iter().map(|r| BrokerId(*r)).collect())
                .with_offline_replicas(offline)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_error_code(codes::NONE)
        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
        .with_topic_id(Uuid::from_bytes(meta.id))
        .with_is_internal(crate::topic_name::is_internal(name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

fn error_topic(name: Option<String>, id: Uuid, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name.map(|n| TopicName(StrBytes::from_string(n))))
        .with_topic_id(id)
        .with_partitions(vec![])
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
