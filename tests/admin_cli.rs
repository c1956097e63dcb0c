//! The admin CLI end to end: `sluice topic|produce|consume|group|cluster|configs` run as the
//! real binary against real brokers (one node, and a 3-node cluster), checked against broker
//! state read independently (rdkafka, raw Metadata) and against what was produced and
//! committed; exit codes 0 (ok), 1 (Kafka error, with what to do) and 2 (usage).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use support::*;

/// Longest any one CLI run may take (consumers here always have a stop rule).
const CLI_DEADLINE: Duration = Duration::from_secs(90);

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "stdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }

    /// One JSON document per stdout line (`consume --output json`).
    fn json_lines(&self) -> Vec<Value> {
        self.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
    }
}

/// Runs `sluice ARGS --bootstrap BOOTSTRAP` with `stdin`, bounded by [`CLI_DEADLINE`].
fn sluice(bootstrap: &str, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(sluice_bin())
        .args(args)
        .args(["--bootstrap", bootstrap])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_string();
    std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(CLI_DEADLINE) {
        Ok(output) => output.expect("wait"),
        Err(_) => {
            // SAFETY: kills the child this test started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("`sluice {}` did not finish within {CLI_DEADLINE:?}", args.join(" "));
        }
    };
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn start_broker(dir: &std::path::Path) -> Broker {
    let broker = Broker::start_with(dir, &["--cores", "1", "--set", "group.initial.rebalance.delay.ms=100"]);
    broker.wait_for("sluice broker started");
    broker
}

/// (partition, current offset, log end offset, lag) rows of `group describe --output json`.
fn lag_rows(bootstrap: &str, group: &str) -> Vec<(i64, Value, Value, Value)> {
    let run = sluice(bootstrap, &["group", "describe", group, "--output", "json"], "").ok();
    let doc = run.json();
    doc[0]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            (
                p["partition"].as_i64().unwrap(),
                p["current_offset"].clone(),
                p["log_end_offset"].clone(),
                p["lag"].clone(),
            )
        })
        .collect()
}

fn committed_by_partition(bootstrap: &str, group: &str) -> BTreeMap<i64, Value> {
    lag_rows(bootstrap, group).into_iter().map(|(p, c, _, _)| (p, c)).collect()
}

#[test]
fn topics_are_created_listed_described_altered_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let b = broker.bootstrap();

    sluice(&b, &["topic", "create", "orders", "--partitions", "3", "--config", "retention.ms=86400000"], "").ok();
    let again = sluice(&b, &["topic", "create", "orders", "--partitions", "3"], "");
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(
        again.stderr.contains("TOPIC_ALREADY_EXISTS") && again.stderr.contains("--if-not-exists"),
        "{}",
        again.stderr
    );
    sluice(&b, &["topic", "create", "orders", "--if-not-exists"], "").ok();

    let list = sluice(&b, &["topic", "list"], "").ok();
    assert_eq!(list.stdout.lines().collect::<Vec<_>>(), vec!["orders"]);
    let listed = sluice(&b, &["topic", "list", "--output", "json"], "").ok().json();
    assert_eq!(listed[0]["name"], "orders");
    assert_eq!(listed[0]["partitions"], 3);

    let described = sluice(&b, &["topic", "describe", "orders"], "").ok().stdout;
    let lines: Vec<&str> = described.lines().collect();
    assert_eq!(lines.len(), 4, "{described}");
    assert!(lines[0].starts_with("Topic: orders\tPartitionCount: 3\tReplicationFactor: 1\tConfigs: "), "{described}");
    assert!(lines[0].contains("retention.ms=86400000"), "{described}");
    for p in 0..3 {
        assert_eq!(lines[p + 1], format!("\tTopic: orders\tPartition: {p}\tLeader: 1\tReplicas: 1\tIsr: 1"));
    }

    sluice(&b, &["topic", "alter", "orders", "--partitions", "5", "--config", "cleanup.policy=compact"], "").ok();
    let doc = sluice(&b, &["topic", "describe", "orders", "--output", "json"], "").ok().json();
    assert_eq!(doc[0]["partition_count"], 5);
    assert_eq!(doc[0]["partitions"].as_array().unwrap().len(), 5);
    let configs: BTreeMap<String, String> = doc[0]["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["value"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(configs.get("cleanup.policy").map(String::as_str), Some("compact"));
    assert_eq!(configs.get("retention.ms").map(String::as_str), Some("86400000"));
    // Metadata read independently agrees.
    assert_eq!(support::cluster::partitions(&b, "orders").unwrap().len(), 5);
    let shrink = sluice(&b, &["topic", "alter", "orders", "--partitions", "2"], "");
    assert_eq!(shrink.code, 2, "{}", shrink.stderr);

    sluice(&b, &["topic", "delete", "orders"], "").ok();
    assert_eq!(sluice(&b, &["topic", "list"], "").ok().stdout, "");
    let gone = sluice(&b, &["topic", "describe", "orders"], "");
    assert_eq!(gone.code, 1);
    assert!(
        gone.stderr.contains("topic 'orders' does not exist; list topics with `sluice topic list`"),
        "{}",
        gone.stderr
    );
    broker.stop();
}

