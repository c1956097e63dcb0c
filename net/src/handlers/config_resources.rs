//! Config resources shared by DescribeConfigs, CreateTopics (v5+ configs), AlterConfigs and
//! IncrementalAlterConfigs: resource types and config sources, the rows a topic or this broker
//! describes (Kafka's `ConfigHelper`: value, source, synonyms, type, documentation), the checks
//! both alter APIs run on a resource before touching it (Kafka's `ConfigAdminManager.preprocess`
//! and `ControllerConfigurationValidator`), and committing a topic's new override map.
//!
//! Owns: the mapping from sluice's `LogConfig` / `BrokerConfig` to Kafka's described configs.
//! Must never: change a topic's configs other than through [`controller`], or accept a dynamic
//! broker config change — sluice has no dynamic broker configs yet, so broker resources are
//! refused with INVALID_REQUEST and a message saying so.

use std::collections::{BTreeMap, HashMap, HashSet};

use sluice_engine::log_config::{broker_default_name, ConfigType, LogConfig};

use crate::broker_config::BrokerConfig;
use crate::controller;
use crate::handlers::codes;
use crate::metadata_image::{MetadataCommand, MetadataError};
use crate::shard_context::ShardContext;
use crate::topic_name::validate_topic_name;

/// Kafka's `ConfigResource.Type` ids.
pub mod resource_type {
    pub const UNKNOWN: i8 = 0;
    pub const TOPIC: i8 = 2;
    pub const BROKER: i8 = 4;
    pub const BROKER_LOGGER: i8 = 8;
    pub const CLIENT_METRICS: i8 = 16;
    pub const GROUP: i8 = 32;

    /// Kafka's name of a resource type sluice knows of but does not serve.
    pub fn unsupported_name(id: i8) -> Option<&'static str> {
        match id {
            BROKER_LOGGER => Some("BROKER_LOGGER"),
            CLIENT_METRICS => Some("CLIENT_METRICS"),
            GROUP => Some("GROUP"),
            _ => None,
        }
    }
}

/// Kafka's `DescribeConfigsResponse.ConfigSource` ids (the ones sluice reports).
pub mod config_source {
    pub const DYNAMIC_TOPIC_CONFIG: i8 = 1;
    pub const STATIC_BROKER_CONFIG: i8 = 4;
    pub const DEFAULT_CONFIG: i8 = 5;
}

/// IncrementalAlterConfigs operations (`AlterConfigOp.OpType`).
pub mod op {
    pub const SET: i8 = 0;
    pub const DELETE: i8 = 1;
    pub const APPEND: i8 = 2;
    pub const SUBTRACT: i8 = 3;
}

/// Kafka error codes (the one table: `sluice_engine::error_code`).
pub use sluice_engine::error_code::codes as admin_codes;

/// What an alter of a broker resource answers (with INVALID_REQUEST).
pub const BROKER_CONFIGS_READ_ONLY: &str = "sluice does not support dynamic broker configs yet: set broker configs \
                                            in server.properties (--config) or with --set KEY=VALUE and restart the \
                                            broker";

/// One synonym of a described config, highest precedence first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synonym {
    pub name: String,
    pub value: String,
    pub source: i8,
}

/// One described config, ready to be put in a DescribeConfigs or CreateTopics response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribedConfig {
    pub name: String,
    pub value: String,
    pub source: i8,
    pub read_only: bool,
    pub sensitive: bool,
    /// `DescribeConfigsResponse.ConfigType` id.
    pub config_type: i8,
    pub documentation: String,
    /// Every synonym (callers drop them unless `include_synonyms`).
    pub synonyms: Vec<Synonym>,
}

/// A topic's effective config: the broker defaults plus its overrides (as the image does).
pub fn effective_topic_config(overrides: &BTreeMap<String, String>, broker_defaults: &LogConfig) -> LogConfig {
    let mut config = broker_defaults.clone();
    for (name, value) in overrides {
        // Overrides were validated when set; one that no longer parses keeps the default.
        let _ = config.set(name, value);
    }
    config
}

