//! OffsetDelete (v0): deletes committed offsets of a group; refused per partition with
//! GROUP_SUBSCRIBED_TO_TOPIC while a live `consumer` group subscribes to the topic, and for
//! the whole request with NON_EMPTY_GROUP when a live group's subscriptions are unknown.

use std::rc::Rc;

use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use crate::group::codes;
use crate::group::consumer_subscription_topics;
use crate::group::service::on_group_shard;
use crate::shard_context::ShardContext;

pub async fn handle(ctx: &Rc<ShardContext>, request: OffsetDeleteRequest, _version: i16) -> OffsetDeleteResponse {
    let group_id = request.group_id.0.to_string();
    let response = OffsetDeleteResponse::default().with_throttle_time_ms(0);
    if group_id.is_empty() {
        return response.with_error_code(codes::INVALID_GROUP_ID);
    }
    let mut asked: Vec<(String, i32, i16)> = Vec::new();
    for t in &request.topics {
        let name = t.name.0.to_string();
        let partitions = ctx.image.borrow().topic(&name).map(|m| m.partitions);
        for p in &t.partitions {
            let valid = partitions.is_some_and(|n| p.partition_index >= 0 && p.partition_index < n);
            let code = if valid { codes::NONE } else { codes::UNKNOWN_TOPIC_OR_PARTITION };
            asked.push((name.clone(), p.partition_index, code));
        }
    }
    let gid = group_id.clone();
    let outcome = on_group_shard(ctx, &group_id, move |groups| async move {
        // A consumer-protocol group: the topics its members subscribe to (names and regex
        // matches); its offsets are in the classic group of the same id.
        let consumer = groups.consumer_group(&gid, |g| {
            (!g.is_empty()).then(|| g.subscribed_topic_names().cloned().collect::<std::collections::BTreeSet<_>>())
        });
        let check = match consumer {
            Some(subscribed) => Some(Ok(subscribed)),
            None => groups.with_group(&gid, false, |g| {
                if g.member_count() == 0 {
                    return Ok(None);
                }
                g.subscribed_topics(consumer_subscription_topics).map(Some).ok_or(codes::NON_EMPTY_GROUP)
            }),
        };
        let subscribed = match check {
            None => return Err(codes::GROUP_ID_NOT_FOUND),
            Some(Err(code)) => return Err(code),
            Some(Ok(s)) => s,
        };
        let mut asked = asked;
        for (t, _, code) in asked.iter_mut() {
            if *code == codes::NONE && subscribed.as_ref().is_some_and(|s| s.contains(t.as_str())) {
                *code = codes::GROUP_SUBSCRIBED_TO_TOPIC;
            }
        }
        let deletable: Vec<(String, i32)> =
            asked.iter().filter(|(_, _, c)| *c == codes::NONE).map(|(t, p, _)| (t.clone(), *p)).collect();
        if !deletable.is_empty() {
            groups.delete_offsets(&gid, &deletable).await?;
        }
        Ok(asked)
    })
    .await
    .unwrap_or_else(Err);
    let asked = match outcome {
        Err(code) => return response.with_error_code(code),
        Ok(a) => a,
    };
    let mut topics: Vec<OffsetDeleteResponseTopic> = Vec::new();
    for (topic, partition, code) in asked {
        let p = OffsetDeleteResponsePartition::default().with_partition_index(partition).with_error_code(code);
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == topic => t.partitions.push(p),
            _ => topics.push(
                OffsetDeleteResponseTopic::default()
                    .with_name(kafka_protocol::messages::TopicName(crate::handlers::str_bytes(topic)))
                    .with_partitions(vec![p]),
            ),
        }
    }
    response.with_error_code(codes::NONE).with_topics(topics)
}
