//! Shared harness for end-to-end tests: start the real `sluice` binary on a free port with a
//! temp data dir, read its log, stop it; plus real-client (rdkafka) helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, FutureProducer};
use rdkafka::ClientConfig;

pub mod cluster;
pub mod raw;

/// The `sluice` binary: `$SLUICE_BIN`, else target/debug/sluice (built on demand).
pub fn sluice_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let bin = root.join("target/debug/sluice");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "sluice", "--bin", "sluice"])
            .current_dir(&root)
            .status()
            .expect("cargo build");
        assert!(status.success(), "building sluice failed");
    }
    bin
}

/// A port nothing listens on right now, below the kernel's ephemeral range (32768–60999 by
/// default): a port from `bind(0)` is one the kernel may hand to some test's client socket as
/// its source port a moment later, and the broker then refuses to start ("address in use").
/// Ports are taken in turn from a start that differs per test process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % COUNT,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..COUNT {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % COUNT) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits (up to 20 s) until nothing listens on `port` any more. A broker that crashed (abort,
/// SIGKILL) is gone, but the kernel tears its io_uring down after the exit, asynchronously: a
/// listening socket an in-flight accept still holds may linger a moment, and a restart on the
/// same port would be refused ("Address already in use") in that window.
pub fn wait_for_port_release(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "port {port} still taken 20 s after its broker exited");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running broker process; killed (SIGKILL) when dropped if still running.
pub struct Broker {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub port: u16,
}

impl Broker {
    /// Starts `sluice broker` on a free port with `extra` flags (does not wait for readiness).
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Broker {
        Broker::start_on(data_dir, free_port(), extra)
    }

    /// Like [`Broker::start_with`] on a given port.
    pub fn start_on(data_dir: &Path, port: u16, extra: &[&str]) -> Broker {
        Broker::start_on_with_env(data_dir, port, extra, &[])
    }

    /// Like [`Broker::start_on`] with extra environment variables (fault points).
    pub fn start_on_with_env(data_dir: &Path, port: u16, extra: &[&str], env: &[(&str, &str)]) -> Broker {
        let mut args: Vec<String> = vec!["broker".into(), "--data-dir".into(), data_dir.display().to_string()];
        args.extend(["--listen".to_string(), format!("127.0.0.1:{port}")]);
        args.extend(extra.iter().map(|s| s.to_string()));
        Broker::spawn(&args, port, env)
    }

    /// Starts `sluice` with exactly `args` (no --data-dir or --listen added); `port` is where the
    /// test expects it to listen.
    pub fn spawn(args: &[String], port: u16, env: &[(&str, &str)]) -> Broker {
        let mut child = Command::new(sluice_bin())
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn sluice");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Broker { child, lines: rx, port }
    }

    /// The log lines printed so far and not yet consumed by [`Broker::wait_for`] (diagnostics).
    pub fn drain_lines(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Waits for a log line containing `needle`; panics with what was seen on timeout.
    pub fn wait_for(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while std::time::Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    if line.contains(needle) {
                        return line;
                    }
                    seen.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("no log line containing {needle:?}; saw:\n{}", seen.join("\n"));
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Descriptors the broker process holds open now.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).expect("/proc/PID/fd").count()
    }

    /// Whether the process is still running (it may have exited with an error).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn wait_exit(mut self) -> i32 {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(std::time::Instant::now() < deadline, "broker did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Broker {
    /// Starts a broker with `cores` shards and waits until it serves.
    pub fn start(data_dir: &Path, cores: usize) -> Broker {
        let cores = cores.to_string();
        let broker = Broker::start_with(data_dir, &["--cores", &cores]);
        broker.wait_for("sluice broker started");
        broker
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGTERM and wait: a clean stop (asserts exit code 0).
    pub fn stop(self) {
        self.signal(libc::SIGTERM);
        assert_eq!(self.wait_exit(), 0, "clean shutdown exits 0");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Creates `name` with `partitions` partitions through a raw CreateTopics (v7); panics on an error.
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    create_topic_with_configs(bootstrap, name, partitions, &[]);
}

/// [`create_topic`] with topic config overrides (`compression.type`, `segment.bytes`, …).
pub fn create_topic_with_configs(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut client = raw::RawClient::connect(bootstrap);
    let response = client.send(&create_topics_request(name, partitions, configs), 7);
    assert_eq!(response.topics[0].error_code, 0, "{:?}", response.topics[0].error_message);
}

/// A CreateTopics request for one topic (replication factor 1, 120 s timeout).
pub fn create_topics_request(
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> kafka_protocol::messages::CreateTopicsRequest {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let configs = configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(k.to_string()))
                .with_value(Some(StrBytes::from_string(v.to_string())))
        })
        .collect();
    let topic = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.into())))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(configs);
    CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(120_000)
}

/// ListOffsets v9 latest (-1) of partitions `0..partitions` of `topic` in one request:
/// (error code, offset) per partition, in partition order.
pub fn latest_offsets(client: &mut raw::RawClient, topic: &str, partitions: i32) -> Vec<(i16, i64)> {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let request =
        ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(
                (0..partitions)
                    .map(|p| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(-1))
                    .collect(),
            )]);
    let response = client.send(&request, 9);
    let mut out: Vec<(i32, i16, i64)> =
        response.topics[0].partitions.iter().map(|p| (p.partition_index, p.error_code, p.offset)).collect();
    out.sort_unstable();
    out.into_iter().map(|(_, e, o)| (e, o)).collect()
}

