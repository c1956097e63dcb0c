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
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        total: i32,
    },
    /// Replaces the topic's whole override map.
    SetTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// Reserves the next `count` producer ids (Kafka's AllocateProducerIds): ids are handed
    /// out from reserved blocks, so none is ever reused, even across restarts.
    AllocateProducerIds {
        count: i64,
    },
}

/// Largest producer-id block one command may reserve.
pub const MAX_PRODUCER_ID_BLOCK: i64 = 1_000_000;

/// A refused command: Kafka error code and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataError {
    pub code: i16,
    pub message: String,
}

impl MetadataError {
    fn new(code: i16, message: impl Into<String>) -> MetadataError {
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
}

impl MetadataImage {
    pub fn new(cluster_id: String) -> MetadataImage {
        MetadataImage { version: 0, cluster_id, topics: BTreeMap::new(), next_producer_id: 0 }
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
            MetadataCommand::CreateTopic { name, id, partitions, replication_factor, configs } => {
                validate_topic_name(name).map_err(|m| MetadataError::new(codes::INVALID_TOPIC_EXCEPTION, m))?;
                // The coordinators' logs live outside the image (crate::group::offsets_log,
                // crate::txn::state_log).
                if self.topics.contains_key(name) || crate::topic_name::is_internal(name) {
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
                if *replication_factor != 1 {
                    return Err(MetadataError::new(
                        codes::INVALID_REPLICATION_FACTOR,
                        format!("Replication factor: {replication_factor} larger than available brokers: 1."),
                    ));
                }
                Self::validate_configs(configs, defaults)
            }
            MetadataCommand::DeleteTopic { name } => self.require(name).map(|_| ()),
            MetadataCommand::CreatePartitions { name, total } => {
                let topic = self.require(name)?;
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
        }
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
            MetadataCommand::CreateTopic { name, id, partitions, replication_factor, configs } => {
                self.topics.insert(name, TopicMeta { id, partitions, replication_factor, configs });
            }
            MetadataCommand::DeleteTopic { name } => {
                self.topics.remove(&name);
            }
            MetadataCommand::CreatePartitions { name, total } => {
                self.topics.get_mut(&name).expect("validated").partitions = total;
            }
            MetadataCommand::SetTopicConfigs { name, configs } => {
                self.topics.get_mut(&name).expect("validated").configs = configs;
            }
            MetadataCommand::AllocateProducerIds { count } => self.next_producer_id += count,
        }
        self.version += 1;
        Ok(())
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
        let more = MetadataCommand::CreatePartitions { name: "t".into(), total: 2 };
        assert_eq!(image.apply(&more, &d).unwrap_err().code, codes::INVALID_PARTITIONS);
        image.apply(&MetadataCommand::CreatePartitions { name: "t".into(), total: 5 }, &d).unwrap();
        assert_eq!(image.topic("t").unwrap().partitions, 5);
        let cfg: BTreeMap<_, _> = [("retention.ms".to_string(), "1000".to_string())].into();
        image.apply(&MetadataCommand::SetTopicConfigs { name: "t".into(), configs: cfg }, &d).unwrap();
        assert_eq!(image.log_config("t", &d).unwrap().retention_ms, 1000);
        image.apply(&MetadataCommand::DeleteTopic { name: "t".into() }, &d).unwrap();
        assert!(image.topic("t").is_none());
        let del = MetadataCommand::DeleteTopic { name: "t".into() };
        assert_eq!(image.apply(&del, &d).unwrap_err().code, codes::UNKNOWN_TOPIC_OR_PARTITION);
        let json = serde_json::to_string(&image).unwrap();
        assert_eq!(serde_json::from_str::<MetadataImage>(&json).unwrap(), image);
    }
}