#[test]
fn console_produce_and_consume_round_trip_keys_headers_formats_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let b = broker.bootstrap();
    sluice(&b, &["topic", "create", "events", "--partitions", "3"], "").ok();

    let input: String = (0..30).map(|i| format!("key-{}:value-{i}\n", i % 7)).collect();
    let produced =
        sluice(&b, &["produce", "--topic", "events", "--key-separator", ":", "--header", "source=cli"], &input).ok();
    assert!(produced.stderr.contains("Produced 30 records"), "{}", produced.stderr);
    // Per-line headers, kafka-console-producer's parse.headers layout.
    sluice(
        &b,
        &["produce", "--topic", "events", "--parse-headers", "--key-separator", "\t", "--partition", "2"],
        "h1:a,h2:b\tkey-x\tvalue-x\n",
    )
    .ok();

    let records =
        sluice(&b, &["consume", "--topic", "events", "--from-beginning", "--until-end", "--output", "json"], "")
            .ok()
            .json_lines();
    assert_eq!(records.len(), 31);
    let mut key_partition: BTreeMap<String, i64> = BTreeMap::new();
    let mut values = BTreeSet::new();
    for r in &records {
        let key = r["key"].as_str().unwrap().to_string();
        let partition = r["partition"].as_i64().unwrap();
        assert_eq!(*key_partition.entry(key.clone()).or_insert(partition), partition, "one key, one partition");
        values.insert(r["value"].as_str().unwrap().to_string());
        if key == "key-x" {
            assert_eq!(partition, 2);
            assert_eq!(r["headers"], serde_json::json!({"h1": "a", "h2": "b"}));
        } else {
            assert_eq!(r["headers"], serde_json::json!({"source": "cli"}));
            let i: usize = r["value"].as_str().unwrap()["value-".len()..].parse().unwrap();
            assert_eq!(key, format!("key-{}", i % 7));
        }
    }
    assert_eq!(values.len(), 31);
    // Offsets per partition are 0.. in order.
    for p in 0..3 {
        let offsets: Vec<i64> =
            records.iter().filter(|r| r["partition"] == p).map(|r| r["offset"].as_i64().unwrap()).collect();
        assert_eq!(offsets, (0..offsets.len() as i64).collect::<Vec<_>>(), "partition {p}");
    }

    // The partition holding the most records is read below from an offset and a timestamp.
    let busiest = (0..3).max_by_key(|p| records.iter().filter(|r| r["partition"] == *p).count()).unwrap();
    let busiest_records: Vec<&Value> = records.iter().filter(|r| r["partition"] == busiest).collect();
    assert!(busiest_records.len() >= 2, "30 records over 3 partitions");
    let busiest_arg = busiest.to_string();

    // A format string with every token; one line per record.
    let formatted = sluice(
        &b,
        &[
            "consume",
            "--topic",
            "events",
            "--partition",
            &busiest_arg,
            "--offset",
            "0",
            "--count",
            "2",
            "--format",
            "%T|%p|%o|%k|%v|%h|%t",
        ],
        "",
    )
    .ok();
    let lines: Vec<&str> = formatted.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", formatted.stdout);
    for (line, r) in lines.iter().zip(&busiest_records) {
        let headers = r["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            *line,
            format!(
                "events|{busiest}|{}|{}|{}|{headers}|{}",
                r["offset"],
                r["key"].as_str().unwrap(),
                r["value"].as_str().unwrap(),
                r["timestamp"]
            )
        );
    }

    // --offset N on one partition starts there; --until-end stops at the end seen at start.
    let from_one =
        sluice(&b, &["consume", "--topic", "events", "--partition", &busiest_arg, "--offset", "1", "--until-end"], "")
            .ok();
    assert_eq!(
        from_one.stdout.lines().collect::<Vec<_>>(),
        busiest_records[1..].iter().map(|r| r["value"].as_str().unwrap()).collect::<Vec<_>>()
    );
    // Without a start, a group-less consumer starts at the end: nothing until the timeout.
    let latest = sluice(&b, &["consume", "--topic", "events", "--timeout-ms", "1500"], "").ok();
    assert_eq!(latest.stdout, "");

    // --from-timestamp: the records at or after the first of a later batch.
    sluice(&b, &["produce", "--topic", "events", "--partition", &busiest_arg], "late-1\nlate-2\n").ok();
    let all = sluice(
        &b,
        &[
            "consume",
            "--topic",
            "events",
            "--partition",
            &busiest_arg,
            "--offset",
            "earliest",
            "--until-end",
            "--output",
            "json",
        ],
        "",
    )
    .ok()
    .json_lines();
    let late_ts = all.iter().find(|r| r["value"] == "late-1").unwrap()["timestamp"].as_i64().unwrap();
    let expected: Vec<String> = all
        .iter()
        .filter(|r| r["timestamp"].as_i64().unwrap() >= late_ts)
        .map(|r| r["value"].as_str().unwrap().to_string())
        .collect();
    assert!(expected.len() >= 2 && expected.len() < all.len(), "the late batch is after the earlier records");
    let from_ts = sluice(
        &b,
        &[
            "consume",
            "--topic",
            "events",
            "--partition",
            &busiest_arg,
            "--from-timestamp",
            &late_ts.to_string(),
            "--until-end",
        ],
        "",
    )
    .ok();
    assert_eq!(from_ts.stdout.lines().map(String::from).collect::<Vec<_>>(), expected);

    // Every compression codec, and acks=0 (no answer: read back with a bounded wait).
    sluice(&b, &["topic", "create", "codecs", "--partitions", "1"], "").ok();
    let mut sent = Vec::new();
    for codec in ["gzip", "snappy", "lz4", "zstd", "none"] {
        let lines: Vec<String> = (0..3).map(|i| format!("{codec}-{i}")).collect();
        sluice(&b, &["produce", "--topic", "codecs", "--compression", codec], &(lines.join("\n") + "\n")).ok();
        sent.extend(lines);
    }
    sluice(&b, &["produce", "--topic", "codecs", "--acks", "0"], "fire-and-forget\n").ok();
    sent.push("fire-and-forget".into());
    let read =
        sluice(&b, &["consume", "--topic", "codecs", "--from-beginning", "--count", "16", "--timeout-ms", "30000"], "")
            .ok();
    assert_eq!(read.stdout.lines().map(String::from).collect::<Vec<_>>(), sent);

    // The same key through librdkafka's Java-compatible partitioner lands on the same partition.
    let producer: FutureProducer = future_producer(&b, &[("partitioner", "murmur2_random")]);
    for (key, partition) in &key_partition {
        if key == "key-x" {
            continue;
        }
        let delivered = futures::executor::block_on(
            producer
                .send(FutureRecord::to("events").key(key.as_str()).payload("from-rdkafka"), Duration::from_secs(20)),
        )
        .expect("delivered");
        assert_eq!(i64::from(delivered.partition), *partition, "key {key}");
    }
    broker.stop();
}

