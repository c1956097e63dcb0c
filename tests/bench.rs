//! `sluice bench` against a real sluice broker: a short e2e run whose counts must match and
//! whose results JSON must be complete; a consume-only run over what a produce run wrote; runs
//! through a consumer group (everything read once across the group, committed offsets at the
//! end, a second run resuming there, a librdkafka member joining and leaving mid-run, a refused
//! join failing the run); and batches compressed
//! by the bench's codecs must be readable by librdkafka (Kafka's formats).

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

/// `--transactional`: every message is acknowledged, committed and read back by read_committed
/// consumers (the commit markers' offsets are not gaps here), and the commits are counted and
/// timed; `--idempotent` produces with a producer id and sequences the broker checks.
#[test]
fn transactional_and_idempotent_runs_deliver_everything() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 2);
    let json = dir.path().join("txn.json");
    let common = ["--cores", "1", "--partitions", "3", "--count", "3000", "--message-size", "200", "--acks", "all"];
    let mut args = vec!["e2e", "--rate", "3000", "--transactional", "--txn-commit-ms", "50"];
    args.extend_from_slice(&common);
    let (code, r, table) = bench(&broker.bootstrap(), &args, &json);
    assert_eq!(code, 0, "{table}\n{r:#}");
    assert_eq!((num(&r, "/acked_msgs"), num(&r, "/consumed_msgs")), (3000.0, 3000.0));
    assert_eq!(r["verification"]["ok"], Value::Bool(true), "{r:#}");
    let commits = num(&r, "/transactions_committed");
    assert!(commits >= 2.0, "about a second of messages committed every 50 ms: {commits}");
    assert_eq!(num(&r, "/commit_latency_ms/count"), commits);
    assert!(num(&r, "/commit_latency_ms/p50_ms") > 0.0);
    assert_eq!(r["workload"]["idempotent"], Value::Bool(true));

    let json = dir.path().join("idempotent.json");
    let mut args = vec!["produce", "--idempotent"];
    args.extend_from_slice(&common);
    let (code, r, table) = bench(&broker.bootstrap(), &args, &json);
    assert_eq!(code, 0, "{table}\n{r:#}");
    assert_eq!(num(&r, "/acked_msgs"), 3000.0);
    assert_eq!(r["transactions_committed"], Value::Null);
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

/// The group's committed offset of every partition of `topic`, through a raw OffsetFetch v5.
fn committed_offsets(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{GroupId, OffsetFetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let mut raw = support::raw::RawClient::connect(bootstrap);
    let fetched = raw.send(
        &OffsetFetchRequest::default().with_group_id(GroupId(StrBytes::from_string(group.to_string()))).with_topics(
            Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_indexes((0..partitions).collect())]),
        ),
        5,
    );
    assert_eq!(fetched.error_code, 0, "OffsetFetch");
    let mut by_partition: Vec<(i32, i64)> = fetched.topics[0]
        .partitions
        .iter()
        .map(|p| {
            assert_eq!(p.error_code, 0, "OffsetFetch {topic}/{}", p.partition_index);
            (p.partition_index, p.committed_offset)
        })
        .collect();
    by_partition.sort();
    assert_eq!(by_partition.iter().map(|(p, _)| *p).collect::<Vec<_>>(), (0..partitions).collect::<Vec<_>>());
    by_partition.into_iter().map(|(_, o)| o).collect()
}

/// A broker with a short initial rebalance delay, for group runs.
fn group_broker(dir: &Path, extra: &[&str]) -> Broker {
    let mut args = vec!["--cores", "2", "--set", "group.initial.rebalance.delay.ms=300"];
    args.extend_from_slice(extra);
    let broker = Broker::start_with(dir, &args);
    broker.wait_for("sluice broker started");
    broker
}

