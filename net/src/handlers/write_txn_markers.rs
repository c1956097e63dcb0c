//! WriteTxnMarkers (v1, Kafka 4.x): a transaction coordinator on another node asks this
//! partition leader to end a transaction: commit or abort markers in data partitions, the
//! transaction's end in `__consumer_offsets` partitions
//! ([`crate::txn_markers::complete_here`]); markers are handled one after another, in request
//! order.

use std::rc::Rc;

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use crate::handlers::str_bytes;
use crate::shard_context::ShardContext;
use crate::txn_markers::complete_here;

pub async fn handle(ctx: &Rc<ShardContext>, request: WriteTxnMarkersRequest, _version: i16) -> WriteTxnMarkersResponse {
    let mut results = Vec::with_capacity(request.markers.len());
    for marker in request.markers {
        let partitions: Vec<(String, i32)> = marker
            .topics
            .iter()
            .flat_map(|t| t.partition_indexes.iter().map(move |p| (t.name.0.to_string(), *p)))
            .collect();
        let written = complete_here(
            ctx,
            marker.producer_id.0,
            marker.producer_epoch,
            marker.coordinator_epoch,
            marker.transaction_result,
            partitions,
        )
        .await;
        // Answer in the request's topic order, each topic once.
        let mut topics: Vec<WritableTxnMarkerTopicResult> = Vec::new();
        for ((topic, partition), code) in written {
            let result =
                WritableTxnMarkerPartitionResult::default().with_partition_index(partition).with_error_code(code.0);
            match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                Some(t) => t.partitions.push(result),
                None => topics.push(
                    WritableTxnMarkerTopicResult::default()
                        .with_name(TopicName(str_bytes(topic)))
                        .with_partitions(vec![result]),
                ),
            }
        }
        results.push(WritableTxnMarkerResult::default().with_producer_id(marker.producer_id).with_topics(topics));
    }
    WriteTxnMarkersResponse::default().with_markers(results)
}
