//! `sluice configs describe|alter` for a topic or a broker (DescribeConfigs,
//! IncrementalAlterConfigs), and the two calls `sluice topic` reuses.
//!
//! Owns: resource selection (`--topic` / `--broker`), config sources' names, the set/delete
//! operations. Must never: send a broker resource to another broker (Kafka answers a broker's
//! configs only on that broker), or print a sensitive value.

use clap::{Args, Subcommand};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use serde_json::json;

use crate::error::{check, CliError, CliResult};
use crate::output::{key_value, print_json, table, Connect, OutputFormat, ReadFlags};
use crate::session::{s, Session};

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
/// DescribeConfigs `config_source` values that are overrides (topic, broker, cluster default).
const DYNAMIC_SOURCES: [i8; 3] = [1, 2, 3];

const EXAMPLES: &str = "Examples:
  sluice configs describe --topic orders
  sluice configs describe --broker 1 --all --output json
  sluice configs alter --topic orders --set retention.ms=86400000 --set cleanup.policy=compact
  sluice configs alter --topic orders --delete retention.ms";

#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct ConfigsArgs {
    #[command(subcommand)]
    pub command: ConfigsCommand,
}

#[derive(Subcommand, Debug)]
pub enum ConfigsCommand {
    /// Show a topic's or a broker's configs (overrides only unless --all).
    #[command(after_help = EXAMPLES)]
    Describe {
        #[command(flatten)]
        target: Target,
        /// Every config with its value and source, not only the overrides.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        flags: ReadFlags,
    },
    /// Set or remove configs of a topic or a broker (IncrementalAlterConfigs).
    #[command(after_help = EXAMPLES)]
    Alter {
        #[command(flatten)]
        target: Target,
        /// KEY=VALUE to set (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = key_value)]
        set: Vec<(String, String)>,
        /// KEY to remove, back to its default (repeatable).
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
        #[command(flatten)]
        connect: Connect,
    },
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// The topic whose configs to show or change.
    #[arg(long)]
    pub topic: Option<String>,
    /// The broker (node id) whose configs to show or change.
    #[arg(long)]
    pub broker: Option<i32>,
}

impl Target {
    fn resource(&self) -> (i8, String) {
        match (&self.topic, self.broker) {
            (Some(t), _) => (RESOURCE_TOPIC, t.clone()),
            (None, Some(b)) => (RESOURCE_BROKER, b.to_string()),
            (None, None) => unreachable!("clap requires --topic or --broker"),
        }
    }
}

/// One config as DescribeConfigs reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub source: i8,
    pub sensitive: bool,
    pub read_only: bool,
}

impl ConfigEntry {
    pub fn is_override(&self) -> bool {
        DYNAMIC_SOURCES.contains(&self.source)
    }

    pub fn shown_value(&self) -> String {
        if self.sensitive {
            "(sensitive)".into()
        } else {
            self.value.clone().unwrap_or_else(|| "null".into())
        }
    }
}

/// Kafka's name of a DescribeConfigs `config_source`.
pub fn source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        _ => "UNKNOWN",
    }
}

fn what(resource_type: i8, name: &str) -> String {
    match resource_type {
        RESOURCE_TOPIC => format!("topic '{name}'"),
        _ => format!("broker {name}"),
    }
}

/// The connection that answers for the resource: a broker's own, else any.
fn route<'a>(session: &'a mut Session, resource_type: i8, name: &str) -> CliResult<&'a mut crate::client::Connection> {
    if resource_type == RESOURCE_BROKER {
        let id: i32 = name.parse().map_err(|_| CliError::usage(format!("broker id '{name}' is not a number")))?;
        session.to_node(id)
    } else {
        Ok(session.any())
    }
}

