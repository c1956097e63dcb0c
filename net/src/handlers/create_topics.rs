//! CreateTopics (v2–7), with Kafka's checks in Kafka's order (`ControllerApis.createTopics`,
//! `ReplicationControlManager.createTopic`): a name repeated in one request fails with
//! INVALID_REQUEST (once), `__cluster_metadata` is refused, then the name (INVALID_TOPIC_EXCEPTION),
//! existence (TOPIC_ALREADY_EXISTS), configs (INVALID_CONFIG), and either a manual assignment
//! (only this node may appear; INVALID_REPLICA_ASSIGNMENT / INVALID_REQUEST) or partition count
//! and replication factor (-1 = `num.partitions` / `default.replication.factor`). v5+ results
//! carry the partition count, replication factor and every config of the new topic; v7 its id.
//!
//! Owns: turning a CreateTopics request into controller commands. Must never: create a topic
//! other than through [`controller::submit`], or create anything when `validate_only` is set
//! (that path only calls [`controller::validate`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{BrokerId, CreateTopicsRequest, CreateTopicsResponse, TopicName};
use sluice_engine::log_config::LogConfig;
use uuid::Uuid;

use crate::controller;
use crate::handlers::config_resources::{admin_codes, internal_to_unknown_server_error, topic_configs};
use crate::handlers::{codes, str_bytes};
use crate::metadata_image::{MetadataCommand, MetadataError};
use crate::shard_context::ShardContext;
use crate::topic_name::validate_topic_name;

/// KRaft's metadata log topic, which clients may never create.
pub const CLUSTER_METADATA_TOPIC: &str = "__cluster_metadata";

/// A topic that was created (or would be, with `validate_only`).
struct Created {
    id: [u8; 16],
    partitions: i32,
    replication_factor: i16,
    configs: BTreeMap<String, String>,
}

pub async fn handle(ctx: &Rc<ShardContext>, request: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for topic in &request.topics {
        *counts.entry(topic.name.0.to_string()).or_default() += 1;
    }
    let mut reported = HashSet::new();
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        if counts[&name] > 1 {
            if reported.insert(name) {
                results.push(error_result(&topic.name, codes::INVALID_REQUEST, "Duplicate topic name.".into()));
            }
            continue;
        }
        let result = match create_one(ctx, &name, topic, request.validate_only).await {
            Ok(created) => success_result(ctx, &topic.name, &created, request.validate_only, version),
            Err(e) => {
                tracing::info!(topic = %name, code = e.code, message = %e.message, "CreateTopics refused");
                error_result(&topic.name, e.code, e.message)
            }
        };
        results.push(result);
    }
    CreateTopicsResponse::default().with_throttle_time_ms(0).with_topics(results)
}

async fn create_one(
    ctx: &ShardContext,
    name: &str,
    topic: &CreatableTopic,
    validate_only: bool,
) -> Result<Created, MetadataError> {
    let error = |code: i16, message: String| MetadataError { code, message };
    if name == CLUSTER_METADATA_TOPIC {
        return Err(error(
            codes::INVALID_REQUEST,
            format!("Creation of internal topic {CLUSTER_METADATA_TOPIC} is prohibited."),
        ));
    }
    validate_topic_name(name).map_err(|m| error(codes::INVALID_TOPIC_EXCEPTION, m))?;
    // The coordinators' internal topics are the broker's to create (on a single node they
    // always exist, outside the image).
    if ctx.image.borrow().topic(name).is_some() || crate::topic_name::is_internal(name) {
        return Err(error(admin_codes::TOPIC_ALREADY_EXISTS, format!("Topic '{name}' already exists.")));
    }

    let nulls: Vec<&str> = topic.configs.iter().filter(|c| c.value.is_none()).map(|c| &*c.name).collect();
    if !nulls.is_empty() {
        return Err(error(
            admin_codes::INVALID_CONFIG,
            format!("Null value not supported for topic configs: {}", nulls.join(",")),
        ));
    }
    // A repeated config name: the last value wins, as in Kafka.
    let configs: BTreeMap<String, String> =
        topic.configs.iter().filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string()))).collect();
    LogConfig::from_overrides(&ctx.config.default_log_config, configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| error(admin_codes::INVALID_CONFIG, e.to_string()))?;

    let node = ctx.config.node_id;
    let clustered = ctx.config.quorum.is_some();
    let registered: Vec<i32> =
        if clustered { ctx.image.borrow().brokers.keys().copied().collect() } else { vec![node] };
    let mut manual: Vec<(i32, Vec<i32>)> = Vec::new();
    let (partitions, replication_factor) = if !topic.assignments.is_empty() {
        if topic.replication_factor != -1 {
            return Err(error(
                codes::INVALID_REQUEST,
                "A manual partition assignment was specified, but replication factor was not set to -1.".into(),
            ));
        }
        if topic.num_partitions != -1 {
            return Err(error(
                codes::INVALID_REQUEST,
                "A manual partition assignment was specified, but numPartitions was not set to -1.".into(),
            ));
        }
        let mut indexes = HashSet::new();
        let mut replicas: Option<usize> = None;
        for assignment in &topic.assignments {
            if !indexes.insert(assignment.partition_index) {
                return Err(error(
                    admin_codes::INVALID_REPLICA_ASSIGNMENT,
                    format!("Found multiple manual partition assignments for partition {}", assignment.partition_index),
                ));
            }
            validate_manual_assignment(&assignment.broker_ids, &registered, replicas)
                .map_err(|m| error(admin_codes::INVALID_REPLICA_ASSIGNMENT, m))?;
            replicas = Some(assignment.broker_ids.len());
            manual.push((assignment.partition_index, assignment.broker_ids.iter().map(|b| b.0).collect()));
        }
        let count = indexes.len() as i32;
        if (0..count).any(|p| !indexes.contains(&p)) {
            return Err(error(
                admin_codes::INVALID_REPLICA_ASSIGNMENT,
                "partitions should be a consecutive 0-based integer sequence".into(),
            ));
        }
        (count, replicas.unwrap_or(1) as i16)
    } else {
        if topic.replication_factor < -1 || topic.replication_factor == 0 {
            return Err(error(
                admin_codes::INVALID_REPLICATION_FACTOR,
                "Replication factor must be larger than 0, or -1 to use the default value.".into(),
            ));
        }
        if topic.num_partitions < -1 || topic.num_partitions == 0 {
            return Err(error(
                admin_codes::INVALID_PARTITIONS,
                "Number of partitions was set to an invalid non-positive value.".into(),
            ));
        }
        let partitions = if topic.num_partitions == -1 { ctx.config.num_partitions } else { topic.num_partitions };
        let replication_factor = if topic.replication_factor == -1 {
            ctx.config.default_replication_factor
        } else {
            topic.replication_factor
        };
        if replication_factor > 1 && !clustered {
            return Err(error(
                admin_codes::INVALID_REPLICATION_FACTOR,
                format!(
                    "Unable to replicate the partition {replication_factor} time(s): The target replication factor \
                     of {replication_factor} cannot be reached because only 1 broker(s) are registered."
                ),
            ));
        }
        (partitions, replication_factor)
    };

    let id = controller::new_topic_id();
    // In a cluster, a manual assignment is kept as given (the preferred leader first); without
    // one the active controller places the replicas.
    manual.sort_by_key(|(p, _)| *p);
    let assignments = if clustered {
        manual.into_iter().map(|(_, replicas)| crate::metadata_image::PartitionAssignment::new(replicas)).collect()
    } else {
        Vec::new()
    };
    let command = MetadataCommand::CreateTopic {
        name: name.to_string(),
        id,
        partitions,
        replication_factor,
        configs: configs.clone(),
        assignments,
    };
    if validate_only { controller::validate(command).await } else { controller::submit(command).await }
        .map_err(internal_to_unknown_server_error)?;
    Ok(Created { id, partitions, replication_factor, configs })
}