#[test]
fn e2e_through_a_consumer_group_reads_everything_once_and_commits_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let broker = group_broker(dir.path(), &[]);
    let bootstrap = broker.bootstrap();
    let (code, r, table) = bench(
        &bootstrap,
        &[
            "e2e",
            "--cores",
            "2",
            "--partitions",
            "5",
            "--consumers",
            "3",
            "--group",
            "bench-group",
            "--count",
            "6000",
            "--rate",
            "3000",
            "--acks",
            "all",
        ],
        &dir.path().join("group.json"),
    );
    assert_eq!(code, 0, "clean group run exits 0:\n{table}\n{r:#}");
    assert_eq!(r["workload"]["group"], "bench-group");
    assert_eq!(num(&r, "/consumers"), 3.0);
    assert_eq!(num(&r, "/acked_msgs"), 6000.0);
    assert_eq!(num(&r, "/consumed_msgs"), 6000.0, "every message read once across the group");
    assert_eq!(r["verification"]["ok"], Value::Bool(true), "no gaps, no duplicates: {r:#}");
    assert_eq!(r["verification"]["counts_checked"], Value::Bool(true));
    assert_eq!(num(&r, "/verification/partitions_checked"), 5.0);
    assert_eq!(num(&r, "/errors_total"), 0.0, "{r:#}");
    // The group committed exactly the end of every partition.
    let topic = r["topics"][0].as_str().expect("topic name").to_string();
    let committed = committed_offsets(&bootstrap, "bench-group", &topic, 5);
    let ends: Vec<i64> = (0..5).map(|p| raw_fetch(&bootstrap, &topic, p, 0).high_watermark).collect();
    assert_eq!(committed, ends, "committed offsets are the high watermarks");
    assert_eq!(ends.iter().sum::<i64>(), 6000);
    broker.stop();
}

#[test]
fn a_group_consume_resumes_at_the_groups_committed_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = group_broker(dir.path(), &[]);
    let bootstrap = broker.bootstrap();
    let (code, produced, _) = bench(
        &bootstrap,
        &["produce", "--cores", "1", "--partitions", "4", "--count", "4000", "--acks", "1"],
        &dir.path().join("p.json"),
    );
    assert_eq!(code, 0);
    let topic = produced["topics"][0].as_str().expect("topic name").to_string();
    // Small fetches (~15 messages per partition), so a run stops close to its count.
    let small_fetches = dir.path().join("small-fetches.toml");
    std::fs::write(&small_fetches, "partition_fetch_max_bytes = 16384\nfetch_max_bytes = 32768\n").unwrap();
    let small_fetches = small_fetches.to_str().unwrap().to_string();
    let consume = |count: u64, json: &str| {
        let count = count.to_string();
        let args = [
            "consume",
            "--workload",
            &small_fetches,
            "--cores",
            "2",
            "--consumers",
            "2",
            "--topic",
            &topic,
            "--group",
            "resume",
            "--count",
            &count,
            "--duration-secs",
            "60",
        ];
        let (code, r, table) = bench(&bootstrap, &args, &dir.path().join(json));
        assert_eq!(code, 0, "{table}\n{r:#}");
        assert_eq!(r["verification"]["ok"], Value::Bool(true), "no gaps: {r:#}");
        num(&r, "/consumed_msgs") as u64
    };
    // The first run stops after at least 1000 (a fetch may overshoot); the second reads exactly
    // the rest, from where the first committed.
    let first = consume(1000, "c1.json");
    assert!((1000..4000).contains(&first), "first run read {first}");
    let second = consume(4000 - first, "c2.json");
    assert_eq!(first + second, 4000, "nothing read twice, nothing skipped");
    assert_eq!(committed_offsets(&bootstrap, "resume", &topic, 4).iter().sum::<i64>(), 4000);
    broker.stop();
}

/// (topic, partition) of one assignment.
type Assignment = Vec<(String, i32)>;

/// Records every assignment an rdkafka group member received.
#[derive(Clone, Default)]
struct AssignLog(std::sync::Arc<std::sync::Mutex<Vec<Assignment>>>);

impl rdkafka::ClientContext for AssignLog {}

impl rdkafka::consumer::ConsumerContext for AssignLog {
    fn post_rebalance(&self, _c: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &rdkafka::consumer::Rebalance<'_>) {
        if let rdkafka::consumer::Rebalance::Assign(list) = rebalance {
            let parts = list.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
            self.0.lock().unwrap().push(parts);
        }
    }
}

