//! The one table of what this broker implements: API key → version range. ApiVersions
//! advertises exactly this, and the connection refuses anything outside it, so the two can
//! never disagree.
//!
//! Ranges are Kafka 4.x's, intersected with what the `kafka-protocol` crate decodes and what
//! the handlers implement. Produce advertises a minimum of 0 although only v3+ decodes:
//! librdkafka refuses a broker whose Produce minimum is not 0 (KAFKA-18659); no client that
//! negotiates will send v0–2 to a broker whose Produce maximum is 11.
//!
//! Must never: list an API without a handler in [`crate::handlers::dispatch`] (SaslHandshake and
//! SaslAuthenticate: in [`crate::security::sasl_connection`]).

use kafka_protocol::messages::ApiKey;

/// (api key, min version, max version).
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    // Produce v12 is KIP-890 part 2 (the transaction epoch bump), not implemented yet.
    (ApiKey::Produce, 0, 11),
    (ApiKey::Fetch, 4, 17),
    // v10's TimeoutMs is for tiered-storage lookups, which this broker does not have.
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    // Kafka 4.x removed DescribeLogDirs v0 (KIP-896).
    (ApiKey::DescribeLogDirs, 1, 4),
    // Client quotas (crate::quota).
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
    (ApiKey::InitProducerId, 0, 5),
    // Consumer groups.
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    // The consumer protocol (KIP-848); left out of ApiVersions unless
    // `group.coordinator.rebalance.protocols` includes `consumer`.
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    // Transactions (crate::txn). EndTxn v5 is KIP-890 part 2 (an epoch bump per
    // transaction), which sluice does not implement yet.
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 4),
    (ApiKey::TxnOffsetCommit, 0, 5),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    // Kafka 4.x removed WriteTxnMarkers v0 (KIP-896).
    (ApiKey::WriteTxnMarkers, 1, 1),
    // Security (crate::security); Kafka 4.x removed the ACL APIs' v0 (KIP-896).
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    // Answered by the connection (security::sasl_connection), not dispatch; after SaslHandshake
    // v0 the client sends raw SASL tokens outside Kafka's request framing.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// APIs advertised only while `group.coordinator.rebalance.protocols` includes `consumer`.
pub fn needs_consumer_protocol(api: ApiKey) -> bool {
    matches!(api, ApiKey::ConsumerGroupHeartbeat | ApiKey::ConsumerGroupDescribe)
}

/// Versions of `api` this broker decodes and answers, if any.
pub fn supported_range(api: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS.iter().find(|(k, _, _)| *k == api).map(|(_, min, max)| (*min, *max))
}

/// Produce v0–2 are advertised (see the module docs) but cannot be decoded.
pub fn decodable_min(api: ApiKey) -> i16 {
    match api {
        ApiKey::Produce => 3,
        _ => supported_range(api).map_or(0, |r| r.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Message;

    #[test]
    fn every_advertised_range_is_decodable_by_the_codec() {
        for (api, _, max) in SUPPORTED_APIS {
            let codec = api.valid_versions();
            assert!(decodable_min(*api) >= codec.min, "{api:?}");
            assert!(*max <= codec.max, "{api:?} max {max} > codec {}", codec.max);
        }
        assert_eq!(supported_range(ApiKey::Produce), Some((0, 11)));
        let _ = kafka_protocol::messages::ProduceRequest::VERSIONS;
    }
}
