//! FindCoordinator (v0–v6, batched keys from v4): this node coordinates every group (key type
//! 0) and every transactional id (key type 1); an empty key is INVALID_REQUEST, and there is no
//! share-group coordinator yet (INVALID_REQUEST).

use std::rc::Rc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use crate::group::codes;
use crate::handlers::str_bytes;
use crate::shard_context::ShardContext;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

fn lookup(key_type: i8, key: &str) -> (i16, Option<&'static str>) {
    match key_type {
        KEY_TYPE_GROUP if key.is_empty() => (codes::INVALID_REQUEST, Some("empty group id")),
        KEY_TYPE_GROUP => (codes::NONE, None),
        KEY_TYPE_TRANSACTION if key.is_empty() => (codes::INVALID_REQUEST, Some("empty transactional id")),
        KEY_TYPE_TRANSACTION => (codes::NONE, None),
        _ => (codes::INVALID_REQUEST, Some("unsupported coordinator key type")),
    }
}

pub async fn handle(ctx: &Rc<ShardContext>, request: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let (node, host, port) = (ctx.config.node_id, ctx.config.advertised_host.clone(), ctx.config.advertised_port);
    let response = FindCoordinatorResponse::default().with_throttle_time_ms(0);
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let (error, message) = lookup(request.key_type, key);
                let found = error == codes::NONE;
                Coordinator::default()
                    .with_key(key.clone())
                    .with_error_code(error)
                    .with_error_message(message.map(str_bytes))
                    .with_node_id(BrokerId(if found { node } else { -1 }))
                    .with_host(str_bytes(if found { host.clone() } else { String::new() }))
                    .with_port(if found { port } else { -1 })
            })
            .collect();
        return response.with_coordinators(coordinators);
    }
    let (error, message) = lookup(request.key_type, &request.key);
    let found = error == codes::NONE;
    let response = response
        .with_error_code(error)
        .with_node_id(BrokerId(if found { node } else { -1 }))
        .with_host(str_bytes(if found { host } else { String::new() }))
        .with_port(if found { port } else { -1 });
    if version >= 1 {
        response.with_error_message(message.map(str_bytes))
    } else {
        response
    }
}
