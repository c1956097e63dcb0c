//! End-to-end: the metrics endpoint of a real broker. After a known workload (raw produce
//! requests of known batches to known partitions, a group committing known offsets, one
//! fetch), the scraped counters equal what was sent and the lag (also the admin CLI's) equals high watermark minus
//! committed; /healthz and /readyz follow start-up; the hot-key report of a Zipf workload names
//! its hottest key and partition; `--print-config` names each value's source; a second signal
//! during a shutdown exits at once.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{GroupId, OffsetCommitRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

mod support;
use support::raw::RawClient;
use support::Broker;

/// One HTTP/1.1 request to the metrics endpoint: (status, body).
fn http(addr: &str, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn get(addr: &str, path: &str) -> (u16, String) {
    http(addr, format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
}

/// Polls `path` until it answers `status` (the endpoint may not be bound yet).
fn wait_for_status(addr: &str, path: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut stream) = TcpStream::connect(addr) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = stream.write_all(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes());
            let mut response = String::new();
            let _ = stream.read_to_string(&mut response);
            if response.starts_with(&format!("HTTP/1.1 {status} ")) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{path} never answered {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A sample's labels, sorted.
type Labels = Vec<(String, String)>;
/// A parsed scrape: (name, labels) → value.
type Scrape = BTreeMap<(String, Labels), f64>;

/// A scrape, parsed: (name, sorted labels) → value. Checks the format on the way: every sample
/// belongs to a family with `# TYPE`, histogram buckets are cumulative and end in `+Inf` equal
/// to `_count`.
fn scrape(addr: &str) -> Scrape {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, labels, value) = parse_line(line);
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix).filter(|base| types.get(*base).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(&name);
        assert!(types.contains_key(family), "sample of an undeclared family: {line}");
        out.insert((name.clone(), labels), value);
    }
    // Histograms: cumulative buckets, +Inf = _count.
    for (name, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let mut by_series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for ((n, labels), v) in &out {
            if n == &format!("{name}_bucket") {
                let le = labels.iter().find(|(k, _)| k == "le").unwrap().1.clone();
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() };
                let series: Vec<_> = labels.iter().filter(|(k, _)| k != "le").cloned().collect();
                by_series.entry(series).or_default().push((le, *v));
            }
        }
        for (series, mut buckets) in by_series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{name}{series:?} buckets not cumulative");
            let last = buckets.last().unwrap();
            assert_eq!(last.0, f64::INFINITY);
            assert_eq!(last.1, out[&(format!("{name}_count"), series.clone())], "{name}{series:?}");
        }
    }
    out
}

fn parse_line(line: &str) -> (String, Vec<(String, String)>, f64) {
    let (series, value) = line.rsplit_once(' ').unwrap();
    let value: f64 = value.parse().unwrap();
    let Some((name, labels)) = series.split_once('{') else { return (series.to_string(), vec![], value) };
    let labels = labels.strip_suffix('}').unwrap();
    let mut out = Vec::new();
    let mut rest = labels;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").unwrap();
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next().unwrap();
            match c {
                '\\' => value.push(chars.next().unwrap().1),
                '"' => break i,
                c => value.push(c),
            }
        };
        out.push((key.trim_start_matches(',').to_string(), value));
        rest = &after[end + 1..];
    }
    out.sort();
    (name.to_string(), out, value)
}

fn value(m: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut labels: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    labels.sort();
    *m.get(&(name.to_string(), labels.clone())).unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
}

fn sum_of(m: &Scrape, name: &str) -> f64 {
    m.iter().filter(|((n, _), _)| n == name).map(|(_, v)| v).sum()
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn produce(client: &mut RawClient, topic: &str, partition: i32, batch: &[u8]) -> i16 {
    let data = PartitionProduceData::default().with_index(partition).with_records(Some(Bytes::copy_from_slice(batch)));
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(s(topic))).with_partition_data(vec![data]),
    ]);
    client.send(&request, 9).responses[0].partition_responses[0].error_code
}

fn start_with_metrics(extra: &[&str], env: &[(&str, &str)]) -> (tempfile::TempDir, Broker, String) {
    let dir = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", support::free_port());
    let mut args = vec!["--cores", "2", "--metrics-addr", &metrics];
    args.extend_from_slice(extra);
    let broker = Broker::start_on_with_env(dir.path(), support::free_port(), &args, env);
    (dir, broker, metrics)
}

