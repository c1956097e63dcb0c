//! Authorization of requests, in one place (Kafka's `KafkaApis` checks): before a request is
//! handled, the resources its principal may not touch are taken out of it, and their errors
//! (TOPIC_/GROUP_/CLUSTER_/TRANSACTIONAL_ID_AUTHORIZATION_FAILED) are put into the response
//! afterwards; a request about one resource is answered with its error at once.
//!
//! Which operation each API needs is Kafka's: Produce WRITE on each topic (and on the
//! transactional id); Fetch READ on each topic (a follower's: CLUSTER_ACTION on the cluster);
//! Metadata, ListOffsets, OffsetForLeaderEpoch DESCRIBE on each topic (Metadata of every topic
//! lists only those, and auto-creates only with CREATE on the cluster or the topic);
//! DescribeTopicPartitions DESCRIBE on each topic (checked in its handler, before paginating);
//! CreateTopics CREATE on the cluster or the topic; DeleteTopics DELETE; group APIs READ on the
//! group (DescribeGroups DESCRIBE, ListGroups lists what the principal may DESCRIBE),
//! OffsetCommit also READ on each topic; FindCoordinator DESCRIBE on the group or
//! transactional id; InitProducerId WRITE on the transactional id, or IDEMPOTENT_WRITE on the
//! cluster (or WRITE on some topic); EndTxn WRITE on the transactional id, AddOffsetsToTxn also
//! READ on the group, AddPartitionsToTxn (v0–3) also WRITE on each topic, TxnOffsetCommit also
//! READ on the group and each topic; DeleteRecords DELETE and CreatePartitions ALTER on each
//! topic; DescribeConfigs DESCRIBE_CONFIGS and (Incremental)AlterConfigs ALTER_CONFIGS on each
//! topic (brokers: on the cluster); DeleteGroups and OffsetDelete DELETE on the group; the ACL
//! and SCRAM admin APIs ALTER or DESCRIBE on the cluster, as do ElectLeaders and the
//! reassignments; DescribeTransactions and ListTransactions DESCRIBE on each transactional id
//! (the listing shows only those); DescribeProducers READ on each topic; what only brokers send
//! (a follower's Fetch and OffsetForLeaderEpoch, WriteTxnMarkers, AddPartitionsToTxn v4)
//! CLUSTER_ACTION. Any other API is allowed only to principals with ALTER on the cluster (super
//! users among them); for others the connection is closed with a log line — never let through
//! unchecked.
//!
//! Owns: [`check`] and [`Denied::apply`]. Must never: hand a handler a resource its principal
//! may not touch, or decide differently from [`super::authorizer::authorize`].

use std::cell::RefCell;

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;

use super::acl::{Operation, ResourceType, CLUSTER_NAME};
use super::authorizer::DecisionCache;
use crate::handlers::codes;
use crate::shard_context::ShardContext;

thread_local! {
    static CACHE: RefCell<DecisionCache> = RefCell::new(DecisionCache::default());
}

/// Who sent a request: its principal (`User:alice`) and the client's address.
#[derive(Clone, Debug)]
pub struct Identity {
    pub principal: String,
    pub host: String,
}

/// What to do with a request.
pub enum Verdict {
    /// Handle the (possibly reduced) request, then [`Denied::apply`] to its response.
    Proceed(Denied),
    /// Answer with this instead of handling the request.
    Answer(ResponseKind),
    /// Close the connection (with this log line).
    Close(String),
}

/// The resources taken out of a request, to report in its response.
#[derive(Default)]
pub struct Denied {
    /// (topic, partitions) denied, with the error code to report.
    topics: Vec<(TopicName, Vec<i32>)>,
    code: i16,
    /// Metadata / CreateTopics / DeleteTopics: names only.
    names: Vec<TopicName>,
    /// Fetch v13+ names topics by id.
    topic_ids: Vec<(uuid::Uuid, Vec<i32>)>,
    /// DescribeConfigs / AlterConfigs / IncrementalAlterConfigs: (resource type, name, code).
    config_resources: Vec<(i8, String, i16)>,
    /// DeleteGroups: the groups refused.
    groups: Vec<GroupId>,
    /// DescribeTransactions: the transactional ids refused.
    transactional_ids: Vec<TransactionalId>,
}

/// Kafka's config resource types.
const CONFIG_RESOURCE_TOPIC: i8 = 2;
const CONFIG_RESOURCE_BROKER: i8 = 4;

struct Checker<'a> {
    ctx: &'a ShardContext,
    identity: &'a Identity,
}

impl Checker<'_> {
    fn may(&self, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        let config = &self.ctx.config.security.authorizer;
        if !config.enabled {
            return true;
        }
        let image = self.ctx.image.borrow();
        let security = &image.security;
        CACHE.with(|c| {
            c.borrow_mut().authorize(
                config,
                security.acl_version,
                security.acls.iter(),
                &self.identity.principal,
                &self.identity.host,
                operation,
                resource_type,
                name,
            )
        })
    }

    fn may_cluster(&self, operation: Operation) -> bool {
        self.may(operation, ResourceType::Cluster, CLUSTER_NAME)
    }

    fn may_topic(&self, operation: Operation, name: &str) -> bool {
        self.may(operation, ResourceType::Topic, name)
    }

    fn may_group(&self, operation: Operation, name: &str) -> bool {
        self.may(operation, ResourceType::Group, name)
    }
}

