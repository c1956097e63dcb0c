//! The cluster metadata image: topics (name, id, partition count, replication factor, config
//! overrides) and the commands that change it.
//!
//! Owns: validation and application of [`MetadataCommand`]s, as a pure state machine — the same
//! commands will be the entries of the openraft metadata log in the replication issue, so
//! nothing here may do I/O or depend on time or randomness (ids come in the command).
//!
//! Must never: apply a command that failed validation, or let two topics collide by name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_engine::log_config::LogConfig;

use crate::quota::image::{ClientQuotaImage, QuotaCommand};
use crate::security::image::{SecurityCommand, SecurityImage};
use crate::topic_name::{collides, validate_topic_name};

/// Kafka error codes (the one table: `sluice_engine::error_code`).
pub use sluice_engine::error_code::codes;

/// Most partitions one topic may have (a limit on everything).
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;

/// One topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// Kafka topic id (UUID bytes).
    pub id: [u8; 16],
    pub partitions: i32,
    pub replication_factor: i16,
    /// Topic-level config overrides (Kafka names → values), as set by CreateTopics/AlterConfigs.
    pub configs: BTreeMap<String, String>,
    /// Where each partition's replicas are, by partition index. Empty on a single node (and in
    /// images written before clustering): this node is then every partition's only replica.
    #[serde(default)]
    pub assignments: Vec<PartitionAssignment>,
}

/// One broker as registered with the controller quorum (Kafka's `RegisterBrokerRecord`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub id: i32,
    /// The advertised client endpoint (brokers replicate over it too).
    pub host: String,
    pub port: i32,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// A fenced broker leads nothing and is left out of Metadata: it stopped heartbeating or
    /// is shutting down.
    pub fenced: bool,
    /// Every client listener's advertised endpoint (Kafka's `endpoints`); `host`/`port` above
    /// are the inter-broker one's. Empty in registrations written before listeners had names:
    /// `host`/`port` then stand for every listener.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerEndpoint>,
}

/// One listener's advertised endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerEndpoint {
    pub name: String,
    pub host: String,
    pub port: i32,
}

impl BrokerRegistration {
    /// This broker's endpoint on the listener named `listener`, if it has that listener.
    pub fn endpoint(&self, listener: &str) -> Option<(&str, i32)> {
        if self.listeners.is_empty() {
            return Some((&self.host, self.port));
        }
        self.listeners.iter().find(|l| l.name == listener).map(|l| (l.host.as_str(), l.port))
    }
}

/// Where one partition's replicas are and who leads it (Kafka's `PartitionRecord`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAssignment {
    /// Every replica, the preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas (a subset of `replicas`; holds the leader while there is one).
    pub isr: Vec<i32>,
    /// The leader's node id, or -1 when no eligible replica is alive.
    pub leader: i32,
    /// Bumped by every leader change.
    pub leader_epoch: i32,
    /// Bumped by every change of this record (leader, ISR, replicas).
    pub partition_epoch: i32,
    /// An ongoing reassignment (AlterPartitionReassignments, [`crate::reassignment`]): the
    /// replicas being added (they are in `replicas` and catch up as followers) and those to be
    /// removed once every added one is in sync. Both empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<i32>,
}