/// Every topic config of a topic with `overrides`, sorted by name, as Kafka describes them:
/// source DYNAMIC_TOPIC_CONFIG for an override, STATIC_BROKER_CONFIG where the broker's default
/// differs from Kafka's, DEFAULT_CONFIG otherwise; synonyms are the override, the static broker
/// config and Kafka's default (the last two under the broker config's name).
pub fn topic_configs(overrides: &BTreeMap<String, String>, broker_defaults: &LogConfig) -> Vec<DescribedConfig> {
    let kafka_defaults = LogConfig::default();
    let effective = effective_topic_config(overrides, broker_defaults);
    effective
        .describe_with_defaults(broker_defaults)
        .into_iter()
        .map(|entry| {
            let broker_name = broker_default_name(entry.name).unwrap_or(entry.name);
            let kafka_default = kafka_defaults.get(entry.name).unwrap_or_default();
            let mut synonyms = Vec::new();
            if overrides.contains_key(entry.name) {
                synonyms.push(Synonym {
                    name: entry.name.to_string(),
                    value: entry.value.clone(),
                    source: config_source::DYNAMIC_TOPIC_CONFIG,
                });
            }
            if entry.default_value != kafka_default {
                synonyms.push(Synonym {
                    name: broker_name.to_string(),
                    value: entry.default_value.clone(),
                    source: config_source::STATIC_BROKER_CONFIG,
                });
            }
            synonyms.push(Synonym {
                name: broker_name.to_string(),
                value: kafka_default,
                source: config_source::DEFAULT_CONFIG,
            });
            DescribedConfig {
                name: entry.name.to_string(),
                value: entry.value,
                source: synonyms[0].source,
                read_only: entry.read_only,
                sensitive: entry.sensitive,
                config_type: entry.config_type.wire_id(),
                documentation: entry.documentation.to_string(),
                synonyms,
            }
        })
        .collect()
}

/// This broker's configs as Kafka describes a broker resource named by its node id: the
/// broker-level names of every topic config (`log.segment.bytes`, …, dynamic in Kafka so not
/// read-only) and the broker settings sluice has (read-only, as in Kafka), sorted by name.
/// A value differing from Kafka's default is reported as STATIC_BROKER_CONFIG (`node.id`
/// always is: Kafka requires it).
pub fn broker_configs(config: &BrokerConfig) -> Vec<DescribedConfig> {
    let mut rows = Vec::new();
    let kafka_defaults = LogConfig::default();
    for entry in config.default_log_config.describe_with_defaults(&kafka_defaults) {
        let name = broker_default_name(entry.name).unwrap_or(entry.name);
        rows.push(broker_row(
            name,
            entry.value,
            entry.default_value,
            false,
            false,
            entry.config_type,
            entry.documentation,
        ));
    }
    let settings: [(&str, String, &str, bool, &str); 5] = [
        (
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
            "true",
            false,
            "Enable auto creation of topics on the server (Metadata requests for unknown topics).",
        ),
        (
            "default.replication.factor",
            config.default_replication_factor.to_string(),
            "1",
            false,
            "The replication factor of automatically created topics and of CreateTopics with -1.",
        ),
        ("node.id", config.node_id.to_string(), "-1", true, "The node ID of this server."),
        (
            "num.partitions",
            config.num_partitions.to_string(),
            "1",
            false,
            "The number of partitions of automatically created topics and of CreateTopics with -1.",
        ),
        (
            "socket.request.max.bytes",
            config.max_request_bytes.to_string(),
            "104857600",
            false,
            "The maximum number of bytes in a socket request.",
        ),
    ];
    for (name, value, kafka_default, always_static, doc) in settings {
        let config_type = if name == "auto.create.topics.enable" { ConfigType::Boolean } else { ConfigType::Int };
        let mut row = broker_row(name, value, kafka_default.to_string(), true, always_static, config_type, doc);
        row.read_only = true;
        rows.push(row);
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

fn broker_row(
    name: &str,
    value: String,
    kafka_default: String,
    read_only: bool,
    always_static: bool,
    config_type: ConfigType,
    documentation: &str,
) -> DescribedConfig {
    let mut synonyms = Vec::new();
    if always_static || value != kafka_default {
        synonyms.push(Synonym {
            name: name.to_string(),
            value: value.clone(),
            source: config_source::STATIC_BROKER_CONFIG,
        });
    }
    synonyms.push(Synonym { name: name.to_string(), value: kafka_default, source: config_source::DEFAULT_CONFIG });
    DescribedConfig {
        name: name.to_string(),
        value,
        source: synonyms[0].source,
        read_only,
        sensitive: false,
        config_type: config_type.wire_id(),
        documentation: documentation.to_string(),
        synonyms,
    }
}

/// The config type of a topic config (None for names sluice does not support).
pub fn topic_config_type(name: &str) -> Option<ConfigType> {
    LogConfig::default().describe().into_iter().find(|e| e.name == name).map(|e| e.config_type)
}

/// Indices of resources that appear more than once (same type and name) in an alter request;
/// Kafka fails every copy with "Each resource must appear at most once.".
pub fn duplicate_resources<'a>(resources: impl Iterator<Item = (i8, &'a str)>) -> HashSet<usize> {
    let keys: Vec<(i8, &str)> = resources.collect();
    let mut counts: HashMap<(i8, &str), usize> = HashMap::new();
    for key in &keys {
        *counts.entry(*key).or_default() += 1;
    }
    keys.iter().enumerate().filter(|(_, key)| counts[*key] > 1).map(|(i, _)| i).collect()
}