/// May `identity` fetch from `topic`: READ on it, or for a follower CLUSTER_ACTION (Fetch's
/// check, for the partitions an incremental fetch takes from its session).
pub fn may_fetch(ctx: &ShardContext, identity: &Identity, follower: bool, topic: &str) -> bool {
    if !ctx.config.security.authorizer.enabled {
        return true;
    }
    let c = Checker { ctx, identity };
    if follower {
        c.may_cluster(Operation::ClusterAction)
    } else {
        c.may_topic(Operation::Read, topic)
    }
}

/// May `identity` DESCRIBE `topic` (DescribeTopicPartitions checks each topic itself: its
/// pagination must never count or name a topic the principal may not see).
pub fn may_describe_topic(ctx: &ShardContext, identity: &Identity, topic: &str) -> bool {
    !ctx.config.security.authorizer.enabled || (Checker { ctx, identity }).may_topic(Operation::Describe, topic)
}

/// Kafka's `topic_authorized_operations` bitfield (bit = operation code) of what `identity`
/// may do to `topic`, among the operations topics support; all of them with no authorizer.
pub fn topic_authorized_operations(ctx: &ShardContext, identity: &Identity, topic: &str) -> i32 {
    const TOPIC_OPERATIONS: [Operation; 8] = [
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
    ];
    let enabled = ctx.config.security.authorizer.enabled;
    let c = Checker { ctx, identity };
    TOPIC_OPERATIONS
        .iter()
        .filter(|op| !enabled || c.may_topic(**op, topic))
        .fold(0, |bits, op| bits | (1 << op.code()))
}

