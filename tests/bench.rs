//! `sluice bench` against a real sluice broker: a short e2e run whose counts must match and
//! whose results JSON must be complete; a consume-only run over what a produce run wrote; and
//! batches compressed by the bench's codecs must be readable by librdkafka (Kafka's formats).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use serde_json::Value;
use support::*;

/// Runs `sluice bench` with `args` plus `--json`; returns (exit code, results JSON, stdout).
fn bench(bootstrap: &str, args: &[&str], json: &Path) -> (i32, Value, String) {
    let out = Command::new(sluice_bin())
        .arg("bench")
        .args(args)
        .args(["--bootstrap", bootstrap, "--quiet", "--json"])
        .arg(json)
        .output()
        .expect("run sluice bench");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let text =
        std::fs::read_to_string(json).unwrap_or_else(|e| panic!("no JSON ({e}); stdout:\n{stdout}\nstderr:\n{stderr}"));
    let value: Value = serde_json::from_str(&text).expect("results JSON parses");
    (out.status.code().unwrap_or(-1), value, stdout)
}

fn num(v: &Value, path: &str) -> f64 {
    v.pointer(path).and_then(Value::as_f64).unwrap_or_else(|| panic!("{path} missing in {v:#}"))
}

#[test]
fn e2e_run_consumes_everything_it_produced_and_reports_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 2);
    let json = dir.path().join("e2e.json");
    let (code, r, table) = bench(
        &broker.bootstrap(),
        &[
            "e2e",
            "--cores",
            "2",
            "--partitions",
            "3",
            "--count",
            "5000",
            "--rate",
            "5000",
            "--message-size",
            "100..400",
            "--acks",
            "all",
            "--linger-ms",
            "2",
        ],
        &json,
    );
    assert_eq!(code, 0, "clean run exits 0:\n{table}\n{r:#}");
    assert_eq!(num(&r, "/sent_msgs"), 5000.0);
    assert_eq!(num(&r, "/acked_msgs"), 5000.0);
    assert_eq!(num(&r, "/consumed_msgs"), 5000.0);
    assert_eq!(r["verification"]["ok"], Value::Bool(true));
    assert_eq!(r["verification"]["counts_checked"], Value::Bool(true));
    assert_eq!(num(&r, "/verification/partitions_checked"), 3.0);
    assert_eq!(num(&r, "/errors_total"), 0.0);
    assert_eq!(r["ok"], Value::Bool(true));
    // Every latency field of both histograms, with every message recorded once.
    for hist in ["ack_latency_ms", "e2e_latency_ms"] {
        assert_eq!(num(&r, &format!("/{hist}/count")), 5000.0, "{hist}");
        let p = |q: &str| num(&r, &format!("/{hist}/{q}"));
        assert!(p("p50_ms") > 0.0);
        assert!(p("p50_ms") <= p("p90_ms") && p("p90_ms") <= p("p99_ms") && p("p99_ms") <= p("p999_ms"));
        assert!(p("p999_ms") <= p("p9999_ms") && p("p9999_ms") <= p("max_ms"));
    }
    for side in ["produce", "consume"] {
        assert_eq!(num(&r, &format!("/{side}/messages")), 5000.0);
        assert!(num(&r, &format!("/{side}/msgs_per_sec")) > 0.0);
        assert!(num(&r, &format!("/{side}/mb_per_sec")) > 0.0);
    }
    // The resolved workload is recorded so the run can be repeated.
    assert_eq!(r["workload"]["kind"], "e2e");
    assert_eq!(num(&r, "/workload/partitions_per_topic"), 3.0);
    assert_eq!(num(&r, "/workload/acks"), -1.0);
    assert!(table.contains("verification: OK"), "{table}");
    broker.stop();
}

