//! `sluice cluster describe`: cluster id, controller, nodes (Metadata) and the API versions the
//! bootstrap broker supports (its ApiVersions answer).
//!
//! Owns: that one report. Must never: need more than the bootstrap broker to answer.

use clap::{Args, Subcommand};
use kafka_protocol::messages::ApiKey;
use serde_json::json;

use crate::error::CliResult;
use crate::output::{or_dash, print_json, table, OutputFormat, ReadFlags};
use crate::session::Session;

const EXAMPLES: &str = "Examples:
  sluice cluster describe
  sluice cluster describe --bootstrap 10.0.0.5:9092 --output json";

#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Cluster id, controller, nodes with host:port and rack, supported API versions.
    #[command(after_help = EXAMPLES)]
    Describe {
        #[command(flatten)]
        flags: ReadFlags,
    },
}

pub fn run(args: ClusterArgs) -> CliResult<()> {
    let ClusterCommand::Describe { flags } = args.command;
    let mut session = Session::connect(&flags.connect.bootstrap)?;
    let metadata = session.metadata(Some(&[]))?;
    let cluster_id = metadata.cluster_id.as_ref().map(|c| c.to_string());
    let controller = (metadata.controller_id.0 >= 0).then_some(metadata.controller_id.0);
    let mut nodes: Vec<(i32, String, i32, Option<String>)> = metadata
        .brokers
        .iter()
        .map(|b| (b.node_id.0, b.host.to_string(), b.port, b.rack.as_ref().map(|r| r.to_string())))
        .collect();
    nodes.sort();
    let apis: Vec<(i16, String, i16, i16)> = session
        .any()
        .broker_ranges()
        .iter()
        .map(|(key, (lo, hi))| {
            let name = ApiKey::try_from(*key).map_or_else(|_| format!("Unknown{key}"), |k| format!("{k:?}"));
            (*key, name, *lo, *hi)
        })
        .collect();
    match flags.output {
        OutputFormat::Json => print_json(&json!({
            "cluster_id": cluster_id,
            "controller_id": controller,
            "nodes": nodes.iter().map(|(id, host, port, rack)| json!({
                "id": id, "host": host, "port": port, "rack": rack,
            })).collect::<Vec<_>>(),
            "api_versions": apis.iter().map(|(key, name, lo, hi)| json!({
                "api_key": key, "name": name, "min_version": lo, "max_version": hi,
            })).collect::<Vec<_>>(),
        })),
        OutputFormat::Table => {
            println!("Cluster ID: {}", or_dash(cluster_id));
            println!("Controller: {}", or_dash(controller));
            println!();
            let rows: Vec<Vec<String>> = nodes
                .iter()
                .map(|(id, host, port, rack)| vec![id.to_string(), format!("{host}:{port}"), or_dash(rack.clone())])
                .collect();
            print!("{}", table(&["NODE", "HOST:PORT", "RACK"], &rows));
            println!();
            println!("API versions supported by {}:", flags.connect.bootstrap);
            let rows: Vec<Vec<String>> = apis
                .iter()
                .map(|(key, name, lo, hi)| vec![name.clone(), key.to_string(), format!("{lo}-{hi}")])
                .collect();
            print!("{}", table(&["API", "KEY", "VERSIONS"], &rows));
        }
    }
    Ok(())
}