#[test]
fn group_describe_shows_lag_against_what_was_produced_and_committed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let b = broker.bootstrap();
    sluice(&b, &["topic", "create", "lagged", "--partitions", "3"], "").ok();
    let lines = |n: usize| -> String { (0..n).map(|i| format!("m{i}\n")).collect() };
    sluice(&b, &["produce", "--topic", "lagged", "--partition", "0"], &lines(10)).ok();
    sluice(&b, &["produce", "--topic", "lagged", "--partition", "1"], &lines(7)).ok();

    // An rdkafka client commits 4 on partition 0 and 7 on partition 1; nothing on 2.
    let mut config = client_config(&b);
    config.set("group.id", "billing").set("enable.auto.commit", "false");
    let committer: BaseConsumer = config.create().expect("consumer");
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset("lagged", 0, Offset::Offset(4)).unwrap();
    offsets.add_partition_offset("lagged", 1, Offset::Offset(7)).unwrap();
    committer.commit(&offsets, CommitMode::Sync).expect("commit");
    drop(committer);

    let rows = lag_rows(&b, "billing");
    assert_eq!(
        rows,
        vec![(0, Value::from(4), Value::from(10), Value::from(6)), (1, Value::from(7), Value::from(7), Value::from(0)),]
    );
    let table = sluice(&b, &["group", "describe", "billing"], "").ok();
    let mut lines_out = table.stdout.lines();
    let header: Vec<&str> = lines_out.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID"]
    );
    let row0: Vec<&str> = lines_out.next().unwrap().split_whitespace().collect();
    assert_eq!(row0, ["billing", "lagged", "0", "4", "10", "6", "-", "-", "-"]);
    assert!(table.stderr.contains("has no active members"), "{}", table.stderr);
    let listed = sluice(&b, &["group", "list", "--output", "json"], "").ok().json();
    assert!(listed.as_array().unwrap().iter().any(|g| g["group"] == "billing"), "{listed}");

    // The CLI consuming as a group member commits what it printed: 3 more on partition 0
    // (its committed 4 → 7), the rest of partition 2 never committed before starts at the
    // earliest offset with --from-beginning.
    sluice(&b, &["produce", "--topic", "lagged", "--partition", "2"], &lines(2)).ok();
    let consumed =
        sluice(&b, &["consume", "--topic", "lagged", "--group", "billing", "--from-beginning", "--until-end"], "").ok();
    assert_eq!(consumed.stdout.lines().count(), 6 + 2, "partition 0 from 4, partition 2 from 0: {}", consumed.stdout);
    let rows = lag_rows(&b, "billing");
    assert_eq!(
        rows,
        vec![
            (0, Value::from(10), Value::from(10), Value::from(0)),
            (1, Value::from(7), Value::from(7), Value::from(0)),
            (2, Value::from(2), Value::from(2), Value::from(0)),
        ]
    );

    // While a member is active, describe names it and reset/delete are refused.
    let mut member = Command::new(sluice_bin())
        .args(["consume", "--topic", "lagged", "--group", "billing", "--timeout-ms", "60000", "--bootstrap", &b])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn member");
    let owner = wait_until_value(&b, "billing");
    assert!(owner.starts_with("sluice-cli-"), "{owner}");
    let refused = sluice(
        &b,
        &["group", "reset-offsets", "--group", "billing", "--topic", "lagged", "--to-earliest", "--execute"],
        "",
    );
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("active member") && refused.stderr.contains("stop its consumers"),
        "{}",
        refused.stderr
    );
    let not_deleted = sluice(&b, &["group", "delete", "billing"], "");
    assert_eq!(not_deleted.code, 1, "{}", not_deleted.stderr);
    assert_eq!(committed_by_partition(&b, "billing")[&0], Value::from(10), "nothing reset");
    // SIGTERM: the member commits, leaves and exits 0.
    // SAFETY: signals the child this test started.
    unsafe { libc::kill(member.id() as i32, libc::SIGTERM) };
    assert!(member.wait().unwrap().success());

    sluice(&b, &["group", "delete", "billing"], "").ok();
    let gone = sluice(&b, &["group", "describe", "billing"], "");
    assert_eq!(gone.code, 1);
    assert!(gone.stderr.contains("sluice group list"), "{}", gone.stderr);
    broker.stop();
}

