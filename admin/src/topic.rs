//! `sluice topic create|delete|list|describe|alter`, as `kafka-topics` does them:
//! CreateTopics, DeleteTopics, Metadata (layout, leader, replicas, ISR), DescribeConfigs
//! (overrides shown by describe), CreatePartitions and IncrementalAlterConfigs (alter).
//!
//! Owns: the topic subcommands' flags and output. Must never: create a topic by describing it
//! (Metadata never auto-creates), or report success when a per-topic error code says otherwise.

use clap::{Args, Subcommand};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::{CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest};
use serde_json::json;
use sluice_engine::error_code::codes;

use crate::configs::{self, ConfigEntry, RESOURCE_TOPIC};
use crate::error::{check, kafka_error, unknown_topic, CliError, CliResult};
use crate::output::{ids, key_value, print_json, Connect, OutputFormat, ReadFlags};
use crate::session::{s, topic_name, Session};

/// How long the broker may take to create or delete topics.
const ADMIN_TIMEOUT_MS: i32 = 30_000;

const EXAMPLES: &str = "Examples:
  sluice topic create orders --partitions 6 --replication-factor 3 --config retention.ms=86400000
  sluice topic list
  sluice topic describe orders
  sluice topic describe --output json
  sluice topic alter orders --partitions 12 --config cleanup.policy=compact
  sluice topic delete orders";

#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct TopicArgs {
    #[command(subcommand)]
    pub command: TopicCommand,
}

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic (CreateTopics).
    #[command(after_help = EXAMPLES)]
    Create {
        name: String,
        /// Partition count (default: the broker's num.partitions).
        #[arg(long)]
        partitions: Option<i32>,
        /// Replicas per partition (default: the broker's default.replication.factor).
        #[arg(long)]
        replication_factor: Option<i16>,
        /// A topic config KEY=VALUE (repeatable), e.g. retention.ms=86400000.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = key_value)]
        config: Vec<(String, String)>,
        /// Succeed when the topic already exists.
        #[arg(long)]
        if_not_exists: bool,
        #[command(flatten)]
        connect: Connect,
    },
    /// Delete topics (DeleteTopics).
    #[command(after_help = EXAMPLES)]
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
        /// Succeed when a topic does not exist.
        #[arg(long)]
        if_exists: bool,
        #[command(flatten)]
        connect: Connect,
    },
    /// List topic names.
    #[command(after_help = EXAMPLES)]
    List {
        /// Include internal topics (__consumer_offsets, __transaction_state).
        #[arg(long)]
        include_internal: bool,
        #[command(flatten)]
        flags: ReadFlags,
    },
    /// Show partitions with leader, replicas and ISR, and config overrides (all topics when
    /// none is named).
    #[command(after_help = EXAMPLES)]
    Describe {
        names: Vec<String>,
        /// Include internal topics when describing all.
        #[arg(long)]
        include_internal: bool,
        #[command(flatten)]
        flags: ReadFlags,
    },
    /// Add partitions (CreatePartitions) and/or change configs (IncrementalAlterConfigs).
    #[command(after_help = EXAMPLES)]
    Alter {
        name: String,
        /// The new total partition count (partitions can only be added).
        #[arg(long)]
        partitions: Option<i32>,
        /// A config to set, KEY=VALUE (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = key_value)]
        config: Vec<(String, String)>,
        /// A config to remove, back to its default (repeatable).
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_config: Vec<String>,
        #[command(flatten)]
        connect: Connect,
    },
    /// Partitions whose produce rate over the last minute is above FACTOR × their topic's
    /// median, and the keys driving them (from the brokers' /metrics; no Kafka tool has this).
    #[command(after_help = "Examples:\n  sluice topic hot\n  sluice topic hot orders --factor 3\n  \
                            sluice topic hot --metrics 10.0.0.1:9644,10.0.0.2:9644 --output json")]
    Hot(crate::hot::HotArgs),
}

