//! Merges the shards' snapshots into one scrape and writes it in Prometheus' text exposition
//! format 0.0.4 (`# HELP`, `# TYPE`, histograms as `_bucket{le=…}`, `_sum`, `_count`). Pure:
//! the HTTP endpoint gathers the inputs.
//!
//! Owns: metric names, label sets and the lag computation (a group's committed offset against
//! the partition's high watermark, what `kafka-consumer-groups --describe` shows as LAG).
//! Must never: emit a label value unescaped, or a `key` label beyond the sketch's cap.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kafka_protocol::messages::ApiKey;
use sluice_engine::shard_metrics::{LatencyHistogram, LATENCY_BUCKETS_S};

use super::{ApiStats, ShardSnapshot, TopicIo};

/// Node-wide inputs besides the shards' snapshots.
#[derive(Clone, Debug, Default)]
pub struct NodeInputs {
    pub data_dir: String,
    pub replication: crate::replication::counters::ReplicationCounters,
    /// Per shard: task run time as a share of wall time since the previous scrape.
    pub busy_ratio: Vec<f64>,
}

/// A label value as Prometheus wants it: `\`, `"` and newlines escaped.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A record key as a label: printable ASCII as it is, anything else as `0x` and hex.
pub fn key_label(key: &[u8]) -> String {
    if !key.is_empty() && key.iter().all(|b| (0x20..0x7f).contains(b)) {
        String::from_utf8_lossy(key).into_owned()
    } else {
        let mut s = String::with_capacity(2 + 2 * key.len());
        s.push_str("0x");
        for b in key {
            let _ = write!(s, "{b:02x}");
        }
        s
    }
}

fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map(|k| format!("{k:?}")).unwrap_or_else(|_| format!("Unknown{key}"))
}

/// A per-topic counter: name, help, value.
type TopicFamily = (&'static str, &'static str, fn(&TopicIo) -> u64);
/// A per-partition metric: name, type, help, value.
type PartitionFamily = (&'static str, &'static str, &'static str, fn(&super::PartitionSnapshot) -> f64);

struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape(v));
            }
            self.text.push('}');
        }
        if value.is_finite() && value == value.trunc() && value.abs() < 1e15 {
            let _ = writeln!(self.text, " {}", value as i64);
        } else {
            let _ = writeln!(self.text, " {value}");
        }
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &LatencyHistogram) {
        let mut cumulative = 0u64;
        let bucket = format!("{name}_bucket");
        for (i, n) in h.buckets.iter().enumerate() {
            cumulative += n;
            let le = LATENCY_BUCKETS_S.get(i).map_or("+Inf".to_string(), |b| b.to_string());
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative as f64);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum_ns as f64 / 1e9);
        self.sample(&format!("{name}_count"), labels, cumulative as f64);
    }
}

