//! A CLI session with a cluster: the bootstrap connection, the nodes Metadata names, and one
//! connection per node opened on first use, so per-partition requests (ListOffsets, Produce,
//! Fetch) go to partition leaders and group requests to the group's coordinator
//! (FindCoordinator) — what a Kafka client does, so every command works on a multi-node cluster.
//!
//! Owns: routing and the topic/partition layout read from Metadata. Must never: create a topic
//! as a side effect (every Metadata request sets `allow_auto_topic_creation` false), or retry
//! without a deadline.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponse;
use kafka_protocol::messages::{ApiKey, BrokerId, ListOffsetsRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::error_code::codes;

use crate::client::Connection;
use crate::error::{kafka_error, unknown_topic, CliError, CliResult};

/// How long a coordinator look-up or a leaderless partition is retried.
const RETRY_DEADLINE: Duration = Duration::from_secs(30);
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// ListOffsets timestamps (Kafka's sentinels).
pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;

pub fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(s(name))
}

/// One partition as Metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub error_code: i16,
}

pub struct Session {
    bootstrap: String,
    /// node id → "host:port".
    nodes: HashMap<i32, String>,
    /// "host:port" → connection.
    conns: HashMap<String, Connection>,
    /// topic → partition → leader, until a request says a leader moved.
    leader_cache: HashMap<String, BTreeMap<i32, i32>>,
}

impl Session {
    pub fn connect(bootstrap: &str) -> CliResult<Session> {
        let conn = Connection::connect(bootstrap)?;
        let mut conns = HashMap::new();
        conns.insert(bootstrap.to_string(), conn);
        Ok(Session { bootstrap: bootstrap.to_string(), nodes: HashMap::new(), conns, leader_cache: HashMap::new() })
    }

    /// The bootstrap connection.
    pub fn any(&mut self) -> &mut Connection {
        self.conns.get_mut(&self.bootstrap).expect("the bootstrap connection is kept")
    }

    /// The connection to `addr`, opened on first use.
    pub fn to_addr(&mut self, addr: &str) -> CliResult<&mut Connection> {
        if !self.conns.contains_key(addr) {
            let conn = Connection::connect(addr)?;
            self.conns.insert(addr.to_string(), conn);
        }
        Ok(self.conns.get_mut(addr).expect("just inserted"))
    }

    /// The connection to node `id` (known from an earlier Metadata).
    pub fn to_node(&mut self, id: i32) -> CliResult<&mut Connection> {
        if !self.nodes.contains_key(&id) {
            self.metadata(Some(&[]))?;
        }
        let addr = self.nodes.get(&id).cloned().ok_or_else(|| {
            CliError::kafka(format!("node {id} is not in the cluster's metadata; see `sluice cluster describe`"))
        })?;
        self.to_addr(&addr)
    }

    /// Node ids → addresses from the last Metadata.
    pub fn nodes(&self) -> &HashMap<i32, String> {
        &self.nodes
    }

