//! One row per tuning run (knob values, achieved throughput, latency percentiles, broker CPU,
//! errors, load average), written as JSON lines and CSV, and the per-configuration medians.
//!
//! Owns: the result schema and the median arithmetic. Must never: drop a failed run (it is a
//! row with `ok = false` and its error).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

#[derive(Clone, Debug, Default, Serialize)]
pub struct RunRow {
    pub rep: usize,
    pub config: String,
    pub knobs: BTreeMap<String, String>,
    /// Target total rate, msgs/s; 0 = max throughput.
    pub target_rate: f64,
    pub loadavg_1m: f64,
    pub produce_msgs_per_sec: f64,
    pub produce_mb_per_sec: f64,
    pub consume_msgs_per_sec: f64,
    pub consume_mb_per_sec: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_p999_ms: f64,
    pub ack_max_ms: f64,
    pub e2e_p50_ms: f64,
    pub e2e_p99_ms: f64,
    pub compression_ratio: f64,
    pub broker_cpu_s: f64,
    /// Broker CPU seconds per GB of message values acknowledged (or consumed, if none produced).
    pub broker_cpu_s_per_gb: f64,
    pub errors_total: u64,
    pub ok: bool,
    pub error: String,
}

fn f(v: &Value, path: &str) -> f64 {
    v.pointer(path).and_then(Value::as_f64).unwrap_or(0.0)
}

impl RunRow {
    /// Fills the measurements from a bench results JSON.
    pub fn fill_from_report(&mut self, r: &Value, broker_cpu_s: f64) {
        self.produce_msgs_per_sec = f(r, "/produce/msgs_per_sec");
        self.produce_mb_per_sec = f(r, "/produce/mb_per_sec");
        self.consume_msgs_per_sec = f(r, "/consume/msgs_per_sec");
        self.consume_mb_per_sec = f(r, "/consume/mb_per_sec");
        self.ack_p50_ms = f(r, "/ack_latency_ms/p50_ms");
        self.ack_p99_ms = f(r, "/ack_latency_ms/p99_ms");
        self.ack_p999_ms = f(r, "/ack_latency_ms/p999_ms");
        self.ack_max_ms = f(r, "/ack_latency_ms/max_ms");
        self.e2e_p50_ms = f(r, "/e2e_latency_ms/p50_ms");
        self.e2e_p99_ms = f(r, "/e2e_latency_ms/p99_ms");
        self.compression_ratio = f(r, "/compression_ratio");
        self.errors_total = f(r, "/errors_total") as u64;
        self.broker_cpu_s = broker_cpu_s;
        let bytes = match f(r, "/acked_bytes") {
            b if b > 0.0 => b,
            _ => f(r, "/consumed_bytes"),
        };
        self.broker_cpu_s_per_gb = if bytes > 0.0 { broker_cpu_s / (bytes / 1e9) } else { 0.0 };
        self.ok = r.get("ok").and_then(Value::as_bool).unwrap_or(false);
        if !self.ok && self.error.is_empty() {
            self.error =
                format!("bench reported errors: {}", r.get("errors").map(|e| e.to_string()).unwrap_or_default());
        }
    }
}

/// Numeric columns, in CSV order.
pub const METRICS: &[&str] = &[
    "produce_msgs_per_sec",
    "produce_mb_per_sec",
    "consume_msgs_per_sec",
    "consume_mb_per_sec",
    "ack_p50_ms",
    "ack_p99_ms",
    "ack_p999_ms",
    "ack_max_ms",
    "e2e_p50_ms",
    "e2e_p99_ms",
    "compression_ratio",
    "broker_cpu_s",
    "broker_cpu_s_per_gb",
    "loadavg_1m",
];

pub fn metric(row: &RunRow, name: &str) -> f64 {
    match name {
        "produce_msgs_per_sec" => row.produce_msgs_per_sec,
        "produce_mb_per_sec" => row.produce_mb_per_sec,
        "consume_msgs_per_sec" => row.consume_msgs_per_sec,
        "consume_mb_per_sec" => row.consume_mb_per_sec,
        "ack_p50_ms" => row.ack_p50_ms,
        "ack_p99_ms" => row.ack_p99_ms,
        "ack_p999_ms" => row.ack_p999_ms,
        "ack_max_ms" => row.ack_max_ms,
        "e2e_p50_ms" => row.e2e_p50_ms,
        "e2e_p99_ms" => row.e2e_p99_ms,
        "compression_ratio" => row.compression_ratio,
        "broker_cpu_s" => row.broker_cpu_s,
        "broker_cpu_s_per_gb" => row.broker_cpu_s_per_gb,
        "loadavg_1m" => row.loadavg_1m,
        other => panic!("unknown metric {other}"),
    }
}

pub fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Medians per (configuration, target rate), over successful runs only.
#[derive(Clone, Debug, Serialize)]
pub struct SummaryRow {
    pub config: String,
    pub knobs: BTreeMap<String, String>,
    pub target_rate: f64,
    pub runs: usize,
    pub failed_runs: usize,
    pub medians: BTreeMap<String, f64>,
}

