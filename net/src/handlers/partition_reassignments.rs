//! AlterPartitionReassignments (v0–v1, KIP-455/KIP-860) and ListPartitionReassignments (v0):
//! moving partitions between brokers. Each partition's move is one `Reassign` metadata command
//! ([`crate::reassignment`] has the rules: add the new replicas, complete once they are in
//! sync); a null replica list cancels the partition's ongoing move. v1 refuses a change of the
//! replication factor unless `allow_replication_factor_change` is set. On a single node there
//! is nothing to move.

use std::rc::Rc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};

use crate::handlers::str_bytes;
use crate::metadata_image::{codes, MetadataCommand, MetadataError};
use crate::shard_context::ShardContext;

pub async fn alter(
    ctx: &Rc<ShardContext>,
    request: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    let allow_rf_change = version == 0 || request.allow_replication_factor_change;
    let mut responses = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let target: Option<Vec<i32>> = p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
            let outcome = reassign(ctx, &name, p.partition_index, target, allow_rf_change).await;
            let (code, message) = match outcome {
                Ok(()) => (codes::NONE, None),
                Err(e) => (e.code, Some(str_bytes(e.message))),
            };
            partitions.push(
                ReassignablePartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code)
                    .with_error_message(message),
            );
        }
        responses.push(ReassignableTopicResponse::default().with_name(topic.name.clone()).with_partitions(partitions));
    }
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_rf_change)
        .with_error_code(codes::NONE)
        .with_responses(responses)
}

async fn reassign(
    ctx: &ShardContext,
    topic: &str,
    partition: i32,
    target: Option<Vec<i32>>,
    allow_rf_change: bool,
) -> Result<(), MetadataError> {
    let refuse = |code: i16, message: String| Err(MetadataError { code, message });
    if !ctx.is_clustered() {
        return match target {
            None => refuse(codes::NO_REASSIGNMENT_IN_PROGRESS, "a single node has nothing to reassign".into()),
            Some(_) => refuse(codes::INVALID_REPLICA_ASSIGNMENT, "a single node has nothing to reassign".into()),
        };
    }
    if let Some(target) = &target {
        let current_rf = ctx.image.borrow().topic(topic).map(|t| t.replication_factor as usize);
        if !allow_rf_change && current_rf.is_some_and(|rf| rf != target.len()) {
            return refuse(
                codes::INVALID_REPLICATION_FACTOR,
                format!("The replication factor is changed from {} to {}", current_rf.unwrap_or(0), target.len()),
            );
        }
    }
    crate::controller::submit(MetadataCommand::Reassign { topic: topic.to_string(), partition, target }).await
}

pub async fn list(
    ctx: &Rc<ShardContext>,
    request: ListPartitionReassignmentsRequest,
    _version: i16,
) -> ListPartitionReassignmentsResponse {
    let image = ctx.image.borrow();
    let wanted = |topic: &str, partition: i32| match &request.topics {
        None => true,
        Some(topics) => topics.iter().any(|t| t.name.0.as_str() == topic && t.partition_indexes.contains(&partition)),
    };
    let ids = |v: &[i32]| v.iter().map(|r| BrokerId(*r)).collect::<Vec<_>>();
    let mut topics = Vec::new();
    for (name, topic) in &image.topics {
        let partitions: Vec<OngoingPartitionReassignment> = topic
            .assignments
            .iter()
            .enumerate()
            .filter(|(p, a)| {
                (!a.adding_replicas.is_empty() || !a.removing_replicas.is_empty()) && wanted(name, *p as i32)
            })
            .map(|(p, a)| {
                OngoingPartitionReassignment::default()
                    .with_partition_index(p as i32)
                    .with_replicas(ids(&a.replicas))
                    .with_adding_replicas(ids(&a.adding_replicas))
                    .with_removing_replicas(ids(&a.removing_replicas))
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(str_bytes(name.clone())))
                    .with_partitions(partitions),
            );
        }
    }
    ListPartitionReassignmentsResponse::default().with_error_code(codes::NONE).with_topics(topics)
}
