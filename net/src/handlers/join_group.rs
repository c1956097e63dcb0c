//! JoinGroup (v0–v9): validation here, the decision on the group's coordinator shard
//! ([`crate::group::service::GroupShard::join`]), which may wait until the rebalance completes.
//! v4+ members without an id get MEMBER_ID_REQUIRED first, like Kafka.

use std::rc::Rc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, RequestHeader};

use crate::group::coordinator::{JoinRequest, JoinResult};
use crate::group::service::on_group_shard;
use crate::group::{codes, opt_string};
use crate::handlers::str_bytes;
use crate::shard_context::ShardContext;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    header: &RequestHeader,
    request: JoinGroupRequest,
    version: i16,
    client_host: &str,
) -> JoinGroupResponse {
    let group_id = request.group_id.0.to_string();
    let member_id = request.member_id.to_string();
    if group_id.is_empty() {
        return response(JoinResult::error(codes::INVALID_GROUP_ID, &member_id), version);
    }
    let client_id = opt_string(&header.client_id).unwrap_or_default();
    let join = JoinRequest {
        member_id: member_id.clone(),
        instance_id: opt_string(&request.group_instance_id),
        client_id: client_id.clone(),
        client_host: super::member_client_host(client_host),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 { request.rebalance_timeout_ms } else { request.session_timeout_ms },
        protocol_type: request.protocol_type.to_string(),
        protocols: request.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
        require_known_member_id: version >= 4,
        new_member_id: String::new(),
    };
    let gid = group_id.clone();
    let result = on_group_shard(ctx, &group_id, move |groups| async move {
        let mut join = join;
        join.new_member_id = groups.new_member_id(&client_id);
        groups.join(&gid, join).await
    })
    .await
    .unwrap_or_else(|code| JoinResult::error(code, &member_id));
    response(result, version)
}

fn response(result: JoinResult, version: i16) -> JoinGroupResponse {
    let members = result
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            let m = JoinGroupResponseMember::default().with_member_id(str_bytes(id)).with_metadata(metadata);
            if version >= 5 {
                m.with_group_instance_id(instance.map(str_bytes))
            } else {
                m
            }
        })
        .collect();
    let mut r = JoinGroupResponse::default()
        .with_error_code(result.error)
        .with_generation_id(result.generation_id)
        .with_leader(str_bytes(result.leader))
        .with_member_id(str_bytes(result.member_id))
        .with_members(members);
    if version >= 7 {
        r = r
            .with_protocol_type(result.protocol_type.map(str_bytes))
            .with_protocol_name(result.protocol_name.map(str_bytes));
    } else {
        r = r.with_protocol_name(Some(str_bytes(result.protocol_name.unwrap_or_default())));
    }
    if version >= 9 {
        r = r.with_skip_assignment(result.skip_assignment);
    }
    r
}