/// Polls `group describe` until a partition shows a consumer id; returns it.
fn wait_until_value(bootstrap: &str, group: &str) -> String {
    support::cluster::wait_until("a member in group describe", Duration::from_secs(60), || {
        let run = sluice(bootstrap, &["group", "describe", group, "--output", "json"], "");
        if run.code != 0 {
            return None;
        }
        run.json()[0]["partitions"].as_array()?.iter().find_map(|p| p["consumer_id"].as_str().map(String::from))
    })
}

#[test]
fn reset_offsets_dry_run_changes_nothing_and_execute_commits_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let b = broker.bootstrap();
    sluice(&b, &["topic", "create", "replay", "--partitions", "2"], "").ok();
    let lines: String = (0..20).map(|i| format!("r{i}\n")).collect();
    sluice(&b, &["produce", "--topic", "replay", "--partition", "0"], &lines).ok();
    let half: String = (0..10).map(|i| format!("r{i}\n")).collect();
    sluice(&b, &["produce", "--topic", "replay", "--partition", "1"], &half).ok();
    let group_args = ["consume", "--topic", "replay", "--group", "replayer", "--from-beginning", "--until-end"];
    sluice(&b, &group_args, "").ok();
    let before = committed_by_partition(&b, "replayer");
    assert_eq!(before, BTreeMap::from([(0, Value::from(20)), (1, Value::from(10))]));

    let reset = |extra: &[&str]| {
        let mut args = vec!["group", "reset-offsets", "--group", "replayer", "--output", "json"];
        args.extend_from_slice(extra);
        let run = sluice(&b, &args, "").ok();
        run.json()["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["partition"].as_i64().unwrap(), p["new_offset"].as_i64().unwrap()))
            .collect::<BTreeMap<_, _>>()
    };
    // Dry run (the default): the plan, nothing committed.
    assert_eq!(reset(&["--topic", "replay", "--to-earliest"]), BTreeMap::from([(0, 0), (1, 0)]));
    assert_eq!(committed_by_partition(&b, "replayer"), before, "a dry run commits nothing");
    let dry =
        sluice(&b, &["group", "reset-offsets", "--group", "replayer", "--topic", "replay", "--to-offset", "3"], "")
            .ok();
    assert!(dry.stderr.contains("Dry run"), "{}", dry.stderr);
    assert!(dry.stdout.starts_with("GROUP"), "{}", dry.stdout);

    // Execute: committed offsets change as planned.
    assert_eq!(reset(&["--topic", "replay", "--to-earliest", "--execute"]), BTreeMap::from([(0, 0), (1, 0)]));
    assert_eq!(committed_by_partition(&b, "replayer"), BTreeMap::from([(0, Value::from(0)), (1, Value::from(0))]));
    assert_eq!(reset(&["--topic", "replay:0", "--shift-by", "5", "--execute"]), BTreeMap::from([(0, 5)]));
    assert_eq!(
        reset(&["--topic", "replay:1", "--to-offset", "500", "--execute"]),
        BTreeMap::from([(1, 10)]),
        "clamped"
    );
    assert_eq!(committed_by_partition(&b, "replayer"), BTreeMap::from([(0, Value::from(5)), (1, Value::from(10))]));
    assert_eq!(reset(&["--all-topics", "--shift-by", "-2", "--execute"]), BTreeMap::from([(0, 3), (1, 8)]));
    assert_eq!(
        reset(&["--all-topics", "--to-datetime", "2100-01-01T00:00:00Z", "--execute"]),
        BTreeMap::from([(0, 20), (1, 10)]),
        "no record that late: the end"
    );
    assert_eq!(
        reset(&["--all-topics", "--to-datetime", "2000-01-01T00:00:00.000Z", "--execute"]),
        BTreeMap::from([(0, 0), (1, 0)])
    );
    // A group consumer resumes where the reset put it: all 30 records again.
    let again = sluice(&b, &group_args, "").ok();
    assert_eq!(again.stdout.lines().count(), 30);

    let bad_date = sluice(
        &b,
        &["group", "reset-offsets", "--group", "replayer", "--all-topics", "--to-datetime", "yesterday"],
        "",
    );
    assert_eq!(bad_date.code, 2, "{}", bad_date.stderr);
    let no_spec = sluice(&b, &["group", "reset-offsets", "--group", "replayer", "--all-topics"], "");
    assert_eq!(no_spec.code, 2, "{}", no_spec.stderr);
    broker.stop();
}

