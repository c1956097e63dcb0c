//! CreatePartitions (v0–3): raise a topic's partition count, with Kafka's checks
//! (`ControllerApis.createPartitions`, `ReplicationControlManager.createPartitions`): a topic
//! repeated in one request fails with INVALID_REQUEST (once); an unknown topic with
//! UNKNOWN_TOPIC_OR_PARTITION; a count that is not an increase with INVALID_PARTITIONS; manual
//! assignments must cover exactly the new partitions, each with only this node and as many
//! replicas as the topic has (INVALID_REPLICA_ASSIGNMENT). New partitions are created on their
//! owner shards before the answer, so they are produce/consume-able at once.
//!
//! Owns: turning a CreatePartitions request into controller commands. Must never: change a
//! topic other than through [`controller::submit`], or change anything when `validate_only` is
//! set (that path only calls [`controller::validate`]).

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use crate::controller;
use crate::handlers::config_resources::{admin_codes, internal_to_unknown_server_error};
use crate::handlers::create_topics::validate_manual_assignment;
use crate::handlers::{codes, str_bytes};
use crate::metadata_image::{MetadataCommand, MetadataError};
use crate::shard_context::ShardContext;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for topic in &request.topics {
        *counts.entry(topic.name.0.to_string()).or_default() += 1;
    }
    let mut reported = HashSet::new();
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let base = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        if counts[&name] > 1 {
            if reported.insert(name) {
                results.push(
                    base.with_error_code(codes::INVALID_REQUEST)
                        .with_error_message(Some(str_bytes("Duplicate topic name."))),
                );
            }
            continue;
        }
        let result = match grow(ctx, &name, topic, request.validate_only).await {
            Ok(()) => base.with_error_code(codes::NONE).with_error_message(None),
            Err(e) => {
                tracing::info!(topic = %name, code = e.code, message = %e.message, "CreatePartitions refused");
                base.with_error_code(e.code).with_error_message(Some(str_bytes(e.message)))
            }
        };
        results.push(result);
    }
    CreatePartitionsResponse::default().with_throttle_time_ms(0).with_results(results)
}

async fn grow(
    ctx: &ShardContext,
    name: &str,
    topic: &CreatePartitionsTopic,
    validate_only: bool,
) -> Result<(), MetadataError> {
    let error = |code: i16, message: String| MetadataError { code, message };
    let Some(meta) = ctx.image.borrow().topic(name).cloned() else {
        return Err(error(codes::UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition.".into()));
    };
    let current = meta.partitions;
    if topic.count == current {
        return Err(error(admin_codes::INVALID_PARTITIONS, format!("Topic already has {current} partition(s).")));
    }
    if topic.count < current {
        return Err(error(
            admin_codes::INVALID_PARTITIONS,
            format!("The topic {name} currently has {current} partition(s); {} would not be an increase.", topic.count),
        ));
    }
    let additional = (topic.count - current) as usize;
    // In a cluster a manual assignment of a replicated topic is kept as given; otherwise the
    // active controller places the new replicas.
    let clustered = ctx.config.quorum.is_some() && !meta.assignments.is_empty();
    let registered: Vec<i32> =
        if clustered { ctx.image.borrow().brokers.keys().copied().collect() } else { vec![ctx.config.node_id] };
    let mut new_assignments = Vec::new();
    if let Some(assignments) = &topic.assignments {
        if assignments.len() != additional {
            return Err(error(
                admin_codes::INVALID_REPLICA_ASSIGNMENT,
                format!(
                    "Attempted to add {additional} additional partition(s), but only {} assignment(s) were specified.",
                    assignments.len()
                ),
            ));
        }
        let replicas = usize::try_from(meta.replication_factor).unwrap_or(1);
        for assignment in assignments {
            validate_manual_assignment(&assignment.broker_ids, &registered, Some(replicas))
                .map_err(|m| error(admin_codes::INVALID_REPLICA_ASSIGNMENT, m))?;
            if clustered {
                let replicas = assignment.broker_ids.iter().map(|b| b.0).collect();
                new_assignments.push(crate::metadata_image::PartitionAssignment::new(replicas));
            }
        }
    }
    let command = MetadataCommand::CreatePartitions { name: name.to_string(), total: topic.count, new_assignments };
    if validate_only { controller::validate(command).await } else { controller::submit(command).await }
        .map_err(internal_to_unknown_server_error)
}