#[test]
fn consume_workload_reads_back_a_produce_run() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let (code, produced, _) = bench(
        &broker.bootstrap(),
        &["produce", "--cores", "1", "--partitions", "2", "--count", "3000", "--acks", "1"],
        &dir.path().join("p.json"),
    );
    assert_eq!(code, 0);
    assert_eq!(num(&produced, "/acked_msgs"), 3000.0);
    let topic = produced["topics"][0].as_str().expect("topic name").to_string();
    let (code, consumed, table) = bench(
        &broker.bootstrap(),
        &["consume", "--cores", "1", "--topic", &topic, "--count", "3000"],
        &dir.path().join("c.json"),
    );
    assert_eq!(code, 0, "{table}");
    assert_eq!(num(&consumed, "/consumed_msgs"), 3000.0);
    assert_eq!(consumed["verification"]["ok"], Value::Bool(true), "no gaps: {consumed:#}");
    assert_eq!(consumed["verification"]["counts_checked"], Value::Bool(false));
    broker.stop();
}

#[test]
fn a_missing_broker_is_an_error_not_a_result() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(sluice_bin())
        .args(["bench", "produce", "--count", "10", "--quiet", "--bootstrap"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--json")
        .arg(dir.path().join("x.json"))
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("connect"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn librdkafka_reads_every_codec_the_bench_writes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let bootstrap = broker.bootstrap();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let (code, r, table) = bench(
            &bootstrap,
            &[
                "produce",
                "--cores",
                "1",
                "--count",
                "500",
                "--compression",
                codec,
                "--payload",
                "text",
                "--message-size",
                "300",
            ],
            &dir.path().join(format!("{codec}.json")),
        );
        assert_eq!(code, 0, "{codec}: {table}");
        assert!(num(&r, "/compression_ratio") < 0.8, "{codec} compressed text");
        let topic = r["topics"][0].as_str().unwrap().to_string();
        let consumer = assigned_consumer(&bootstrap, &topic, &[(0, 0)], &[]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = 0;
        while got < 500 && Instant::now() < deadline {
            if let Some(m) = consumer.poll(POLL) {
                let m = m.unwrap_or_else(|e| panic!("{codec}: librdkafka refused the batch: {e}"));
                assert_eq!(m.payload().map(<[u8]>::len), Some(300), "{codec}");
                got += 1;
            }
        }
        assert_eq!(got, 500, "{codec}: every message decompressed by librdkafka");
        consumer.unassign().unwrap();
    }
    broker.stop();
}

#[test]
fn batches_never_exceed_batch_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let (code, r, table) = bench(
        &broker.bootstrap(),
        &[
            "produce",
            "--cores",
            "1",
            "--count",
            "2000",
            "--message-size",
            "900..1000",
            "--batch-bytes",
            "4096",
            "--linger-ms",
            "50",
        ],
        &dir.path().join("b.json"),
    );
    assert_eq!(code, 0, "{table}");
    let topic = r["topics"][0].as_str().unwrap().to_string();
    let mut offset = 0;
    let mut batches = 0;
    let mut small_batches = 0;
    while offset < 2000 {
        let fetched = raw_fetch(&broker.bootstrap(), &topic, 0, offset);
        let mut pos = 0;
        let records = &fetched.records[..];
        while pos + 12 <= records.len() {
            let len = 12 + i32::from_be_bytes(records[pos + 8..pos + 12].try_into().unwrap()) as usize;
            if pos + len > records.len() {
                break;
            }
            let header = sluice_engine::batch::BatchHeader::parse(&records[pos..]).unwrap();
            assert!(len <= 4096, "batch of {len} bytes at offset {}", header.base_offset());
            if header.records_count() < 3 {
                small_batches += 1;
            }
            offset = header.next_offset();
            batches += 1;
            pos += len;
        }
    }
    assert!(batches >= 500, "{batches} batches for 2000 messages of ~1 KB");
    // Batches close when full; only the last one (what was left when the count ran out) may be
    // short.
    assert!(small_batches <= 1, "{small_batches} batches with fewer than 3 records");
    broker.stop();
}
