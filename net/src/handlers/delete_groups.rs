//! DeleteGroups (v0–v2): deletes empty groups and their committed offsets (tombstones in
//! `__consumer_offsets`); NON_EMPTY_GROUP for live groups, GROUP_ID_NOT_FOUND for unknown.

use std::rc::Rc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::group::codes;
use crate::group::service::on_group_shard;
use crate::shard_context::ShardContext;

pub async fn handle(ctx: &Rc<ShardContext>, request: DeleteGroupsRequest, _version: i16) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group_id in request.groups_names {
        let id = group_id.0.to_string();
        let error = if id.is_empty() {
            codes::INVALID_GROUP_ID
        } else {
            let gid = id.clone();
            on_group_shard(ctx, &id, move |groups| async move { groups.delete_group(&gid).await })
                .await
                .unwrap_or_else(|code| code)
        };
        results.push(DeletableGroupResult::default().with_group_id(group_id).with_error_code(error));
    }
    DeleteGroupsResponse::default().with_throttle_time_ms(0).with_results(results)
}
