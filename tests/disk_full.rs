//! End-to-end: a broker whose disk fills up. On a small loop-mounted ext4 file system (root can
//! mount one here; the test skips with a message where mounting is refused):
//! - produces past the space get KAFKA_STORAGE_ERROR, and a consumer never sees a record whose
//!   produce was not acknowledged (reads are bounded by what is on file);
//! - every acknowledged record survives a clean stop taken while the disk is full (exit 0) and
//!   the restart after it;
//! - DeleteTopics works on the full disk (that is how an operator frees space);
//! - once there is room, the partition accepts writes again by itself, without a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod support;
use support::raw::RawClient;
use support::{assigned_consumer, create_topic, future_producer, latest_offsets, Broker, POLL};

use futures::executor::block_on;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Message;

const RECORD_BYTES: usize = 64 << 10;

/// A small ext4 file system mounted on a loop device; unmounted when dropped.
struct SmallDisk {
    _dir: tempfile::TempDir,
    mount: PathBuf,
}

impl SmallDisk {
    fn mount(size_mib: u64) -> Result<SmallDisk, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let image = dir.path().join("disk.img");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).map_err(|e| e.to_string())?;
        std::fs::File::create(&image).and_then(|f| f.set_len(size_mib << 20)).map_err(|e| e.to_string())?;
        // -m 0: no blocks reserved for root (the tests run as root and would write into them).
        run("mkfs.ext4", &["-q", "-F", "-m", "0", image.to_str().unwrap()])?;
        run("mount", &["-o", "loop", image.to_str().unwrap(), mount.to_str().unwrap()])?;
        Ok(SmallDisk { _dir: dir, mount })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = run("umount", &["-l", self.mount.to_str().unwrap()]);
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Every record of `topic`/0 below the high watermark: offset → key.
fn read_all(bootstrap: &str, topic: &str) -> BTreeMap<i64, String> {
    let mut client = RawClient::connect(bootstrap);
    let end = latest_offsets(&mut client, topic, 1)[0].1;
    let consumer: BaseConsumer = assigned_consumer(bootstrap, topic, &[(0, 0)], &[]);
    let mut seen = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < end as usize {
        assert!(Instant::now() < deadline, "read {} of {end} records", seen.len());
        if let Some(Ok(m)) = consumer.poll(POLL) {
            let key = String::from_utf8(m.key().expect("key").to_vec()).unwrap();
            assert_eq!(m.payload().map(<[u8]>::len), Some(RECORD_BYTES), "record {key} whole");
            seen.insert(m.offset(), key);
        }
    }
    drop(consumer);
    seen
}

/// Asserts a reader saw exactly the acknowledged records, naming the first difference.
fn assert_same_records(seen: &BTreeMap<i64, String>, acked: &BTreeMap<i64, String>, context: &str) {
    let unacked: Vec<_> = seen.iter().filter(|(o, k)| acked.get(o) != Some(k)).take(3).collect();
    let missing: Vec<_> = acked.iter().filter(|(o, k)| seen.get(o) != Some(k)).take(3).collect();
    assert!(
        unacked.is_empty() && missing.is_empty(),
        "{context}: {} records seen, {} acknowledged; seen but not acknowledged {unacked:?}; acknowledged but missing {missing:?}",
        seen.len(),
        acked.len()
    );
}

fn delete_topic(bootstrap: &str, topic: &str) -> i16 {
    use kafka_protocol::messages::{DeleteTopicsRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let mut client = RawClient::connect(bootstrap);
    let request = DeleteTopicsRequest::default()
        .with_topic_names(vec![TopicName(StrBytes::from_string(topic.into()))])
        .with_timeout_ms(30_000);
    client.send(&request, 5).responses[0].error_code
}

fn disk_free_bytes(path: &Path) -> u64 {
    // SAFETY: statvfs with a NUL-terminated path and a valid out-struct.
    unsafe {
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        let mut st: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut st), 0);
        st.f_bavail * st.f_frsize
    }
}