impl PartitionAssignment {
    /// A new partition on `replicas`, led by the first, all in sync, at epoch 0.
    pub fn new(replicas: Vec<i32>) -> PartitionAssignment {
        let leader = replicas.first().copied().unwrap_or(-1);
        PartitionAssignment {
            isr: replicas.clone(),
            replicas,
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    /// The replication state a broker acts on.
    pub fn replica_state(&self) -> sluice_engine::replica_state::ReplicaState {
        sluice_engine::replica_state::ReplicaState {
            leader_id: self.leader,
            leader_epoch: self.leader_epoch,
            replicas: self.replicas.clone(),
            in_sync_replicas: self.isr.clone(),
            partition_epoch: self.partition_epoch,
        }
    }
}

/// A change to the image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataCommand {
    CreateTopic {
        name: String,
        id: [u8; 16],
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        /// One per partition (empty on a single node, see [`TopicMeta::assignments`]).
        #[serde(default)]
        assignments: Vec<PartitionAssignment>,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        total: i32,
        /// One per added partition (empty on a single node).
        #[serde(default)]
        new_assignments: Vec<PartitionAssignment>,
    },
    /// Replaces the topic's whole override map.
    SetTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// Replaces the topic's override map only if it is still `expected`: a read-modify-write
    /// (IncrementalAlterConfigs) from a node whose image may lag the log, in a cluster.
    SetTopicConfigsIfUnchanged {
        name: String,
        expected: BTreeMap<String, String>,
        configs: BTreeMap<String, String>,
    },
    /// Reserves the next `count` producer ids (Kafka's AllocateProducerIds): ids are handed
    /// out from reserved blocks, so none is ever reused, even across restarts.
    AllocateProducerIds {
        count: i64,
    },
    /// Registers a broker or updates its registration (endpoint, rack, fencing).
    RegisterBroker(BrokerRegistration),
    /// A partition's leader changes its ISR (Kafka's AlterPartition): accepted only from the
    /// current leader at the current leader and partition epochs; the partition epoch is bumped.
    AlterPartition {
        topic: String,
        partition: i32,
        leader_id: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
    /// The active controller fences a broker (its session expired, or it is shutting down):
    /// it leaves every ISR it is not the last member of, and every partition it led gets a
    /// new leader from the rest of the ISR ([`crate::leader_election::after_fencing`]).
    FenceBroker {
        id: i32,
    },
    /// A fenced broker heartbeats again: partitions left without a leader whose ISR holds it
    /// get it back as leader ([`crate::leader_election::after_unfencing`]).
    UnfenceBroker {
        id: i32,
    },
    /// AlterPartitionReassignments (KIP-455): moves a partition to `target` replicas (adding
    /// them first), or cancels its ongoing reassignment (`None`); [`crate::reassignment`].
    Reassign {
        topic: String,
        partition: i32,
        target: Option<Vec<i32>>,
    },
    /// ElectLeaders (KIP-460): each listed partition where an election of `kind` applies gets
    /// its new leader ([`crate::leader_election::elect`]); the others are left as they are.
    /// The active controller's leader rebalance ([`crate::leader_election::imbalanced`]) sends
    /// preferred elections this way too.
    ElectLeaders {
        kind: crate::leader_election::ElectionType,
        partitions: Vec<(String, i32)>,
    },
    /// Sets the cluster id of a new quorum (its first command; refused once set).
    InitCluster {
        cluster_id: String,
    },
    /// ACLs and SCRAM credentials ([`crate::security::image`]).
    Security(SecurityCommand),
    /// Client quotas (AlterClientQuotas, [`crate::quota::image`]).
    ClientQuotas(QuotaCommand),
}

/// Most partitions one ElectLeaders command may name.
pub const MAX_ELECTIONS_PER_COMMAND: usize = 100_000;

/// Largest producer-id block one command may reserve.
pub const MAX_PRODUCER_ID_BLOCK: i64 = 1_000_000;

/// A refused command: Kafka error code and message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataError {
    pub code: i16,
    pub message: String,
}

impl MetadataError {
    pub fn new(code: i16, message: impl Into<String>) -> MetadataError {
        MetadataError { code, message: message.into() }
    }
}

/// The whole image. `version` counts applied commands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub version: u64,
    pub cluster_id: String,
    pub topics: BTreeMap<String, TopicMeta>,
    /// First producer id not yet reserved (images written before idempotence lack it: 0).
    #[serde(default)]
    pub next_producer_id: i64,
    /// Registered brokers by node id (empty on a single node).
    #[serde(default)]
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// ACLs and SCRAM credentials (images written before security lack them: none).
    #[serde(default)]
    pub security: SecurityImage,
    /// Client quotas (images written before quotas lack them: none).
    #[serde(default)]
    pub client_quotas: ClientQuotaImage,
}

impl MetadataImage {
    pub fn new(cluster_id: String) -> MetadataImage {
        MetadataImage {
            version: 0,
            cluster_id,
            topics: BTreeMap::new(),
            next_producer_id: 0,
            brokers: BTreeMap::new(),
            security: SecurityImage::default(),
            client_quotas: ClientQuotaImage::default(),
        }
    }

