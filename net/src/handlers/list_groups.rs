//! ListGroups (v0–v5): every group of every shard, classic and consumer-protocol (KIP-848),
//! filtered by state (v4+, case-insensitive like Kafka) and type (v5+: `classic`, `consumer`).

use std::rc::Rc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use crate::group::codes;
use crate::group::service::GroupShard;
use crate::handlers::str_bytes;
use crate::shard_context::ShardContext;

pub const GROUP_TYPE: &str = "classic";
/// The group type of consumer-protocol groups.
pub const CONSUMER_GROUP_TYPE: &str = "consumer";

pub async fn handle(ctx: &Rc<ShardContext>, request: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let per_shard = ctx
        .mesh
        .call_all(|| async {
            let mut out: Vec<(String, String, &'static str, &'static str)> = Vec::new();
            let groups = GroupShard::try_current()?;
            let mut consumer = std::collections::HashSet::new();
            groups.for_each_consumer_group(|g| {
                consumer.insert(g.id.clone());
                out.push((g.id.clone(), "consumer".to_string(), g.state().name(), CONSUMER_GROUP_TYPE));
            });
            // A consumer group's offsets live in a classic group of its id: listed once.
            groups.for_each_group(|g| {
                if !consumer.contains(&g.id) {
                    let protocol_type = g.protocol_type().unwrap_or_default().to_string();
                    out.push((g.id.clone(), protocol_type, g.state().name(), GROUP_TYPE))
                }
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
        for (id, protocol_type, state, group_type) in list {
            if version >= 4 && !states.is_empty() && !states.contains(&state.to_lowercase()) {
                continue;
            }
            if version >= 5 && !types.is_empty() && !types.iter().any(|t| t == group_type) {
                continue;
            }
            let mut g = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(id)))
                .with_protocol_type(str_bytes(protocol_type));
            if version >= 4 {
                g = g.with_group_state(str_bytes(state));
            }
            if version >= 5 {
                g = g.with_group_type(str_bytes(group_type));
            }
            groups.push(g);
        }
    }
    groups.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
    ListGroupsResponse::default().with_throttle_time_ms(0).with_error_code(error).with_groups(groups)
}