#[test]
fn a_full_disk_loses_nothing_acknowledged_shows_nothing_unacknowledged_and_recovers_by_itself() {
    let disk = match SmallDisk::mount(64) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("SKIPPED: cannot loop-mount a small file system here ({e})");
            return;
        }
    };
    let data = disk.mount.join("data");
    let extra = ["--cores", "1", "--set", "log.segment.bytes=4194304"];
    let broker = Broker::start_with(&data, &extra);
    broker.wait_for("sluice broker started");
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "filler", 1);
    create_topic(&bootstrap, "main", 1);
    let producer = future_producer(
        &bootstrap,
        &[("acks", "all"), ("message.send.max.retries", "0"), ("enable.idempotence", "false"), ("linger.ms", "0")],
    );
    let payload = vec![b'x'; RECORD_BYTES];
    let send = |topic: &str, key: &str| -> Result<_, Box<(KafkaError, rdkafka::message::OwnedMessage)>> {
        block_on(
            producer.send(FutureRecord::to(topic).partition(0).key(key).payload(&payload), Duration::from_secs(30)),
        )
        .map_err(Box::new)
    };
    for i in 0..160 {
        send("filler", &format!("f{i}")).expect("the filler fits");
    }

    // Fill the disk with acknowledged records; go on a little after the first refusals.
    let mut acked: BTreeMap<i64, String> = BTreeMap::new();
    let mut refused = 0;
    let mut i = 0;
    while refused < 20 {
        assert!(i < 5_000, "the disk never filled ({} free)", disk_free_bytes(&disk.mount));
        let key = format!("m{i}");
        match send("main", &key) {
            Ok(delivered) => {
                acked.insert(delivered.offset, key);
            }
            Err(e) => match *e {
                (KafkaError::MessageProduction(code), _) => {
                    assert_eq!(code, RDKafkaErrorCode::KafkaStorageError, "refused with Kafka's error");
                    refused += 1;
                }
                (e, _) => panic!("unexpected produce error {e}"),
            },
        }
        i += 1;
    }
    assert!(acked.len() > 100, "{} acknowledged before the disk filled", acked.len());
    eprintln!("disk full after {} acknowledged records ({refused} refused)", acked.len());
    // A reader sees exactly the acknowledged records: nothing a failed write may take back.
    assert_same_records(&read_all(&bootstrap, "main"), &acked, "while the disk is full");

    // A clean stop on the full disk is clean, and loses nothing.
    broker.signal(libc::SIGTERM);
    assert_eq!(broker.wait_exit(), 0, "a clean stop while the disk is full exits 0");
    assert!(data.join(".clean_shutdown").exists());
    let broker = Broker::start_with(&data, &extra);
    broker.wait_for("sluice broker started");
    assert!(!data.join(".clean_shutdown").exists(), "the start took the marker (no recovery)");
    let bootstrap = broker.bootstrap();
    assert_same_records(&read_all(&bootstrap, "main"), &acked, "after a clean restart on the full disk");

    // Free space through the API, on the full disk; then writes succeed again, no restart.
    assert_eq!(delete_topic(&bootstrap, "filler"), 0, "DeleteTopics works on a full disk");
    let producer = future_producer(
        &bootstrap,
        &[("acks", "all"), ("message.send.max.retries", "0"), ("enable.idempotence", "false"), ("linger.ms", "0")],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        assert!(Instant::now() < deadline, "the partition never accepted writes again");
        match block_on(
            producer
                .send(FutureRecord::to("main").partition(0).key("after").payload(&payload), Duration::from_secs(30)),
        ) {
            Ok(delivered) => break delivered.offset,
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    acked.insert(after, "after".into());
    assert_same_records(&read_all(&bootstrap, "main"), &acked, "after space was freed");
    broker.stop();
}
