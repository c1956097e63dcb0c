//! ListGroups (v0–v5): every group of every shard, filtered by state (v4+, case-insensitive
//! like Kafka) and type (v5+; all groups here are `classic`).

use std::rc::Rc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use crate::group::codes;
use crate::group::service::GroupShard;
use crate::handlers::str_bytes;
use crate::shard_context::ShardContext;

pub const GROUP_TYPE: &str = "classic";

pub async fn handle(ctx: &Rc<ShardContext>, request: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let per_shard = ctx
        .mesh
        .call_all(|| async {
            let mut out: Vec<(String, String, &'static str)> = Vec::new();
            let groups = GroupShard::try_current()?;
            groups.for_each_group(|g| {
                out.push((g.id.clone(), g.protocol_type().unwrap_or_default().to_string(), g.state().name()))
            });
            Some(out)
        })
        .await;
    let states: Vec<String> = request.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = request.types_filter.iter().map(|s| s.to_lowercase()).collect();
    let mut error = codes::NONE;
    let mut groups = Vec::new();
    for shard in per_shard {
        let list = match shard {
            Ok(Some(list)) => list,
            Ok(None) => {
                error = codes::COORDINATOR_LOAD_IN_PROGRESS;
                continue;
            }
            Err(_) => {
                error = codes::COORDINATOR_NOT_AVAILABLE;
                continue;
            }
        };
        for (id, protocol_type, state) in list {
            if version >= 4 && !states.is_empty() && !states.contains(&state.to_lowercase()) {
                continue;
            }
            if version >= 5 && !types.is_empty() && !types.iter().any(|t| t == GROUP_TYPE) {
                continue;
            }
            let mut g = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(id)))
                .with_protocol_type(str_bytes(protocol_type));
            if version >= 4 {
                g = g.with_group_state(str_bytes(state));
            }
            if version >= 5 {
                g = g.with_group_type(str_bytes(GROUP_TYPE));
            }
            groups.push(g);
        }
    }
    groups.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
    ListGroupsResponse::default().with_throttle_time_ms(0).with_error_code(error).with_groups(groups)
}