/// One config change of an alter request (legacy AlterConfigs changes are all SETs).
pub struct AlterItem {
    pub name: String,
    pub op: i8,
    pub value: Option<String>,
}

/// Checks one resource of an AlterConfigs / IncrementalAlterConfigs request; `Ok` is the name
/// of an existing topic whose overrides may now be computed and committed.
pub fn check_alter_resource(
    ctx: &ShardContext,
    resource_type: i8,
    resource_name: &str,
    items: &[AlterItem],
    incremental: bool,
) -> Result<String, MetadataError> {
    let invalid_request = |message: String| MetadataError { code: codes::INVALID_REQUEST, message };
    let mut names = HashSet::new();
    if items.iter().any(|item| !names.insert(item.name.as_str())) {
        return Err(invalid_request("Error due to duplicate config keys".into()));
    }
    let nulls: Vec<&str> = items
        .iter()
        .filter(|item| item.value.is_none() && !(incremental && item.op == op::DELETE))
        .map(|item| item.name.as_str())
        .collect();
    if !nulls.is_empty() {
        return Err(invalid_request(format!("Null value not supported for : {}", nulls.join(", "))));
    }
    if incremental {
        if let Some(item) = items.iter().find(|item| !(op::SET..=op::SUBTRACT).contains(&item.op)) {
            return Err(invalid_request(format!("Unknown operations type {}", item.op)));
        }
    }
    match resource_type {
        resource_type::TOPIC => {
            if resource_name.is_empty() {
                return Err(invalid_request("Default topic resources are not allowed.".into()));
            }
            validate_topic_name(resource_name)
                .map_err(|message| MetadataError { code: codes::INVALID_TOPIC_EXCEPTION, message })?;
            if ctx.image.borrow().topic(resource_name).is_none() {
                return Err(MetadataError {
                    code: codes::UNKNOWN_TOPIC_OR_PARTITION,
                    message: format!("The topic '{resource_name}' does not exist."),
                });
            }
            Ok(resource_name.to_string())
        }
        resource_type::BROKER => {
            if !resource_name.is_empty() {
                let id: i32 = resource_name
                    .parse()
                    .map_err(|_| invalid_request(format!("Node id must be an integer, but it is: {resource_name}")))?;
                if id != ctx.config.node_id {
                    return Err(invalid_request(format!(
                        "Unexpected broker id, expected {}, but received {resource_name}",
                        ctx.config.node_id
                    )));
                }
            }
            Err(invalid_request(BROKER_CONFIGS_READ_ONLY.into()))
        }
        other => match (resource_type::unsupported_name(other), incremental) {
            // Legacy AlterConfigs never had BROKER_LOGGER: Kafka calls it an unknown type there.
            (None, _) | (Some("BROKER_LOGGER"), false) => {
                Err(invalid_request(format!("Unknown resource type {other}")))
            }
            (Some(kind), _) => Err(invalid_request(format!("sluice does not support {kind} config resources yet"))),
        },
    }
}