/// Every config of one resource.
pub fn describe(session: &mut Session, resource_type: i8, name: &str) -> CliResult<Vec<ConfigEntry>> {
    if resource_type == RESOURCE_TOPIC {
        session.partitions(name)?; // a missing topic gets the "does not exist" message
    }
    let request = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(s(name))
        .with_configuration_keys(None)]);
    let response = route(session, resource_type, name)?.call(&request)?;
    let result = response
        .results
        .first()
        .ok_or_else(|| CliError::kafka(format!("describe configs of {}: empty answer", what(resource_type, name))))?;
    check(
        &format!("describe configs of {}", what(resource_type, name)),
        result.error_code,
        result.error_message.as_ref().map(|m| m.as_str()),
    )?;
    let mut out: Vec<ConfigEntry> = result
        .configs
        .iter()
        .map(|c| ConfigEntry {
            name: c.name.to_string(),
            value: c.value.as_ref().map(|v| v.to_string()),
            source: c.config_source,
            sensitive: c.is_sensitive,
            read_only: c.read_only,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Sets `set` and removes `delete` on one resource.
pub fn alter(
    session: &mut Session,
    resource_type: i8,
    name: &str,
    set: &[(String, String)],
    delete: &[String],
) -> CliResult<()> {
    if set.is_empty() && delete.is_empty() {
        return Err(CliError::usage("nothing to change: pass --set KEY=VALUE and/or --delete KEY"));
    }
    if resource_type == RESOURCE_TOPIC {
        session.partitions(name)?;
    }
    let mut configs: Vec<AlterableConfig> = set
        .iter()
        .map(|(k, v)| AlterableConfig::default().with_name(s(k)).with_config_operation(OP_SET).with_value(Some(s(v))))
        .collect();
    configs.extend(
        delete
            .iter()
            .map(|k| AlterableConfig::default().with_name(s(k)).with_config_operation(OP_DELETE).with_value(None)),
    );
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(s(name))
        .with_configs(configs)]);
    let response = route(session, resource_type, name)?.call(&request)?;
    for r in &response.responses {
        check(
            &format!("alter configs of {}", what(resource_type, name)),
            r.error_code,
            r.error_message.as_ref().map(|m| m.as_str()),
        )?;
    }
    Ok(())
}

pub fn entries_json(entries: &[&ConfigEntry]) -> serde_json::Value {
    json!(entries
        .iter()
        .map(|c| json!({
            "name": c.name,
            "value": if c.sensitive { None } else { c.value.clone() },
            "source": source_name(c.source),
            "sensitive": c.sensitive,
            "read_only": c.read_only,
        }))
        .collect::<Vec<_>>())
}

pub fn run(args: ConfigsArgs) -> CliResult<()> {
    match args.command {
        ConfigsCommand::Describe { target, all, flags } => {
            let (resource_type, name) = target.resource();
            let mut session = Session::connect(&flags.connect.bootstrap)?;
            let entries = describe(&mut session, resource_type, &name)?;
            let shown: Vec<&ConfigEntry> = entries.iter().filter(|c| all || c.is_override()).collect();
            match flags.output {
                OutputFormat::Json => print_json(&json!({
                    "resource_type": if resource_type == RESOURCE_TOPIC { "topic" } else { "broker" },
                    "name": name,
                    "configs": entries_json(&shown),
                })),
                OutputFormat::Table => {
                    println!("Configs for {}:", what(resource_type, &name));
                    let rows: Vec<Vec<String>> = shown
                        .iter()
                        .map(|c| vec![c.name.clone(), c.shown_value(), source_name(c.source).to_string()])
                        .collect();
                    print!("{}", table(&["NAME", "VALUE", "SOURCE"], &rows));
                }
            }
            Ok(())
        }
        ConfigsCommand::Alter { target, set, delete, connect } => {
            let (resource_type, name) = target.resource();
            let mut session = Session::connect(&connect.bootstrap)?;
            alter(&mut session, resource_type, &name, &set, &delete)?;
            eprintln!("Completed updating configs for {}.", what(resource_type, &name));
            Ok(())
        }
    }
}
