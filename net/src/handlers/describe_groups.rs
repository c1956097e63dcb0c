//! DescribeGroups (v0–v6): state, protocol, members; member metadata and assignments only
//! when Stable (like Kafka). Unknown groups are Dead (v6+: GROUP_ID_NOT_FOUND), and so are
//! consumer-protocol groups, as in Kafka (ConsumerGroupDescribe describes those).

use std::rc::Rc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use crate::group::codes;
use crate::group::coordinator::GroupState;
use crate::group::service::on_group_shard;
use crate::handlers::str_bytes;
use crate::shard_context::ShardContext;

/// A group as DescribeGroups shows it (plain data, crosses shards).
pub struct GroupSummary {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    /// (member id, instance id, client id, client host, metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, bytes::Bytes, bytes::Bytes)>,
}

/// The group's summary; `Ok(None)` if there is no such group.
pub async fn summary(ctx: &ShardContext, group_id: &str) -> Result<Option<GroupSummary>, i16> {
    let gid = group_id.to_string();
    on_group_shard(ctx, group_id, move |groups| async move {
        if groups.consumer_group(&gid, |_| ()).is_some() {
            return None; // not a classic group (Kafka: GROUP_ID_NOT_FOUND / Dead)
        }
        groups.with_group(&gid, false, |g| {
            let stable = g.state() == GroupState::Stable;
            let protocol = if stable { g.protocol_name().unwrap_or_default().to_string() } else { String::new() };
            GroupSummary {
                state: g.state().name(),
                protocol_type: g.protocol_type().unwrap_or_default().to_string(),
                members: g
                    .members()
                    .map(|m| {
                        let (metadata, assignment) = if stable {
                            (m.metadata_for(&protocol), m.assignment.clone())
                        } else {
                            (bytes::Bytes::new(), bytes::Bytes::new())
                        };
                        (
                            m.member_id.clone(),
                            m.instance_id.clone(),
                            m.client_id.clone(),
                            m.client_host.clone(),
                            metadata,
                            assignment,
                        )
                    })
                    .collect(),
                protocol,
            }
        })
    })
    .await
}

pub async fn handle(ctx: &Rc<ShardContext>, request: DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
    let mut out = Vec::with_capacity(request.groups.len());
    for group_id in request.groups {
        let id = group_id.0.to_string();
        let described = DescribedGroup::default().with_group_id(group_id);
        let found = if id.is_empty() { Ok(None) } else { summary(ctx, &id).await };
        let found = match found {
            Ok(found) => found,
            Err(code) => {
                out.push(described.with_error_code(code));
                continue;
            }
        };
        let Some(s) = found else {
            let d = described.with_group_state(str_bytes("Dead"));
            out.push(if version >= 6 {
                d.with_error_code(codes::GROUP_ID_NOT_FOUND)
                    .with_error_message(Some(str_bytes(format!("Group {id} not found."))))
            } else {
                d.with_error_code(codes::NONE)
            });
            continue;
        };
        let members = s
            .members
            .into_iter()
            .map(|(member_id, instance_id, client_id, client_host, metadata, assignment)| {
                let m = DescribedGroupMember::default()
                    .with_member_id(str_bytes(member_id))
                    .with_client_id(str_bytes(client_id))
                    .with_client_host(str_bytes(client_host))
                    .with_member_metadata(metadata)
                    .with_member_assignment(assignment);
                if version >= 4 {
                    m.with_group_instance_id(instance_id.map(str_bytes))
                } else {
                    m
                }
            })
            .collect();
        out.push(
            described
                .with_error_code(codes::NONE)
                .with_group_state(str_bytes(s.state))
                .with_protocol_type(str_bytes(s.protocol_type))
                .with_protocol_data(str_bytes(s.protocol))
                .with_members(members),
        );
    }
    DescribeGroupsResponse::default().with_throttle_time_ms(0).with_groups(out)
}
