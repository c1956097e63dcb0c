//! `sluice produce`: the console producer — one record per line of stdin or `--file`, with an
//! optional key (`--key-separator`), headers (`--header k=v` on every record, and/or per line
//! with `--parse-headers`, `kafka-console-producer`'s `parse.headers` layout), sent to each
//! partition's leader (Produce) with acks=all by default.
//!
//! Owns: line parsing (pure, unit-tested) and batching lines into Produce requests. Must never:
//! report success for a record the broker did not acknowledge, or resend a partition's batch
//! the broker already accepted (only partitions answered with a retriable error are resent).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::records::Compression;
use sluice_engine::error_code::codes;

use crate::error::{kafka_error, CliError, CliResult};
use crate::output::{key_value, Connect};
use crate::partitioner::partition_for_key;
use crate::records::{encode_batch, ConsoleRecord};
use crate::session::{topic_name, Session};

/// Lines per Produce request when reading a file or a pipe (a terminal sends every line).
const BATCH_LINES: usize = 500;
/// Attempts per batch while leaders move (metadata refreshed between them).
const SEND_ATTEMPTS: usize = 5;
const RETRY_BACKOFF: Duration = Duration::from_millis(300);
const PRODUCE_TIMEOUT_MS: i32 = 30_000;

const EXAMPLES: &str = "Examples:
  echo 'hello' | sluice produce --topic orders
  sluice produce --topic orders --key-separator : --file orders.txt      # lines like  key:value
  sluice produce --topic orders --header source=cli --header v=2 < lines.txt
  printf 'h1:a,h2:b\\tkey\\tvalue\\n' | sluice produce --topic orders --parse-headers --key-separator $'\\t'
  sluice produce --topic orders --partition 3 --compression zstd --acks 1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionArg {
    fn codec(self) -> Compression {
        match self {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct ProduceArgs {
    /// The topic to write to.
    #[arg(long)]
    pub topic: String,
    /// Read lines from this file instead of stdin.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Split each line at the first SEP into key and value (a line without it is an error).
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// A header KEY=VALUE added to every record (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = key_value)]
    pub header: Vec<(String, String)>,
    /// Each line starts with its headers: `k1:v1,k2:v2<TAB>rest` (kafka-console-producer's
    /// parse.headers); `rest` is then split by --key-separator.
    #[arg(long)]
    pub parse_headers: bool,
    /// Ends the headers part of a line (with --parse-headers).
    #[arg(long, default_value = "\t", value_name = "SEP")]
    pub headers_delimiter: String,
    /// Separates headers from each other (with --parse-headers).
    #[arg(long, default_value = ",", value_name = "SEP")]
    pub headers_separator: String,
    /// Separates a header's key from its value (with --parse-headers).
    #[arg(long, default_value = ":", value_name = "SEP")]
    pub headers_key_separator: String,
    /// Write every record to this partition (default: by key hash, as Kafka's clients do).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Acknowledgements: -1 (all in-sync replicas), 1 (leader) or 0 (none).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true, value_parser = clap::value_parser!(i16).range(-1..=1))]
    pub acks: i16,
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub compression: CompressionArg,
    #[command(flatten)]
    pub connect: Connect,
}

/// How a line becomes a record.
#[derive(Clone, Debug, Default)]
pub struct LineFormat {
    pub key_separator: Option<String>,
    /// (delimiter, separator, key separator) when lines carry headers.
    pub headers: Option<(String, String, String)>,
}

/// Key, value and headers of one input line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedLine {
    pub key: Option<String>,
    pub value: String,
    pub headers: Vec<(String, String)>,
}

pub fn parse_line(line: &str, format: &LineFormat) -> Result<ParsedLine, String> {
    let mut rest = line;
    let mut headers = Vec::new();
    if let Some((delimiter, separator, key_separator)) = &format.headers {
        let (head, tail) = rest
            .split_once(delimiter.as_str())
            .ok_or_else(|| format!("no headers delimiter {delimiter:?} in the line"))?;
        rest = tail;
        for h in head.split(separator.as_str()).filter(|h| !h.is_empty()) {
            let (k, v) = h
                .split_once(key_separator.as_str())
                .ok_or_else(|| format!("header {h:?} has no key separator {key_separator:?}"))?;
            headers.push((k.to_string(), v.to_string()));
        }
    }
    match &format.key_separator {
        Some(sep) => {
            let (k, v) =
                rest.split_once(sep.as_str()).ok_or_else(|| format!("no key separator {sep:?} in the line"))?;
            Ok(ParsedLine { key: Some(k.to_string()), value: v.to_string(), headers })
        }
        None => Ok(ParsedLine { key: None, value: rest.to_string(), headers }),
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

struct Producer {
    session: Session,
    topic: String,
    acks: i16,
    compression: Compression,
    fixed_partition: Option<i32>,
    partitions: usize,
    /// The partition of the next batch's keyless records.
    next_keyless: usize,
    sent: u64,
}

impl Producer {
    /// Sends `records`, each to its partition; returns once every one is acknowledged.
    fn send(&mut self, records: Vec<ConsoleRecord>) -> CliResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let keyless = (self.next_keyless % self.partitions) as i32;
        self.next_keyless += 1;
        let mut by_partition: BTreeMap<i32, Vec<ConsoleRecord>> = BTreeMap::new();
        for r in records {
            let p = match (self.fixed_partition, &r.key) {
                (Some(p), _) => p,
                (None, Some(k)) => partition_for_key(k, self.partitions),
                (None, None) => keyless,
            };
            by_partition.entry(p).or_default().push(r);
        }
        let mut pending: BTreeMap<i32, (usize, Bytes)> = BTreeMap::new();
        for (p, rs) in &by_partition {
            pending.insert(*p, (rs.len(), encode_batch(rs, self.compression)?));
        }
        for attempt in 1..=SEND_ATTEMPTS {
            let leaders = self.session.cached_leaders(&self.topic)?;
            let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
            for p in pending.keys() {
                let leader = *leaders.get(p).ok_or_else(|| {
                    CliError::kafka(format!(
                        "topic '{}' has no partition {p}; see its partitions with `sluice topic describe {}`",
                        self.topic, self.topic
                    ))
                })?;
                by_leader.entry(leader).or_default().push(*p);
            }
            let mut retry = Vec::new();
            for (leader, parts) in by_leader {
                let request =
                    ProduceRequest::default().with_acks(self.acks).with_timeout_ms(PRODUCE_TIMEOUT_MS).with_topic_data(
                        vec![TopicProduceData::default().with_name(topic_name(&self.topic)).with_partition_data(
                            parts
                                .iter()
                                .map(|p| {
                                    PartitionProduceData::default()
                                        .with_index(*p)
                                        .with_records(Some(pending[p].1.clone()))
                                })
                                .collect(),
                        )],
                    );
                let conn = self.session.to_node(leader)?;
                if self.acks == 0 {
                    // No response comes for acks=0; the request is on the wire.
                    conn.send_only(&request)?;
                    for p in &parts {
                        self.sent += pending.remove(p).expect("pending").0 as u64;
                    }
                    continue;
                }
                let response = conn.call(&request)?;
                for t in &response.responses {
                    for pr in &t.partition_responses {
                        match pr.error_code {
                            0 => {
                                if let Some((n, _)) = pending.remove(&pr.index) {
                                    self.sent += n as u64;
                                }
                            }
                            codes::NOT_LEADER_OR_FOLLOWER
                            | codes::UNKNOWN_TOPIC_OR_PARTITION
                            | codes::LEADER_NOT_AVAILABLE
                            | codes::REQUEST_TIMED_OUT
                            | codes::NOT_ENOUGH_REPLICAS
                                if attempt < SEND_ATTEMPTS =>
                            {
                                retry.push(pr.index)
                            }
                            code => {
                                return Err(kafka_error(
                                    &format!("produce to {}/{}", self.topic, pr.index),
                                    code,
                                    pr.error_message.as_deref(),
                                ))
                            }
                        }
                    }
                }
            }
            if pending.is_empty() {
                return Ok(());
            }
            if retry.is_empty() {
                break;
            }
            self.session.forget_leaders(&self.topic);
            std::thread::sleep(RETRY_BACKOFF);
        }
        Err(CliError::kafka(format!(
            "produce to topic '{}': partitions {:?} were not acknowledged",
            self.topic,
            pending.keys().collect::<Vec<_>>()
        )))
    }
}

pub fn run(args: ProduceArgs) -> CliResult<()> {
    let format = LineFormat {
        key_separator: args.key_separator.clone(),
        headers: args.parse_headers.then(|| {
            (args.headers_delimiter.clone(), args.headers_separator.clone(), args.headers_key_separator.clone())
        }),
    };
    let mut session = Session::connect(&args.connect.bootstrap)?;
    let partitions = session.partitions(&args.topic)?.len();
    if let Some(p) = args.partition {
        if p < 0 || p as usize >= partitions {
            return Err(CliError::usage(format!(
                "topic '{}' has partitions 0..{}; --partition {p} is not one of them",
                args.topic,
                partitions.saturating_sub(1)
            )));
        }
    }
    let (input, interactive): (Box<dyn BufRead>, bool) = match &args.file {
        Some(path) => (
            Box::new(BufReader::new(
                std::fs::File::open(path).map_err(|e| CliError::usage(format!("open {}: {e}", path.display())))?,
            )),
            false,
        ),
        None => (Box::new(BufReader::new(std::io::stdin())), std::io::stdin().is_terminal()),
    };
    let mut producer = Producer {
        session,
        topic: args.topic.clone(),
        acks: args.acks,
        compression: args.compression.codec(),
        fixed_partition: args.partition,
        partitions,
        next_keyless: 0,
        sent: 0,
    };
    let batch_lines = if interactive { 1 } else { BATCH_LINES };
    let mut batch = Vec::with_capacity(batch_lines);
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(|e| CliError::kafka(format!("read input line {}: {e}", n + 1)))?;
        let ParsedLine { key, value, mut headers } =
            parse_line(&line, &format).map_err(|e| CliError::kafka(format!("input line {}: {e}", n + 1)))?;
        headers.extend(args.header.iter().cloned());
        batch.push(ConsoleRecord {
            offset: 0,
            timestamp_ms: now_ms(),
            key: key.map(Bytes::from),
            value: Some(Bytes::from(value)),
            headers: headers.into_iter().map(|(k, v)| (k, Some(Bytes::from(v)))).collect(),
        });
        if batch.len() >= batch_lines {
            producer.send(std::mem::take(&mut batch))?;
        }
    }
    producer.send(batch)?;
    eprintln!("Produced {} records to topic '{}'.", producer.sent, args.topic);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(key: Option<&str>, value: &str, headers: &[(&str, &str)]) -> ParsedLine {
        ParsedLine {
            key: key.map(String::from),
            value: value.into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn lines_split_into_headers_key_and_value() {
        let plain = LineFormat::default();
        assert_eq!(parse_line("a:b", &plain).unwrap(), parsed(None, "a:b", &[]));
        let keyed = LineFormat { key_separator: Some(":".into()), headers: None };
        assert_eq!(parse_line("k:v:w", &keyed).unwrap(), parsed(Some("k"), "v:w", &[]));
        assert!(parse_line("no-separator", &keyed).unwrap_err().contains("no key separator"));
        let with_headers =
            LineFormat { key_separator: Some("\t".into()), headers: Some(("\t".into(), ",".into(), ":".into())) };
        assert_eq!(
            parse_line("h1:a,h2:b\tkey\tvalue", &with_headers).unwrap(),
            parsed(Some("key"), "value", &[("h1", "a"), ("h2", "b")])
        );
        assert_eq!(parse_line("\tk\tv", &with_headers).unwrap(), parsed(Some("k"), "v", &[]));
        assert!(parse_line("h1\tk\tv", &with_headers).is_err());
    }
}