pub fn run(args: TopicArgs) -> CliResult<()> {
    match args.command {
        TopicCommand::Hot(hot) => crate::hot::run(&hot),
        TopicCommand::Create { name, partitions, replication_factor, config, if_not_exists, connect } => {
            let mut session = Session::connect(&connect.bootstrap)?;
            create(&mut session, &name, partitions, replication_factor, &config, if_not_exists)
        }
        TopicCommand::Delete { names, if_exists, connect } => {
            let mut session = Session::connect(&connect.bootstrap)?;
            delete(&mut session, &names, if_exists)
        }
        TopicCommand::List { include_internal, flags } => {
            let mut session = Session::connect(&flags.connect.bootstrap)?;
            let mut topics = list(&mut session, include_internal)?;
            topics.sort();
            match flags.output {
                OutputFormat::Json => print_json(&json!(topics
                    .iter()
                    .map(|(name, partitions, internal)| json!({
                        "name": name, "partitions": partitions, "internal": internal
                    }))
                    .collect::<Vec<_>>())),
                OutputFormat::Table => topics.iter().for_each(|(name, _, _)| println!("{name}")),
            }
            Ok(())
        }
        TopicCommand::Describe { names, include_internal, flags } => {
            let mut session = Session::connect(&flags.connect.bootstrap)?;
            describe(&mut session, names, include_internal, flags.output)
        }
        TopicCommand::Alter { name, partitions, config, delete_config, connect } => {
            if partitions.is_none() && config.is_empty() && delete_config.is_empty() {
                return Err(CliError::usage(
                    "nothing to change: pass --partitions N, --config KEY=VALUE or --delete-config KEY",
                ));
            }
            let mut session = Session::connect(&connect.bootstrap)?;
            let current = session.partitions(&name)?.len() as i32;
            if let Some(count) = partitions {
                if count < current {
                    return Err(CliError::usage(format!(
                        "topic '{name}' has {current} partitions; partitions can only be added, not removed"
                    )));
                }
                if count > current {
                    add_partitions(&mut session, &name, count)?;
                    eprintln!("Topic '{name}' now has {count} partitions.");
                }
            }
            if !config.is_empty() || !delete_config.is_empty() {
                configs::alter(&mut session, RESOURCE_TOPIC, &name, &config, &delete_config)?;
                eprintln!("Updated configs of topic '{name}'.");
            }
            Ok(())
        }
    }
}

fn create(
    session: &mut Session,
    name: &str,
    partitions: Option<i32>,
    replication_factor: Option<i16>,
    config: &[(String, String)],
    if_not_exists: bool,
) -> CliResult<()> {
    let topic = CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions.unwrap_or(-1))
        .with_replication_factor(replication_factor.unwrap_or(-1))
        .with_configs(
            config
                .iter()
                .map(|(k, v)| CreatableTopicConfig::default().with_name(s(k)).with_value(Some(s(v))))
                .collect(),
        );
    let request = CreateTopicsRequest::default().with_timeout_ms(ADMIN_TIMEOUT_MS).with_topics(vec![topic]);
    // Topic creation is the controller's: any broker forwards it.
    let response = session.any().call(&request)?;
    for t in &response.topics {
        if t.error_code == codes::TOPIC_ALREADY_EXISTS && if_not_exists {
            eprintln!("Topic '{name}' already exists.");
            return Ok(());
        }
        check(&format!("create topic '{name}'"), t.error_code, t.error_message.as_ref().map(|m| m.as_str()))?;
    }
    eprintln!("Created topic '{name}'.");
    Ok(())
}

