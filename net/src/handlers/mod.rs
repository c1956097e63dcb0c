//! Request handlers, one file per API, and the dispatch table from request kind to handler.
//!
//! Owns: turning a decoded request into a response with Kafka's semantics and error codes.
//! Handlers reach partitions through [`ShardContext::on_partition`] (the owner shard runs the
//! work) and change topics only through [`crate::controller`]. Must never: panic on a request
//! the codec accepted, or touch another shard's partition directly.

pub mod acls;
pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod api_versions;
pub mod client_quotas;
pub mod cluster_brokers;
pub mod config_resources;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_topic_partitions;
pub mod describe_transactions;
pub mod elect_leaders;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod partition_reassignments;
pub mod produce;
pub mod scram_credentials;
pub mod sync_group;
pub mod txn_offset_commit;
pub mod write_txn_markers;

use std::rc::Rc;

use kafka_protocol::messages::{RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use crate::produce_placement::ProducePlacement;
use crate::response_buf::FileRange;
use crate::security::protocol::ConnectionSecurity;
use crate::security::request_authorization::{self, Identity};
use crate::shard_context::ShardContext;

/// A response that is ready now, or one that resolves later (a produce acknowledgement
/// waiting for durability) while the connection goes on reading requests.
// `Now` is much larger than `Later`, but a Reply lives for one request and is moved once or
// twice; boxing it would cost an allocation per request instead.
#[allow(clippy::large_enum_variant)]
pub enum Reply {
    Now(Option<HandlerResponse>),
    Later(std::pin::Pin<Box<dyn std::future::Future<Output = Option<HandlerResponse>>>>),
}

/// Like [`dispatch`], but a Produce returns as soon as its appends are buffered (in request
/// order) with its acknowledgement as a [`Reply::Later`].
pub async fn dispatch_pipelined(
    ctx: &Rc<ShardContext>,
    header: &RequestHeader,
    request: RequestKind,
    version: i16,
    placement: &mut ProducePlacement,
    security: &ConnectionSecurity,
    identity: &Identity,
) -> Result<Reply, String> {
    match request {
        RequestKind::Produce(r) => {
            let ack = produce::handle(ctx, r, version, placement, security.listener.clone()).await;
            Ok(Reply::Later(Box::pin(
                async move { ack.await.map(|r| HandlerResponse::from(ResponseKind::Produce(r))) },
            )))
        }
        other => dispatch(ctx, header, other, version, security, identity).await.map(Reply::Now),
    }
}

/// A handler's answer: the response, plus the file ranges its file markers stand for (Fetch
/// with sendfile; empty otherwise).
pub struct HandlerResponse {
    pub kind: ResponseKind,
    pub files: Vec<FileRange>,
}

impl From<ResponseKind> for HandlerResponse {
    fn from(kind: ResponseKind) -> Self {
        HandlerResponse { kind, files: Vec::new() }
    }
}

/// Kafka error codes (the one table: `sluice_engine::error_code`).
pub use sluice_engine::error_code::codes;

/// A group member's host as Kafka's DescribeGroups and ConsumerGroupDescribe show it: the
/// client's address after a slash (Java's `InetAddress.toString()`), e.g. `/127.0.0.1`.
pub fn member_client_host(host: &str) -> String {
    format!("/{host}")
}

/// Routes a request to its handler. `Ok(None)` means "send no response" (acks=0 produce);
/// `Err` closes the connection. `security` is the connection's: its listener decides the
/// endpoints Metadata, DescribeCluster and FindCoordinator answer with. `identity`: who sent
/// the request (checked already; Fetch checks the partitions a session adds).
pub async fn dispatch(
    ctx: &Rc<ShardContext>,
    header: &RequestHeader,
    request: RequestKind,
    version: i16,
    security: &ConnectionSecurity,
    identity: &Identity,
) -> Result<Option<HandlerResponse>, String> {
    let listener: &str = &security.listener;
    // Fetch may answer with file ranges (sendfile) besides the response itself.
    let request = match request {
        RequestKind::Fetch(r) => {
            let follower = r.replica_id.0 >= 0 || r.replica_state.replica_id.0 >= 0;
            let may_fetch = |topic: &str| request_authorization::may_fetch(ctx, identity, follower, topic);
            let (response, files) = fetch::handle(ctx, r, version, &security.listener, &may_fetch).await;
            return Ok(Some(HandlerResponse { kind: ResponseKind::Fetch(response), files }));
        }
        other => other,
    };
    Ok(Some(HandlerResponse::from(match request {
        RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(api_versions::handle(&r, version)),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(ctx, r, version, listener).await),
        RequestKind::DescribeTopicPartitions(r) => {
            let may_describe = |topic: &str| request_authorization::may_describe_topic(ctx, identity, topic);
            let operations = |topic: &str| request_authorization::topic_authorized_operations(ctx, identity, topic);
            let access = describe_topic_partitions::TopicAccess {
                may_describe: &may_describe,
                authorized_operations: &operations,
            };
            ResponseKind::DescribeTopicPartitions(describe_topic_partitions::handle(ctx, r, version, &access))
        }
        RequestKind::Produce(r) => {
            match produce::handle(ctx, r, version, &mut ProducePlacement::default(), security.listener.clone())
                .await
                .await
            {
                Some(response) => ResponseKind::Produce(response),
                None => return Ok(None),
            }
        }
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(list_offsets::handle(ctx, r, version).await),
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(create_topics::handle(ctx, r, version).await),
        RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(delete_topics::handle(ctx, r, version).await),
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(create_partitions::handle(ctx, r, version).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(ctx, r, version).await)
        }
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(alter_configs::handle(ctx, r, version).await),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(incremental_alter_configs::handle(ctx, r, version).await)
        }
        RequestKind::DeleteRecords(r) => ResponseKind::DeleteRecords(delete_records::handle(ctx, r, version).await),
        RequestKind::ElectLeaders(r) => ResponseKind::ElectLeaders(elect_leaders::handle(ctx, r, version).await),
        RequestKind::AlterPartitionReassignments(r) => {
            ResponseKind::AlterPartitionReassignments(partition_reassignments::alter(ctx, r, version).await)
        }
        RequestKind::ListPartitionReassignments(r) => {
            ResponseKind::ListPartitionReassignments(partition_reassignments::list(ctx, r, version).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(ctx, r, version, listener).await)
        }
        RequestKind::DescribeClientQuotas(r) => {
            ResponseKind::DescribeClientQuotas(client_quotas::describe(ctx, r, version).await)
        }
        RequestKind::AlterClientQuotas(r) => {
            ResponseKind::AlterClientQuotas(client_quotas::alter(ctx, r, version).await)
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(describe_log_dirs::handle(ctx, r, version).await)
        }
        RequestKind::InitProducerId(r) => ResponseKind::InitProducerId(init_producer_id::handle(ctx, r, version).await),
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(ctx, r, version).await)
        }
        // Consumer groups (crate::group).
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(ctx, r, version, listener).await)
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(join_group::handle(ctx, header, r, version, &identity.host).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(sync_group::handle(ctx, r, version).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(heartbeat::handle(ctx, r, version).await),
        RequestKind::ConsumerGroupDescribe(r) => {
            ResponseKind::ConsumerGroupDescribe(consumer_group_describe::handle(ctx, r, version).await)
        }
        RequestKind::ConsumerGroupHeartbeat(r) => ResponseKind::ConsumerGroupHeartbeat(
            consumer_group_heartbeat::handle(ctx, header, r, version, &identity.host).await,
        ),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(leave_group::handle(ctx, r, version).await),
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(offset_commit::handle(ctx, r, version).await),
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(offset_fetch::handle(ctx, r, version).await),
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(describe_groups::handle(ctx, r, version).await),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(list_groups::handle(ctx, r, version).await),
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(delete_groups::handle(ctx, r, version).await),
        RequestKind::OffsetDelete(r) => ResponseKind::OffsetDelete(offset_delete::handle(ctx, r, version).await),
        // Transactions (crate::txn).
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(add_partitions_to_txn::handle(ctx, r, version).await)
        }
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(add_offsets_to_txn::handle(ctx, r, version).await)
        }
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(end_txn::handle(ctx, r, version).await),
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(txn_offset_commit::handle(ctx, r, version).await)
        }
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(describe_producers::handle(ctx, r, version).await)
        }
        RequestKind::DescribeTransactions(r) => {
            ResponseKind::DescribeTransactions(describe_transactions::handle(ctx, r, version).await)
        }
        RequestKind::ListTransactions(r) => {
            ResponseKind::ListTransactions(list_transactions::handle(ctx, r, version).await)
        }
        // Security (crate::security).
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(acls::create(ctx, r, version).await),
        RequestKind::DescribeAcls(r) => ResponseKind::DescribeAcls(acls::describe(ctx, r, version).await),
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(acls::delete(ctx, r, version).await),
        RequestKind::DescribeUserScramCredentials(r) => {
            ResponseKind::DescribeUserScramCredentials(scram_credentials::describe(ctx, r, version).await)
        }
        RequestKind::AlterUserScramCredentials(r) => {
            ResponseKind::AlterUserScramCredentials(scram_credentials::alter(ctx, r, version).await)
        }
        RequestKind::WriteTxnMarkers(r) => {
            ResponseKind::WriteTxnMarkers(write_txn_markers::handle(ctx, r, version).await)
        }
        other => return Err(format!("no handler for {other:?}")),
    })))
}

pub fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// May this broker answer a leader-only request (Fetch, ListOffsets, OffsetForLeaderEpoch) for
/// `topic`/`partition` with the client's `current_leader_epoch` `epoch` (-1 = unknown)? Kafka's
/// order: the epoch check (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH), then
/// NOT_LEADER_OR_FOLLOWER when another broker leads it (never on a single node).
pub fn check_leader_epoch(ctx: &ShardContext, topic: &str, partition: i32, epoch: i32) -> i16 {
    let state = ctx.replica_state(topic, partition);
    match state.check_leader_epoch(epoch).0 {
        codes::NONE if state.leader_id != ctx.config.node_id => codes::NOT_LEADER_OR_FOLLOWER,
        code => code,
    }
}