/// Validates (`validate_only`) or commits a topic's whole new override map through the
/// controller, which checks it again against its own image and persists it.
pub async fn commit_topic_overrides(
    topic: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), MetadataError> {
    let command = MetadataCommand::SetTopicConfigs { name: topic.to_string(), configs };
    let result = if validate_only { controller::validate(command).await } else { controller::submit(command).await };
    result.map_err(internal_to_unknown_server_error)
}

/// The controller reports its own failures with code -1, which is Kafka's UNKNOWN_SERVER_ERROR.
pub fn internal_to_unknown_server_error(e: MetadataError) -> MetadataError {
    if e.code < 0 {
        MetadataError { code: admin_codes::UNKNOWN_SERVER_ERROR, message: e.message }
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_sources_and_synonyms_follow_kafka() {
        let broker = LogConfig { retention_ms: 1_000, ..LogConfig::default() };
        let overrides: BTreeMap<String, String> = [("segment.bytes".to_string(), "4096".to_string())].into();
        let rows = topic_configs(&overrides, &broker);
        assert_eq!(rows.len(), LogConfig::default().describe().len());
        let row = |name: &str| rows.iter().find(|r| r.name == name).unwrap().clone();

        let segment = row("segment.bytes");
        assert_eq!((segment.value.as_str(), segment.source), ("4096", config_source::DYNAMIC_TOPIC_CONFIG));
        assert_eq!(segment.synonyms.len(), 2);
        assert_eq!(segment.synonyms[1].name, "log.segment.bytes");
        assert_eq!(segment.synonyms[1].value, "1073741824");
        assert_eq!(segment.synonyms[1].source, config_source::DEFAULT_CONFIG);

        let retention = row("retention.ms");
        assert_eq!((retention.value.as_str(), retention.source), ("1000", config_source::STATIC_BROKER_CONFIG));
        let names: Vec<_> = retention.synonyms.iter().map(|s| (s.name.as_str(), s.source)).collect();
        assert_eq!(
            names,
            [
                ("log.retention.ms", config_source::STATIC_BROKER_CONFIG),
                ("log.retention.ms", config_source::DEFAULT_CONFIG)
            ]
        );

        let policy = row("cleanup.policy");
        assert_eq!((policy.value.as_str(), policy.source), ("delete", config_source::DEFAULT_CONFIG));
        assert_eq!(policy.config_type, ConfigType::List.wire_id());
        assert!(!policy.read_only && !policy.sensitive && !policy.documentation.is_empty());
    }

    #[test]
    fn broker_rows() {
        let mut config = BrokerConfig::new("/tmp/x".into(), "localhost".into(), 9092);
        config.num_partitions = 3;
        config.default_log_config.segment_bytes = 4096;
        let rows = broker_configs(&config);
        let row = |name: &str| rows.iter().find(|r| r.name == name).unwrap().clone();
        assert_eq!(row("log.segment.bytes").value, "4096");
        assert_eq!(row("log.segment.bytes").source, config_source::STATIC_BROKER_CONFIG);
        assert!(!row("log.segment.bytes").read_only);
        assert_eq!(row("log.retention.ms").source, config_source::DEFAULT_CONFIG);
        assert_eq!(row("num.partitions").value, "3");
        assert!(row("num.partitions").read_only);
        assert_eq!(row("node.id").value, "1");
        assert_eq!(row("node.id").source, config_source::STATIC_BROKER_CONFIG);
        assert_eq!(row("auto.create.topics.enable").config_type, ConfigType::Boolean.wire_id());
        let mut names: Vec<_> = rows.iter().map(|r| r.name.clone()).collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "broker config names are unique");
    }

    #[test]
    fn duplicates_are_every_copy() {
        let dup = duplicate_resources([(2, "a"), (2, "b"), (4, "a"), (2, "a")].into_iter());
        assert_eq!(dup, [0, 3].into());
    }
}
