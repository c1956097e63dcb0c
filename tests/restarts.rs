//! End-to-end: restarts that never fail. The real `sluice broker` is stopped (SIGTERM) or
//! crashed (SIGKILL) the ways an operator or a supervisor does, and must come back at once, with
//! every record, without a start-up race, without touching a data dir it was refused, and
//! never sharing a data dir or a port with another live broker. Ordering that otherwise happens
//! by chance is forced with fault points (`SLUICE_FAULT_*`), not sleeps.

use std::time::{Duration, Instant};

mod support;
use support::raw::RawClient;
use support::{base_producer, create_topic, free_port, latest_offsets, wait_for_port_release, Broker};

use rdkafka::producer::{BaseRecord, Producer};

const IN_USE_EXIT_CODE: i32 = 3;

/// Produces one record to each of `partitions` partitions and waits for every acknowledgement.
fn one_record_per_partition(bootstrap: &str, topic: &str, partitions: i32) {
    let producer = base_producer(bootstrap, &[("linger.ms", "5"), ("acks", "all")]);
    for p in 0..partitions {
        let payload = format!("record-{p}");
        loop {
            match producer.send(BaseRecord::<(), _>::to(topic).partition(p).payload(&payload)) {
                Ok(()) => break,
                Err((e, _)) => {
                    assert!(matches!(e.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::QueueFull)), "{e}");
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("every record acknowledged");
}

fn assert_one_record_each(bootstrap: &str, topic: &str, partitions: i32) {
    let mut client = RawClient::connect(bootstrap);
    let offsets = latest_offsets(&mut client, topic, partitions);
    assert_eq!(offsets.len(), partitions as usize);
    for (p, (error, offset)) in offsets.iter().enumerate() {
        assert_eq!((*error, *offset), (0, 1), "partition {p}");
    }
}

/// Once ~100 partitions held data, a clean restart aborted: glommio was asked to read an empty
/// index file after the partitions' writers had taken its registered-buffer pool.
#[test]
fn a_clean_restart_opens_hundreds_of_partitions_holding_data() {
    const PARTITIONS: i32 = 400;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 2);
    create_topic(&broker.bootstrap(), "many", PARTITIONS);
    one_record_per_partition(&broker.bootstrap(), "many", PARTITIONS);
    broker.stop();
    for _ in 0..2 {
        let broker = Broker::start(dir.path(), 2);
        assert_one_record_each(&broker.bootstrap(), "many", PARTITIONS);
        broker.stop();
    }
}

/// A connection open when the broker stops leaves the broker's side of it in TIME_WAIT (or
/// FIN_WAIT2): a restart on the same port must succeed at once, as Kafka's does.
#[test]
fn a_broker_restarts_on_its_port_at_once_after_a_stop_with_clients_connected() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    for signal in [libc::SIGTERM, libc::SIGKILL, libc::SIGTERM] {
        let broker = Broker::start_on(dir.path(), port, &["--cores", "2"]);
        broker.wait_for("sluice broker started");
        let mut clients: Vec<RawClient> = (0..4).map(|_| RawClient::connect(&broker.bootstrap())).collect();
        for client in &mut clients {
            let versions = client.send(&kafka_protocol::messages::ApiVersionsRequest::default(), 3);
            assert_eq!(versions.error_code, 0);
        }
        broker.signal(signal);
        broker.wait_exit();
        // The broker closed first: its side of each connection is the one left in TIME_WAIT.
        drop(clients);
    }
    let broker = Broker::start_on(dir.path(), port, &["--cores", "2"]);
    broker.wait_for("sluice broker started");
    broker.stop();
}

/// A refused start changes nothing: the clean-shutdown marker of the last stop survives it, so
/// the next real start skips recovery.
#[test]
fn a_refused_start_leaves_the_data_dir_untouched() {
    let busy_dir = tempfile::tempdir().unwrap();
    let busy = Broker::start(busy_dir.path(), 1);
    let dir = tempfile::tempdir().unwrap();
    Broker::start(dir.path(), 1).stop();
    let marker = dir.path().join(".clean_shutdown");
    assert!(marker.exists());
    for _ in 0..2 {
        let refused = Broker::start_on(dir.path(), busy.port, &["--cores", "1"]);
        assert_eq!(refused.wait_exit(), IN_USE_EXIT_CODE, "the port is taken");
        assert!(marker.exists(), "a refused start must not take the clean-shutdown marker");
    }
    let broker = Broker::start(dir.path(), 1);
    assert!(!marker.exists(), "the start took the marker of the last stop (no recovery)");
    broker.stop();
    busy.stop();
}

/// Kafka's `.lock`: a second broker on a data dir in use fails at once and the first one goes
/// on serving; once the first stops, the dir is usable again (a crash leaves no stale lock).
#[test]
fn a_second_broker_on_a_data_dir_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Broker::start(dir.path(), 1);
    create_topic(&first.bootstrap(), "t", 1);
    let second = Broker::start_with(dir.path(), &["--cores", "1"]);
    assert_eq!(second.wait_exit(), IN_USE_EXIT_CODE);
    let mut client = RawClient::connect(&first.bootstrap());
    assert_eq!(latest_offsets(&mut client, "t", 1), vec![(0, 0)], "the first broker still serves");
    drop(client);
    first.signal(libc::SIGKILL);
    first.wait_exit();
    let third = Broker::start(dir.path(), 1);
    third.stop();
}

