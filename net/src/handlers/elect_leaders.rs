//! ElectLeaders (v0–v2, KIP-183/KIP-460): an administrator moves leadership back to the
//! preferred replicas, or brings a leaderless partition back with an unclean election. Each
//! partition's outcome is decided against this node's image by the same rule the command
//! applies ([`crate::metadata_image::MetadataImage::election`]); the partitions that get a
//! new leader go to the controller as one `ElectLeaders` command. No partitions listed (null)
//! means every partition of the cluster. On a single node every partition is led by its only
//! (preferred) replica: ELECTION_NOT_NEEDED.

use std::rc::Rc;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};

use crate::handlers::str_bytes;
use crate::leader_election::ElectionType;
use crate::metadata_image::{codes, MetadataCommand};
use crate::shard_context::ShardContext;
use sluice_engine::error_code::ErrorCode;

pub async fn handle(ctx: &Rc<ShardContext>, request: ElectLeadersRequest, version: i16) -> ElectLeadersResponse {
    let response = ElectLeadersResponse::default().with_throttle_time_ms(0);
    let kind =
        if version == 0 { Some(ElectionType::Preferred) } else { ElectionType::from_wire(request.election_type) };
    let Some(kind) = kind else {
        return response.with_error_code(codes::INVALID_REQUEST);
    };
    let asked: std::collections::BTreeSet<(String, i32)> = match &request.topic_partitions {
        Some(topics) => {
            topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.topic.0.to_string(), *p))).collect()
        }
        None => {
            let image = ctx.image.borrow();
            image.topics.iter().flat_map(|(name, t)| (0..t.partitions).map(move |p| (name.clone(), p))).collect()
        }
    };
    if asked.len() > crate::metadata_image::MAX_ELECTIONS_PER_COMMAND {
        return response.with_error_code(codes::INVALID_REQUEST);
    }
    let outcomes: Vec<((String, i32), ErrorCode)> = {
        let image = ctx.image.borrow();
        asked
            .into_iter()
            .map(|(topic, partition)| {
                let code = match image.topic(&topic) {
                    Some(t) if (0..t.partitions).contains(&partition) && t.assignments.is_empty() => {
                        ErrorCode::ELECTION_NOT_NEEDED // a single node's topic
                    }
                    _ => image.election(&topic, partition, kind).err().unwrap_or(ErrorCode::NONE),
                };
                ((topic, partition), code)
            })
            .collect()
    };
    let elected: Vec<(String, i32)> =
        outcomes.iter().filter(|(_, code)| *code == ErrorCode::NONE).map(|(p, _)| p.clone()).collect();
    let mut failure: Option<(i16, String)> = None;
    if !elected.is_empty() {
        if let Err(e) = crate::controller::submit(MetadataCommand::ElectLeaders { kind, partitions: elected }).await {
            failure = Some((e.code, e.message));
        }
    }
    let mut results: Vec<ReplicaElectionResult> = Vec::new();
    for ((topic, partition), code) in outcomes {
        let (code, message) = match (&failure, code) {
            (Some((c, m)), ErrorCode::NONE) => (*c, Some(m.clone())),
            (_, code) if code == ErrorCode::NONE => (codes::NONE, None),
            (_, code) => (code.0, Some(code.name().to_string())),
        };
        let result = PartitionResult::default()
            .with_partition_id(partition)
            .with_error_code(code)
            .with_error_message(message.map(str_bytes));
        match results.iter_mut().find(|r| r.topic.0.as_str() == topic) {
            Some(r) => r.partition_result.push(result),
            None => results.push(
                ReplicaElectionResult::default()
                    .with_topic(TopicName(str_bytes(topic)))
                    .with_partition_result(vec![result]),
            ),
        }
    }
    response.with_error_code(codes::NONE).with_replica_election_results(results)
}