#[test]
fn a_group_run_survives_a_member_joining_and_leaving_mid_run() {
    const VISITOR: &str = "visitor";
    let dir = tempfile::tempdir().unwrap();
    let broker = group_broker(dir.path(), &[]);
    let bootstrap = broker.bootstrap();
    // A topic for the visitor: not one the bench reads, so it is assigned none of the bench's.
    let (code, other, _) =
        bench(&bootstrap, &["produce", "--cores", "1", "--count", "10"], &dir.path().join("other.json"));
    assert_eq!(code, 0);
    let other = other["topics"][0].as_str().expect("topic name").to_string();
    let json = dir.path().join("mid.json");
    let run = Command::new(sluice_bin())
        .args(["bench", "e2e", "--cores", "2", "--partitions", "4", "--consumers", "3", "--group", "g-mid"])
        .args(["--count", "30000", "--rate", "5000", "--bootstrap", &bootstrap, "--quiet", "--json"])
        .arg(&json)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run sluice bench");
    // Mid-run, a librdkafka member joins the bench's group (reading our assignment bytes, or
    // computing the assignment if elected), stays ~2 s, and leaves: two rebalances under load.
    std::thread::sleep(Duration::from_secs(2));
    let log = AssignLog::default();
    {
        let mut c = client_config(&bootstrap);
        c.set("group.id", "g-mid").set("session.timeout.ms", "6000").set("enable.auto.commit", "false");
        c.set("client.id", VISITOR);
        let visitor: rdkafka::consumer::BaseConsumer<AssignLog> = c.create_with_context(log.clone()).expect("consumer");
        visitor.subscribe(&[&other]).expect("subscribe");
        let deadline = Instant::now() + Duration::from_secs(20);
        while log.0.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the visitor was never assigned");
            let _ = visitor.poll(POLL);
        }
        // A rebalance under load: a generation of the bench's three members and the visitor.
        loop {
            let view = describe_group(&bootstrap, "g-mid");
            if view.state == "Stable" && view.client_ids.len() == 4 && view.client_ids.iter().any(|c| c == VISITOR) {
                break;
            }
            assert!(Instant::now() < deadline, "the group never stabilized with the visitor: {view:?}");
            let _ = visitor.poll(POLL);
        }
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            let _ = visitor.poll(POLL);
        }
    }
    // The visitor left (dropped: LeaveGroup): a second rebalance under load, without it.
    wait_for_group(&bootstrap, "g-mid", "stabilized without the visitor", |view| {
        view.state == "Stable" && view.client_ids.len() == 3 && !view.client_ids.iter().any(|c| c == VISITOR)
    });
    let out = run.wait_with_output().expect("bench exits");
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("results JSON")).expect("JSON");
    assert_eq!(out.status.code(), Some(0), "{table}\n{r:#}");
    assert_eq!(num(&r, "/consumed_msgs"), 30000.0);
    assert_eq!(r["verification"]["ok"], Value::Bool(true), "{r:#}");
    assert_eq!(num(&r, "/errors_total"), 0.0, "{r:#}");
    let topic = r["topics"][0].as_str().unwrap().to_string();
    let assignments = log.0.lock().unwrap().clone();
    assert!(
        assignments.iter().flatten().all(|(t, _)| *t != topic),
        "visitor got the bench's partitions: {assignments:?}"
    );
    broker.stop();
}

#[test]
fn a_group_the_bench_cannot_join_fails_the_run_with_kafkas_error_name() {
    let dir = tempfile::tempdir().unwrap();
    // The bench asks for a 10 s session; this broker refuses anything under 30 s.
    let broker = group_broker(dir.path(), &["--set", "group.min.session.timeout.ms=30000"]);
    let started = Instant::now();
    let (code, r, table) = bench(
        &broker.bootstrap(),
        &["e2e", "--cores", "1", "--partitions", "2", "--group", "g", "--count", "100"],
        &dir.path().join("refused.json"),
    );
    assert_eq!(code, 1, "{table}");
    assert!(started.elapsed() < Duration::from_secs(60), "failed promptly, took {:?}", started.elapsed());
    let errors = r["errors"].as_object().expect("errors");
    assert!(errors.keys().any(|k| k.contains("InvalidSessionTimeout (26)")), "{errors:#?}");
    assert_eq!(num(&r, "/acked_msgs"), 0.0, "no load without consumers");
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