/// No shard accepts a client before every shard can answer. Shard 1 is held back at start-up
/// (a slow recovery); a client asks for the offsets of partitions on both shards from the first
/// moment the port accepts. It used to reach shard 0 early, whose cross-shard call found shard
/// 1 without a context and aborted the process.
#[test]
fn clients_are_served_only_once_every_shard_is_ready() {
    const PARTITIONS: i32 = 8;
    let dir = tempfile::tempdir().unwrap();
    // The port stays unbound for seconds while shard 1 is held back: a port other test processes
    // never pick (their `free_port` range ends below), so none of their brokers can take it then.
    let port = port_outside_free_port_range();
    let broker = Broker::start_on(dir.path(), port, &["--cores", "2"]);
    broker.wait_for("sluice broker started");
    create_topic(&broker.bootstrap(), "race", PARTITIONS);
    one_record_per_partition(&broker.bootstrap(), "race", PARTITIONS);
    // Enough data on shard 1's partitions that its recovery takes a while even without the
    // fault point (a broker without it shows the race too).
    let producer = base_producer(&broker.bootstrap(), &[("linger.ms", "5"), ("acks", "1")]);
    let payload = vec![7u8; 900 << 10];
    let on_shard_1: Vec<i32> = (0..PARTITIONS).filter(|p| sluice_engine::owner_shard("race", *p, 2) == 1).collect();
    for i in 0..48 {
        let partition = on_shard_1[i % on_shard_1.len()];
        producer.send(BaseRecord::<(), _>::to("race").partition(partition).payload(&payload)).expect("queued");
        producer.poll(Duration::from_millis(0));
    }
    producer.flush(Duration::from_secs(60)).expect("acknowledged");
    let mut client = RawClient::connect(&broker.bootstrap());
    let before = latest_offsets(&mut client, "race", PARTITIONS);
    drop((client, producer));
    broker.signal(libc::SIGKILL);
    broker.wait_exit();
    // The killed broker's listening sockets go with its io_uring, a moment after its exit: a
    // probe in that window reaches a socket nobody accepts on.
    wait_for_port_release(port);

    let delay = [("SLUICE_FAULT_SHARD_OPEN_DELAY_MS", "1:3000")];
    let mut broker = Broker::start_on_with_env(dir.path(), port, &["--cores", "2"], &delay);
    let bootstrap = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let offsets = loop {
        assert!(Instant::now() < deadline, "the broker never answered");
        assert!(broker.is_running(), "the broker exited during start-up");
        match std::net::TcpStream::connect(&bootstrap) {
            Ok(probe) => {
                drop(probe);
                let mut client = RawClient::connect(&bootstrap);
                let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    latest_offsets(&mut client, "race", PARTITIONS)
                }));
                match answered {
                    Ok(offsets) => break offsets,
                    Err(_) => panic!(
                        "no answer from the first connection (broker running: {}); its log:\n{}",
                        broker.is_running(),
                        broker.drain_lines().join("\n")
                    ),
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    assert_eq!(offsets, before, "every shard answered from the first connection");
    broker.wait_for("sluice broker started");
    broker.stop();
}

/// A free port in 32000..32768: above `free_port`'s range and below the kernel's ephemeral
/// ports, chosen from this process's id.
fn port_outside_free_port_range() -> u16 {
    let start = std::process::id() % 768;
    (0..768)
        .map(|i| 32_000 + ((start + i) % 768) as u16)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port in 32000..32768")
}

/// `listeners` and `log.dirs` in a server.properties are honoured; what is not supported yet
/// is refused (exit code 2) instead of being ignored.
#[test]
fn listeners_and_log_dirs_from_server_properties_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kafka-logs");
    let port = free_port();
    let props = dir.path().join("server.properties");
    std::fs::write(
        &props,
        format!(
            "process.roles=broker,controller\nnode.id=1\ncontroller.quorum.voters=1@127.0.0.1:{}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{}\n\
             controller.listener.names=CONTROLLER\nlog.dirs={}\nnum.partitions=3\n",
            port + 1,
            port + 1,
            data.display()
        ),
    )
    .unwrap();
    let args: Vec<String> = ["broker", "--cores", "1", "--config", props.to_str().unwrap()].map(String::from).to_vec();
    let broker = Broker::spawn(&args, port, &[]);
    broker.wait_for("sluice broker started");
    create_topic(&broker.bootstrap(), "here", 2);
    assert!(data.join("here-0").is_dir(), "partitions live under log.dirs");
    broker.stop();

    for bad in [
        format!("listeners=SSL://127.0.0.1:{port}\n"),
        format!("listeners=PLAINTEXT://127.0.0.1:{port},PLAINTEXT2://127.0.0.1:{}\n", port + 1),
        "log.dirs=/tmp/a,/tmp/b\n".to_string(),
        "controller.quorum.voters=1@127.0.0.1:9093,2@127.0.0.1:19093\n".to_string(),
    ] {
        std::fs::write(&props, &bad).unwrap();
        let broker = Broker::spawn(&args, port, &[]);
        assert_eq!(broker.wait_exit(), 2, "{bad} must be refused");
    }
}

