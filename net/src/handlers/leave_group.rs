//! LeaveGroup (v0–v5; a batch of members from v3, static members by instance id).

use std::rc::Rc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::group::service::{now_ms, on_group_shard};
use crate::group::{codes, opt_string};
use crate::shard_context::ShardContext;

pub async fn handle(ctx: &Rc<ShardContext>, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let group_id = request.group_id.0.to_string();
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        request.members.iter().map(|m| (m.member_id.to_string(), opt_string(&m.group_instance_id))).collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let (top_error, member_errors) = if group_id.is_empty() {
        (codes::INVALID_GROUP_ID, Vec::new())
    } else {
        let gid = group_id.clone();
        let l = leaving.clone();
        let n = leaving.len();
        on_group_shard(ctx, &group_id, move |groups| async move {
            let config = groups.config.clone();
            match groups.with_group(&gid, false, |g| g.leave(now_ms(), &config, &l)) {
                Some(errors) => (codes::NONE, errors),
                None => (codes::UNKNOWN_MEMBER_ID, vec![codes::UNKNOWN_MEMBER_ID; n]),
            }
        })
        .await
        .unwrap_or_else(|code| (code, Vec::new()))
    };
    if version < 3 {
        let error =
            if top_error != codes::NONE { top_error } else { member_errors.first().copied().unwrap_or(codes::NONE) };
        return LeaveGroupResponse::default().with_error_code(error);
    }
    if top_error != codes::NONE && member_errors.is_empty() {
        return LeaveGroupResponse::default().with_error_code(top_error);
    }
    let members = leaving
        .into_iter()
        .zip(member_errors)
        .map(|((member_id, instance_id), error)| {
            MemberResponse::default()
                .with_member_id(crate::handlers::str_bytes(member_id))
                .with_group_instance_id(instance_id.map(crate::handlers::str_bytes))
                .with_error_code(error)
        })
        .collect();
    LeaveGroupResponse::default().with_error_code(top_error).with_members(members)
}
