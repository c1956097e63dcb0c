//! ConsumerGroupHeartbeat (v0–v1, KIP-848): decoding and Kafka's request checks here, the
//! decision on the group's coordinator shard
//! ([`crate::group::service::GroupShard::consumer_heartbeat`]). v0 members may join without an
//! id (the broker makes one); v1 members bring their own.

use std::rc::Rc;

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment as WireAssignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, RequestHeader};
use uuid::Uuid;

use crate::group::consumer_group::{Assignment, ConsumerGroup, HeartbeatRequest, HeartbeatResponse};
use crate::group::service::on_group_shard;
use crate::group::{codes, opt_string};
use crate::handlers::str_bytes;
use crate::shard_context::ShardContext;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    header: &RequestHeader,
    request: ConsumerGroupHeartbeatRequest,
    version: i16,
    client_host: &str,
) -> ConsumerGroupHeartbeatResponse {
    if !ctx.config.group.consumer_protocol_enabled {
        return response(HeartbeatResponse::error(
            codes::UNSUPPORTED_VERSION,
            "group.coordinator.rebalance.protocols does not include consumer",
        ));
    }
    let group_id = request.group_id.0.to_string();
    if group_id.is_empty() {
        return response(HeartbeatResponse::error(codes::INVALID_REQUEST, "GroupId can't be empty."));
    }
    let owned = request.topic_partitions.as_ref().map(|tps| {
        let mut owned = Assignment::new();
        for tp in tps {
            owned.entry(*tp.topic_id.as_bytes()).or_default().extend(tp.partitions.iter().copied());
        }
        owned.retain(|_, ps| !ps.is_empty());
        owned
    });
    let mut req = HeartbeatRequest {
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: opt_string(&request.instance_id),
        rack_id: opt_string(&request.rack_id),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .as_ref()
            .map(|names| names.iter().map(|n| n.0.to_string()).collect()),
        subscribed_topic_regex: opt_string(&request.subscribed_topic_regex),
        server_assignor: opt_string(&request.server_assignor),
        owned,
        client_id: opt_string(&header.client_id).unwrap_or_default(),
        client_host: super::member_client_host(client_host),
    };
    if let Err((code, message)) = ConsumerGroup::validate_request(&req, version, &ctx.config.group.consumer) {
        return response(HeartbeatResponse { member_id: req.member_id, ..HeartbeatResponse::error(code, message) });
    }
    if req.member_id.is_empty() {
        // v0 join: the coordinator names the member.
        req.member_id = Uuid::new_v4().to_string();
    }
    let member_id = req.member_id.clone();
    let gid = group_id.clone();
    let result =
        on_group_shard(ctx, &group_id, move |groups| async move { groups.consumer_heartbeat(&gid, req).await })
            .await
            .unwrap_or_else(|code| HeartbeatResponse { member_id, ..HeartbeatResponse::error(code, "") });
    response(result)
}

fn response(r: HeartbeatResponse) -> ConsumerGroupHeartbeatResponse {
    let assignment = r.assignment.map(|a| {
        WireAssignment::default().with_topic_partitions(
            a.into_iter()
                .map(|(topic, ps)| {
                    TopicPartitions::default()
                        .with_topic_id(Uuid::from_bytes(topic))
                        .with_partitions(ps.into_iter().collect())
                })
                .collect(),
        )
    });
    let error_message = r.error_message.filter(|m| !m.is_empty());
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(r.error)
        .with_error_message(error_message.map(str_bytes))
        .with_member_id((!r.member_id.is_empty()).then(|| str_bytes(r.member_id)))
        .with_member_epoch(r.member_epoch)
        .with_heartbeat_interval_ms(r.heartbeat_interval_ms)
        .with_assignment(assignment)
}
