//! Admin calls the bench makes before a run: create its topics (CreateTopics), learn partition
//! leaders and broker addresses (Metadata), and find start offsets (ListOffsets).
//!
//! Owns: turning broker answers into a [`ClusterLayout`]. Must never: treat a per-topic or
//! per-partition error code as success (every one becomes an `Err` with its code).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{CreateTopicsRequest, ListOffsetsRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::bench::kafka_client::KafkaConnection;

/// How long to wait for new topics' partitions to get leaders.
const LEADER_WAIT: Duration = Duration::from_secs(20);

/// Topic → partition → leader address ("host:port").
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterLayout {
    pub leaders: BTreeMap<String, Vec<(i32, String)>>,
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub async fn create_topics(
    conn: &KafkaConnection,
    names: &[String],
    partitions: usize,
    replication_factor: i16,
) -> Result<(), String> {
    let request = CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(
        names
            .iter()
            .map(|n| {
                CreatableTopic::default()
                    .with_name(topic_name(n))
                    .with_num_partitions(partitions as i32)
                    .with_replication_factor(replication_factor)
            })
            .collect(),
    );
    let response = conn.call(&request).await?;
    let mut errors = Vec::new();
    for t in &response.topics {
        if t.error_code != 0 {
            errors.push(format!(
                "create topic {}: error {} {}",
                t.name.0.as_str(),
                t.error_code,
                t.error_message.as_ref().map(|m| m.as_str()).unwrap_or("")
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Leaders of every partition of `names`, waiting until each has one.
pub async fn layout(conn: &KafkaConnection, names: &[String]) -> Result<ClusterLayout, String> {
    let deadline = std::time::Instant::now() + LEADER_WAIT;
    loop {
        let request = MetadataRequest::default().with_topics(Some(
            names.iter().map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n)))).collect(),
        ));
        let response = conn.call(&request).await?;
        let brokers: HashMap<i32, String> =
            response.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port))).collect();
        let mut layout = ClusterLayout::default();
        let mut missing = Vec::new();
        for t in &response.topics {
            let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            if t.error_code != 0 {
                missing.push(format!("{name}: error {}", t.error_code));
                continue;
            }
            let mut parts = Vec::new();
            for p in &t.partitions {
                match brokers.get(&p.leader_id.0) {
                    Some(addr) if p.error_code == 0 => parts.push((p.partition_index, addr.clone())),
                    _ => missing.push(format!("{name}/{}: no leader (error {})", p.partition_index, p.error_code)),
                }
            }
            parts.sort();
            layout.leaders.insert(name, parts);
        }
        for n in names {
            if !layout.leaders.contains_key(n) {
                missing.push(format!("{n}: not in metadata"));
            }
        }
        if missing.is_empty() {
            return Ok(layout);
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!("partitions without leaders: {}", missing.join(", ")));
        }
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
}

/// Offsets at `timestamp` (-2 earliest, -1 latest) of `partitions` of `topic`.
pub async fn list_offsets(
    conn: &KafkaConnection,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<HashMap<i32, i64>, String> {
    let request =
        ListOffsetsRequest::default().with_replica_id((-1).into()).with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|p| ListOffsetsPartition::default().with_partition_index(*p).with_timestamp(timestamp))
                    .collect(),
            )]);
    let response = conn.call(&request).await?;
    let mut out = HashMap::new();
    for t in &response.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                return Err(format!("list offsets {topic}/{}: error {}", p.partition_index, p.error_code));
            }
            out.insert(p.partition_index, p.offset);
        }
    }
    for p in partitions {
        if !out.contains_key(p) {
            return Err(format!("list offsets {topic}/{p}: no answer"));
        }
    }
    Ok(out)
}
