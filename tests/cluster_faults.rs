//! Faults under load: three `broker,controller` nodes, a topic with replication factor 3 and
//! `min.insync.replicas=2`, an idempotent acks=all producer running throughout, and node faults
//! — SIGKILL and restart, SIGTERM (controlled shutdown) and restart, SIGSTOP and SIGCONT — one at
//! a time. Every acknowledged record must be read back exactly once, at the offset it was
//! acknowledged at.
//!
//! The schedule comes from a seed (printed; `SLUICE_TEST_SEED=N` repeats it): which node, which
//! fault, and how many acknowledgements to wait for before and during each fault. Faults are
//! triggered by the producer's progress, never by guessed sleeps. CI runs one random seed per
//! run; `scripts/cluster-faults-soak.sh` runs many.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use support::client_config;
use support::cluster::*;

const TOPIC: &str = "ledger";
const PARTITIONS: i32 = 2;
const SETTLE: Duration = Duration::from_secs(90);

/// (partition, offset, key) of every acknowledged record.
type Acked = Arc<Mutex<Vec<(i32, i64, String)>>>;

struct RecordAcks(Acked);

impl ClientContext for RecordAcks {}

impl ProducerContext for RecordAcks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(m) = result {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
            self.0.lock().unwrap().push((m.partition(), m.offset(), key));
        }
    }
}

/// A small deterministic generator (xorshift64*): the schedule is a function of the seed.
struct Schedule(u64);

impl Schedule {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    let seed = std::env::var("SLUICE_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    println!("seed {seed} (SLUICE_TEST_SEED={seed} repeats it)");
    seed
}

/// A cluster under an idempotent acks=all producer that sends `k-<n>` keys round-robin over
/// the partitions until stopped.
struct Load {
    cluster: Cluster,
    acked: Acked,
    stop: Arc<AtomicBool>,
    sender: Option<std::thread::JoinHandle<ThreadedProducer<RecordAcks>>>,
}

impl Load {
    fn start() -> Load {
        let cluster = Cluster::start_with(3, 0, &[("min.insync.replicas", "2"), ("replica.lag.time.max.ms", "3000")]);
        let (code, message) = create_topic_rf(&cluster.bootstrap(0), TOPIC, PARTITIONS, 3);
        assert_eq!(code, 0, "{message:?}");
        let load = Load { cluster, acked: Arc::default(), stop: Arc::default(), sender: None };
        load.wait_all_in_sync();
        let mut c = client_config(&load.bootstrap());
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "180000")
            .set("request.timeout.ms", "5000")
            .set("socket.timeout.ms", "5000")
            .set("metadata.max.age.ms", "1000")
            .set("retry.backoff.ms", "50");
        let producer: ThreadedProducer<RecordAcks> =
            c.create_with_context(RecordAcks(load.acked.clone())).expect("producer");
        let stop = load.stop.clone();
        let sender = std::thread::spawn(move || {
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("k-{n}");
                let partition = (n % PARTITIONS as u64) as i32;
                match producer.send(BaseRecord::<str, str>::to(TOPIC).key(&key).payload("v").partition(partition)) {
                    Ok(()) => n += 1,
                    Err((e, _)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err((e, _)) => panic!("send: {e}"),
                }
                if n.is_multiple_of(50) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            producer
        });
        Load { sender: Some(sender), ..load }
    }

    fn bootstrap(&self) -> String {
        (0..3).map(|i| self.cluster.bootstrap(i)).collect::<Vec<_>>().join(",")
    }

    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until `more` acknowledgements arrived since `from`.
    fn wait_acks(&self, from: usize, more: usize, during: &str) {
        wait_until(&format!("{more} acknowledgements {during}"), SETTLE, || {
            (self.acked_count() >= from + more).then_some(())
        });
    }