    /// Metadata of `topics` (`None`: every topic); remembers the nodes.
    pub fn metadata(&mut self, topics: Option<&[String]>) -> CliResult<MetadataResponse> {
        let request = MetadataRequest::default().with_allow_auto_topic_creation(false).with_topics(
            topics
                .map(|ts| ts.iter().map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t)))).collect()),
        );
        let response = self.any().call(&request)?;
        self.nodes =
            response.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port))).collect();
        Ok(response)
    }

    /// The partitions of `topic`, sorted; an error naming what to do when it does not exist.
    pub fn partitions(&mut self, topic: &str) -> CliResult<Vec<PartitionInfo>> {
        let response = self.metadata(Some(&[topic.to_string()]))?;
        let t = response
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))
            .ok_or_else(|| unknown_topic(topic))?;
        match t.error_code {
            0 => {}
            codes::UNKNOWN_TOPIC_OR_PARTITION => return Err(unknown_topic(topic)),
            code => return Err(kafka_error(&format!("metadata of topic '{topic}'"), code, None)),
        }
        let mut out: Vec<PartitionInfo> = t
            .partitions
            .iter()
            .map(|p| PartitionInfo {
                partition: p.partition_index,
                leader: p.leader_id.0,
                replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                error_code: p.error_code,
            })
            .collect();
        out.sort_by_key(|p| p.partition);
        Ok(out)
    }

    /// Partition → leader of `topic`, waiting (bounded) while some partition has none.
    pub fn leaders(&mut self, topic: &str) -> CliResult<BTreeMap<i32, i32>> {
        let deadline = Instant::now() + RETRY_DEADLINE;
        loop {
            let parts = self.partitions(topic)?;
            if parts.iter().all(|p| p.leader >= 0 && self.nodes.contains_key(&p.leader)) {
                return Ok(parts.iter().map(|p| (p.partition, p.leader)).collect());
            }
            if Instant::now() >= deadline {
                return Err(CliError::kafka(format!(
                    "topic '{topic}' has partitions without a leader; check the brokers with `sluice cluster describe`"
                )));
            }
            std::thread::sleep(RETRY_BACKOFF);
        }
    }

    /// [`Session::leaders`], remembered until [`Session::forget_leaders`]: the console tools
    /// send one Metadata per topic, not one per fetch or produce.
    pub fn cached_leaders(&mut self, topic: &str) -> CliResult<BTreeMap<i32, i32>> {
        if let Some(leaders) = self.leader_cache.get(topic) {
            return Ok(leaders.clone());
        }
        let leaders = self.leaders(topic)?;
        self.leader_cache.insert(topic.to_string(), leaders.clone());
        Ok(leaders)
    }

    /// A leader moved (or its node failed): the next [`Session::cached_leaders`] asks again.
    pub fn forget_leaders(&mut self, topic: &str) {
        self.leader_cache.remove(topic);
    }

    /// Drops the connection to node `id` (it failed); the next request reconnects.
    pub fn forget_node(&mut self, id: i32) {
        if let Some(addr) = self.nodes.get(&id) {
            if *addr != self.bootstrap {
                self.conns.remove(addr);
            }
        }
    }

    /// Offsets at `timestamp` ([`LATEST_TIMESTAMP`], [`EARLIEST_TIMESTAMP`] or ms since the
    /// epoch; -1 in the answer: no record at or after it) of `partitions` of `topic`, asked of
    /// each partition's leader.
    pub fn list_offsets(&mut self, topic: &str, partitions: &[i32], timestamp: i64) -> CliResult<BTreeMap<i32, i64>> {
        let leaders = self.leaders(topic)?;
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in partitions {
            let leader =
                *leaders.get(p).ok_or_else(|| CliError::kafka(format!("topic '{topic}' has no partition {p}")))?;
            by_leader.entry(leader).or_default().push(*p);
        }
        let mut out = BTreeMap::new();
        for (leader, parts) in by_leader {
            let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
                ListOffsetsTopic::default().with_name(topic_name(topic)).with_partitions(
                    parts
                        .iter()
                        .map(|p| ListOffsetsPartition::default().with_partition_index(*p).with_timestamp(timestamp))
                        .collect(),
                ),
            ]);
            let response = self.to_node(leader)?.call(&request)?;
            for t in &response.topics {
                for p in &t.partitions {
                    crate::error::check(&format!("list offsets of {topic}/{}", p.partition_index), p.error_code, None)?;
                    out.insert(p.partition_index, p.offset);
                }
            }
        }
        for p in partitions {
            if !out.contains_key(p) {
                return Err(CliError::kafka(format!("list offsets of {topic}/{p}: no answer")));
            }
        }
        Ok(out)
    }

    /// The connection to `group`'s coordinator, retrying (bounded) while it is being elected.
    pub fn coordinator(&mut self, group: &str) -> CliResult<&mut Connection> {
        let addr = self.coordinator_addr(group)?;
        self.to_addr(&addr)
    }

    pub fn coordinator_addr(&mut self, group: &str) -> CliResult<String> {
        let deadline = Instant::now() + RETRY_DEADLINE;
        loop {
            let conn = self.any();
            let version = conn.version(ApiKey::FindCoordinator)?;
            let request = if version >= 4 {
                FindCoordinatorRequest::default().with_key_type(0).with_coordinator_keys(vec![s(group)])
            } else {
                FindCoordinatorRequest::default().with_key_type(0).with_key(s(group))
            };
            let response = conn.call(&request)?;
            let (code, message, host, port) = match response.coordinators.first() {
                Some(c) if version >= 4 => (c.error_code, c.error_message.clone(), c.host.to_string(), c.port),
                _ => (response.error_code, response.error_message.clone(), response.host.to_string(), response.port),
            };
            match code {
                0 => return Ok(format!("{host}:{port}")),
                codes::COORDINATOR_NOT_AVAILABLE | codes::COORDINATOR_LOAD_IN_PROGRESS if Instant::now() < deadline => {
                    std::thread::sleep(RETRY_BACKOFF)
                }
                code => {
                    return Err(kafka_error(
                        &format!("find the coordinator of group '{group}'"),
                        code,
                        message.as_ref().map(|m| m.as_str()),
                    ))
                }
            }
        }
    }
}