pub fn summarize(rows: &[RunRow]) -> Vec<SummaryRow> {
    let mut keys: Vec<(String, u64)> = Vec::new();
    for r in rows {
        let k = (r.config.clone(), r.target_rate.to_bits());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(config, rate_bits)| {
            let group: Vec<&RunRow> =
                rows.iter().filter(|r| r.config == config && r.target_rate.to_bits() == rate_bits).collect();
            let good: Vec<&&RunRow> = group.iter().filter(|r| r.ok).collect();
            SummaryRow {
                knobs: group[0].knobs.clone(),
                config,
                target_rate: f64::from_bits(rate_bits),
                runs: good.len(),
                failed_runs: group.len() - good.len(),
                medians: METRICS
                    .iter()
                    .map(|m| (m.to_string(), median(good.iter().map(|r| metric(r, m)).collect())))
                    .collect(),
            }
        })
        .collect()
}

pub fn runs_csv(rows: &[RunRow], knob_names: &[String]) -> String {
    let mut s = String::from("rep,config");
    for k in knob_names {
        s += &format!(",{k}");
    }
    s += ",target_rate";
    for m in METRICS {
        s += &format!(",{m}");
    }
    s += ",errors_total,ok,error\n";
    for r in rows {
        s += &format!("{},\"{}\"", r.rep, r.config);
        for k in knob_names {
            s += &format!(",{}", r.knobs.get(k).map(String::as_str).unwrap_or(""));
        }
        s += &format!(",{}", r.target_rate);
        for m in METRICS {
            s += &format!(",{:.4}", metric(r, m));
        }
        s += &format!(",{},{},\"{}\"\n", r.errors_total, r.ok, r.error.replace('"', "'"));
    }
    s
}

pub fn summary_csv(summary: &[SummaryRow], knob_names: &[String]) -> String {
    let mut s = String::from("config");
    for k in knob_names {
        s += &format!(",{k}");
    }
    s += ",target_rate,runs,failed_runs";
    for m in METRICS {
        s += &format!(",median_{m}");
    }
    s += "\n";
    for r in summary {
        s += &format!("\"{}\"", r.config);
        for k in knob_names {
            s += &format!(",{}", r.knobs.get(k).map(String::as_str).unwrap_or(""));
        }
        s += &format!(",{},{},{}", r.target_rate, r.runs, r.failed_runs);
        for m in METRICS {
            s += &format!(",{:.4}", r.medians[*m]);
        }
        s += "\n";
    }
    s
}

/// A Markdown table of the medians that matter most.
pub fn summary_markdown(summary: &[SummaryRow]) -> String {
    let mut s = String::from(
        "| config | target rate | runs (failed) | produce MB/s | consume MB/s | ack p50 ms | ack p99 ms | e2e p99 ms | compression | broker CPU-s/GB | load 1m |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in summary {
        let m = |k: &str| r.medians[k];
        let rate = if r.target_rate == 0.0 { "max".to_string() } else { format!("{:.0}", r.target_rate) };
        s += &format!(
            "| {} | {rate} | {} ({}) | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.3} | {:.3} | {:.2} |\n",
            r.config,
            r.runs,
            r.failed_runs,
            m("produce_mb_per_sec"),
            m("consume_mb_per_sec"),
            m("ack_p50_ms"),
            m("ack_p99_ms"),
            m("e2e_p99_ms"),
            m("compression_ratio"),
            m("broker_cpu_s_per_gb"),
            m("loadavg_1m"),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_group_by_config_and_rate_and_skip_failures() {
        let row = |config: &str, rate: f64, mb: f64, ok: bool| RunRow {
            config: config.into(),
            target_rate: rate,
            produce_mb_per_sec: mb,
            ok,
            ..Default::default()
        };
        let rows = vec![
            row("a", 0.0, 10.0, true),
            row("a", 0.0, 30.0, true),
            row("a", 0.0, 20.0, true),
            row("a", 0.0, 99.0, false),
            row("a", 100.0, 1.0, true),
            row("b", 0.0, 5.0, true),
        ];
        let s = summarize(&rows);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].medians["produce_mb_per_sec"], 20.0);
        assert_eq!((s[0].runs, s[0].failed_runs), (3, 1));
        assert_eq!(s[1].target_rate, 100.0);
        assert_eq!(median(vec![1.0, 4.0]), 2.5);
        let csv = runs_csv(&rows, &[]);
        assert_eq!(csv.lines().count(), 7);
        assert!(summary_markdown(&s).contains("| a | max | 3 (1) | 20.0 |"));
    }

    #[test]
    fn cpu_per_gb_uses_acked_bytes() {
        let report: Value =
            serde_json::from_str(r#"{"ok": true, "acked_bytes": 2000000000, "produce": {"mb_per_sec": 100.0}}"#)
                .unwrap();
        let mut row = RunRow::default();
        row.fill_from_report(&report, 3.0);
        assert_eq!(row.broker_cpu_s_per_gb, 1.5);
        assert_eq!(row.produce_mb_per_sec, 100.0);
        assert!(row.ok);
    }
}