/// Kafka's `validateManualPartitionAssignment`: a non-empty replica list of registered brokers
/// (on a single node only this node), none twice, as many as the other partitions have.
pub(crate) fn validate_manual_assignment(
    broker_ids: &[BrokerId],
    registered: &[i32],
    expected_replicas: Option<usize>,
) -> Result<(), String> {
    if broker_ids.is_empty() {
        return Err("The manual partition assignment includes an empty replica list.".into());
    }
    let mut sorted: Vec<i32> = broker_ids.iter().map(|b| b.0).collect();
    sorted.sort_unstable();
    let mut previous = None;
    for id in &sorted {
        if !registered.contains(id) {
            return Err(format!(
                "The manual partition assignment includes broker {id}, but no such broker is registered."
            ));
        }
        if previous == Some(*id) {
            return Err(format!("The manual partition assignment includes the broker {id} more than once."));
        }
        previous = Some(*id);
    }
    if let Some(expected) = expected_replicas {
        if sorted.len() != expected {
            return Err(format!(
                "The manual partition assignment includes a partition with {} replica(s), but this is not \
                 consistent with previous partitions, which have {expected} replica(s).",
                sorted.len()
            ));
        }
    }
    Ok(())
}

fn success_result(
    ctx: &ShardContext,
    name: &TopicName,
    created: &Created,
    validate_only: bool,
    version: i16,
) -> CreatableTopicResult {
    // A validate-only request creates nothing, so it reports no topic id.
    let id = if validate_only { Uuid::nil() } else { Uuid::from_bytes(created.id) };
    let configs = if version >= 5 {
        topic_configs(&created.configs, &ctx.config.default_log_config)
            .into_iter()
            .map(|c| {
                CreatableTopicConfigs::default()
                    .with_name(str_bytes(c.name))
                    .with_value(if c.sensitive { None } else { Some(str_bytes(c.value)) })
                    .with_read_only(c.read_only)
                    .with_config_source(c.source)
                    .with_is_sensitive(c.sensitive)
            })
            .collect()
    } else {
        Vec::new()
    };
    CreatableTopicResult::default()
        .with_name(name.clone())
        .with_topic_id(id)
        .with_error_code(codes::NONE)
        .with_error_message(None)
        .with_num_partitions(created.partitions)
        .with_replication_factor(created.replication_factor)
        .with_configs(Some(configs))
}

fn error_result(name: &TopicName, code: i16, message: String) -> CreatableTopicResult {
    CreatableTopicResult::default()
        .with_name(name.clone())
        .with_error_code(code)
        .with_error_message(Some(str_bytes(message)))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
        .with_configs(Some(Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_assignments_on_one_node() {
        let one = |ids: &[i32]| ids.iter().map(|i| BrokerId(*i)).collect::<Vec<_>>();
        assert!(validate_manual_assignment(&one(&[1]), &[1], None).is_ok());
        assert!(validate_manual_assignment(&one(&[1]), &[1], Some(1)).is_ok());
        assert!(validate_manual_assignment(&one(&[]), &[1], None).unwrap_err().contains("empty replica list"));
        assert!(validate_manual_assignment(&one(&[2]), &[1], None).unwrap_err().contains("broker 2"));
        assert!(validate_manual_assignment(&one(&[1, 1]), &[1], None).unwrap_err().contains("more than once"));
        assert!(validate_manual_assignment(&one(&[1]), &[1], Some(2)).unwrap_err().contains("not consistent"));
        assert!(validate_manual_assignment(&one(&[3, 1]), &[1, 2, 3], Some(2)).is_ok(), "a cluster's brokers");
    }
}
