//! ConsumerGroupDescribe (v0–v1, KIP-848): a consumer-protocol group's state, epochs, assignor
//! and members with their subscriptions, current and target assignments (topic ids with
//! names). A classic group or no group answers GROUP_ID_NOT_FOUND, like Kafka.

use std::rc::Rc;

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as WireAssignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, GroupId, TopicName};
use uuid::Uuid;

use crate::group::codes;
use crate::group::consumer_group::{Assignment, TopicsImage};
use crate::group::service::on_group_shard;
use crate::handlers::str_bytes;
use crate::shard_context::ShardContext;

/// Kafka's `member_type` (v1): the member speaks the consumer protocol.
const MEMBER_TYPE_CONSUMER: i8 = 1;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: ConsumerGroupDescribeRequest,
    version: i16,
) -> ConsumerGroupDescribeResponse {
    let mut out = Vec::with_capacity(request.group_ids.len());
    for group_id in request.group_ids {
        let id = group_id.0.to_string();
        let described = if !ctx.config.group.consumer_protocol_enabled {
            error(group_id, codes::UNSUPPORTED_VERSION, "the consumer protocol is not enabled")
        } else if id.is_empty() {
            error(group_id, codes::INVALID_GROUP_ID, "GroupId can't be empty.")
        } else {
            let gid = id.clone();
            let answer = on_group_shard(ctx, &id, move |groups| async move {
                let topics = groups.topics_image();
                groups.consumer_group(&gid, |g| describe(g, &topics, version))
            })
            .await;
            match answer {
                Ok(Some(d)) => d.with_group_id(group_id),
                Ok(None) => error(group_id, codes::GROUP_ID_NOT_FOUND, &format!("Group {id} not found.")),
                Err(code) => error(group_id, code, ""),
            }
        };
        out.push(described);
    }
    ConsumerGroupDescribeResponse::default().with_throttle_time_ms(0).with_groups(out)
}

fn error(group_id: GroupId, code: i16, message: &str) -> DescribedGroup {
    DescribedGroup::default()
        .with_group_id(group_id)
        .with_error_code(code)
        .with_error_message((!message.is_empty()).then(|| str_bytes(message)))
}

fn wire(a: &Assignment, topics: &TopicsImage) -> WireAssignment {
    WireAssignment::default().with_topic_partitions(
        a.iter()
            .map(|(id, ps)| {
                TopicPartitions::default()
                    .with_topic_id(Uuid::from_bytes(*id))
                    .with_topic_name(TopicName(str_bytes(topics.name_of(id).unwrap_or_default())))
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    )
}

fn describe(g: &crate::group::consumer_group::ConsumerGroup, topics: &TopicsImage, version: i16) -> DescribedGroup {
    let empty = Assignment::new();
    let members = g
        .members()
        .map(|m| {
            let member = Member::default()
                .with_member_id(str_bytes(m.member_id.clone()))
                .with_instance_id(m.instance_id.clone().map(str_bytes))
                .with_rack_id(m.rack_id.clone().map(str_bytes))
                .with_member_epoch(m.member_epoch)
                .with_client_id(str_bytes(m.client_id.clone()))
                .with_client_host(str_bytes(m.client_host.clone()))
                .with_subscribed_topic_names(
                    m.subscribed_topic_names.iter().map(|t| TopicName(str_bytes(t.clone()))).collect(),
                )
                .with_subscribed_topic_regex(m.subscribed_topic_regex.clone().map(str_bytes))
                .with_assignment(wire(&m.assigned, topics))
                .with_target_assignment(wire(g.target_of(&m.member_id).unwrap_or(&empty), topics));
            if version >= 1 {
                member.with_member_type(MEMBER_TYPE_CONSUMER)
            } else {
                member
            }
        })
        .collect();
    DescribedGroup::default()
        .with_error_code(codes::NONE)
        .with_group_state(str_bytes(g.state().name()))
        .with_group_epoch(g.group_epoch())
        .with_assignment_epoch(g.target_epoch())
        .with_assignor_name(str_bytes(g.assignor_name().map_or("uniform", |a| a.name())))
        .with_members(members)
}