/// Base rdkafka client config for this broker (quick failure, no waiting on a missing broker).
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap).set("socket.timeout.ms", "10000").set("message.timeout.ms", "20000");
    c
}

pub fn future_producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut c = client_config(bootstrap);
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("producer")
}

pub fn base_producer(bootstrap: &str, extra: &[(&str, &str)]) -> BaseProducer {
    let mut c = client_config(bootstrap);
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("producer")
}

/// A group-less consumer assigned explicitly (consumer groups land with issue 4).
pub fn assigned_consumer(
    bootstrap: &str,
    topic: &str,
    partitions: &[(i32, i64)],
    extra: &[(&str, &str)],
) -> BaseConsumer {
    let mut c = client_config(bootstrap);
    c.set("group.id", "sluice-e2e-unused").set("enable.auto.commit", "false").set("enable.auto.offset.store", "false");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    let consumer: BaseConsumer = c.create().expect("consumer");
    let mut list = rdkafka::TopicPartitionList::new();
    for (p, offset) in partitions {
        list.add_partition_offset(topic, *p, rdkafka::Offset::Offset(*offset)).expect("offset");
    }
    consumer.assign(&list).expect("assign");
    consumer
}

pub const POLL: Duration = Duration::from_millis(100);

/// What one partition of a raw Fetch (v12, by topic name, `min_bytes` 0) returned.
pub struct RawFetch {
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub records: bytes::Bytes,
}

/// Fetches `topic`/`partition` from `offset` (up to 8 MiB) on a fresh raw connection: exactly
/// the stored batches, for tests that check batch layout or stored bytes.
pub fn raw_fetch(bootstrap: &str, topic: &str, partition: i32, offset: i64) -> RawFetch {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let mut client = raw::RawClient::connect(bootstrap);
    let request =
        FetchRequest::default().with_max_wait_ms(0).with_min_bytes(0).with_max_bytes(8 << 20).with_topics(vec![
            FetchTopic::default().with_topic(TopicName(StrBytes::from_string(topic.to_string()))).with_partitions(
                vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(8 << 20)],
            ),
        ]);
    let response = client.send(&request, 12);
    assert_eq!(response.error_code, 0, "fetch error");
    let p = &response.responses[0].partitions[0];
    RawFetch {
        error_code: p.error_code,
        high_watermark: p.high_watermark,
        log_start_offset: p.log_start_offset,
        records: p.records.clone().unwrap_or_default(),
    }
}

/// The sum of every sample of `name` in one scrape of the metrics endpoint at `addr` (0 when
/// none). `tests/metrics.rs` checks the exposition format itself.
pub fn metric_sum(addr: &str, name: &str) -> f64 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    response
        .lines()
        .filter(|line| line.split([' ', '{']).next() == Some(name))
        .map(|line| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).expect("a sample's value"))
        .sum()
}

/// What DescribeGroups (v5) says of a group now: its state and its members' client ids.
#[derive(Debug, PartialEq, Eq)]
pub struct GroupView {
    pub state: String,
    pub client_ids: Vec<String>,
}

/// Describes `group` through a raw DescribeGroups (v5); panics on an error code.
pub fn describe_group(bootstrap: &str, group: &str) -> GroupView {
    use kafka_protocol::messages::{DescribeGroupsRequest, GroupId};
    use kafka_protocol::protocol::StrBytes;
    let mut client = raw::RawClient::connect(bootstrap);
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(StrBytes::from_string(group.into()))]);
    let response = client.send(&request, 5);
    let described = &response.groups[0];
    assert_eq!(described.error_code, 0, "DescribeGroups {group}");
    let mut client_ids: Vec<String> = described.members.iter().map(|m| m.client_id.to_string()).collect();
    client_ids.sort();
    GroupView { state: described.group_state.to_string(), client_ids }
}

/// Polls [`describe_group`] until `done` holds (every 50 ms, up to 30 s); returns that view.
pub fn wait_for_group(bootstrap: &str, group: &str, what: &str, done: impl Fn(&GroupView) -> bool) -> GroupView {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let view = describe_group(bootstrap, group);
        if done(&view) {
            return view;
        }
        assert!(std::time::Instant::now() < deadline, "group {group} never {what}; last seen {view:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Listening TCP sockets on 127.0.0.1:`port` (the broker binds one per shard, SO_REUSEPORT).
pub fn listening_sockets(port: u16) -> usize {
    const TCP_LISTEN: &str = "0A";
    let local = format!("0100007F:{port:04X}");
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[1] == local && fields[3] == TCP_LISTEN
        })
        .count()
}

/// The only segment file (`.log`) of `topic`-`partition` under `data_dir`.
pub fn only_segment_file(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    let dir = data_dir.join(format!("{topic}-{partition}"));
    let logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("partition dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    assert_eq!(logs.len(), 1, "{}: one segment expected: {logs:?}", dir.display());
    logs.into_iter().next().unwrap()
}

/// Tears the tail of a crashed broker's active segment: writes the first 40 bytes of a batch
/// (its header, claiming a length that does not follow) right after the last whole batch,
/// which ends at `valid_bytes`. `batch` is any stored batch.
pub fn tear_segment_tail(segment: &Path, valid_bytes: u64, batch: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(segment).expect("segment file");
    file.write_all_at(&batch[..40], valid_bytes).expect("write a torn batch");
    file.sync_all().expect("sync");
}