    /// Waits until the other nodes no longer count node `i` (index) as a leader or an in-sync
    /// replica of any partition: the fault took effect.
    fn wait_out_of_isr(&self, i: usize) {
        let id = i as i32 + 1;
        let witness = self.cluster.running().into_iter().find(|j| *j != i).expect("another node runs");
        let deadline = Instant::now() + SETTLE;
        loop {
            let views = partitions(&self.cluster.bootstrap(witness), TOPIC);
            if views.as_ref().is_some_and(|v| v.iter().all(|v| v.1 != id && v.1 > 0 && !v.4.contains(&id))) {
                return;
            }
            if Instant::now() > deadline {
                for j in self.cluster.running().into_iter().filter(|j| *j != i) {
                    for line in self.cluster.process(j).drain_lines() {
                        eprintln!("node {}: {line}", j + 1);
                    }
                }
                panic!("node {id} still a leader or in sync after {SETTLE:?}: {views:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every partition has a leader and all three replicas in sync, as every
    /// running node sees it.
    fn wait_all_in_sync(&self) {
        wait_until("every partition led, all replicas in sync", SETTLE, || {
            for i in self.cluster.running() {
                let views = partitions(&self.cluster.bootstrap(i), TOPIC)?;
                let ok = views.len() == PARTITIONS as usize && views.iter().all(|v| v.1 > 0 && v.4.len() == 3);
                if !ok {
                    return None;
                }
            }
            Some(())
        });
    }

    /// Stops the producer, waits for its last acknowledgements and checks every acknowledged
    /// record is in the log exactly once at its offset.
    fn finish_and_verify(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let producer = self.sender.take().unwrap().join().expect("sender thread");
        producer.flush(Duration::from_secs(120)).expect("every record acknowledged or failed");
        drop(producer);
        self.wait_all_in_sync();
        let acked = self.acked.lock().unwrap().clone();
        assert!(!acked.is_empty(), "the producer got acknowledgements");
        let log = read_all(&self.bootstrap(), &acked);
        let mut seen: HashMap<&str, (i32, i64)> = HashMap::new();
        for (&(p, offset), key) in &log {
            if let Some(first) = seen.insert(key, (p, offset)) {
                panic!("{key} is in the log twice: at {first:?} and at ({p}, {offset})");
            }
        }
        for (p, offset, key) in &acked {
            assert_eq!(log.get(&(*p, *offset)), Some(key), "acknowledged {key} at {p}/{offset}");
        }
        println!("{} acknowledged records, {} in the log, all where they were acknowledged", acked.len(), log.len());
    }
}

/// Every record of the topic up to the highest acknowledged offset of each partition:
/// (partition, offset) → key.
fn read_all(bootstrap: &str, acked: &[(i32, i64, String)]) -> BTreeMap<(i32, i64), String> {
    let mut want: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, offset, _) in acked {
        let end = want.entry(*p).or_insert(0);
        *end = (*end).max(offset + 1);
    }
    let mut c = client_config(bootstrap);
    c.set("group.id", "verifier").set("enable.auto.commit", "false");
    let consumer: BaseConsumer = c.create().expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for p in want.keys() {
        assignment.add_partition_offset(TOPIC, *p, Offset::Beginning).unwrap();
    }
    consumer.assign(&assignment).expect("assign");
    let mut log = BTreeMap::new();
    let mut next: BTreeMap<i32, i64> = want.keys().map(|p| (*p, 0)).collect();
    let deadline = Instant::now() + SETTLE;
    while want.iter().any(|(p, end)| next[p] < *end) {
        assert!(Instant::now() < deadline, "read {next:?} of {want:?}");
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
            log.insert((m.partition(), m.offset()), key);
            next.insert(m.partition(), m.offset() + 1);
        }
    }
    log
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Kill,
    Terminate,
    Pause,
}

#[test]
fn node_faults_from_a_seed_lose_no_acknowledged_record() {
    let mut schedule = Schedule(seed() | 1);
    let mut load = Load::start();
    for step in 0..3 {
        let node = schedule.below(3) as usize;
        let fault = [Fault::Kill, Fault::Terminate, Fault::Pause][schedule.below(3) as usize];
        let before = 200 + schedule.below(800) as usize;
        let during = 100 + schedule.below(400) as usize;
        load.wait_acks(load.acked_count(), before, "before the fault");
        println!("step {step}: {fault:?} node {} after {before} more acks, for {during} acks", node + 1);
        let from = load.acked_count();
        match fault {
            Fault::Kill => load.cluster.kill(node),
            Fault::Terminate => {
                assert_eq!(load.cluster.stop(node), 0, "a SIGTERM stops cleanly");
            }
            Fault::Pause => load.cluster.process(node).signal(libc::SIGSTOP),
        }
        load.wait_out_of_isr(node);
        load.wait_acks(from, during, "while a node is down");
        match fault {
            Fault::Kill | Fault::Terminate => load.cluster.restart(node),
            Fault::Pause => load.cluster.process(node).signal(libc::SIGCONT),
        }
        load.wait_all_in_sync();
    }
    load.finish_and_verify();
}

#[test]
fn a_rolling_restart_under_load_loses_nothing() {
    let mut load = Load::start();
    for node in 0..3 {
        load.wait_acks(load.acked_count(), 300, "before the restart");
        assert_eq!(load.cluster.stop(node), 0, "a SIGTERM stops cleanly");
        load.wait_out_of_isr(node);
        load.wait_acks(load.acked_count(), 300, "with one node stopped");
        load.cluster.restart(node);
        load.wait_all_in_sync();
    }
    load.finish_and_verify();
}
