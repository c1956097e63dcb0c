//! Heartbeat (v0–v4): keeps a member's session; REBALANCE_IN_PROGRESS asks it to rejoin.

use std::rc::Rc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::group::service::{now_ms, on_group_shard};
use crate::group::{codes, opt_string};
use crate::shard_context::ShardContext;

pub async fn handle(ctx: &Rc<ShardContext>, request: HeartbeatRequest, _version: i16) -> HeartbeatResponse {
    let group_id = request.group_id.0.to_string();
    let error = if group_id.is_empty() {
        codes::INVALID_GROUP_ID
    } else {
        let member_id = request.member_id.to_string();
        let instance_id = opt_string(&request.group_instance_id);
        let generation_id = request.generation_id;
        let gid = group_id.clone();
        on_group_shard(ctx, &group_id, move |groups| async move {
            groups
                .with_group(&gid, false, |g| g.heartbeat(now_ms(), &member_id, instance_id.as_deref(), generation_id))
                .unwrap_or(codes::UNKNOWN_MEMBER_ID)
        })
        .await
        .unwrap_or_else(|code| code)
    };
    HeartbeatResponse::default().with_error_code(error)
}