/// Checks `request` (and takes denied resources out of it) for `identity`.
pub fn check(ctx: &ShardContext, identity: &Identity, version: i16, request: &mut RequestKind) -> Verdict {
    if !ctx.config.security.authorizer.enabled {
        return Verdict::Proceed(Denied::default());
    }
    let c = Checker { ctx, identity };
    let proceed =
        |code: i16, topics: Vec<(TopicName, Vec<i32>)>| Verdict::Proceed(Denied { topics, code, ..Denied::default() });
    match request {
        RequestKind::ApiVersions(_) | RequestKind::SaslHandshake(_) | RequestKind::SaslAuthenticate(_) => {
            proceed(codes::NONE, Vec::new())
        }
        RequestKind::Produce(r) => {
            if let Some(id) = &r.transactional_id {
                if !c.may(Operation::Write, ResourceType::TransactionalId, id) {
                    let denied = std::mem::take(&mut r.topic_data)
                        .into_iter()
                        .map(|t| (t.name, t.partition_data.iter().map(|p| p.index).collect()))
                        .collect();
                    return proceed(codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED, denied);
                }
            }
            let denied = take_refused(&mut r.topic_data, |t| c.may_topic(Operation::Write, &t.name));
            proceed(
                codes::TOPIC_AUTHORIZATION_FAILED,
                denied.into_iter().map(|t| (t.name, t.partition_data.iter().map(|p| p.index).collect())).collect(),
            )
        }
        RequestKind::Fetch(r) => {
            let follower = r.replica_id.0 >= 0 || r.replica_state.replica_id.0 >= 0;
            let cluster_ok = follower && c.may_cluster(Operation::ClusterAction);
            let image = ctx.image.borrow();
            let name_of = |t: &fetch_request::FetchTopic| -> Option<String> {
                if t.topic.is_empty() {
                    image.topic_by_id(t.topic_id.as_bytes()).map(|(n, _)| n.clone())
                } else {
                    Some(t.topic.to_string())
                }
            };
            let denied = take_refused(&mut r.topics, |t| {
                if follower {
                    cluster_ok
                } else {
                    name_of(t).is_none_or(|n| c.may_topic(Operation::Read, &n))
                }
            });
            // Fetch names topics (< v13) or their ids (v13+); answer the same way.
            let (by_id, by_name): (Vec<_>, Vec<_>) = denied.into_iter().partition(|t| t.topic.is_empty());
            let partitions = |t: &fetch_request::FetchTopic| t.partitions.iter().map(|p| p.partition).collect();
            Verdict::Proceed(Denied {
                topics: by_name.iter().map(|t| (t.topic.clone(), partitions(t))).collect(),
                topic_ids: by_id.iter().map(|t| (t.topic_id, partitions(t))).collect(),
                code: codes::TOPIC_AUTHORIZATION_FAILED,
                ..Denied::default()
            })
        }
        RequestKind::ListOffsets(r) => {
            let denied = take_refused(&mut r.topics, |t| c.may_topic(Operation::Describe, &t.name));
            proceed(
                codes::TOPIC_AUTHORIZATION_FAILED,
                denied
                    .into_iter()
                    .map(|t| (t.name, t.partitions.iter().map(|p| p.partition_index).collect()))
                    .collect(),
            )
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            let follower = r.replica_id.0 >= 0;
            let cluster_ok = follower && c.may_cluster(Operation::ClusterAction);
            let denied = take_refused(&mut r.topics, |t| {
                if follower {
                    cluster_ok
                } else {
                    c.may_topic(Operation::Describe, &t.topic)
                }
            });
            proceed(
                codes::TOPIC_AUTHORIZATION_FAILED,
                denied.into_iter().map(|t| (t.topic, t.partitions.iter().map(|p| p.partition).collect())).collect(),
            )
        }
        RequestKind::Metadata(r) => {
            let may_create_all = c.may_cluster(Operation::Create);
            let mut names = Vec::new();
            if let Some(topics) = &mut r.topics {
                topics.retain(|t| match &t.name {
                    Some(name) if !c.may_topic(Operation::Describe, name) => {
                        names.push(name.clone());
                        false
                    }
                    _ => true,
                });
                // A topic that does not exist and may not be created is refused here: Metadata
                // v0-3 auto-creates whatever it names (the handler ignores the flag there).
                if !may_create_all {
                    let image = ctx.image.borrow();
                    topics.retain(|t| match &t.name {
                        Some(name) if image.topic(name).is_none() && !c.may_topic(Operation::Create, name) => {
                            names.push(name.clone());
                            false
                        }
                        _ => true,
                    });
                }
            }
            Verdict::Proceed(Denied { code: codes::TOPIC_AUTHORIZATION_FAILED, names, ..Denied::default() })
        }
        RequestKind::CreateTopics(r) => {
            let may_create_all = c.may_cluster(Operation::Create);
            let denied = take_refused(&mut r.topics, |t| may_create_all || c.may_topic(Operation::Create, &t.name));
            let names = denied.into_iter().map(|t| t.name).collect();
            Verdict::Proceed(Denied { code: codes::TOPIC_AUTHORIZATION_FAILED, names, ..Denied::default() })
        }
        RequestKind::DeleteTopics(r) => {
            let mut denied = take_refused(&mut r.topic_names, |t| c.may_topic(Operation::Delete, t));
            // v6 names topics (or their ids) in `topics`.
            let image = ctx.image.borrow();
            r.topics.retain(|t| {
                let name = match &t.name {
                    Some(n) => Some(n.clone()),
                    None => image.topic_by_id(t.topic_id.as_bytes()).map(|(n, _)| TopicName(n.clone().into())),
                };
                match name {
                    Some(n) if !c.may_topic(Operation::Delete, &n) => {
                        denied.push(n);
                        false
                    }
                    _ => true,
                }
            });
            Verdict::Proceed(Denied { code: codes::TOPIC_AUTHORIZATION_FAILED, names: denied, ..Denied::default() })
        }
        RequestKind::FindCoordinator(r) => {
            let keys: Vec<&str> = if r.coordinator_keys.is_empty() {
                vec![&r.key]
            } else {
                r.coordinator_keys.iter().map(|k| &**k).collect()
            };
            let (resource_type, code) = match r.key_type {
                1 => (ResourceType::TransactionalId, codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
                _ => (ResourceType::Group, codes::GROUP_AUTHORIZATION_FAILED),
            };
            if keys.iter().all(|k| c.may(Operation::Describe, resource_type, k)) {
                return proceed(codes::NONE, Vec::new());
            }
            if version < 4 {
                return Verdict::Answer(ResponseKind::FindCoordinator(
                    FindCoordinatorResponse::default()
                        .with_error_code(code)
                        .with_node_id(BrokerId(-1))
                        .with_host("".into())
                        .with_port(-1),
                ));
            }
            let coordinators = keys
                .iter()
                .map(|k| {
                    let allowed = c.may(Operation::Describe, resource_type, k);
                    find_coordinator_response::Coordinator::default()
                        .with_key((*k).to_string().into())
                        .with_node_id(BrokerId(-1))
                        .with_host("".into())
                        .with_port(-1)
                        .with_error_code(if allowed { codes::COORDINATOR_NOT_AVAILABLE } else { code })
                })
                .collect();
            Verdict::Answer(ResponseKind::FindCoordinator(
                FindCoordinatorResponse::default().with_coordinators(coordinators),
            ))
        }
        RequestKind::JoinGroup(r) if !c.may_group(Operation::Read, &r.group_id) => Verdict::Answer(
            ResponseKind::JoinGroup(JoinGroupResponse::default().with_error_code(codes::GROUP_AUTHORIZATION_FAILED)),
        ),
        RequestKind::SyncGroup(r) if !c.may_group(Operation::Read, &r.group_id) => Verdict::Answer(
            ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(codes::GROUP_AUTHORIZATION_FAILED)),
        ),
        RequestKind::Heartbeat(r) if !c.may_group(Operation::Read, &r.group_id) => Verdict::Answer(
            ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(codes::GROUP_AUTHORIZATION_FAILED)),
        ),
        RequestKind::LeaveGroup(r) if !c.may_group(Operation::Read, &r.group_id) => Verdict::Answer(
            ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(codes::GROUP_AUTHORIZATION_FAILED)),
        ),
        RequestKind::ConsumerGroupHeartbeat(r) if !c.may_group(Operation::Read, &r.group_id) => {
            Verdict::Answer(ResponseKind::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatResponse::default().with_error_code(codes::GROUP_AUTHORIZATION_FAILED),
            ))
        }
        RequestKind::JoinGroup(_)
        | RequestKind::ConsumerGroupHeartbeat(_)
        | RequestKind::SyncGroup(_)
        | RequestKind::Heartbeat(_)
        | RequestKind::LeaveGroup(_) => proceed(codes::NONE, Vec::new()),
        RequestKind::OffsetCommit(r) => {
            let group_ok = c.may_group(Operation::Read, &r.group_id);
            let denied = take_refused(&mut r.topics, |t| group_ok && c.may_topic(Operation::Read, &t.name));
            let code = if group_ok { codes::TOPIC_AUTHORIZATION_FAILED } else { codes::GROUP_AUTHORIZATION_FAILED };
            proceed(
                code,
                denied
                    .into_iter()
                    .map(|t| (t.name, t.partitions.iter().map(|p| p.partition_index).collect()))
                    .collect(),
            )
        }
        RequestKind::OffsetFetch(r) if r.groups.is_empty() => {
            if !c.may_group(Operation::Describe, &r.group_id) {
                return Verdict::Answer(ResponseKind::OffsetFetch(
                    OffsetFetchResponse::default().with_error_code(codes::GROUP_AUTHORIZATION_FAILED),
                ));
            }
            if let Some(topics) = &mut r.topics {
                topics.retain(|t| c.may_topic(Operation::Describe, &t.name));
            }
            proceed(codes::NONE, Vec::new())
        }
        RequestKind::OffsetFetch(r) => {
            let denied = take_refused(&mut r.groups, |g| c.may_group(Operation::Describe, &g.group_id));
            for g in &mut r.groups {
                if let Some(topics) = &mut g.topics {
                    topics.retain(|t| c.may_topic(Operation::Describe, &t.name));
                }
            }
            Verdict::Proceed(Denied {
                groups: denied.into_iter().map(|g| g.group_id).collect(),
                code: codes::GROUP_AUTHORIZATION_FAILED,
                ..Denied::default()
            })
        }
        RequestKind::DescribeGroups(r) => {
            if r.groups.iter().all(|g| c.may_group(Operation::Describe, g)) {
                return proceed(codes::NONE, Vec::new());
            }
            let groups = r
                .groups
                .iter()
                .map(|g| {
                    describe_groups_response::DescribedGroup::default()
                        .with_group_id(g.clone())
                        .with_error_code(codes::GROUP_AUTHORIZATION_FAILED)
                })
                .collect();
            Verdict::Answer(ResponseKind::DescribeGroups(DescribeGroupsResponse::default().with_groups(groups)))
        }
        RequestKind::ConsumerGroupDescribe(r) => {
            if r.group_ids.iter().all(|g| c.may_group(Operation::Describe, g)) {
                return proceed(codes::NONE, Vec::new());
            }
            let groups = r
                .group_ids
                .iter()
                .map(|g| {
                    consumer_group_describe_response::DescribedGroup::default()
                        .with_group_id(g.clone())
                        .with_error_code(codes::GROUP_AUTHORIZATION_FAILED)
                })
                .collect();
            Verdict::Answer(ResponseKind::ConsumerGroupDescribe(
                ConsumerGroupDescribeResponse::default().with_groups(groups),
            ))
        }
        RequestKind::ListGroups(_) => proceed(codes::NONE, Vec::new()), // filtered in `apply`
        // DESCRIBE on each topic, checked by the handler (before it paginates).
        RequestKind::DescribeTopicPartitions(_) => proceed(codes::NONE, Vec::new()),
        RequestKind::DeleteRecords(r) => {
            let denied = take_refused(&mut r.topics, |t| c.may_topic(Operation::Delete, &t.name));
            proceed(
                codes::TOPIC_AUTHORIZATION_FAILED,
                denied
                    .into_iter()
                    .map(|t| (t.name, t.partitions.iter().map(|p| p.partition_index).collect()))
                    .collect(),
            )
        }
        RequestKind::CreatePartitions(r) => {
            let denied = take_refused(&mut r.topics, |t| c.may_topic(Operation::Alter, &t.name));
            let names = denied.into_iter().map(|t| t.name).collect();
            Verdict::Proceed(Denied { code: codes::TOPIC_AUTHORIZATION_FAILED, names, ..Denied::default() })
        }
        RequestKind::DescribeConfigs(r) => {
            let denied = take_config_resources(&c, &mut r.resources, Operation::DescribeConfigs, |x| {
                (x.resource_type, x.resource_name.to_string())
            });
            Verdict::Proceed(Denied { config_resources: denied, ..Denied::default() })
        }
        RequestKind::AlterConfigs(r) => {
            let denied = take_config_resources(&c, &mut r.resources, Operation::AlterConfigs, |x| {
                (x.resource_type, x.resource_name.to_string())
            });
            Verdict::Proceed(Denied { config_resources: denied, ..Denied::default() })
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            let denied = take_config_resources(&c, &mut r.resources, Operation::AlterConfigs, |x| {
                (x.resource_type, x.resource_name.to_string())
            });
            Verdict::Proceed(Denied { config_resources: denied, ..Denied::default() })
        }
        RequestKind::DeleteGroups(r) => {
            let denied = take_refused(&mut r.groups_names, |g| c.may_group(Operation::Delete, g));
            Verdict::Proceed(Denied { groups: denied, code: codes::GROUP_AUTHORIZATION_FAILED, ..Denied::default() })
        }
        RequestKind::OffsetDelete(r) => {
            if !c.may_group(Operation::Delete, &r.group_id) {
                return Verdict::Answer(ResponseKind::OffsetDelete(
                    OffsetDeleteResponse::default().with_error_code(codes::GROUP_AUTHORIZATION_FAILED),
                ));
            }
            let denied = take_refused(&mut r.topics, |t| c.may_topic(Operation::Read, &t.name));
            proceed(
                codes::TOPIC_AUTHORIZATION_FAILED,
                denied
                    .into_iter()
                    .map(|t| (t.name, t.partitions.iter().map(|p| p.partition_index).collect()))
                    .collect(),
            )
        }
        RequestKind::TxnOffsetCommit(r) => {
            let code = if !c.may(Operation::Write, ResourceType::TransactionalId, &r.transactional_id) {
                Some(codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
            } else if !c.may_group(Operation::Read, &r.group_id) {
                Some(codes::GROUP_AUTHORIZATION_FAILED)
            } else {
                None
            };
            let denied = take_refused(&mut r.topics, |t| code.is_none() && c.may_topic(Operation::Read, &t.name));
            proceed(
                code.unwrap_or(codes::TOPIC_AUTHORIZATION_FAILED),
                denied
                    .into_iter()
                    .map(|t| (t.name, t.partitions.iter().map(|p| p.partition_index).collect()))
                    .collect(),
            )
        }
        // A client's AddPartitionsToTxn (v0-3): WRITE on the transactional id and each topic;
        // if anything is refused nothing is added (Kafka: OPERATION_NOT_ATTEMPTED for the rest).
        RequestKind::AddPartitionsToTxn(r) if r.transactions.is_empty() => {
            let id_ok = c.may(Operation::Write, ResourceType::TransactionalId, &r.v3_and_below_transactional_id);
            let topic_ok: Vec<bool> =
                r.v3_and_below_topics.iter().map(|t| c.may_topic(Operation::Write, &t.name)).collect();
            if id_ok && topic_ok.iter().all(|ok| *ok) {
                return proceed(codes::NONE, Vec::new());
            }
            let results = r
                .v3_and_below_topics
                .iter()
                .zip(topic_ok)
                .map(|(t, ok)| {
                    let code = match (id_ok, ok) {
                        (false, _) => codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                        (true, false) => codes::TOPIC_AUTHORIZATION_FAILED,
                        (true, true) => codes::OPERATION_NOT_ATTEMPTED,
                    };
                    add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default()
                        .with_name(t.name.clone())
                        .with_results_by_partition(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default()
                                        .with_partition_index(*p)
                                        .with_partition_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
            Verdict::Answer(ResponseKind::AddPartitionsToTxn(
                AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results),
            ))
        }
        RequestKind::InitProducerId(r) => {
            let allowed = match &r.transactional_id {
                Some(id) => c.may(Operation::Write, ResourceType::TransactionalId, id),
                None => c.may_cluster(Operation::IdempotentWrite) || may_write_some_topic(&c),
            };
            if allowed {
                return proceed(codes::NONE, Vec::new());
            }
            let code = if r.transactional_id.is_some() {
                codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
            } else {
                codes::CLUSTER_AUTHORIZATION_FAILED
            };
            Verdict::Answer(ResponseKind::InitProducerId(
                InitProducerIdResponse::default().with_error_code(code).with_producer_id(ProducerId(-1)),
            ))
        }
        RequestKind::EndTxn(r) if !c.may(Operation::Write, ResourceType::TransactionalId, &r.transactional_id) => {
            Verdict::Answer(ResponseKind::EndTxn(
                EndTxnResponse::default().with_error_code(codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
            ))
        }
        RequestKind::AddOffsetsToTxn(r)
            if !c.may(Operation::Write, ResourceType::TransactionalId, &r.transactional_id) =>
        {
            Verdict::Answer(ResponseKind::AddOffsetsToTxn(
                AddOffsetsToTxnResponse::default().with_error_code(codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
            ))
        }
        RequestKind::AddOffsetsToTxn(r) if !c.may_group(Operation::Read, &r.group_id) => {
            Verdict::Answer(ResponseKind::AddOffsetsToTxn(
                AddOffsetsToTxnResponse::default().with_error_code(codes::GROUP_AUTHORIZATION_FAILED),
            ))
        }
        RequestKind::EndTxn(_) | RequestKind::AddOffsetsToTxn(_) => proceed(codes::NONE, Vec::new()),
        RequestKind::CreateAcls(r) if !c.may_cluster(Operation::Alter) => {
            let results = r
                .creations
                .iter()
                .map(|_| {
                    create_acls_response::AclCreationResult::default()
                        .with_error_code(codes::CLUSTER_AUTHORIZATION_FAILED)
                })
                .collect();
            Verdict::Answer(ResponseKind::CreateAcls(CreateAclsResponse::default().with_results(results)))
        }
        RequestKind::DeleteAcls(r) if !c.may_cluster(Operation::Alter) => {
            let results = r
                .filters
                .iter()
                .map(|_| {
                    delete_acls_response::DeleteAclsFilterResult::default()
                        .with_error_code(codes::CLUSTER_AUTHORIZATION_FAILED)
                })
                .collect();
            Verdict::Answer(ResponseKind::DeleteAcls(DeleteAclsResponse::default().with_filter_results(results)))
        }
        RequestKind::DescribeAcls(_) if !c.may_cluster(Operation::Describe) => {
            Verdict::Answer(ResponseKind::DescribeAcls(
                DescribeAclsResponse::default().with_error_code(codes::CLUSTER_AUTHORIZATION_FAILED),
            ))
        }
        RequestKind::DescribeUserScramCredentials(_) if !c.may_cluster(Operation::Describe) => {
            Verdict::Answer(ResponseKind::DescribeUserScramCredentials(
                DescribeUserScramCredentialsResponse::default().with_error_code(codes::CLUSTER_AUTHORIZATION_FAILED),
            ))
        }
        RequestKind::AlterUserScramCredentials(r) if !c.may_cluster(Operation::Alter) => {
            let users: std::collections::BTreeSet<String> = r
                .deletions
                .iter()
                .map(|d| d.name.to_string())
                .chain(r.upsertions.iter().map(|u| u.name.to_string()))
                .collect();
            let results = users
                .into_iter()
                .map(|u| {
                    alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default()
                        .with_user(u.into())
                        .with_error_code(codes::CLUSTER_AUTHORIZATION_FAILED)
                })
                .collect();
            Verdict::Answer(ResponseKind::AlterUserScramCredentials(
                AlterUserScramCredentialsResponse::default().with_results(results),
            ))
        }
        RequestKind::ElectLeaders(r) if !c.may_cluster(Operation::Alter) => {
            let results = r
                .topic_partitions
                .iter()
                .flatten()
                .map(|t| {
                    elect_leaders_response::ReplicaElectionResult::default()
                        .with_topic(t.topic.clone())
                        .with_partition_result(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    elect_leaders_response::PartitionResult::default()
                                        .with_partition_id(*p)
                                        .with_error_code(codes::CLUSTER_AUTHORIZATION_FAILED)
                                })
                                .collect(),
                        )
                })
                .collect();
            let code = if version >= 1 { codes::CLUSTER_AUTHORIZATION_FAILED } else { codes::NONE };
            Verdict::Answer(ResponseKind::ElectLeaders(
                ElectLeadersResponse::default().with_error_code(code).with_replica_election_results(results),
            ))
        }
        RequestKind::AlterPartitionReassignments(_) if !c.may_cluster(Operation::Alter) => {
            Verdict::Answer(ResponseKind::AlterPartitionReassignments(
                AlterPartitionReassignmentsResponse::default().with_error_code(codes::CLUSTER_AUTHORIZATION_FAILED),
            ))
        }
        RequestKind::ListPartitionReassignments(_) if !c.may_cluster(Operation::Describe) => {
            Verdict::Answer(ResponseKind::ListPartitionReassignments(
                ListPartitionReassignmentsResponse::default().with_error_code(codes::CLUSTER_AUTHORIZATION_FAILED),
            ))
        }
        RequestKind::DescribeLogDirs(_) if !c.may_cluster(Operation::Describe) => {
            Verdict::Answer(ResponseKind::DescribeLogDirs(
                DescribeLogDirsResponse::default().with_error_code(codes::CLUSTER_AUTHORIZATION_FAILED),
            ))
        }
        RequestKind::DescribeClientQuotas(_) if !c.may_cluster(Operation::DescribeConfigs) => {
            Verdict::Answer(ResponseKind::DescribeClientQuotas(
                DescribeClientQuotasResponse::default()
                    .with_error_code(codes::CLUSTER_AUTHORIZATION_FAILED)
                    .with_entries(None),
            ))
        }
        RequestKind::AlterClientQuotas(r) if !c.may_cluster(Operation::AlterConfigs) => {
            let entries = r
                .entries
                .iter()
                .map(|e| {
                    alter_client_quotas_response::EntryData::default()
                        .with_error_code(codes::CLUSTER_AUTHORIZATION_FAILED)
                        .with_entity(
                            e.entity
                                .iter()
                                .map(|d| {
                                    alter_client_quotas_response::EntityData::default()
                                        .with_entity_type(d.entity_type.clone())
                                        .with_entity_name(d.entity_name.clone())
                                })
                                .collect(),
                        )
                })
                .collect();
            Verdict::Answer(ResponseKind::AlterClientQuotas(AlterClientQuotasResponse::default().with_entries(entries)))
        }
        RequestKind::ElectLeaders(_)
        | RequestKind::AlterPartitionReassignments(_)
        | RequestKind::ListPartitionReassignments(_)
        | RequestKind::ListTransactions(_) => proceed(codes::NONE, Vec::new()), // listings filtered in `apply`
        RequestKind::DescribeTransactions(r) => {
            let denied = take_refused(&mut r.transactional_ids, |id| {
                c.may(Operation::Describe, ResourceType::TransactionalId, id)
            });
            Verdict::Proceed(Denied {
                transactional_ids: denied,
                code: codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                ..Denied::default()
            })
        }
        RequestKind::DescribeProducers(r) => {
            let denied = take_refused(&mut r.topics, |t| c.may_topic(Operation::Read, &t.name));
            proceed(
                codes::TOPIC_AUTHORIZATION_FAILED,
                denied.into_iter().map(|t| (t.name, t.partition_indexes)).collect(),
            )
        }
        // Requests only brokers send: CLUSTER_ACTION on the cluster (Kafka's rule), e.g. an ACL
        // for the inter-broker listener's principal from the brokers' hosts.
        RequestKind::WriteTxnMarkers(_) | RequestKind::AddPartitionsToTxn(_) => {
            if c.may_cluster(Operation::ClusterAction) {
                proceed(codes::NONE, Vec::new())
            } else {
                Verdict::Close(format!("{} without CLUSTER_ACTION on the cluster", api_name(request)))
            }
        }
        RequestKind::CreateAcls(_)
        | RequestKind::DeleteAcls(_)
        | RequestKind::DescribeAcls(_)
        | RequestKind::DescribeUserScramCredentials(_)
        | RequestKind::AlterUserScramCredentials(_)
        | RequestKind::DescribeCluster(_)
        | RequestKind::DescribeLogDirs(_)
        | RequestKind::DescribeClientQuotas(_)
        | RequestKind::AlterClientQuotas(_) => proceed(codes::NONE, Vec::new()),
        _ if c.may_cluster(Operation::Alter) => proceed(codes::NONE, Vec::new()),
        other => Verdict::Close(format!(
            "{:?} is served only to principals with ALTER on the cluster while authorization is on",
            api_name(other)
        )),
    }
}

/// Takes the items `may` refuses out of `items` (their order kept) and returns them.
fn take_refused<T>(items: &mut Vec<T>, mut may: impl FnMut(&T) -> bool) -> Vec<T> {
    let (allowed, refused) = std::mem::take(items).into_iter().partition(|item| may(item));
    *items = allowed;
    refused
}

/// Takes the config resources `operation` is refused on out of `resources` (topics: on the
/// topic; brokers: on the cluster); returns them with their error codes.
fn take_config_resources<T>(
    c: &Checker<'_>,
    resources: &mut Vec<T>,
    operation: Operation,
    key: impl Fn(&T) -> (i8, String),
) -> Vec<(i8, String, i16)> {
    let mut denied = Vec::new();
    resources.retain(|r| {
        let (resource_type, name) = key(r);
        let refused = match resource_type {
            CONFIG_RESOURCE_TOPIC => (!c.may_topic(operation, &name)).then_some(codes::TOPIC_AUTHORIZATION_FAILED),
            CONFIG_RESOURCE_BROKER => (!c.may_cluster(operation)).then_some(codes::CLUSTER_AUTHORIZATION_FAILED),
            _ => (!c.may_cluster(Operation::Alter)).then_some(codes::CLUSTER_AUTHORIZATION_FAILED),
        };
        match refused {
            Some(code) => {
                denied.push((resource_type, name, code));
                false
            }
            None => true,
        }
    });
    denied
}

/// Kafka 3.x: an idempotent producer may init without IDEMPOTENT_WRITE if it may WRITE to
/// some topic.
fn may_write_some_topic(c: &Checker<'_>) -> bool {
    let image = c.ctx.image.borrow();
    let names: Vec<String> = image.topics.keys().cloned().collect();
    drop(image);
    names.iter().any(|n| c.may_topic(Operation::Write, n))
}

fn api_name(request: &RequestKind) -> String {
    let debug = format!("{request:?}");
    debug.split('(').next().unwrap_or("request").to_string()
}

impl Denied {
    /// Puts the denied resources' errors into `response`.
    pub fn apply(self, ctx: &ShardContext, identity: &Identity, response: &mut ResponseKind) {
        if !ctx.config.security.authorizer.enabled {
            return;
        }
        let code = self.code;
        match response {
            ResponseKind::Produce(r) => r.responses.extend(self.topics.into_iter().map(|(name, partitions)| {
                TopicProduceResponse::default().with_name(name).with_partition_responses(
                    partitions
                        .into_iter()
                        .map(|p| PartitionProduceResponse::default().with_index(p).with_error_code(code))
                        .collect(),
                )
            })),
            ResponseKind::Fetch(r) => {
                let failed = |partitions: Vec<i32>| -> Vec<PartitionData> {
                    partitions
                        .into_iter()
                        .map(|p| {
                            PartitionData::default()
                                .with_partition_index(p)
                                .with_error_code(code)
                                .with_high_watermark(-1)
                                .with_last_stable_offset(-1)
                                .with_log_start_offset(-1)
                                .with_records(Some(Default::default()))
                        })
                        .collect()
                };
                for (name, partitions) in self.topics {
                    r.responses
                        .push(FetchableTopicResponse::default().with_topic(name).with_partitions(failed(partitions)));
                }
                for (id, partitions) in self.topic_ids {
                    r.responses
                        .push(FetchableTopicResponse::default().with_topic_id(id).with_partitions(failed(partitions)));
                }
            }
            ResponseKind::ListOffsets(r) => r.topics.extend(self.topics.into_iter().map(|(name, partitions)| {
                ListOffsetsTopicResponse::default().with_name(name).with_partitions(
                    partitions
                        .into_iter()
                        .map(|p| {
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(p)
                                .with_error_code(code)
                                .with_timestamp(-1)
                                .with_offset(-1)
                        })
                        .collect(),
                )
            })),
            ResponseKind::OffsetForLeaderEpoch(r) => {
                r.topics.extend(self.topics.into_iter().map(|(name, partitions)| {
                    OffsetForLeaderTopicResult::default().with_topic(name).with_partitions(
                        partitions
                            .into_iter()
                            .map(|p| {
                                EpochEndOffset::default()
                                    .with_partition(p)
                                    .with_error_code(code)
                                    .with_leader_epoch(-1)
                                    .with_end_offset(-1)
                            })
                            .collect(),
                    )
                }))
            }
            ResponseKind::OffsetCommit(r) => r.topics.extend(self.topics.into_iter().map(|(name, partitions)| {
                OffsetCommitResponseTopic::default().with_name(name).with_partitions(
                    partitions
                        .into_iter()
                        .map(|p| OffsetCommitResponsePartition::default().with_partition_index(p).with_error_code(code))
                        .collect(),
                )
            })),
            ResponseKind::Metadata(r) => {
                // Every-topic Metadata: only what the principal may describe.
                let c = Checker { ctx, identity };
                r.topics.retain(|t| t.name.as_ref().is_none_or(|n| c.may_topic(Operation::Describe, n)));
                r.topics.extend(self.names.into_iter().map(|n| {
                    MetadataResponseTopic::default().with_name(Some(n)).with_error_code(code).with_partitions(vec![])
                }));
            }
            ResponseKind::CreateTopics(r) => r.topics.extend(self.names.into_iter().map(|n| {
                CreatableTopicResult::default()
                    .with_name(n)
                    .with_error_code(code)
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
            })),
            ResponseKind::DeleteTopics(r) => r.responses.extend(
                self.names
                    .into_iter()
                    .map(|n| DeletableTopicResult::default().with_name(Some(n)).with_error_code(code)),
            ),
            ResponseKind::DeleteRecords(r) => r.topics.extend(self.topics.into_iter().map(|(name, partitions)| {
                delete_records_response::DeleteRecordsTopicResult::default().with_name(name).with_partitions(
                    partitions
                        .into_iter()
                        .map(|p| {
                            delete_records_response::DeleteRecordsPartitionResult::default()
                                .with_partition_index(p)
                                .with_low_watermark(-1)
                                .with_error_code(code)
                        })
                        .collect(),
                )
            })),
            ResponseKind::CreatePartitions(r) => r.results.extend(self.names.into_iter().map(|n| {
                create_partitions_response::CreatePartitionsTopicResult::default().with_name(n).with_error_code(code)
            })),
            ResponseKind::DescribeConfigs(r) => {
                r.results.extend(self.config_resources.into_iter().map(|(t, name, code)| {
                    describe_configs_response::DescribeConfigsResult::default()
                        .with_resource_type(t)
                        .with_resource_name(name.into())
                        .with_error_code(code)
                }))
            }
            ResponseKind::AlterConfigs(r) => {
                r.responses.extend(self.config_resources.into_iter().map(|(t, name, code)| {
                    alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_resource_type(t)
                        .with_resource_name(name.into())
                        .with_error_code(code)
                }))
            }
            ResponseKind::IncrementalAlterConfigs(r) => {
                r.responses.extend(self.config_resources.into_iter().map(|(t, name, code)| {
                    incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_resource_type(t)
                        .with_resource_name(name.into())
                        .with_error_code(code)
                }))
            }
            ResponseKind::OffsetFetch(r) => {
                // Every committed offset (no topic list): only topics the principal may describe.
                let c = Checker { ctx, identity };
                r.topics.retain(|t| c.may_topic(Operation::Describe, &t.name));
                for g in &mut r.groups {
                    g.topics.retain(|t| c.may_topic(Operation::Describe, &t.name));
                }
                r.groups.extend(self.groups.into_iter().map(|g| {
                    offset_fetch_response::OffsetFetchResponseGroup::default().with_group_id(g).with_error_code(code)
                }));
            }
            ResponseKind::DeleteGroups(r) => r.results.extend(self.groups.into_iter().map(|g| {
                delete_groups_response::DeletableGroupResult::default().with_group_id(g).with_error_code(code)
            })),
            ResponseKind::OffsetDelete(r) => r.topics.extend(self.topics.into_iter().map(|(name, partitions)| {
                offset_delete_response::OffsetDeleteResponseTopic::default().with_name(name).with_partitions(
                    partitions
                        .into_iter()
                        .map(|p| {
                            offset_delete_response::OffsetDeleteResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(code)
                        })
                        .collect(),
                )
            })),
            ResponseKind::TxnOffsetCommit(r) => r.topics.extend(self.topics.into_iter().map(|(name, partitions)| {
                txn_offset_commit_response::TxnOffsetCommitResponseTopic::default().with_name(name).with_partitions(
                    partitions
                        .into_iter()
                        .map(|p| {
                            txn_offset_commit_response::TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(code)
                        })
                        .collect(),
                )
            })),
            ResponseKind::ListTransactions(r) => {
                let c = Checker { ctx, identity };
                r.transaction_states
                    .retain(|t| c.may(Operation::Describe, ResourceType::TransactionalId, &t.transactional_id));
            }
            ResponseKind::DescribeTransactions(r) => {
                r.transaction_states.extend(self.transactional_ids.into_iter().map(|id| {
                    describe_transactions_response::TransactionState::default()
                        .with_transactional_id(id)
                        .with_error_code(code)
                        .with_producer_id(ProducerId(-1))
                }))
            }
            ResponseKind::DescribeProducers(r) => r.topics.extend(self.topics.into_iter().map(|(name, partitions)| {
                describe_producers_response::TopicResponse::default().with_name(name).with_partitions(
                    partitions
                        .into_iter()
                        .map(|p| {
                            describe_producers_response::PartitionResponse::default()
                                .with_partition_index(p)
                                .with_error_code(code)
                        })
                        .collect(),
                )
            })),
            ResponseKind::ListGroups(r) => {
                let c = Checker { ctx, identity };
                if !c.may_cluster(Operation::Describe) {
                    r.groups.retain(|g| c.may_group(Operation::Describe, &g.group_id));
                }
            }
            _ => {}
        }
    }
}