#[test]
fn cluster_describe_and_configs_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let b = broker.bootstrap();
    let cluster = sluice(&b, &["cluster", "describe", "--output", "json"], "").ok().json();
    assert!(cluster["cluster_id"].as_str().is_some_and(|id| !id.is_empty()), "{cluster}");
    assert_eq!(cluster["controller_id"], 1);
    assert_eq!(
        cluster["nodes"],
        serde_json::json!([{"id": 1, "host": "127.0.0.1", "port": broker.port, "rack": null}])
    );
    let apis = cluster["api_versions"].as_array().unwrap();
    let produce = apis.iter().find(|a| a["name"] == "Produce").expect("Produce listed");
    assert_eq!((produce["api_key"].as_i64(), produce["max_version"].as_i64()), (Some(0), Some(11)));
    assert!(apis.iter().any(|a| a["name"] == "IncrementalAlterConfigs"));
    let text = sluice(&b, &["cluster", "describe"], "").ok().stdout;
    assert!(text.contains(&format!("127.0.0.1:{}", broker.port)), "{text}");

    sluice(&b, &["topic", "create", "conf"], "").ok();
    let overrides = |b: &str| -> BTreeMap<String, (String, String)> {
        let doc = sluice(b, &["configs", "describe", "--topic", "conf", "--output", "json"], "").ok().json();
        doc["configs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    (c["value"].as_str().unwrap().to_string(), c["source"].as_str().unwrap().to_string()),
                )
            })
            .collect()
    };
    assert!(overrides(&b).is_empty());
    sluice(
        &b,
        &["configs", "alter", "--topic", "conf", "--set", "retention.ms=5000", "--set", "max.message.bytes=2048"],
        "",
    )
    .ok();
    assert_eq!(
        overrides(&b),
        BTreeMap::from([
            ("max.message.bytes".to_string(), ("2048".to_string(), "DYNAMIC_TOPIC_CONFIG".to_string())),
            ("retention.ms".to_string(), ("5000".to_string(), "DYNAMIC_TOPIC_CONFIG".to_string())),
        ])
    );
    sluice(&b, &["configs", "alter", "--topic", "conf", "--delete", "retention.ms"], "").ok();
    assert_eq!(overrides(&b).keys().collect::<Vec<_>>(), vec!["max.message.bytes"]);
    let all = sluice(&b, &["configs", "describe", "--topic", "conf", "--all", "--output", "json"], "").ok().json();
    let retention = all["configs"].as_array().unwrap().iter().find(|c| c["name"] == "retention.ms").unwrap().clone();
    assert_eq!(retention["source"], "DEFAULT_CONFIG", "deleted: back to the default");
    let broker_configs =
        sluice(&b, &["configs", "describe", "--broker", "1", "--all", "--output", "json"], "").ok().json();
    assert!(!broker_configs["configs"].as_array().unwrap().is_empty());
    let neither = sluice(&b, &["configs", "describe"], "");
    assert_eq!(neither.code, 2, "--topic or --broker is required");
    broker.stop();
}

