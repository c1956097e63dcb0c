//! `sluice broker --print-config`: the effective configuration, one line per setting with its
//! value and where the value came from — `default`, the `--config` file, `--set`, or a flag —
//! as the broker would start with it. Nothing is touched (no data dir, no socket).
//!
//! Owns: the rows and their sources. Must never: print a value other than the one the broker
//! would use (rows are read from the same [`StartPlan`] start-up builds).

use std::collections::BTreeMap;

use sluice_engine::log_config::broker_default_name;

use crate::broker::{settings_from, BrokerArgs, StartPlan};
use crate::broker_config;

/// Where a value came from.
struct Sources {
    file: BTreeMap<String, String>,
    file_path: String,
    set: BTreeMap<String, String>,
}

impl Sources {
    /// The source of a setting known under any of `keys`, unless `flag` (a flag's name, if the
    /// flag was given) wins.
    fn of(&self, keys: &[&str], flag: Option<&str>) -> String {
        if let Some(flag) = flag {
            return format!("flag --{flag}");
        }
        if keys.iter().any(|k| self.set.contains_key(*k)) {
            return "--set".into();
        }
        if keys.iter().any(|k| self.file.contains_key(*k)) {
            return format!("file {}", self.file_path);
        }
        "default".into()
    }
}

/// The text `--print-config` prints: a header line, then `KEY VALUE SOURCE` rows.
pub fn render(args: &BrokerArgs) -> Result<String, String> {
    settings_from(args)?; // the same validation as a start
    let plan = StartPlan::new(args)?;
    let file = match &args.config {
        Some(path) => broker_config::load_file(path)?,
        None => BTreeMap::new(),
    };
    let set = args
        .set
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let sources =
        Sources { file, file_path: args.config.as_ref().map(|p| p.display().to_string()).unwrap_or_default(), set };
    let c = &plan.broker_config;
    let given = |flag: bool, name: &'static str| flag.then_some(name);
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let mut row = |key: &str, value: String, source: String| rows.push((key.to_string(), value, source));
    row(
        "log.dirs",
        plan.data_dir.display().to_string(),
        sources.of(&["log.dirs", "log.dir"], given(args.data_dir.is_some(), "data-dir")),
    );
    row("listeners", plan.listen.to_string(), sources.of(&["listeners"], given(args.listen.is_some(), "listen")));
    row(
        "advertised.listeners",
        format!("{}:{}", c.advertised_host, c.advertised_port),
        sources.of(&["advertised.listeners"], None),
    );
    // Not a config key: the shard count is the --cores flag only.
    row(
        "--cores",
        plan.shard_count.to_string(),
        if args.cores.is_some() { "flag --cores".into() } else { "default (every available CPU)".into() },
    );
    row(
        "sluice.metrics.addr",
        plan.metrics_addr.map_or("none".into(), |a| a.to_string()),
        sources.of(&["sluice.metrics.addr"], given(args.metrics_addr.is_some(), "metrics-addr")),
    );
    row("sluice.hot.keys.enable", plan.hot_keys_enabled.to_string(), sources.of(&["sluice.hot.keys.enable"], None));
    row("node.id", c.node_id.to_string(), sources.of(&["node.id", "broker.id"], None));
    row("num.partitions", c.num_partitions.to_string(), sources.of(&["num.partitions"], None));
    row(
        "default.replication.factor",
        c.default_replication_factor.to_string(),
        sources.of(&["default.replication.factor"], None),
    );
    row(
        "auto.create.topics.enable",
        c.auto_create_topics.to_string(),
        sources.of(&["auto.create.topics.enable"], None),
    );
    row("socket.request.max.bytes", c.max_request_bytes.to_string(), sources.of(&["socket.request.max.bytes"], None));
    row(
        "max.connections",
        plan.max_connections.to_string(),
        match sources.of(&["max.connections"], None).as_str() {
            "default" => "default (a quarter of the open-files limit)".into(),
            other => other.into(),
        },
    );
    row("sluice.fetch.sendfile", c.fetch_sendfile.to_string(), sources.of(&["sluice.fetch.sendfile"], None));
    row(
        "sluice.fetch.readahead.bytes",
        c.fetch_readahead_bytes.to_string(),
        sources.of(&["sluice.fetch.readahead.bytes"], None),
    );
    row(
        "sluice.ack.on",
        if c.ack_when_written { "written" } else { "buffered" }.into(),
        sources.of(&["sluice.ack.on"], None),
    );
    // Topic defaults, under their broker names (log.retention.ms, …) where Kafka has one.
    for entry in c.default_log_config.describe() {
        let broker_name = broker_default_name(entry.name).unwrap_or(entry.name);
        row(broker_name, entry.value.clone(), sources.of(&[broker_name, entry.name], None));
    }
    // Anything else given explicitly (group, transaction, replication, quorum settings …).
    let printed: std::collections::HashSet<String> = rows.iter().map(|r| r.0.clone()).collect();
    let topic_names: std::collections::HashSet<&str> = c.default_log_config.describe().iter().map(|e| e.name).collect();
    let mut extra: Vec<(String, String, String)> = Vec::new();
    for (map, source) in [(&sources.file, format!("file {}", sources.file_path)), (&sources.set, "--set".to_string())] {
        for (k, v) in map {
            if printed.contains(k) || topic_names.contains(k.as_str()) || k == "log.dir" {
                continue;
            }
            extra.retain(|e| &e.0 != k); // --set wins over the file
            extra.push((k.clone(), v.clone(), source.clone()));
        }
    }
    extra.sort();
    rows.extend(extra);
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(3).max(3);
    let value_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(5).clamp(5, 40);
    let mut out = format!("{:width$}  {:value_width$}  SOURCE\n", "KEY", "VALUE");
    for (k, v, source) in rows {
        out.push_str(&format!("{k:width$}  {v:value_width$}  {source}\n"));
    }
    Ok(out)
}