fn delete(session: &mut Session, names: &[String], if_exists: bool) -> CliResult<()> {
    let conn = session.any();
    let version = conn.version(kafka_protocol::messages::ApiKey::DeleteTopics)?;
    let mut request = DeleteTopicsRequest::default().with_timeout_ms(ADMIN_TIMEOUT_MS);
    if version >= 6 {
        request.topics = names.iter().map(|n| DeleteTopicState::default().with_name(Some(topic_name(n)))).collect();
    } else {
        request.topic_names = names.iter().map(|n| topic_name(n)).collect();
    }
    let response = conn.call(&request)?;
    for r in &response.responses {
        let name = r.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        match r.error_code {
            0 => eprintln!("Deleted topic '{name}'."),
            codes::UNKNOWN_TOPIC_OR_PARTITION if if_exists => eprintln!("Topic '{name}' does not exist."),
            codes::UNKNOWN_TOPIC_OR_PARTITION => return Err(unknown_topic(&name)),
            code => return Err(kafka_error(&format!("delete topic '{name}'"), code, r.error_message.as_deref())),
        }
    }
    Ok(())
}

/// (name, partition count, internal) of every topic.
fn list(session: &mut Session, include_internal: bool) -> CliResult<Vec<(String, usize, bool)>> {
    let response = session.metadata(None)?;
    Ok(response
        .topics
        .iter()
        .filter(|t| t.error_code == 0 && (include_internal || !t.is_internal))
        .filter_map(|t| t.name.as_ref().map(|n| (n.0.to_string(), t.partitions.len(), t.is_internal)))
        .collect())
}

fn add_partitions(session: &mut Session, name: &str, count: i32) -> CliResult<()> {
    let request = CreatePartitionsRequest::default().with_timeout_ms(ADMIN_TIMEOUT_MS).with_topics(vec![
        CreatePartitionsTopic::default().with_name(topic_name(name)).with_count(count).with_assignments(None),
    ]);
    let response = session.any().call(&request)?;
    for r in &response.results {
        check(&format!("add partitions to topic '{name}'"), r.error_code, r.error_message.as_deref())?;
    }
    Ok(())
}

fn describe(session: &mut Session, names: Vec<String>, include_internal: bool, output: OutputFormat) -> CliResult<()> {
    let names = if names.is_empty() {
        let mut all: Vec<String> = list(session, include_internal)?.into_iter().map(|(n, _, _)| n).collect();
        all.sort();
        all
    } else {
        names
    };
    let mut docs = Vec::new();
    let mut text = String::new();
    for name in &names {
        let parts = session.partitions(name)?;
        let overrides: Vec<ConfigEntry> =
            configs::describe(session, RESOURCE_TOPIC, name)?.into_iter().filter(|c| c.is_override()).collect();
        let rf = parts.iter().map(|p| p.replicas.len()).max().unwrap_or(0);
        let config_text =
            overrides.iter().map(|c| format!("{}={}", c.name, c.shown_value())).collect::<Vec<_>>().join(",");
        text.push_str(&format!(
            "Topic: {name}\tPartitionCount: {}\tReplicationFactor: {rf}\tConfigs: {config_text}\n",
            parts.len()
        ));
        for p in &parts {
            text.push_str(&format!(
                "\tTopic: {name}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}\n",
                p.partition,
                if p.leader >= 0 { p.leader.to_string() } else { "none".into() },
                ids(&p.replicas),
                ids(&p.isr)
            ));
        }
        docs.push(json!({
            "name": name,
            "partition_count": parts.len(),
            "replication_factor": rf,
            "configs": configs::entries_json(&overrides.iter().collect::<Vec<_>>()),
            "partitions": parts.iter().map(|p| json!({
                "partition": p.partition,
                "leader": (p.leader >= 0).then_some(p.leader),
                "replicas": p.replicas,
                "isr": p.isr,
                "error": (p.error_code != 0).then(|| crate::error::code_name(p.error_code)),
            })).collect::<Vec<_>>(),
        }));
    }
    match output {
        OutputFormat::Json => print_json(&json!(docs)),
        OutputFormat::Table => print!("{text}"),
    }
    Ok(())
}