#[test]
fn a_known_workload_is_counted_exactly_and_lag_is_high_watermark_minus_committed() {
    let (_dir, broker, metrics) = start_with_metrics(&["--set", "sluice.flush.mode=always"], &[]);
    broker.wait_for("sluice broker started");
    support::create_topic(&broker.bootstrap(), "known", 3);
    let mut client = RawClient::connect(&broker.bootstrap());
    // Partition p gets 2(p+1) produce requests of one 5-record batch each: 10, 20, 30 records.
    let batch = sluice_engine::batch::build_batch_of_size(0, 5, 100, sluice_engine::clock::now_ms());
    let mut produces = 0;
    for p in 0..3 {
        for _ in 0..2 * (p + 1) {
            assert_eq!(produce(&mut client, "known", p, &batch), 0);
            produces += 1;
        }
    }
    // One refused produce (no partition 7): an error of the Produce API.
    assert_ne!(produce(&mut client, "known", 7, &batch), 0);
    // Group "g" commits 4, 20 and 0.
    let committed = [4i64, 20, 0];
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default().with_name(TopicName(s("known"))).with_partitions(
            committed
                .iter()
                .enumerate()
                .map(|(p, o)| {
                    OffsetCommitRequestPartition::default().with_partition_index(p as i32).with_committed_offset(*o)
                })
                .collect(),
        )]);
    let response = client.send(&commit, 8);
    assert!(response.topics[0].partitions.iter().all(|p| p.error_code == 0));
    // One fetch of partition 0 from the start.
    let fetched = support::raw_fetch(&broker.bootstrap(), "known", 0, 0).records.len();
    assert_eq!(fetched, 2 * batch.len(), "partition 0 holds two batches");

    let m = scrape(&metrics);
    let batch_bytes = batch.len() as f64;
    assert_eq!(value(&m, "sluice_topic_records_in_total", &[("topic", "known")]), 60.0);
    assert_eq!(value(&m, "sluice_topic_bytes_in_total", &[("topic", "known")]), produces as f64 * batch_bytes);
    assert_eq!(value(&m, "sluice_topic_bytes_out_total", &[("topic", "known")]), fetched as f64);
    assert_eq!(value(&m, "sluice_requests_total", &[("api", "Produce")]), produces as f64 + 1.0);
    assert_eq!(value(&m, "sluice_request_errors_total", &[("api", "Produce")]), 1.0);
    assert_eq!(value(&m, "sluice_request_latency_seconds_count", &[("api", "Produce")]), produces as f64 + 1.0);
    assert_eq!(value(&m, "sluice_requests_total", &[("api", "OffsetCommit")]), 1.0);
    assert_eq!(value(&m, "sluice_request_errors_total", &[("api", "OffsetCommit")]), 0.0);
    for p in 0..3i32 {
        let partition = p.to_string();
        let labels = [("topic", "known"), ("partition", partition.as_str())];
        let records = 10.0 * (p + 1) as f64;
        assert_eq!(value(&m, "sluice_partition_log_end_offset", &labels), records);
        assert_eq!(value(&m, "sluice_partition_high_watermark", &labels), records);
        assert_eq!(value(&m, "sluice_partition_size_bytes", &labels), records / 5.0 * batch_bytes);
        let group = [("group", "g"), ("topic", "known"), ("partition", partition.as_str())];
        assert_eq!(value(&m, "sluice_consumer_group_committed_offset", &group), committed[p as usize] as f64);
        assert_eq!(value(&m, "sluice_consumer_group_lag", &group), records - committed[p as usize] as f64);
    }
    // The lag the admin CLI shows (`sluice group describe --output json`) is the metric's.
    let cli = std::process::Command::new(support::sluice_bin())
        .args(["group", "describe", "g", "--output", "json", "--bootstrap", &broker.bootstrap()])
        .output()
        .expect("run sluice group describe");
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&cli.stdout).expect("JSON");
    let rows = doc[0]["partitions"].as_array().expect("partitions").clone();
    assert_eq!(rows.len(), 3);
    for row in rows {
        let partition = row["partition"].as_i64().expect("partition").to_string();
        let group = [("group", "g"), ("topic", "known"), ("partition", partition.as_str())];
        assert_eq!(row["lag"].as_f64(), Some(value(&m, "sluice_consumer_group_lag", &group)), "{row}");
    }
    // Rates over the window since the first append: partition 2 got three times partition 0's.
    let rate = |p: &str| value(&m, "sluice_partition_records_per_second", &[("topic", "known"), ("partition", p)]);
    assert!(rate("2") > rate("0") && rate("0") > 0.0, "{} {}", rate("2"), rate("0"));
    assert_eq!(value(&m, "sluice_under_replicated_partitions", &[]), 0.0);
    // flush.mode=always: every acknowledged produce waited for an fsync (group commits may
    // share one), so at least one and at most one per produce.
    let fsyncs = value(&m, "sluice_fsync_latency_seconds_count", &[]);
    assert!(fsyncs >= 1.0 && fsyncs <= produces as f64 + 64.0, "{fsyncs}");
    assert!(sum_of(&m, "sluice_tail_cache_hits_total") + sum_of(&m, "sluice_tail_cache_misses_total") >= 1.0);
    assert!(sum_of(&m, "sluice_connections_accepted_total") >= 2.0);
    assert!(sum_of(&m, "sluice_connections") >= 1.0, "the raw client is still connected");
    let dir_bytes = sum_of(&m, "sluice_log_dir_size_bytes");
    assert!(dir_bytes >= 12.0 * batch_bytes, "{dir_bytes}");
    drop(client);
    broker.stop();
}