/// The steps of a durable write (`checkpoint_file::write_atomic*`) the crash fault point stops
/// at, and whether the final name holds the new contents once the process died there.
const WRITE_STEPS: [(&str, bool); 3] =
    [("after-temp-create", false), ("after-temp-write", false), ("after-rename", true)];
const ABORT_IN_ATOMIC_WRITE: &str = "SLUICE_FAULT_ABORT_IN_ATOMIC_WRITE";

/// Produces records keyed `k-<i>` for `keys` to partition 0 of `topic`; every one acknowledged.
fn produce_keys(bootstrap: &str, topic: &str, keys: std::ops::Range<u32>) {
    let producer = base_producer(bootstrap, &[("linger.ms", "5"), ("acks", "all")]);
    for i in keys.clone() {
        let key = format!("k-{i}");
        producer.send(BaseRecord::<_, _>::to(topic).partition(0).key(&key).payload("v")).expect("queued");
        producer.poll(Duration::from_millis(0));
    }
    producer.flush(Duration::from_secs(60)).expect("flushed");
    let mut client = RawClient::connect(bootstrap);
    assert_eq!(latest_offsets(&mut client, topic, 1), vec![(0, keys.end as i64)], "every record acknowledged");
}

/// The keys of every record of `topic`/0 below its high watermark, in offset order.
fn read_keys(bootstrap: &str, topic: &str) -> Vec<String> {
    use rdkafka::Message;
    let mut client = RawClient::connect(bootstrap);
    let end = latest_offsets(&mut client, topic, 1)[0].1;
    let consumer = support::assigned_consumer(bootstrap, topic, &[(0, 0)], &[]);
    let mut keys = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while keys.len() < end as usize {
        assert!(Instant::now() < deadline, "read {} of {end} records", keys.len());
        if let Some(m) = rdkafka::consumer::BaseConsumer::poll(&consumer, support::POLL) {
            let m = m.expect("record");
            assert_eq!(m.offset(), keys.len() as i64, "records in offset order, none missing");
            keys.push(String::from_utf8(m.key().expect("key").to_vec()).unwrap());
        }
    }
    keys
}

fn keys(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("k-{i}")).collect()
}

