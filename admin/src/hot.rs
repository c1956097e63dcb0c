//! `sluice topic hot [TOPIC] [--factor N] [--metrics ADDR,…]`: which partitions are hot and
//! which keys drive them, from the brokers' metrics endpoints (no Kafka tool has this).
//!
//! Scrapes `/metrics` of every address given, takes each partition's produce rate
//! (`sluice_partition_bytes_per_second`, the highest any node reports: followers report none)
//! and each topic's median over its partitions, and prints the partitions above `factor` × the
//! median with the top keys the brokers' sketches saw going to them (`sluice_hot_key_bytes`,
//! summed over shards and nodes).
//!
//! Owns: scraping (blocking `std::net`, this is a CLI on the main thread), the parse of the
//! text format's samples, and the report. Must never: print a partition as hot without its
//! rate and the median it was compared with.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use clap::Args;

use crate::error::{CliError, CliResult};

#[derive(Args, Debug)]
pub struct HotArgs {
    /// Only this topic (default: every topic).
    pub topic: Option<String>,
    /// A partition is hot above this multiple of its topic's median bytes/s.
    #[arg(long, default_value_t = 2.0)]
    pub factor: f64,
    /// Metrics endpoints of the brokers, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:9644")]
    pub metrics: Vec<String>,
    /// Keys listed per hot partition.
    #[arg(long, default_value_t = 5)]
    pub keys: usize,
    /// text or json.
    #[arg(long, default_value = "text")]
    pub output: String,
}

/// `sluice topic hot`: prints the report.
pub fn run(args: &HotArgs) -> CliResult<()> {
    let text = hot(args).map_err(CliError::kafka)?;
    print!("{text}");
    Ok(())
}

/// One sample of the text format: name, labels, value.
#[derive(Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the sample lines of a Prometheus text exposition (comments skipped). `None` for a
/// line that is not a sample.
pub fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices();
        let mut key = String::new();
        loop {
            let (_, c) = chars.next()?;
            match c {
                '}' => break,
                ',' => continue,
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        let (_, c) = chars.next()?;
                        match c {
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            '"' => break,
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        }
        let consumed = chars.next().map_or(after.len(), |(i, _)| i);
        rest = &after[consumed..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample { name, labels, value })
}

/// GET /metrics from `addr` (blocking, 10 s timeouts).
pub fn scrape(addr: &str) -> Result<String, String> {
    let socket = addr
        .to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr}: no address"))?;
    let timeout = Duration::from_secs(10);
    let mut stream = TcpStream::connect_timeout(&socket, timeout)
        .map_err(|e| format!("{addr}: {e} (is the broker's --metrics-addr there?)"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(|e| format!("{addr}: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("{addr}: not an HTTP response"))?;
    let status = head.lines().next().unwrap_or("");
    if !status.contains(" 200 ") {
        return Err(format!("{addr}: {status}"));
    }
    Ok(body.to_string())
}

/// A partition's rate and where it stands in its topic.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionRate {
    pub topic: String,
    pub partition: i32,
    pub bytes_per_second: f64,
    pub records_per_second: f64,
}

/// A key seen by the sketches, summed over shards and nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyBytes {
    pub topic: String,
    pub partition: i32,
    pub key: String,
    pub bytes: f64,
}

/// A hot partition with its topic's median and its keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Hot {
    pub rate: PartitionRate,
    pub median_bytes_per_second: f64,
    pub keys: Vec<KeyBytes>,
}

/// The report from scraped samples: per topic its median, and the hot partitions.
pub fn analyse(
    samples: &[Sample],
    topic: Option<&str>,
    factor: f64,
    keys_per_partition: usize,
) -> (BTreeMap<String, f64>, Vec<Hot>) {
    let mut rates: BTreeMap<(String, i32), PartitionRate> = BTreeMap::new();
    let mut keys: BTreeMap<(String, i32, String), f64> = BTreeMap::new();
    for s in samples {
        let (Some(t), Some(p)) = (s.labels.get("topic"), s.labels.get("partition").and_then(|p| p.parse().ok())) else {
            continue;
        };
        if topic.is_some_and(|wanted| wanted != t) {
            continue;
        }
        let entry = || PartitionRate { topic: t.clone(), partition: p, bytes_per_second: 0.0, records_per_second: 0.0 };
        match s.name.as_str() {
            "sluice_partition_bytes_per_second" => {
                let r = rates.entry((t.clone(), p)).or_insert_with(entry);
                r.bytes_per_second = r.bytes_per_second.max(s.value);
            }
            "sluice_partition_records_per_second" => {
                let r = rates.entry((t.clone(), p)).or_insert_with(entry);
                r.records_per_second = r.records_per_second.max(s.value);
            }
            "sluice_hot_key_bytes" => {
                if let Some(k) = s.labels.get("key") {
                    *keys.entry((t.clone(), p, k.clone())).or_default() += s.value;
                }
            }
            _ => {}
        }
    }
    let mut by_topic: BTreeMap<String, Vec<&PartitionRate>> = BTreeMap::new();
    for r in rates.values() {
        by_topic.entry(r.topic.clone()).or_default().push(r);
    }
    let mut medians = BTreeMap::new();
    let mut hot = Vec::new();
    for (t, partitions) in &by_topic {
        let mut values: Vec<f64> = partitions.iter().map(|r| r.bytes_per_second).collect();
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 };
        medians.insert(t.clone(), median);
        for r in partitions {
            if r.bytes_per_second > 0.0 && r.bytes_per_second > factor * median {
                let mut driving: Vec<KeyBytes> = keys
                    .iter()
                    .filter(|((kt, kp, _), _)| kt == t && *kp == r.partition)
                    .map(|((kt, kp, k), b)| KeyBytes { topic: kt.clone(), partition: *kp, key: k.clone(), bytes: *b })
                    .collect();
                driving.sort_by(|a, b| b.bytes.total_cmp(&a.bytes));
                driving.truncate(keys_per_partition);
                hot.push(Hot { rate: (*r).clone(), median_bytes_per_second: median, keys: driving });
            }
        }
    }
    hot.sort_by(|a, b| b.rate.bytes_per_second.total_cmp(&a.rate.bytes_per_second));
    (medians, hot)
}