#[test]
fn healthz_and_readyz_follow_start_up_and_bad_requests_are_refused() {
    // Shard 1 opens its storage 3 s late: the endpoint (shard 0) is alive, not ready.
    let (_dir, broker, metrics) = start_with_metrics(&[], &[("SLUICE_FAULT_SHARD_OPEN_DELAY_MS", "1:3000")]);
    wait_for_status(&metrics, "/healthz", 200);
    let (status, body) = get(&metrics, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert_eq!(get(&metrics, "/metrics").0, 503);
    assert!(TcpStream::connect(broker.bootstrap()).is_err(), "no Kafka listener before every shard is ready");
    wait_for_status(&metrics, "/readyz", 200);
    let mut client = RawClient::connect(&broker.bootstrap());
    let versions = client.send(&kafka_protocol::messages::ApiVersionsRequest::default(), 3);
    assert_eq!(versions.error_code, 0);
    assert_eq!(get(&metrics, "/nope").0, 404);
    assert_eq!(http(&metrics, b"POST /metrics HTTP/1.1\r\n\r\n").0, 405);
    assert_eq!(http(&metrics, b"\x16\x03\x01 garbage\r\n\r\n").0, 400);
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    let mut stream = TcpStream::connect(&metrics).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = stream.write_all(huge.as_bytes()); // the server may close before reading it all
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 431 "), "{response}");
    // Still serving after all that.
    assert_eq!(get(&metrics, "/healthz").0, 200);
    drop(client);
    broker.stop();
}

#[test]
fn the_hot_key_report_names_the_skewed_keys_and_partition_of_a_zipf_workload() {
    let (_dir, broker, metrics) = start_with_metrics(&[], &[]);
    broker.wait_for("sluice broker started");
    // Zipf s = 1.5 over 1000 keys: key 0 takes ~39% of the records, key 1 ~14%, key 2 ~7.5%.
    let bench = std::process::Command::new(support::sluice_bin())
        .args(["bench", "produce", "--bootstrap", &broker.bootstrap(), "--partitions", "8", "--count", "40000"])
        .args(["--keyed", "--key-distribution", "zipf:1.5", "--key-space", "1000", "--message-size", "100"])
        .args(["--quiet", "--seed", "7"])
        .output()
        .unwrap();
    assert!(bench.status.success(), "{}", String::from_utf8_lossy(&bench.stderr));
    let m = scrape(&metrics);
    // The hottest partition by what it stored.
    let (hottest_topic, hottest_partition) = m
        .iter()
        .filter(|((n, _), _)| n == "sluice_partition_log_end_offset")
        .filter(|((_, l), _)| l.iter().any(|(k, v)| k == "topic" && v.starts_with("sluice-bench")))
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|((_, l), _)| {
            let get = |key: &str| l.iter().find(|(k, _)| k == key).unwrap().1.clone();
            (get("topic"), get("partition"))
        })
        .unwrap();
    let report = std::process::Command::new(support::sluice_bin())
        .args(["topic", "hot", &hottest_topic, "--metrics", &metrics, "--output", "json"])
        .output()
        .unwrap();
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
    let json: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let hot = json["hot_partitions"].as_array().unwrap();
    assert!(!hot.is_empty(), "{json}");
    assert_eq!(hot[0]["partition"].to_string(), hottest_partition, "{json}");
    assert!(hot[0]["bytes_per_second"].as_f64().unwrap() > 2.0 * hot[0]["median_bytes_per_second"].as_f64().unwrap());
    assert_eq!(hot[0]["keys"][0]["key"], "0x0000000000000000", "{json}");
    // Key 1 is the second-heaviest key; it is named with whichever partition it went to.
    let named: Vec<&str> =
        hot.iter().flat_map(|h| h["keys"].as_array().unwrap()).filter_map(|k| k["key"].as_str()).collect();
    let key1_partition = m
        .keys()
        .find(|(n, l)| n == "sluice_hot_key_bytes" && l.iter().any(|(k, v)| k == "key" && v == "0x0000000000000001"))
        .map(|(_, l)| l.iter().find(|(k, _)| k == "partition").unwrap().1.clone())
        .expect("key 1 is among the reported hot keys");
    if hot.iter().any(|h| h["partition"].as_i64().map(|p| p.to_string()) == Some(key1_partition.clone())) {
        assert!(named.contains(&"0x0000000000000001"), "{json}");
    }
    // The text report says the same to a person.
    let text = std::process::Command::new(support::sluice_bin())
        .args(["topic", "hot", &hottest_topic, "--metrics", &metrics])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("key 0x0000000000000000"), "{text}");
    broker.stop();
}