/// The scrape's text.
pub fn render(shards: &[ShardSnapshot], node: &NodeInputs) -> String {
    let mut out = Out { text: String::with_capacity(16 * 1024) };

    // Requests, per API (summed over shards).
    let mut apis: BTreeMap<i16, ApiStats> = BTreeMap::new();
    for s in shards {
        for (key, stats) in &s.apis {
            let e = apis.entry(*key).or_default();
            e.requests += stats.requests;
            e.errors += stats.errors;
            e.latency.merge(&stats.latency);
        }
    }
    let api_names: BTreeMap<i16, String> = apis.keys().map(|k| (*k, api_name(*k))).collect();
    out.family("sluice_requests_total", "counter", "Requests answered, per API.");
    for (key, s) in &apis {
        out.sample("sluice_requests_total", &[("api", &api_names[key])], s.requests as f64);
    }
    out.family(
        "sluice_request_errors_total",
        "counter",
        "Requests whose response carried an error code (any partition's), or that closed the connection.",
    );
    for (key, s) in &apis {
        out.sample("sluice_request_errors_total", &[("api", &api_names[key])], s.errors as f64);
    }
    out.family(
        "sluice_request_latency_seconds",
        "histogram",
        "Time from a request's frame read to its response ready (a produce: durable), per API.",
    );
    for (key, s) in &apis {
        out.histogram("sluice_request_latency_seconds", &[("api", &api_names[key])], &s.latency);
    }

    // Topic throughput.
    let mut topics: BTreeMap<&str, TopicIo> = BTreeMap::new();
    for s in shards {
        for (name, io) in &s.topics {
            let e = topics.entry(name).or_default();
            e.bytes_in += io.bytes_in;
            e.records_in += io.records_in;
            e.bytes_out += io.bytes_out;
        }
    }
    let topic_families: [TopicFamily; 3] = [
        ("sluice_topic_bytes_in_total", "Record-batch bytes appended by produce requests.", |io| io.bytes_in),
        ("sluice_topic_records_in_total", "Records appended by produce requests.", |io| io.records_in),
        (
            "sluice_topic_bytes_out_total",
            "Record-batch bytes sent in fetch responses (consumers and followers).",
            |io| io.bytes_out,
        ),
    ];
    for (name, help, get) in topic_families {
        out.family(name, "counter", help);
        for (topic, io) in &topics {
            out.sample(name, &[("topic", topic)], get(io) as f64);
        }
    }

    // Partitions.
    let mut partitions: Vec<&super::PartitionSnapshot> = shards.iter().flat_map(|s| &s.partitions).collect();
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let partition_families: [PartitionFamily; 6] = [
        ("sluice_partition_log_end_offset", "gauge", "The partition's log end offset (next offset to assign).", |p| {
            p.log_end_offset as f64
        }),
        (
            "sluice_partition_high_watermark",
            "gauge",
            "The partition's high watermark (what consumers can read).",
            |p| p.high_watermark as f64,
        ),
        ("sluice_partition_log_start_offset", "gauge", "The partition's log start offset.", |p| {
            p.log_start_offset as f64
        }),
        ("sluice_partition_size_bytes", "gauge", "Bytes of the partition's segments on disk.", |p| p.size_bytes as f64),
        (
            "sluice_partition_bytes_per_second",
            "gauge",
            "Produced bytes per second over the last minute (five-second buckets).",
            |p| p.rate.bytes_per_second,
        ),
        (
            "sluice_partition_records_per_second",
            "gauge",
            "Produced records per second over the last minute (five-second buckets).",
            |p| p.rate.records_per_second,
        ),
    ];
    for (name, kind, help, get) in partition_families {
        out.family(name, kind, help);
        for p in &partitions {
            let index = p.partition.to_string();
            out.sample(name, &[("topic", &p.topic), ("partition", &index)], get(p));
        }
    }
    out.family("sluice_log_dir_size_bytes", "gauge", "Bytes of every partition's segments in the data directory.");
    let total: u64 = partitions.iter().map(|p| p.size_bytes).sum();
    out.sample("sluice_log_dir_size_bytes", &[("dir", &node.data_dir)], total as f64);

    // Consumer groups.
    let high_watermarks: BTreeMap<(&str, i32), i64> =
        partitions.iter().map(|p| ((p.topic.as_str(), p.partition), p.high_watermark)).collect();
    let mut committed: Vec<&super::CommittedSnapshot> = shards.iter().flat_map(|s| &s.committed).collect();
    committed.sort_by(|a, b| (&a.group, &a.topic, a.partition).cmp(&(&b.group, &b.topic, b.partition)));
    out.family("sluice_consumer_group_committed_offset", "gauge", "A group's committed offset.");
    for c in &committed {
        let index = c.partition.to_string();
        let labels = [("group", c.group.as_str()), ("topic", &c.topic), ("partition", &index)];
        out.sample("sluice_consumer_group_committed_offset", &labels, c.offset as f64);
    }
    out.family(
        "sluice_consumer_group_lag",
        "gauge",
        "High watermark minus the group's committed offset (at least 0), for partitions this node holds.",
    );
    for c in &committed {
        let Some(hw) = high_watermarks.get(&(c.topic.as_str(), c.partition)) else { continue };
        let index = c.partition.to_string();
        let labels = [("group", c.group.as_str()), ("topic", &c.topic), ("partition", &index)];
        out.sample("sluice_consumer_group_lag", &labels, (hw - c.offset).max(0) as f64);
    }

    // Replication.
    out.family(
        "sluice_under_replicated_partitions",
        "gauge",
        "Partitions this node leads with fewer in-sync replicas than replicas.",
    );
    out.sample("sluice_under_replicated_partitions", &[], node.replication.under_replicated_partitions as f64);
    out.family("sluice_isr_shrinks_total", "counter", "ISR shrinks this node's leaders committed.");
    out.sample("sluice_isr_shrinks_total", &[], node.replication.isr_shrinks as f64);
    out.family("sluice_isr_expands_total", "counter", "ISR expansions this node's leaders committed.");
    out.sample("sluice_isr_expands_total", &[], node.replication.isr_expands as f64);

    // Shards: connections, busy time.
    out.family("sluice_connections", "gauge", "Open client connections, per shard.");
    for s in shards {
        out.sample("sluice_connections", &[("shard", &s.shard.to_string())], s.connections_open as f64);
    }
    out.family("sluice_connections_accepted_total", "counter", "Client connections accepted, per shard.");
    for s in shards {
        out.sample(
            "sluice_connections_accepted_total",
            &[("shard", &s.shard.to_string())],
            s.connections_accepted as f64,
        );
    }
    out.family(
        "sluice_quota_throttled_total",
        "counter",
        "Requests (kind=produce, fetch) and connections (kind=connection) throttled by a client quota.",
    );
    let kinds = ["produce", "fetch", "connection"];
    for (slot, kind) in kinds.iter().enumerate() {
        let count: u64 = shards.iter().map(|s| s.quota_throttles[slot].count).sum();
        out.sample("sluice_quota_throttled_total", &[("kind", kind)], count as f64);
    }
    out.family(
        "sluice_quota_throttle_seconds_total",
        "counter",
        "Throttle time given to clients over a quota (the time their connections were muted or held).",
    );
    for (slot, kind) in kinds.iter().enumerate() {
        let ms: u64 = shards.iter().map(|s| s.quota_throttles[slot].throttle_ms).sum();
        out.sample("sluice_quota_throttle_seconds_total", &[("kind", kind)], ms as f64 / 1000.0);
    }
    out.family("sluice_shard_busy_seconds_total", "counter", "Time the shard's executor spent running tasks.");
    for s in shards {
        out.sample("sluice_shard_busy_seconds_total", &[("shard", &s.shard.to_string())], s.busy_seconds);
    }
    out.family("sluice_shard_busy_ratio", "gauge", "Share of wall time the shard ran tasks since the previous scrape.");
    for (s, ratio) in shards.iter().zip(&node.busy_ratio) {
        out.sample("sluice_shard_busy_ratio", &[("shard", &s.shard.to_string())], *ratio);
    }

    // Engine.
    let (hits, misses) =
        shards.iter().fold((0u64, 0u64), |(h, m), s| (h + s.engine.tail_cache_hits, m + s.engine.tail_cache_misses));
    out.family("sluice_tail_cache_hits_total", "counter", "Reads of record data served from a tail cache.");
    out.sample("sluice_tail_cache_hits_total", &[], hits as f64);
    out.family("sluice_tail_cache_misses_total", "counter", "Reads of record data not served from a tail cache.");
    out.sample("sluice_tail_cache_misses_total", &[], misses as f64);
    out.family("sluice_tail_cache_hit_ratio", "gauge", "Tail-cache hits over all reads since start (0 before any).");
    let ratio = if hits + misses == 0 { 0.0 } else { hits as f64 / (hits + misses) as f64 };
    out.sample("sluice_tail_cache_hit_ratio", &[], ratio);
    let from_frames: u64 = shards.iter().map(|s| s.engine.written_from_frame_bytes).sum();
    out.family(
        "sluice_segment_bytes_written_from_frames_total",
        "counter",
        "Record bytes written to segment files straight from the frame they arrived in (no copy).",
    );
    out.sample("sluice_segment_bytes_written_from_frames_total", &[], from_frames as f64);
    let mut fsync = LatencyHistogram::default();
    for s in shards {
        fsync.merge(&s.engine.fsync);
    }
    out.family(
        "sluice_fsync_latency_seconds",
        "histogram",
        "Segment fdatasync latency (group commits, rolled segments).",
    );
    out.histogram("sluice_fsync_latency_seconds", &[], &fsync);

    // Hot keys.
    out.family(
        "sluice_hot_key_bytes",
        "gauge",
        "Estimated produced bytes of the shard's top keys over the last one to two minutes, with the partition each \
         went to (sampled; uncompressed batches only).",
    );
    for s in shards {
        let shard = s.shard.to_string();
        for h in &s.hot_keys {
            let (key, partition) = (key_label(&h.key), h.partition.to_string());
            let labels = [("shard", shard.as_str()), ("topic", &h.topic), ("partition", &partition), ("key", &key)];
            out.sample("sluice_hot_key_bytes", &labels, h.bytes as f64);
        }
    }
    out.family("sluice_hot_key_sampled_sets_total", "counter", "Produce record sets walked for hot keys.");
    let sampled: u64 = shards.iter().map(|s| s.hot_key_sampled_sets).sum();
    out.sample("sluice_hot_key_sampled_sets_total", &[], sampled as f64);
    out.family(
        "sluice_hot_key_skipped_compressed_batches_total",
        "counter",
        "Sampled compressed batches whose keys were not counted.",
    );
    let skipped: u64 = shards.iter().map(|s| s.hot_key_skipped_compressed_batches).sum();
    out.sample("sluice_hot_key_skipped_compressed_batches_total", &[], skipped as f64);
    out.text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{CommittedSnapshot, PartitionSnapshot};

    #[test]
    fn labels_are_escaped_and_keys_readable() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(key_label(b"user-1"), "user-1");
        assert_eq!(key_label(&[0, 0, 1]), "0x000001");
        assert_eq!(key_label(b""), "0x");
    }

    #[test]
    fn lag_is_high_watermark_minus_committed_and_histograms_are_cumulative() {
        let partition = PartitionSnapshot {
            topic: "t".into(),
            partition: 0,
            log_start_offset: 0,
            log_end_offset: 100,
            high_watermark: 90,
            size_bytes: 1000,
            rate: Default::default(),
        };
        let committed = CommittedSnapshot { group: "g".into(), topic: "t".into(), partition: 0, offset: 40 };
        let mut h = LatencyHistogram::default();
        h.record(std::time::Duration::from_millis(2));
        let a = ShardSnapshot {
            shard: 0,
            partitions: vec![partition],
            apis: vec![(0, ApiStats { requests: 1, errors: 0, latency: h })],
            ..Default::default()
        };
        let b = ShardSnapshot { shard: 1, committed: vec![committed], ..Default::default() };
        let text =
            render(&[a, b], &NodeInputs { data_dir: "/d".into(), busy_ratio: vec![0.5, 0.0], ..Default::default() });
        assert!(text.contains("sluice_consumer_group_lag{group=\"g\",topic=\"t\",partition=\"0\"} 50\n"), "{text}");
        assert!(text.contains("sluice_request_latency_seconds_bucket{api=\"Produce\",le=\"0.001\"} 0\n"));
        assert!(text.contains("sluice_request_latency_seconds_bucket{api=\"Produce\",le=\"0.0025\"} 1\n"));
        assert!(text.contains("sluice_request_latency_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 1\n"));
        assert!(text.contains("sluice_request_latency_seconds_count{api=\"Produce\"} 1\n"));
        assert!(text.contains("sluice_log_dir_size_bytes{dir=\"/d\"} 1000\n"));
        assert!(text.contains("sluice_shard_busy_ratio{shard=\"0\"} 0.5\n"));
        // Every sample line belongs to a family announced before it.
        let mut families = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                families.insert(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let base = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
                assert!(families.contains(name) || families.contains(base), "{line}");
            }
        }
    }
}
