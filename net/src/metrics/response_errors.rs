//! Whether a response carries an error code, for `sluice_request_errors_total` (Kafka's
//! `ErrorsPerSec` counts error codes in responses the same way). Pure.
//!
//! Owns: where each API's error codes are. Must never: allocate. APIs not listed here count
//! no errors (admin APIs with per-resource results: their errors are the caller's to read);
//! requests that close the connection count for every API.

use kafka_protocol::messages::ResponseKind;

/// True if the response, or any partition/topic/group result in it, has a non-zero error code.
pub fn has_error(response: &ResponseKind) -> bool {
    match response {
        ResponseKind::Produce(r) => r.responses.iter().any(|t| t.partition_responses.iter().any(|p| p.error_code != 0)),
        ResponseKind::Fetch(r) => {
            r.error_code != 0 || r.responses.iter().any(|t| t.partitions.iter().any(|p| p.error_code != 0))
        }
        ResponseKind::ListOffsets(r) => r.topics.iter().any(|t| t.partitions.iter().any(|p| p.error_code != 0)),
        ResponseKind::Metadata(r) => r.topics.iter().any(|t| t.error_code != 0),
        ResponseKind::DescribeTopicPartitions(r) => r.topics.iter().any(|t| t.error_code != 0),
        ResponseKind::OffsetCommit(r) => r.topics.iter().any(|t| t.partitions.iter().any(|p| p.error_code != 0)),
        ResponseKind::OffsetFetch(r) => {
            r.error_code != 0
                || r.topics.iter().any(|t| t.partitions.iter().any(|p| p.error_code != 0))
                || r.groups.iter().any(|g| g.error_code != 0)
        }
        ResponseKind::FindCoordinator(r) => r.error_code != 0 || r.coordinators.iter().any(|c| c.error_code != 0),
        ResponseKind::JoinGroup(r) => r.error_code != 0,
        ResponseKind::SyncGroup(r) => r.error_code != 0,
        ResponseKind::Heartbeat(r) => r.error_code != 0,
        ResponseKind::ConsumerGroupHeartbeat(r) => r.error_code != 0,
        ResponseKind::LeaveGroup(r) => r.error_code != 0,
        ResponseKind::InitProducerId(r) => r.error_code != 0,
        ResponseKind::EndTxn(r) => r.error_code != 0,
        ResponseKind::AddOffsetsToTxn(r) => r.error_code != 0,
        ResponseKind::ApiVersions(r) => r.error_code != 0,
        ResponseKind::CreateTopics(r) => r.topics.iter().any(|t| t.error_code != 0),
        ResponseKind::DeleteTopics(r) => r.responses.iter().any(|t| t.error_code != 0),
        _ => false,
    }
}