fn hot(args: &HotArgs) -> Result<String, String> {
    if !(args.factor.is_finite() && args.factor > 0.0) {
        return Err(format!("--factor {} must be a positive number", args.factor));
    }
    let mut samples = Vec::new();
    for addr in &args.metrics {
        samples.extend(scrape(addr)?.lines().filter_map(parse_sample));
    }
    let (medians, hot) = analyse(&samples, args.topic.as_deref(), args.factor, args.keys);
    if let Some(t) = &args.topic {
        if !medians.contains_key(t) {
            return Err(format!("no partition of topic {t:?} in the metrics of {}", args.metrics.join(",")));
        }
    }
    match args.output.as_str() {
        "json" => Ok(json(&medians, &hot, args.factor)),
        "text" => Ok(text(&medians, &hot, args.factor)),
        other => Err(format!("--output {other:?}: text or json")),
    }
}

fn text(medians: &BTreeMap<String, f64>, hot: &[Hot], factor: f64) -> String {
    let mut out = String::new();
    if hot.is_empty() {
        out.push_str(&format!("no partition above {factor}× its topic's median produce rate\n"));
        for (t, m) in medians {
            out.push_str(&format!("  {t}: median {m:.0} B/s\n"));
        }
        return out;
    }
    out.push_str(&format!(
        "{:<30} {:>9} {:>14} {:>12} {:>9}\n",
        "TOPIC", "PARTITION", "BYTES/S", "RECORDS/S", "×MEDIAN"
    ));
    for h in hot {
        let times = if h.median_bytes_per_second > 0.0 {
            format!("{:.1}", h.rate.bytes_per_second / h.median_bytes_per_second)
        } else {
            "inf".into()
        };
        out.push_str(&format!(
            "{:<30} {:>9} {:>14.0} {:>12.0} {:>9}\n",
            h.rate.topic, h.rate.partition, h.rate.bytes_per_second, h.rate.records_per_second, times
        ));
        for k in &h.keys {
            out.push_str(&format!("    key {:<40} ~{:.0} bytes in the last 1-2 min\n", k.key, k.bytes));
        }
    }
    out
}

fn json(medians: &BTreeMap<String, f64>, hot: &[Hot], factor: f64) -> String {
    let value = serde_json::json!({
        "factor": factor,
        "median_bytes_per_second": medians,
        "hot_partitions": hot.iter().map(|h| serde_json::json!({
            "topic": h.rate.topic,
            "partition": h.rate.partition,
            "bytes_per_second": h.rate.bytes_per_second,
            "records_per_second": h.rate.records_per_second,
            "median_bytes_per_second": h.median_bytes_per_second,
            "keys": h.keys.iter().map(|k| serde_json::json!({"key": k.key, "bytes": k.bytes})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    format!("{value}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_parse_with_escaped_labels() {
        let s = parse_sample(r#"sluice_hot_key_bytes{shard="0",topic="t",partition="2",key="a\"b\\c"} 123"#).unwrap();
        assert_eq!(s.name, "sluice_hot_key_bytes");
        assert_eq!(s.labels["key"], "a\"b\\c");
        assert_eq!(s.labels["partition"], "2");
        assert_eq!(s.value, 123.0);
        assert_eq!(parse_sample("sluice_isr_shrinks_total 0").unwrap().value, 0.0);
        assert_eq!(parse_sample(r#"x_bucket{le="+Inf"} 4"#).unwrap().labels["le"], "+Inf");
        assert!(parse_sample("# HELP x y").is_none());
        assert!(parse_sample(r#"x{a="1" 2"#).is_none());
    }

    #[test]
    fn partitions_above_factor_times_median_are_hot_with_their_keys() {
        let mut samples = Vec::new();
        for (p, rate) in [(0, 100.0), (1, 110.0), (2, 90.0), (3, 1000.0)] {
            let labels: BTreeMap<String, String> =
                [("topic".to_string(), "t".to_string()), ("partition".to_string(), p.to_string())].into();
            samples.push(Sample { name: "sluice_partition_bytes_per_second".into(), labels, value: rate });
        }
        for (shard, key, p, bytes) in [("0", "hot", 3, 500.0), ("1", "hot", 3, 400.0), ("0", "cold", 0, 10.0)] {
            let labels: BTreeMap<String, String> = [
                ("shard".to_string(), shard.to_string()),
                ("topic".to_string(), "t".to_string()),
                ("partition".to_string(), p.to_string()),
                ("key".to_string(), key.to_string()),
            ]
            .into();
            samples.push(Sample { name: "sluice_hot_key_bytes".into(), labels, value: bytes });
        }
        let (medians, hot) = analyse(&samples, None, 2.0, 5);
        assert_eq!(medians["t"], 105.0);
        assert_eq!(hot.len(), 1);
        assert_eq!(hot[0].rate.partition, 3);
        assert_eq!(hot[0].keys, vec![KeyBytes { topic: "t".into(), partition: 3, key: "hot".into(), bytes: 900.0 }]);
        assert!(analyse(&samples, None, 20.0, 5).1.is_empty());
        assert!(analyse(&samples, Some("other"), 2.0, 5).0.is_empty());
    }
}
