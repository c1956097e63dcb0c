//! ListOffsets: earliest (-2, and -4 earliest-local), latest (-1: the high watermark, or the
//! last stable offset for isolation level read_committed, as Kafka's, which also answers no
//! timestamp lookup at or past it), max
//! timestamp (-3), or the first offset whose batch timestamp is ≥ a given time. Unknown
//! timestamps give offset -1 / timestamp -1 as in Kafka v1+. A partition listed more than
//! once in one request gets INVALID_REQUEST for every occurrence (Kafka's
//! `duplicatePartitions`).

use std::rc::Rc;

use futures::future::join_all;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::handlers::{check_leader_epoch, codes};
use crate::shard_context::ShardContext;

pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;
pub const EARLIEST_LOCAL: i64 = -4;
pub const LATEST_TIERED: i64 = -5;
/// Isolation level 1 = READ_COMMITTED.
const READ_COMMITTED: i8 = 1;

pub async fn handle(ctx: &Rc<ShardContext>, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let mut seen = std::collections::HashMap::<(&str, i32), u32>::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            *seen.entry((topic.name.0.as_str(), p.partition_index)).or_default() += 1;
        }
    }
    let duplicates: std::collections::HashSet<(String, i32)> =
        seen.into_iter().filter(|(_, n)| *n > 1).map(|((t, p), _)| (t.to_string(), p)).collect();
    let request_isolation_level = request.isolation_level;
    let mut topics = Vec::new();
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let partitions = ctx.image.borrow().topic(&name).map(|t| t.partitions);
        let futures = topic.partitions.into_iter().map(|p| {
            let name = name.clone();
            let ctx = ctx.clone();
            let duplicate = duplicates.contains(&(name.clone(), p.partition_index));
            async move {
                let index = p.partition_index;
                // leader_epoch exists from v4; the codec refuses a non-default value below that.
                let leader_epoch = if version >= 4 { ctx.replica_state(&name, index).leader_epoch } else { -1 };
                let base = ListOffsetsPartitionResponse::default()
                    .with_partition_index(index)
                    .with_timestamp(-1)
                    .with_offset(-1)
                    .with_leader_epoch(leader_epoch);
                if duplicate {
                    return base.with_error_code(codes::INVALID_REQUEST);
                }
                if partitions.is_none_or(|n| index < 0 || index >= n) {
                    return base.with_error_code(codes::UNKNOWN_TOPIC_OR_PARTITION);
                }
                let epoch_error = check_leader_epoch(&ctx, &name, index, p.current_leader_epoch);
                if epoch_error != codes::NONE {
                    return base.with_error_code(epoch_error);
                }
                let timestamp = p.timestamp;
                let read_committed = request_isolation_level == READ_COMMITTED;
                let answer = ctx
                    .on_partition(&name, index, move |log| async move {
                        match timestamp {
                            LATEST if read_committed => Ok((-1, log.last_stable_offset())),
                            LATEST => Ok((-1, log.high_watermark())),
                            EARLIEST | EARLIEST_LOCAL => Ok((-1, log.log_start_offset())),
                            LATEST_TIERED => Ok((-1, -1)),
                            // Kafka's fetchOffsetByTimestamp: under read_committed an offset at or
                            // past the last stable offset is not answered.
                            MAX_TIMESTAMP => log
                                .max_timestamp_offset()
                                .await
                                .map(|found| visible(found, read_committed.then(|| log.last_stable_offset())))
                                .map_err(|e| e.error_code().0),
                            t if t >= 0 => log
                                .offset_for_timestamp(t)
                                .await
                                .map(|found| visible(found, read_committed.then(|| log.last_stable_offset())))
                                .map_err(|e| e.error_code().0),
                            _ => Err(codes::INVALID_REQUEST),
                        }
                    })
                    .await;
                match answer {
                    None => base.with_error_code(codes::UNKNOWN_TOPIC_OR_PARTITION),
                    Some(Ok((ts, offset))) => base.with_error_code(codes::NONE).with_timestamp(ts).with_offset(offset),
                    Some(Err(code)) => base.with_error_code(code),
                }
            }
        });
        let partitions = join_all(futures).await;
        topics.push(ListOffsetsTopicResponse::default().with_name(topic.name).with_partitions(partitions));
    }
    ListOffsetsResponse::default().with_throttle_time_ms(0).with_topics(topics)
}

/// A timestamp lookup's (offset, timestamp) as the response's (timestamp, offset), or (-1, -1)
/// when nothing qualifies or the offset is at or past `bound` (read_committed: the LSO).
fn visible(found: Option<(i64, i64)>, bound: Option<i64>) -> (i64, i64) {
    match found {
        Some((offset, timestamp)) if bound.is_none_or(|b| offset < b) => (timestamp, offset),
        _ => (-1, -1),
    }
}

#[cfg(test)]
mod tests {
    use super::visible;

    #[test]
    fn read_committed_timestamp_lookups_stop_at_the_last_stable_offset() {
        assert_eq!(visible(Some((5, 1_000)), None), (1_000, 5));
        assert_eq!(visible(Some((5, 1_000)), Some(6)), (1_000, 5));
        assert_eq!(visible(Some((5, 1_000)), Some(5)), (-1, -1), "at the LSO: not yet committed");
        assert_eq!(visible(None, Some(5)), (-1, -1));
    }
}
