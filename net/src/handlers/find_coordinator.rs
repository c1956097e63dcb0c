//! FindCoordinator (v0–v6, batched keys from v4): a group's coordinator (key type 0) is the
//! leader of its `__consumer_offsets` partition, a transactional id's (key type 1) the leader of
//! its `__transaction_state` partition — this node on a single node; in a cluster the node the
//! image names, or COORDINATOR_NOT_AVAILABLE while the partition has no leader (or the internal
//! topic is not created yet; asking creates it). An empty key is INVALID_REQUEST, and there is
//! no share-group coordinator yet (INVALID_REQUEST).

use std::rc::Rc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use crate::group::codes;
use crate::group::offsets_log::{partition_for, OFFSETS_TOPIC};
use crate::handlers::str_bytes;
use crate::shard_context::ShardContext;
use crate::txn::state_log::TXN_STATE_TOPIC;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// A coordinator's node id and advertised endpoint.
type Endpoint = (i32, String, i32);

/// The coordinator of one key, or the error and message to answer with.
async fn lookup(ctx: &ShardContext, key_type: i8, key: &str, listener: &str) -> Result<Endpoint, (i16, &'static str)> {
    let (topic, partitions) = match key_type {
        KEY_TYPE_GROUP if key.is_empty() => return Err((codes::INVALID_REQUEST, "empty group id")),
        KEY_TYPE_GROUP => (OFFSETS_TOPIC, ctx.config.group.offsets_topic_num_partitions),
        KEY_TYPE_TRANSACTION if key.is_empty() => return Err((codes::INVALID_REQUEST, "empty transactional id")),
        KEY_TYPE_TRANSACTION => (TXN_STATE_TOPIC, ctx.config.txn.state_log_num_partitions),
        _ => return Err((codes::INVALID_REQUEST, "unsupported coordinator key type")),
    };
    if !ctx.is_clustered() {
        let (host, port) = ctx.config.advertised_endpoint(listener);
        return Ok((ctx.config.node_id, host, port));
    }
    let partition = partition_for(key, partitions);
    let known = ctx.replica_states.borrow().contains_key(topic);
    if !known {
        crate::controller::ensure_internal_topic(topic, partitions).await;
        return Err((codes::COORDINATOR_NOT_AVAILABLE, "the coordinator's internal topic is being created"));
    }
    let leader = ctx.replica_state(topic, partition).leader_id;
    let image = ctx.image.borrow();
    match image.brokers.get(&leader) {
        Some(b) if !b.fenced => match b.endpoint(listener) {
            Some((host, port)) => Ok((b.id, host.to_string(), port)),
            None => Err((codes::COORDINATOR_NOT_AVAILABLE, "the coordinator has no endpoint on this listener")),
        },
        _ => Err((codes::COORDINATOR_NOT_AVAILABLE, "the coordinator's partition has no leader")),
    }
}

/// `listener`: the one the request came in on; the coordinator is named at its endpoint there.
pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: FindCoordinatorRequest,
    version: i16,
    listener: &str,
) -> FindCoordinatorResponse {
    let response = FindCoordinatorResponse::default().with_throttle_time_ms(0);
    let answer = |found: Result<Endpoint, (i16, &'static str)>| match found {
        Ok((node, host, port)) => (codes::NONE, None, node, host, port),
        Err((error, message)) => (error, Some(message), -1, String::new(), -1),
    };
    if version >= 4 {
        let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
        for key in &request.coordinator_keys {
            let (error, message, node, host, port) = answer(lookup(ctx, request.key_type, key, listener).await);
            coordinators.push(
                Coordinator::default()
                    .with_key(key.clone())
                    .with_error_code(error)
                    .with_error_message(message.map(str_bytes))
                    .with_node_id(BrokerId(node))
                    .with_host(str_bytes(host))
                    .with_port(port),
            );
        }
        return response.with_coordinators(coordinators);
    }
    let (error, message, node, host, port) = answer(lookup(ctx, request.key_type, &request.key, listener).await);
    let response =
        response.with_error_code(error).with_node_id(BrokerId(node)).with_host(str_bytes(host)).with_port(port);
    if version >= 1 {
        response.with_error_message(message.map(str_bytes))
    } else {
        response
    }
}