    pub fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &[u8; 16]) -> Option<(&String, &TopicMeta)> {
        self.topics.iter().find(|(_, t)| &t.id == id)
    }

    /// The effective log config of a topic: broker defaults plus its overrides.
    pub fn log_config(&self, name: &str, defaults: &LogConfig) -> Option<LogConfig> {
        let topic = self.topics.get(name)?;
        let mut config = defaults.clone();
        for (k, v) in &topic.configs {
            // Overrides were validated when set; a value that no longer parses keeps the default.
            let _ = config.set(k, v);
        }
        Some(config)
    }

    /// Checks a command against the image without changing it.
    pub fn validate(&self, command: &MetadataCommand, defaults: &LogConfig) -> Result<(), MetadataError> {
        match command {
            MetadataCommand::AllocateProducerIds { count } => {
                if !(1..=MAX_PRODUCER_ID_BLOCK).contains(count) || self.next_producer_id.checked_add(*count).is_none() {
                    return Err(MetadataError::new(
                        codes::INVALID_REQUEST,
                        format!("cannot reserve {count} producer ids"),
                    ));
                }
                Ok(())
            }
            MetadataCommand::CreateTopic { name, id, partitions, replication_factor, configs, assignments } => {
                validate_topic_name(name).map_err(|m| MetadataError::new(codes::INVALID_TOPIC_EXCEPTION, m))?;
                // On a single node the coordinators' logs live outside the image
                // (crate::group::offsets_log, crate::txn::state_log); a cluster creates them
                // in it, replicated (crate::controller::ensure_internal_topic).
                let internal_outside_image = crate::topic_name::is_internal(name) && assignments.is_empty();
                if self.topics.contains_key(name) || internal_outside_image {
                    return Err(MetadataError::new(
                        codes::TOPIC_ALREADY_EXISTS,
                        format!("Topic '{name}' already exists."),
                    ));
                }
                if let Some(other) = self.topics.keys().find(|t| collides(t, name)) {
                    return Err(MetadataError::new(
                        codes::INVALID_TOPIC_EXCEPTION,
                        format!("Topic '{name}' collides with existing topic: {other}"),
                    ));
                }
                if self.topics.values().any(|t| &t.id == id) {
                    return Err(MetadataError::new(codes::INVALID_REQUEST, "duplicate topic id"));
                }
                if *partitions < 1 || *partitions > MAX_PARTITIONS_PER_TOPIC {
                    return Err(MetadataError::new(
                        codes::INVALID_PARTITIONS,
                        format!(
                            "Number of partitions must be between 1 and {MAX_PARTITIONS_PER_TOPIC}, got {partitions}."
                        ),
                    ));
                }
                if assignments.is_empty() {
                    if *replication_factor != 1 {
                        return Err(MetadataError::new(
                            codes::INVALID_REPLICATION_FACTOR,
                            format!("Replication factor: {replication_factor} larger than available brokers: 1."),
                        ));
                    }
                } else {
                    if assignments.len() != *partitions as usize {
                        return Err(MetadataError::new(codes::INVALID_REQUEST, "one assignment per partition"));
                    }
                    self.validate_assignments(assignments, Some(*replication_factor))?;
                }
                Self::validate_configs(configs, defaults)
            }
            MetadataCommand::DeleteTopic { name } => self.require(name).map(|_| ()),
            MetadataCommand::CreatePartitions { name, total, new_assignments } => {
                let topic = self.require(name)?;
                if topic.assignments.is_empty() != new_assignments.is_empty()
                    || (!new_assignments.is_empty()
                        && new_assignments.len() as i64 != i64::from(*total) - i64::from(topic.partitions))
                {
                    return Err(MetadataError::new(codes::INVALID_REQUEST, "one assignment per added partition"));
                }
                self.validate_assignments(new_assignments, None)?;
                if *total <= topic.partitions {
                    return Err(MetadataError::new(
                        codes::INVALID_PARTITIONS,
                        format!(
                            "Topic currently has {} partitions, which is higher than the requested {total}.",
                            topic.partitions
                        ),
                    ));
                }
                if *total > MAX_PARTITIONS_PER_TOPIC {
                    return Err(MetadataError::new(
                        codes::INVALID_PARTITIONS,
                        format!("at most {MAX_PARTITIONS_PER_TOPIC} partitions"),
                    ));
                }
                Ok(())
            }
            MetadataCommand::SetTopicConfigs { name, configs } => {
                self.require(name)?;
                Self::validate_configs(configs, defaults)
            }
            MetadataCommand::SetTopicConfigsIfUnchanged { name, expected, configs } => {
                if &self.require(name)?.configs != expected {
                    return Err(MetadataError::new(
                        codes::INVALID_UPDATE_VERSION,
                        format!("the configs of topic {name} changed concurrently"),
                    ));
                }
                Self::validate_configs(configs, defaults)
            }
            MetadataCommand::RegisterBroker(broker) => {
                if broker.id < 0 || broker.port <= 0 || broker.port > i32::from(u16::MAX) {
                    return Err(MetadataError::new(codes::INVALID_REQUEST, format!("bad registration {broker:?}")));
                }
                Ok(())
            }
            MetadataCommand::AlterPartition { topic, partition, leader_id, leader_epoch, partition_epoch, isr } => {
                let assignment = self.assignment(topic, *partition)?;
                if *leader_id != assignment.leader || *leader_epoch != assignment.leader_epoch {
                    return Err(MetadataError::new(
                        codes::FENCED_LEADER_EPOCH,
                        format!(
                            "{topic}-{partition}: leader {leader_id} at epoch {leader_epoch} is not the current leader \
                             {} at epoch {}",
                            assignment.leader, assignment.leader_epoch
                        ),
                    ));
                }
                if *partition_epoch != assignment.partition_epoch {
                    return Err(MetadataError::new(
                        codes::INVALID_UPDATE_VERSION,
                        format!(
                            "{topic}-{partition}: partition epoch {partition_epoch} is not {}",
                            assignment.partition_epoch
                        ),
                    ));
                }
                let distinct = isr.iter().collect::<std::collections::BTreeSet<_>>().len() == isr.len();
                if !distinct || !isr.contains(leader_id) || isr.iter().any(|r| !assignment.replicas.contains(r)) {
                    return Err(MetadataError::new(
                        codes::INVALID_REQUEST,
                        format!("{topic}-{partition}: ISR {isr:?} must hold the leader and only replicas"),
                    ));
                }
                if isr.iter().any(|r| self.brokers.get(r).is_none_or(|b| b.fenced)) {
                    return Err(MetadataError::new(
                        codes::INELIGIBLE_REPLICA,
                        format!("{topic}-{partition}: ISR {isr:?} names a fenced or unknown broker"),
                    ));
                }
                Ok(())
            }
            MetadataCommand::Reassign { topic, partition, target } => {
                self.reassigned(topic, *partition, target).map(|_| ())
            }
            MetadataCommand::ElectLeaders { partitions, .. } => {
                if partitions.len() > MAX_ELECTIONS_PER_COMMAND {
                    return Err(MetadataError::new(codes::INVALID_REQUEST, "too many partitions in one election"));
                }
                Ok(())
            }
            MetadataCommand::FenceBroker { id } | MetadataCommand::UnfenceBroker { id } => {
                if !self.brokers.contains_key(id) {
                    return Err(MetadataError::new(codes::INVALID_REQUEST, format!("broker {id} is not registered")));
                }
                Ok(())
            }
            MetadataCommand::Security(c) => self.security.validate(c),
            MetadataCommand::ClientQuotas(c) => self.client_quotas.validate(c),
            MetadataCommand::InitCluster { cluster_id } => {
                if !self.cluster_id.is_empty() || cluster_id.is_empty() || cluster_id.len() > 64 {
                    return Err(MetadataError::new(
                        codes::INVALID_REQUEST,
                        format!("cluster id {cluster_id:?}: already set ({:?}) or invalid", self.cluster_id),
                    ));
                }
                Ok(())
            }
        }
    }

    /// The assignment an election of `kind` would give `topic`-`partition`, or the Kafka error
    /// code saying why there is none (UNKNOWN_TOPIC_OR_PARTITION for a partition without an
    /// assignment). What ElectLeaders answers per partition, and what applying it does.
    pub fn election(
        &self,
        topic: &str,
        partition: i32,
        kind: crate::leader_election::ElectionType,
    ) -> Result<PartitionAssignment, sluice_engine::error_code::ErrorCode> {
        let assignment = self
            .assignment(topic, partition)
            .map_err(|_| sluice_engine::error_code::ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)?;
        let is_fenced = |r: i32| self.brokers.get(&r).is_none_or(|b| b.fenced);
        crate::leader_election::elect(assignment, kind, is_fenced)
    }

    /// A partition's assignment after a Reassign command (`None`: no change), or why it is
    /// refused: an unknown partition, a target naming an unregistered broker, an invalid
    /// target, nothing to cancel.
    pub fn reassigned(
        &self,
        topic: &str,
        partition: i32,
        target: &Option<Vec<i32>>,
    ) -> Result<Option<PartitionAssignment>, MetadataError> {
        let assignment = self.assignment(topic, partition)?;
        let refused = |code: sluice_engine::error_code::ErrorCode| MetadataError::new(code.0, code.name());
        match target {
            None => crate::reassignment::cancel(assignment).map(Some).map_err(refused),
            Some(target) => {
                if let Some(r) = target.iter().find(|r| !self.brokers.contains_key(r)) {
                    return Err(MetadataError::new(
                        codes::INVALID_REPLICA_ASSIGNMENT,
                        format!("Replica {r} is not a registered broker."),
                    ));
                }
                let is_fenced = |r: i32| self.brokers.get(&r).is_none_or(|b| b.fenced);
                crate::reassignment::start(assignment, target, is_fenced).map_err(refused)
            }
        }
    }

    /// A partition's assignment (clustered topics only).
    pub fn assignment(&self, topic: &str, partition: i32) -> Result<&PartitionAssignment, MetadataError> {
        let meta = self.require(topic)?;
        usize::try_from(partition).ok().and_then(|p| meta.assignments.get(p)).ok_or_else(|| {
            MetadataError::new(codes::UNKNOWN_TOPIC_OR_PARTITION, format!("{topic}-{partition} has no assignment"))
        })
    }

    /// New partitions' assignments: each on distinct registered brokers, `replication_factor`
    /// of them when given, in sync and led by the first at epoch 0.
    fn validate_assignments(
        &self,
        assignments: &[PartitionAssignment],
        replication_factor: Option<i16>,
    ) -> Result<(), MetadataError> {
        for a in assignments {
            let distinct = a.replicas.iter().collect::<std::collections::BTreeSet<_>>().len() == a.replicas.len();
            let sized = replication_factor.is_none_or(|rf| a.replicas.len() == rf as usize);
            if a.replicas.is_empty() || !distinct || !sized {
                return Err(MetadataError::new(
                    codes::INVALID_REPLICATION_FACTOR,
                    format!("replicas {:?} for replication factor {replication_factor:?}", a.replicas),
                ));
            }
            if let Some(r) = a.replicas.iter().find(|r| !self.brokers.contains_key(r)) {
                return Err(MetadataError::new(
                    codes::INVALID_REPLICA_ASSIGNMENT,
                    format!("broker {r} is not registered"),
                ));
            }
            if *a != PartitionAssignment::new(a.replicas.clone()) {
                return Err(MetadataError::new(codes::INVALID_REQUEST, "a new partition starts in sync at epoch 0"));
            }
        }
        Ok(())
    }

    fn require(&self, name: &str) -> Result<&TopicMeta, MetadataError> {
        self.topics.get(name).ok_or_else(|| {
            MetadataError::new(codes::UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition.")
        })
    }

    fn validate_configs(configs: &BTreeMap<String, String>, defaults: &LogConfig) -> Result<(), MetadataError> {
        let mut config = defaults.clone();
        for (k, v) in configs {
            config.set(k, v).map_err(|e| MetadataError::new(codes::INVALID_CONFIG, e.to_string()))?;
        }
        config.validate().map_err(|e| MetadataError::new(codes::INVALID_CONFIG, e.to_string()))
    }

    /// Validates and applies a command.
    pub fn apply(&mut self, command: &MetadataCommand, defaults: &LogConfig) -> Result<(), MetadataError> {
        self.validate(command, defaults)?;
        match command.clone() {
            MetadataCommand::CreateTopic { name, id, partitions, replication_factor, configs, assignments } => {
                self.topics.insert(name, TopicMeta { id, partitions, replication_factor, configs, assignments });
            }
            MetadataCommand::DeleteTopic { name } => {
                self.topics.remove(&name);
            }
            MetadataCommand::CreatePartitions { name, total, new_assignments } => {
                let topic = self.topics.get_mut(&name).expect("validated");
                topic.partitions = total;
                topic.assignments.extend(new_assignments);
            }
            MetadataCommand::SetTopicConfigs { name, configs }
            | MetadataCommand::SetTopicConfigsIfUnchanged { name, configs, .. } => {
                self.topics.get_mut(&name).expect("validated").configs = configs;
            }
            MetadataCommand::AllocateProducerIds { count } => self.next_producer_id += count,
            MetadataCommand::RegisterBroker(broker) => {
                let (id, fenced) = (broker.id, broker.fenced);
                self.brokers.insert(id, broker);
                if !fenced {
                    self.elect_after_unfencing(id);
                }
            }
            MetadataCommand::FenceBroker { id } => {
                self.brokers.get_mut(&id).expect("validated").fenced = true;
                let brokers = &self.brokers;
                let is_fenced = |r: i32| brokers.get(&r).is_none_or(|b| b.fenced);
                for topic in self.topics.values_mut() {
                    for assignment in &mut topic.assignments {
                        if let Some(next) = crate::leader_election::after_fencing(assignment, id, is_fenced) {
                            *assignment = next;
                        }
                    }
                }
            }
            MetadataCommand::UnfenceBroker { id } => {
                self.brokers.get_mut(&id).expect("validated").fenced = false;
                self.elect_after_unfencing(id);
            }
            MetadataCommand::Reassign { topic, partition, target } => {
                if let Some(next) = self.reassigned(&topic, partition, &target).expect("validated") {
                    self.topics.get_mut(&topic).expect("validated").assignments[partition as usize] = next;
                }
            }
            MetadataCommand::ElectLeaders { kind, partitions } => {
                for (topic, partition) in partitions {
                    if let Ok(next) = self.election(&topic, partition, kind) {
                        self.topics.get_mut(&topic).expect("elected").assignments[partition as usize] = next;
                    }
                }
            }
            MetadataCommand::InitCluster { cluster_id } => self.cluster_id = cluster_id,
            MetadataCommand::Security(c) => self.security.apply(c),
            MetadataCommand::ClientQuotas(c) => self.client_quotas.apply(c),
            MetadataCommand::AlterPartition { topic, partition, isr, .. } => {
                let brokers = &self.brokers;
                let is_fenced = |r: i32| brokers.get(&r).is_none_or(|b| b.fenced);
                let topic = self.topics.get_mut(&topic).expect("validated");
                let assignment = &mut topic.assignments[partition as usize];
                assignment.isr = isr;
                assignment.partition_epoch += 1;
                // The last added replica of a reassignment caught up: it completes.
                if let Some(done) = crate::reassignment::finish_if_caught_up(assignment, is_fenced) {
                    *assignment = done;
                }
            }
        }
        self.version += 1;
        Ok(())
    }
}

