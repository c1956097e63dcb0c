//! What a run reports: the live progress line (once a second), the final table, and the
//! results JSON (the resolved workload, throughput, latency percentiles, errors, verification).
//!
//! Owns: formatting and the JSON schema. Must never: omit errors or failed verification from
//! any of the three outputs.

use serde::Serialize;

use crate::bench::recorder::LatencySummary;
use crate::bench::verify::PartitionVerdict;
use crate::bench::workload::Workload;

#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    pub messages: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
}

impl Throughput {
    pub fn new(messages: u64, bytes: u64, seconds: f64) -> Throughput {
        let s = seconds.max(1e-9);
        Throughput { messages, bytes, seconds, msgs_per_sec: messages as f64 / s, mb_per_sec: bytes as f64 / 1e6 / s }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    /// True when counts were compared (e2e), not only gaps.
    pub counts_checked: bool,
    pub ok: bool,
    pub acked: u64,
    pub consumed: u64,
    pub failed_partitions: Vec<PartitionVerdict>,
    pub partitions_checked: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub sluice_version: &'static str,
    pub run_id: String,
    pub workload: Workload,
    pub topics: Vec<String>,
    pub producers: usize,
    pub consumers: usize,
    pub wall_seconds: f64,
    pub sent_msgs: u64,
    pub acked_msgs: u64,
    /// Value bytes acknowledged / consumed, warm-up included.
    pub acked_bytes: u64,
    pub consumed_msgs: u64,
    pub consumed_bytes: u64,
    pub produce_requests: u64,
    pub fetch_requests: u64,
    /// Wire batch bytes / uncompressed batch bytes (1.0 without compression).
    pub compression_ratio: f64,
    pub produce: Option<Throughput>,
    pub consume: Option<Throughput>,
    pub ack_latency_ms: Option<LatencySummary>,
    pub e2e_latency_ms: Option<LatencySummary>,
    /// Transactional runs: commits, and the latency of each (see `ShardResult::commit_latency`).
    pub transactions_committed: Option<u64>,
    pub commit_latency_ms: Option<LatencySummary>,
    pub warmup_excluded_msgs: u64,
    pub errors_total: u64,
    pub errors: std::collections::BTreeMap<String, u64>,
    pub verification: Option<Verification>,
    pub ok: bool,
}

/// One progress line: `[  3s] produce 12,345 msg/s 12.6 MB/s ack p99 2.10 ms | ...`.
#[allow(clippy::too_many_arguments)]
pub fn progress_line(
    elapsed_s: f64,
    produced_per_sec: f64,
    produced_mb_per_sec: f64,
    consumed_per_sec: f64,
    consumed_mb_per_sec: f64,
    ack_p99_ms: Option<f64>,
    e2e_p99_ms: Option<f64>,
    errors: u64,
    produces: bool,
    consumes: bool,
) -> String {
    let mut s = format!("[{elapsed_s:5.0}s]");
    if produces {
        s += &format!(" produce {:>10.0} msg/s {:>8.1} MB/s", produced_per_sec, produced_mb_per_sec);
        if let Some(p) = ack_p99_ms {
            s += &format!(" ack p99 {p:.2} ms");
        }
    }
    if consumes {
        s += &format!(" | consume {:>10.0} msg/s {:>8.1} MB/s", consumed_per_sec, consumed_mb_per_sec);
        if let Some(p) = e2e_p99_ms {
            s += &format!(" e2e p99 {p:.2} ms");
        }
    }
    s += &format!(" | errors {errors}");
    s
}

fn latency_row(name: &str, l: &LatencySummary) -> String {
    format!(
        "| {name:<14} | {:>10} | {:>8.3} | {:>8.3} | {:>8.3} | {:>8.3} | {:>8.3} | {:>9.3} |\n",
        l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.p9999_ms, l.max_ms
    )
}

/// The final table, Markdown so it pastes into READMEs.
pub fn final_table(r: &BenchReport) -> String {
    let mut s = String::new();
    s += &format!("\nsluice bench {:?} — run {} — {:.1} s\n\n", r.workload.kind, r.run_id, r.wall_seconds);
    s += "| throughput     |      msgs/s |     MB/s |   messages |\n|---|---:|---:|---:|\n";
    for (name, t) in [("produce (acked)", &r.produce), ("consume", &r.consume)] {
        if let Some(t) = t {
            s += &format!("| {name:<14} | {:>11.0} | {:>8.1} | {:>10} |\n", t.msgs_per_sec, t.mb_per_sec, t.messages);
        }
    }
    s += "\n| latency (ms)   |      count |      p50 |      p90 |      p99 |    p99.9 |   p99.99 |       max |\n";
    s += "|---|---:|---:|---:|---:|---:|---:|---:|\n";
    if let Some(l) = &r.ack_latency_ms {
        s += &latency_row("ack", l);
    }
    if let Some(l) = &r.e2e_latency_ms {
        s += &latency_row("end-to-end", l);
    }
    if let Some(l) = &r.commit_latency_ms {
        s += &latency_row("commit", l);
    }
    if let Some(n) = r.transactions_committed {
        s += &format!(
            "
transactions committed {n}
"
        );
    }
    s += &format!(
        "\nsent {} acked {} consumed {} · produce requests {} fetches {} · compression ratio {:.3} · warm-up excluded {}\n",
        r.sent_msgs, r.acked_msgs, r.consumed_msgs, r.produce_requests, r.fetch_requests, r.compression_ratio, r.warmup_excluded_msgs
    );
    if r.errors.is_empty() {
        s += "errors: none\n";
    } else {
        s += &format!("errors: {}\n", r.errors_total);
        for (what, n) in &r.errors {
            s += &format!("  {n:>10} × {what}\n");
        }
    }
    if let Some(v) = &r.verification {
        if v.ok {
            s += &format!(
                "verification: OK — {} partitions, {} {}, no gaps, no duplicates\n",
                v.partitions_checked,
                v.consumed,
                if v.counts_checked { "consumed = acked" } else { "consumed" }
            );
        } else {
            s += &format!("verification: FAILED — acked {} consumed {}\n", v.acked, v.consumed);
            for p in &v.failed_partitions {
                s += &format!(
                    "  {}/{}: acked {} consumed {} offset gaps {} missing {} duplicates/reordered {}\n",
                    p.topic,
                    p.partition,
                    p.acked,
                    p.consumed,
                    p.offset_gaps,
                    p.missing_in_sequence,
                    p.duplicates_or_reordered
                );
            }
        }
    }
    for f in &r.workload.ignored_fields {
        s += &format!("note: workload field ignored: {f}\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_shows_rate_p99_and_errors() {
        let line = progress_line(3.0, 12345.0, 12.6, 100.0, 0.1, Some(2.1), Some(3.5), 7, true, true);
        assert!(line.contains("12345 msg/s"), "{line}");
        assert!(line.contains("12.6 MB/s"));
        assert!(line.contains("ack p99 2.10 ms"));
        assert!(line.contains("e2e p99 3.50 ms"));
        assert!(line.contains("errors 7"));
        assert!(!progress_line(1.0, 1.0, 1.0, 0.0, 0.0, None, None, 0, true, false).contains("consume"));
    }

    #[test]
    fn throughput_divides_by_seconds() {
        let t = Throughput::new(1000, 2_000_000, 2.0);
        assert_eq!(t.msgs_per_sec, 500.0);
        assert_eq!(t.mb_per_sec, 1.0);
    }
}