#[test]
fn errors_exit_1_with_what_to_do_and_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let b = broker.bootstrap();
    for args in [
        &["topic", "describe", "missing"][..],
        &["consume", "--topic", "missing", "--count", "1"],
        &["produce", "--topic", "missing"],
        &["configs", "describe", "--topic", "missing"],
    ] {
        let run = sluice(&b, args, "x\n");
        assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("topic 'missing' does not exist; list topics with `sluice topic list`"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert!(support::cluster::partitions(&b, "missing").is_none(), "no command auto-created the topic");
    let group = sluice(&b, &["group", "describe", "nobody"], "");
    assert_eq!(group.code, 1);
    assert!(group.stderr.contains("group 'nobody' does not exist"), "{}", group.stderr);

    for args in [
        &["topic", "create"][..],
        &["topic", "frobnicate"],
        &["consume", "--topic", "t", "--no-such-flag"],
        &["consume", "--topic", "t", "--format", "%q"],
        &["consume", "--topic", "t", "--offset", "-4"],
        &["produce", "--topic", "t", "--acks", "2"],
        &["topic", "list", "--output", "yaml"],
    ] {
        let run = sluice(&b, args, "");
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
    }
    sluice(&b, &["topic", "create", "t", "--partitions", "1"], "").ok();
    let bad_partition = sluice(&b, &["produce", "--topic", "t", "--partition", "4"], "x\n");
    assert_eq!(bad_partition.code, 2, "{}", bad_partition.stderr);
    let no_separator = sluice(&b, &["produce", "--topic", "t", "--key-separator", ":"], "no-key-here\n");
    assert_eq!(no_separator.code, 1);
    assert!(no_separator.stderr.contains("input line 1"), "{}", no_separator.stderr);

    let unreachable = sluice(&format!("127.0.0.1:{}", free_port()), &["topic", "list"], "");
    assert_eq!(unreachable.code, 1);
    assert!(unreachable.stderr.contains("cannot connect") && unreachable.stderr.contains("--bootstrap"));
    for command in [&["topic"][..], &["produce"], &["consume"], &["group", "reset-offsets"], &["cluster"], &["configs"]]
    {
        let mut args = command.to_vec();
        args.push("--help");
        let help = Command::new(sluice_bin()).args(&args).output().unwrap();
        assert!(help.status.success());
        assert!(String::from_utf8_lossy(&help.stdout).contains("Examples:"), "{args:?}");
    }
    broker.stop();
}

#[test]
fn the_cli_works_against_a_three_node_cluster() {
    let cluster = support::cluster::Cluster::start(3, 0);
    let b = cluster.bootstrap(0);
    sluice(&b, &["topic", "create", "replicated", "--partitions", "3", "--replication-factor", "3"], "").ok();
    let doc = support::cluster::wait_until("every partition with 3 in-sync replicas", Duration::from_secs(60), || {
        let doc = sluice(&b, &["topic", "describe", "replicated", "--output", "json"], "").ok().json();
        doc[0]["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["isr"].as_array().unwrap().len() == 3 && p["leader"].is_i64())
            .then_some(doc)
    });
    assert_eq!(doc[0]["replication_factor"], 3);
    for p in doc[0]["partitions"].as_array().unwrap() {
        let mut replicas: Vec<i64> = p["replicas"].as_array().unwrap().iter().map(|r| r.as_i64().unwrap()).collect();
        replicas.sort();
        assert_eq!(replicas, vec![1, 2, 3]);
    }
    let text = sluice(&b, &["topic", "describe", "replicated"], "").ok().stdout;
    assert!(text.contains("ReplicationFactor: 3"), "{text}");
    let nodes = sluice(&b, &["cluster", "describe", "--output", "json"], "").ok().json();
    assert_eq!(nodes["nodes"].as_array().unwrap().len(), 3);

    // Produce through node 0 and consume through node 2: requests go to each partition's leader.
    let input: String = (0..60).map(|i| format!("k{}|v{i}\n", i % 11)).collect();
    sluice(&b, &["produce", "--topic", "replicated", "--key-separator", "|"], &input).ok();
    let other = cluster.bootstrap(2);
    let records = sluice(
        &other,
        &["consume", "--topic", "replicated", "--from-beginning", "--until-end", "--output", "json"],
        "",
    )
    .ok()
    .json_lines();
    let values: BTreeSet<String> = records.iter().map(|r| r["value"].as_str().unwrap().to_string()).collect();
    assert_eq!(values, (0..60).map(|i| format!("v{i}")).collect());
    // A group on the cluster: its coordinator is found, offsets committed, lag 0.
    sluice(&other, &["consume", "--topic", "replicated", "--group", "g", "--from-beginning", "--until-end"], "").ok();
    let rows = lag_rows(&b, "g");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows.iter().map(|r| r.1.as_i64().unwrap()).sum::<i64>(), 60);
    assert!(rows.iter().all(|r| r.3 == 0), "{rows:?}");
    // ListGroups goes to every node (each lists the groups it coordinates).
    let groups = sluice(&b, &["group", "list", "--output", "json"], "").ok().json();
    assert_eq!(groups.as_array().unwrap().iter().filter(|g| g["group"] == "g").count(), 1, "{groups}");
    // A broker's configs are asked of that broker, whichever node the CLI starts from.
    for node in ["1", "2", "3"] {
        let doc = sluice(&b, &["configs", "describe", "--broker", node, "--all", "--output", "json"], "").ok().json();
        assert_eq!(doc["name"], node);
        assert!(!doc["configs"].as_array().unwrap().is_empty(), "node {node}: {doc}");
    }
}

#[test]
fn the_console_consumer_follows_a_partition_to_its_new_leader_when_the_old_one_dies() {
    let mut cluster = support::cluster::Cluster::start(3, 0);
    let settle = Duration::from_secs(60);
    let b0 = cluster.bootstrap(0);
    sluice(&b0, &["topic", "create", "moving", "--partitions", "1", "--replication-factor", "3"], "").ok();
    let leader = support::cluster::wait_until("a leader with 3 in-sync replicas", settle, || {
        let p = support::cluster::partitions(&b0, "moving")?.remove(0);
        (p.1 > 0 && p.4.len() == 3).then_some(p.1)
    });
    let leader_index = cluster.index_of(leader);
    // The CLI starts from a node that keeps running.
    let survivor = (0..3).find(|i| *i != leader_index).unwrap();
    let b = cluster.bootstrap(survivor);
    let first: String = (0..20).map(|i| format!("before-{i}\n")).collect();
    sluice(&b, &["produce", "--topic", "moving"], &first).ok();

    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let mut consumer = Command::new(sluice_bin())
        .args(["consume", "--topic", "moving", "--from-beginning", "--count", "40", "--bootstrap", &b])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn consumer");
    let printed = |n: usize| std::fs::read_to_string(&out_path).unwrap().lines().count() >= n;
    support::cluster::wait_until("the first 20 records printed", settle, || printed(20).then_some(()));

    cluster.kill(leader_index);
    support::cluster::wait_until("a new leader", settle, || {
        let p = support::cluster::partitions(&b, "moving")?.remove(0);
        (p.1 > 0 && p.1 != leader).then_some(())
    });
    let second: String = (0..20).map(|i| format!("after-{i}\n")).collect();
    sluice(&b, &["produce", "--topic", "moving"], &second).ok();

    let status = support::cluster::wait_until("the consumer done", settle, || consumer.try_wait().unwrap());
    assert!(status.success());
    let lines: Vec<String> = std::fs::read_to_string(&out_path).unwrap().lines().map(String::from).collect();
    let expected: Vec<String> =
        (0..20).map(|i| format!("before-{i}")).chain((0..20).map(|i| format!("after-{i}"))).collect();
    assert_eq!(lines, expected, "every record once, in order, across the leader change");
}
