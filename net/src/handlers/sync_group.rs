//! SyncGroup (v0–v5): the leader's assignment reaches every member; followers wait for it on
//! the group's coordinator shard.

use std::rc::Rc;

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use crate::group::coordinator::SyncResult;
use crate::group::service::on_group_shard;
use crate::group::{codes, opt_string};
use crate::handlers::str_bytes;
use crate::shard_context::ShardContext;

pub async fn handle(ctx: &Rc<ShardContext>, request: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let group_id = request.group_id.0.to_string();
    let result = if group_id.is_empty() {
        SyncResult::error(codes::INVALID_GROUP_ID)
    } else {
        let member_id = request.member_id.to_string();
        let instance_id = opt_string(&request.group_instance_id);
        let protocol_type = opt_string(&request.protocol_type);
        let protocol_name = opt_string(&request.protocol_name);
        let assignments: Vec<(String, bytes::Bytes)> =
            request.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect();
        let generation_id = request.generation_id;
        let gid = group_id.clone();
        on_group_shard(ctx, &group_id, move |groups| async move {
            groups
                .sync(
                    &gid,
                    &member_id,
                    instance_id.as_deref(),
                    generation_id,
                    protocol_type.as_deref(),
                    protocol_name.as_deref(),
                    assignments,
                )
                .await
        })
        .await
        .unwrap_or_else(SyncResult::error)
    };
    let r = SyncGroupResponse::default().with_error_code(result.error).with_assignment(result.assignment);
    if version >= 5 {
        r.with_protocol_type(result.protocol_type.map(str_bytes))
            .with_protocol_name(result.protocol_name.map(str_bytes))
    } else {
        r
    }
}