impl MetadataImage {
    /// Gives leaderless partitions whose ISR holds `id` their leader back.
    fn elect_after_unfencing(&mut self, id: i32) {
        for topic in self.topics.values_mut() {
            for assignment in &mut topic.assignments {
                if let Some(next) = crate::leader_election::after_unfencing(assignment, id) {
                    *assignment = next;
                }
            }
        }
    }

    /// Partitions whose preferred leader should lead again (see
    /// [`crate::leader_election::imbalanced`]).
    pub fn imbalanced_partitions(&self, imbalance_percentage: u32) -> Vec<(String, i32)> {
        let partitions = self
            .topics
            .iter()
            .flat_map(|(name, t)| t.assignments.iter().enumerate().map(move |(i, a)| (name.as_str(), i as i32, a)));
        crate::leader_election::imbalanced(
            partitions,
            |r| self.brokers.get(&r).is_none_or(|b| b.fenced),
            imbalance_percentage,
        )
    }

    /// The brokers that may hold new replicas: registered and not fenced, by id.
    pub fn unfenced_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str, id: u8, partitions: i32) -> MetadataCommand {
        MetadataCommand::CreateTopic {
            name: name.into(),
            id: [id; 16],
            partitions,
            replication_factor: 1,
            configs: BTreeMap::new(),
            assignments: Vec::new(),
        }
    }

    #[test]
    fn create_validate_and_errors() {
        let d = LogConfig::default();
        let mut image = MetadataImage::new("c".into());
        image.apply(&create("orders", 1, 3), &d).unwrap();
        assert_eq!(image.version, 1);
        assert_eq!(image.apply(&create("orders", 2, 3), &d).unwrap_err().code, codes::TOPIC_ALREADY_EXISTS);
        assert_eq!(image.apply(&create("bad name", 2, 3), &d).unwrap_err().code, codes::INVALID_TOPIC_EXCEPTION);
        assert_eq!(image.apply(&create("x", 2, 0), &d).unwrap_err().code, codes::INVALID_PARTITIONS);
        let mut rf3 = create("y", 3, 1);
        if let MetadataCommand::CreateTopic { replication_factor, .. } = &mut rf3 {
            *replication_factor = 3;
        }
        assert_eq!(image.apply(&rf3, &d).unwrap_err().code, codes::INVALID_REPLICATION_FACTOR);
        image.apply(&create("a.b", 4, 1), &d).unwrap();
        assert_eq!(image.apply(&create("a_b", 5, 1), &d).unwrap_err().code, codes::INVALID_TOPIC_EXCEPTION);
        let mut bad_cfg = create("z", 6, 1);
        if let MetadataCommand::CreateTopic { configs, .. } = &mut bad_cfg {
            configs.insert("retention.ms".into(), "soon".into());
        }
        assert_eq!(image.apply(&bad_cfg, &d).unwrap_err().code, codes::INVALID_CONFIG);
        assert_eq!(image.version, 2, "refused commands change nothing");
    }

    #[test]
    fn partitions_configs_delete() {
        let d = LogConfig::default();
        let mut image = MetadataImage::new("c".into());
        image.apply(&create("t", 1, 2), &d).unwrap();
        let more = MetadataCommand::CreatePartitions { name: "t".into(), total: 2, new_assignments: vec![] };
        assert_eq!(image.apply(&more, &d).unwrap_err().code, codes::INVALID_PARTITIONS);
        image
            .apply(&MetadataCommand::CreatePartitions { name: "t".into(), total: 5, new_assignments: vec![] }, &d)
            .unwrap();
        assert_eq!(image.topic("t").unwrap().partitions, 5);
        let cfg: BTreeMap<_, _> = [("retention.ms".to_string(), "1000".to_string())].into();
        image.apply(&MetadataCommand::SetTopicConfigs { name: "t".into(), configs: cfg }, &d).unwrap();
        assert_eq!(image.log_config("t", &d).unwrap().retention_ms, 1000);
        let stale = MetadataCommand::SetTopicConfigsIfUnchanged {
            name: "t".into(),
            expected: BTreeMap::new(),
            configs: BTreeMap::new(),
        };
        assert_eq!(image.apply(&stale, &d).unwrap_err().code, codes::INVALID_UPDATE_VERSION);
        let cas = MetadataCommand::SetTopicConfigsIfUnchanged {
            name: "t".into(),
            expected: image.topic("t").unwrap().configs.clone(),
            configs: BTreeMap::new(),
        };
        image.apply(&cas, &d).unwrap();
        assert!(image.topic("t").unwrap().configs.is_empty());
        image.apply(&MetadataCommand::DeleteTopic { name: "t".into() }, &d).unwrap();
        assert!(image.topic("t").is_none());
        let del = MetadataCommand::DeleteTopic { name: "t".into() };
        assert_eq!(image.apply(&del, &d).unwrap_err().code, codes::UNKNOWN_TOPIC_OR_PARTITION);
        let json = serde_json::to_string(&image).unwrap();
        assert_eq!(serde_json::from_str::<MetadataImage>(&json).unwrap(), image);
    }

    fn broker(id: i32) -> MetadataCommand {
        MetadataCommand::RegisterBroker(BrokerRegistration {
            id,
            host: "127.0.0.1".into(),
            port: 9000 + id,
            rack: None,
            fenced: false,
            listeners: Vec::new(),
        })
    }

    #[test]
    fn replicated_topics_need_registered_brokers_and_isr_changes_need_the_current_leader() {
        let d = LogConfig::default();
        let mut image = MetadataImage::new("c".into());
        let mut topic = create("t", 1, 2);
        if let MetadataCommand::CreateTopic { replication_factor, assignments, .. } = &mut topic {
            *replication_factor = 3;
            *assignments = vec![PartitionAssignment::new(vec![1, 2, 3]), PartitionAssignment::new(vec![2, 3, 1])];
        }
        assert_eq!(image.apply(&topic, &d).unwrap_err().code, codes::INVALID_REPLICA_ASSIGNMENT);
        for id in 1..=3 {
            image.apply(&broker(id), &d).unwrap();
        }
        image.apply(&topic, &d).unwrap();
        let a = image.assignment("t", 1).unwrap().clone();
        assert_eq!((a.leader, a.isr.clone(), a.partition_epoch), (2, vec![2, 3, 1], 0));
        let shrink = |leader_id, leader_epoch, partition_epoch, isr: Vec<i32>| MetadataCommand::AlterPartition {
            topic: "t".into(),
            partition: 1,
            leader_id,
            leader_epoch,
            partition_epoch,
            isr,
        };
        assert_eq!(image.apply(&shrink(1, 0, 0, vec![1, 2]), &d).unwrap_err().code, codes::FENCED_LEADER_EPOCH);
        assert_eq!(image.apply(&shrink(2, 0, 0, vec![3]), &d).unwrap_err().code, codes::INVALID_REQUEST);
        image.apply(&shrink(2, 0, 0, vec![2, 3]), &d).unwrap();
        assert_eq!(image.apply(&shrink(2, 0, 0, vec![2]), &d).unwrap_err().code, codes::INVALID_UPDATE_VERSION);
        let a = image.assignment("t", 1).unwrap();
        assert_eq!((a.isr.clone(), a.partition_epoch), (vec![2, 3], 1));
        assert_eq!(a.replica_state().in_sync_replicas, vec![2, 3]);

        // Broker 2 fenced: partition 1 (led by 2, ISR [2, 3]) moves to 3; partition 0 drops 2.
        image.apply(&MetadataCommand::FenceBroker { id: 2 }, &d).unwrap();
        let a = image.assignment("t", 1).unwrap().clone();
        assert_eq!((a.leader, a.leader_epoch, a.isr.clone()), (3, 1, vec![3]));
        assert_eq!(image.assignment("t", 0).unwrap().isr, vec![1, 3]);
        assert!(image.imbalanced_partitions(10).is_empty(), "2 is fenced and out of sync");
        // Back and in sync again (its leader's AlterPartition): the rebalance moves 1 back to 2.
        image.apply(&MetadataCommand::UnfenceBroker { id: 2 }, &d).unwrap();
        image.apply(&shrink(3, 1, 2, vec![3, 2]), &d).unwrap();
        assert_eq!(image.imbalanced_partitions(10), vec![("t".to_string(), 1)]);
        let elect = MetadataCommand::ElectLeaders {
            kind: crate::leader_election::ElectionType::Preferred,
            partitions: image.imbalanced_partitions(10),
        };
        image.apply(&elect, &d).unwrap();
        let a = image.assignment("t", 1).unwrap();
        assert_eq!((a.leader, a.leader_epoch, a.partition_epoch), (2, 2, 4));
        assert!(image.imbalanced_partitions(10).is_empty());
        let json = serde_json::to_string(&image).unwrap();
        assert_eq!(serde_json::from_str::<MetadataImage>(&json).unwrap(), image);
    }
}