fn temp_file_of(path: &std::path::Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Starts a broker (one shard) with the crash fault point set and waits until it serves.
fn start_with_crash_fault(dir: &std::path::Path, fault: &str) -> Broker {
    let broker = Broker::start_on_with_env(dir, free_port(), &["--cores", "1"], &[(ABORT_IN_ATOMIC_WRITE, fault)]);
    broker.wait_for("sluice broker started");
    broker
}

/// A crash inside the write of `metadata.json` (here: during CreateTopics) leaves the old image
/// or the new one whole — never a torn, empty or missing file — and the next start serves the
/// topics of that image with the data produced before; the temp file is not taken for data.
#[test]
fn a_crash_inside_the_metadata_write_leaves_the_old_or_the_new_metadata_whole() {
    for (step, renamed) in WRITE_STEPS {
        let dir = tempfile::tempdir().unwrap();
        let metadata = dir.path().join("metadata.json");
        let broker = Broker::start(dir.path(), 1);
        create_topic(&broker.bootstrap(), "before", 1);
        produce_keys(&broker.bootstrap(), "before", 0..20);
        broker.stop();
        let old = std::fs::read(&metadata).unwrap();

        let broker = start_with_crash_fault(dir.path(), &format!("metadata.json:{step}"));
        let mut client = RawClient::connect(&broker.bootstrap());
        let (_, request) = client.encode(&support::create_topics_request("after", 2, &[]), 7);
        client.write_bytes_lossy(&request);
        assert!(client.read_frame().is_none(), "{step}: the broker died before it answered");
        assert_ne!(broker.wait_exit(), 0, "{step}: the fault point aborts the process");

        let on_disk = std::fs::read(&metadata).unwrap();
        let image: serde_json::Value = serde_json::from_slice(&on_disk).expect("metadata.json parses whole");
        let topics = image.to_string();
        if renamed {
            assert!(topics.contains("\"after\""), "{step}: the new image is in place: {topics}");
            assert!(!temp_file_of(&metadata).exists(), "{step}: the rename consumed the temp file");
        } else {
            assert_eq!(on_disk, old, "{step}: the old image is untouched");
            assert!(temp_file_of(&metadata).exists(), "{step}: the crash left the temp file");
        }

        let broker = Broker::start(dir.path(), 1);
        assert!(!temp_file_of(&metadata).exists(), "{step}: the start removed the temp file");
        assert_eq!(read_keys(&broker.bootstrap(), "before"), keys(0..20), "{step}");
        let mut client = RawClient::connect(&broker.bootstrap());
        let after = latest_offsets(&mut client, "after", 2);
        if renamed {
            assert_eq!(after, vec![(0, 0), (0, 0)], "{step}: the persisted topic is served");
        } else {
            assert!(after.iter().all(|(e, _)| *e == 3), "{step}: UNKNOWN_TOPIC_OR_PARTITION: {after:?}");
        }
        drop(client);
        broker.stop();
    }
}

/// A crash inside the write of a partition's recovery-point checkpoint (here: during the
/// shutdown's close of the log) leaves the old or the new checkpoint whole; the next start —
/// a recovery, as no clean-shutdown marker was written — serves every acknowledged record.
#[test]
fn a_crash_inside_a_checkpoint_write_leaves_the_old_or_the_new_checkpoint_whole() {
    use sluice_engine::leader_epoch_cache::decode_offset_checkpoint;
    for (step, renamed) in WRITE_STEPS {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = dir.path().join("cp-0").join("recovery-point.checkpoint");
        let marker = dir.path().join(".clean_shutdown");
        let broker = Broker::start(dir.path(), 1);
        create_topic(&broker.bootstrap(), "cp", 1);
        produce_keys(&broker.bootstrap(), "cp", 0..20);
        broker.stop();
        let read_checkpoint = || decode_offset_checkpoint(&std::fs::read_to_string(&checkpoint).unwrap());
        assert_eq!(read_checkpoint(), Ok(20), "a clean stop checkpoints the recovery point");

        let broker = start_with_crash_fault(dir.path(), &format!("recovery-point.checkpoint:{step}"));
        produce_keys(&broker.bootstrap(), "cp", 20..40);
        broker.signal(libc::SIGTERM);
        assert_ne!(broker.wait_exit(), 0, "{step}: the fault point aborts the shutdown");
        assert!(!marker.exists(), "{step}: an aborted shutdown leaves no clean-shutdown marker");
        let expected = if renamed { 40 } else { 20 };
        assert_eq!(read_checkpoint(), Ok(expected), "{step}: the checkpoint is whole");
        assert_eq!(temp_file_of(&checkpoint).exists(), !renamed, "{step}: temp file left by the crash");

        let broker = Broker::start(dir.path(), 1);
        assert!(!temp_file_of(&checkpoint).exists(), "{step}: recovery removed the temp file");
        assert_eq!(read_keys(&broker.bootstrap(), "cp"), keys(0..40), "{step}");
        broker.stop();
        assert_eq!(read_checkpoint(), Ok(40), "{step}");
    }
}

/// A crash inside the write of the clean-shutdown marker (after every log closed): before the
/// rename there is no marker and the next start recovers; after it the marker is whole and the
/// next start trusts it. A leftover temp file is never taken for the marker. Either way every
/// record is served and the start consumes the marker.
#[test]
fn a_crash_inside_the_clean_shutdown_marker_write_restarts_with_every_record() {
    for (step, renamed) in WRITE_STEPS {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join(".clean_shutdown");
        let broker = start_with_crash_fault(dir.path(), &format!(".clean_shutdown:{step}"));
        create_topic(&broker.bootstrap(), "m", 1);
        produce_keys(&broker.bootstrap(), "m", 0..20);
        broker.signal(libc::SIGTERM);
        assert_ne!(broker.wait_exit(), 0, "{step}: the fault point aborts the shutdown");
        assert_eq!(marker.exists(), renamed, "{step}: the marker is in place only after the rename");
        assert_eq!(temp_file_of(&marker).exists(), !renamed, "{step}: temp file left by the crash");

        let broker = Broker::start(dir.path(), 1);
        assert!(!marker.exists(), "{step}: the start consumed the marker");
        assert!(!temp_file_of(&marker).exists(), "{step}: the start removed the temp file");
        assert_eq!(read_keys(&broker.bootstrap(), "m"), keys(0..20), "{step}");
        broker.stop();
        assert!(marker.exists(), "{step}: a clean stop leaves the marker");
    }
}

const ABORT_IN_SEAL: &str = "SLUICE_FAULT_ABORT_IN_SEAL";

/// A crash while a rolled segment is sealed in the background — before its fdatasync, or after
/// it but before its index files, the recovery point and the producer snapshot are written —
/// loses no acknowledged record: the next start rescans and syncs that segment, and the log
/// goes on rolling and restarting.
#[test]
fn a_crash_while_a_rolled_segment_is_sealed_loses_no_acknowledged_record() {
    use futures::executor::block_on;
    use rdkafka::producer::FutureRecord;
    for step in ["before-sync", "after-sync"] {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start_on_with_env(dir.path(), free_port(), &["--cores", "1"], &[(ABORT_IN_SEAL, step)]);
        broker.wait_for("sluice broker started");
        support::create_topic_with_configs(&broker.bootstrap(), "rolled", 1, &[("segment.bytes", "16384")]);
        let producer = support::future_producer(
            &broker.bootstrap(),
            &[("linger.ms", "0"), ("acks", "all"), ("message.send.max.retries", "0"), ("message.timeout.ms", "10000")],
        );
        let payload = vec![b'v'; 1000];
        let (mut sent, mut acked) = (0u32, 0u32);
        // One record at a time until the first roll's seal aborts the broker (~16 records).
        loop {
            assert!(sent < 1000, "{step}: no roll reached the fault point");
            let key = format!("k-{sent}");
            sent += 1;
            let record = FutureRecord::to("rolled").partition(0).key(&key).payload(&payload);
            match block_on(producer.send(record, Duration::from_secs(10))) {
                Ok(delivered) => {
                    assert_eq!(delivered.offset, acked as i64, "{step}");
                    acked += 1;
                }
                Err(_) => break,
            }
        }
        drop(producer);
        assert_ne!(broker.wait_exit(), 0, "{step}: the fault point aborts the process");
        assert!(acked > 1, "{step}: records were acknowledged before the roll");

        let broker = Broker::start(dir.path(), 1);
        let recovered = read_keys(&broker.bootstrap(), "rolled");
        let n = recovered.len() as u32;
        assert!((acked..=sent).contains(&n), "{step}: {n} records after the crash; {acked} acknowledged, {sent} sent");
        assert_eq!(recovered, keys(0..n), "{step}: every acknowledged record, in order");
        // The log goes on: more rolls, then a clean restart keeps everything.
        produce_keys(&broker.bootstrap(), "rolled", n..n + 60);
        broker.stop();
        let broker = Broker::start(dir.path(), 1);
        assert_eq!(read_keys(&broker.bootstrap(), "rolled"), keys(0..n + 60), "{step}: after a clean restart");
        broker.stop();
    }
}