#[test]
fn print_config_names_each_value_and_its_source_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.properties");
    std::fs::write(&config, "log.retention.ms=1000\nnum.partitions=3\noffsets.topic.num.partitions=7\n").unwrap();
    let data_dir = dir.path().join("never-created");
    let output = std::process::Command::new(support::sluice_bin())
        .args(["broker", "--print-config", "--config", config.to_str().unwrap(), "--set", "num.partitions=5"])
        .args(["--listen", "127.0.0.1:1234", "--data-dir", data_dir.to_str().unwrap(), "--metrics-addr", "none"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    let rows: BTreeMap<&str, (&str, String)> = text
        .lines()
        .skip(1)
        .map(|line| {
            let mut parts = line.split_whitespace();
            let key = parts.next().unwrap();
            let value = parts.next().unwrap();
            (key, (value, parts.collect::<Vec<_>>().join(" ")))
        })
        .collect();
    let file_source = format!("file {}", config.display());
    assert_eq!(rows["num.partitions"], ("5", "--set".to_string()));
    assert_eq!(rows["log.retention.ms"], ("1000", file_source.clone()));
    assert_eq!(rows["offsets.topic.num.partitions"], ("7", file_source));
    assert_eq!(rows["listeners"], ("127.0.0.1:1234", "flag --listen".to_string()));
    assert_eq!(rows["sluice.metrics.addr"], ("none", "flag --metrics-addr".to_string()));
    assert_eq!(rows["log.segment.bytes"], ("1073741824", "default".to_string()));
    assert!(!data_dir.exists(), "--print-config touches nothing");
}

#[test]
fn a_second_signal_during_shutdown_exits_at_once_without_the_clean_marker() {
    let dir = tempfile::tempdir().unwrap();
    // The shutdown waits 60 s before it starts: only the second signal can end it sooner.
    let broker = Broker::start_on_with_env(
        dir.path(),
        support::free_port(),
        &["--cores", "2", "--metrics-addr", "none"],
        &[("SLUICE_FAULT_SHUTDOWN_DELAY_MS", "60000")],
    );
    broker.wait_for("sluice broker started");
    broker.signal(libc::SIGTERM);
    broker.wait_for("shutting down");
    let second = Instant::now();
    broker.signal(libc::SIGINT);
    assert_eq!(broker.wait_exit(), 1, "an unclean exit");
    assert!(second.elapsed() < Duration::from_secs(10), "exited {:?} after the second signal", second.elapsed());
    assert!(!dir.path().join(".clean_shutdown").exists());
    // The next start recovers and serves.
    let broker = Broker::start(dir.path(), 2);
    broker.stop();
}

#[test]
fn in_a_cluster_readyz_and_under_replicated_partitions_follow_a_stopped_follower() {
    use support::cluster::{create_topic_rf, partitions, wait_until, Cluster};
    // The leader drops a silent follower from the ISR after 1 s, long before the controller
    // fences its broker (10 s): the shrink is the leader's, which is what the counter counts
    // (an ISR the controller shrinks when it fences a broker is not a leader's shrink, in Kafka
    // either).
    let settings = [("replica.lag.time.max.ms", "1000"), ("broker.session.timeout.ms", "10000")];
    let mut cluster = Cluster::new(3, 0, &settings);
    let mut metrics = Vec::new();
    for node in &mut cluster.nodes {
        let addr = format!("127.0.0.1:{}", support::free_port());
        node.extra.push(("sluice.metrics.addr".into(), addr.clone()));
        metrics.push(addr);
    }
    for i in 0..3 {
        cluster.spawn(i);
    }
    for (i, addr) in metrics.iter().enumerate() {
        cluster.wait_started(i);
        wait_for_status(addr, "/readyz", 200);
    }
    wait_until("every broker registered", Duration::from_secs(30), || {
        (support::cluster::metadata_broker_ids(&cluster.bootstrap(0)).len() == 3).then_some(())
    });
    assert_eq!(create_topic_rf(&cluster.bootstrap(0), "urp", 1, 3).0, 0);
    // The follower to stop is not the active controller: the leader's ISR change must not wait
    // for a controller election.
    let controller = support::cluster::describe_cluster(&cluster.bootstrap(0)).0;
    let (leader, follower) = wait_until("all three in sync", Duration::from_secs(30), || {
        let p = partitions(&cluster.bootstrap(0), "urp")?;
        let (_, leader, _, replicas, isr) = p[0].clone();
        let follower = *replicas.iter().find(|r| **r != leader && **r != controller)?;
        (isr.len() == 3 && leader > 0).then_some((leader, follower))
    });
    let leader_metrics = &metrics[cluster.index_of(leader)];
    let urp = |addr: &str| value(&scrape(addr), "sluice_under_replicated_partitions", &[]);
    wait_until("no under-replicated partition", Duration::from_secs(30), || (urp(leader_metrics) == 0.0).then_some(()));

    // A stopped follower leaves the ISR: the leader reports the partition under-replicated.
    cluster.process(cluster.index_of(follower)).signal(libc::SIGSTOP);
    // A record the stopped follower cannot fetch: it falls behind (a silent follower with
    // nothing to fetch is not behind).
    let mut client = RawClient::connect(&cluster.bootstrap(cluster.index_of(leader)));
    let batch = sluice_engine::batch::build_batch_of_size(0, 1, 10, sluice_engine::clock::now_ms());
    let data = PartitionProduceData::default().with_index(0).with_records(Some(Bytes::copy_from_slice(&batch)));
    let request = ProduceRequest::default().with_acks(1).with_timeout_ms(10_000).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(s("urp"))).with_partition_data(vec![data]),
    ]);
    wait_until("the leader takes a produce", Duration::from_secs(30), || {
        (client.send(&request, 9).responses[0].partition_responses[0].error_code == 0).then_some(())
    });
    // (The shrink is counted once the controller answered the proposal, which may be after the
    // leader applied the new ISR: both are waited for.)
    let counter = |name: &str| value(&scrape(leader_metrics), name, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (urp, shrinks) = (urp(leader_metrics), counter("sluice_isr_shrinks_total"));
        if urp >= 1.0 && shrinks >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leader {leader}, stopped follower {follower}, controller {controller}: URP {urp}, ISR shrinks {shrinks}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let expands = counter("sluice_isr_expands_total");
    cluster.process(cluster.index_of(follower)).signal(libc::SIGCONT);
    wait_until("the follower back in sync, an ISR expansion", Duration::from_secs(30), || {
        (urp(leader_metrics) == 0.0 && counter("sluice_isr_expands_total") > expands).then_some(())
    });
    for i in 0..3 {
        assert_eq!(cluster.stop(i), 0);
    }
}
