//! State of a run shared by its shards and the main thread: the start signal and deadlines,
//! per-shard live counters the progress line reads, and the cross-shard facts e2e consumers
//! need (producers still running, messages acknowledged and consumed per partition — group
//! consumers judge "caught up" for the whole group, whoever reads a partition). Plus each
//! shard's own results, merged by the main thread at the end.
//!
//! Owns: everything that crosses threads during a run — atomics only, written by the shard that
//! owns them and read by others; no locks. Must never: be used on a per-message path for
//! anything but relaxed counter increments.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::bench::recorder::LatencyRecorder;
use crate::bench::verify::PartitionTracker;
use crate::bench::workload::Workload;

/// Counters one shard updates and the progress line reads.
#[derive(Default)]
pub struct LiveCounters {
    pub acked_msgs: AtomicU64,
    pub acked_bytes: AtomicU64,
    pub consumed_msgs: AtomicU64,
    pub consumed_bytes: AtomicU64,
    pub errors: AtomicU64,
    /// p99 so far (after warm-up), microseconds; refreshed by the shard once a second.
    pub ack_p99_us: AtomicU64,
    pub e2e_p99_us: AtomicU64,
}

pub struct RunShared {
    pub run_id: u32,
    pub workload: Workload,
    pub live: Vec<LiveCounters>,
    /// Monotonic ns when load starts (0 until every consumer has its start offsets).
    start_ns: AtomicU64,
    pub consumers_total: usize,
    pub consumers_ready: AtomicUsize,
    pub producers_running: AtomicUsize,
    /// When the last producer finished (0 while any runs).
    pub producers_done_ns: AtomicU64,
    /// Acknowledged messages of this run per (topic, partition); fixed key set.
    pub acked_by_partition: HashMap<(String, i32), AtomicU64>,
    /// Consumed messages of this run per (topic, partition), by any consumer; same key set.
    pub consumed_by_partition: HashMap<(String, i32), AtomicU64>,
    pub consumed_total: AtomicU64,
    /// Set on a fatal error or interrupt: every task stops.
    pub abort: AtomicBool,
}

impl RunShared {
    pub fn new(
        run_id: u32,
        workload: Workload,
        partitions: impl Iterator<Item = (String, i32)>,
        producers: usize,
        consumers: usize,
    ) -> RunShared {
        let partitions: Vec<(String, i32)> = partitions.collect();
        RunShared {
            run_id,
            live: (0..workload.cores).map(|_| LiveCounters::default()).collect(),
            workload,
            start_ns: AtomicU64::new(0),
            consumers_total: consumers,
            consumers_ready: AtomicUsize::new(0),
            producers_running: AtomicUsize::new(producers),
            producers_done_ns: AtomicU64::new(0),
            acked_by_partition: partitions.iter().map(|k| (k.clone(), AtomicU64::new(0))).collect(),
            consumed_by_partition: partitions.into_iter().map(|k| (k, AtomicU64::new(0))).collect(),
            consumed_total: AtomicU64::new(0),
            abort: AtomicBool::new(false),
        }
    }

    /// The start time once load may begin: after every consumer is positioned.
    pub fn start_ns(&self) -> Option<u64> {
        if self.consumers_ready.load(Relaxed) < self.consumers_total {
            return None;
        }
        let now = crate::bench::clock::now_ns();
        let _ = self.start_ns.compare_exchange(0, now, Relaxed, Relaxed);
        Some(self.start_ns.load(Relaxed))
    }

    /// Waits (polling every millisecond) until load may begin; `None` if the run was aborted
    /// first. Producers and consumers call it before their loops.
    pub async fn wait_for_start(&self) -> Option<u64> {
        loop {
            if let Some(s) = self.start_ns() {
                return Some(s);
            }
            if self.aborted() {
                return None;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    pub fn start_ns_if_started(&self) -> Option<u64> {
        Some(self.start_ns.load(Relaxed)).filter(|s| *s != 0)
    }

    pub fn warmup_end_ns(&self, start_ns: u64) -> u64 {
        start_ns + (self.workload.warmup_secs * 1e9) as u64
    }

    /// End of the run for duration-bound runs.
    pub fn end_ns(&self, start_ns: u64) -> Option<u64> {
        self.workload.duration_secs.map(|d| self.warmup_end_ns(start_ns) + (d * 1e9) as u64)
    }

    pub fn producer_finished(&self) {
        if self.producers_running.fetch_sub(1, Relaxed) == 1 {
            self.producers_done_ns.store(crate::bench::clock::now_ns(), Relaxed);
        }
    }

    pub fn aborted(&self) -> bool {
        self.abort.load(Relaxed)
    }

    /// Every partition of the run, by topic, in partition order.
    pub fn topic_partitions(&self) -> BTreeMap<String, Vec<i32>> {
        let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (t, p) in self.acked_by_partition.keys() {
            out.entry(t.clone()).or_default().push(*p);
        }
        for ps in out.values_mut() {
            ps.sort_unstable();
        }
        out
    }

    /// Whether this run's consumers have read at least what was acknowledged on `partition`.
    pub fn caught_up(&self, topic: &str, partition: i32) -> bool {
        let key = (topic.to_string(), partition);
        let get = |m: &HashMap<(String, i32), AtomicU64>| m.get(&key).map_or(0, |a| a.load(Relaxed));
        get(&self.consumed_by_partition) >= get(&self.acked_by_partition)
    }
}

/// What one shard measured; sent to the main thread when the shard finishes.
pub struct ShardResult {
    pub ack_latency: LatencyRecorder,
    pub e2e_latency: LatencyRecorder,
    /// Transactional producers: from asking to commit (the transaction's last batch handed to
    /// the connection) to the EndTxn answer, and how many commits there were.
    pub commit_latency: LatencyRecorder,
    pub transactions_committed: u64,
    pub sent_msgs: u64,
    pub acked_msgs: u64,
    /// Value bytes of every acknowledged message, warm-up included.
    pub acked_bytes: u64,
    /// Acknowledged after warm-up, and their value bytes.
    pub acked_measured_msgs: u64,
    pub acked_measured_bytes: u64,
    /// Batch bytes before and after compression (as produced).
    pub uncompressed_batch_bytes: u64,
    pub wire_batch_bytes: u64,
    pub produce_requests: u64,
    pub consumed_msgs: u64,
    pub consumed_bytes: u64,
    pub consumed_measured_msgs: u64,
    pub consumed_measured_bytes: u64,
    pub fetch_requests: u64,
    pub last_ack_ns: u64,
    pub last_consume_ns: u64,
    pub errors: BTreeMap<String, u64>,
    pub acked_by_partition: BTreeMap<(String, i32), u64>,
    /// What consumers saw per partition: one segment per stretch of ownership (a group moves
    /// partitions between consumers), joined by [`crate::bench::verify::join_segments`].
    pub trackers: BTreeMap<(String, i32), Vec<PartitionTracker>>,
}

impl ShardResult {
    pub fn new(warmup_end_ns: u64) -> ShardResult {
        ShardResult {
            ack_latency: LatencyRecorder::new(warmup_end_ns),
            e2e_latency: LatencyRecorder::new(warmup_end_ns),
            commit_latency: LatencyRecorder::new(warmup_end_ns),
            transactions_committed: 0,
            sent_msgs: 0,
            acked_msgs: 0,
            acked_bytes: 0,
            acked_measured_msgs: 0,
            acked_measured_bytes: 0,
            uncompressed_batch_bytes: 0,
            wire_batch_bytes: 0,
            produce_requests: 0,
            consumed_msgs: 0,
            consumed_bytes: 0,
            consumed_measured_msgs: 0,
            consumed_measured_bytes: 0,
            fetch_requests: 0,
            last_ack_ns: 0,
            last_consume_ns: 0,
            errors: BTreeMap::new(),
            acked_by_partition: BTreeMap::new(),
            trackers: BTreeMap::new(),
        }
    }

    pub fn set_warmup_end_ns(&mut self, warmup_end_ns: u64) {
        self.ack_latency.set_warmup_end_ns(warmup_end_ns);
        self.e2e_latency.set_warmup_end_ns(warmup_end_ns);
        self.commit_latency.set_warmup_end_ns(warmup_end_ns);
    }

    pub fn error(&mut self, what: String, count: u64) {
        *self.errors.entry(what).or_insert(0) += count;
    }

    pub fn merge(&mut self, other: ShardResult) {
        self.ack_latency.merge(&other.ack_latency);
        self.e2e_latency.merge(&other.e2e_latency);
        self.commit_latency.merge(&other.commit_latency);
        self.transactions_committed += other.transactions_committed;
        self.sent_msgs += other.sent_msgs;
        self.acked_msgs += other.acked_msgs;
        self.acked_bytes += other.acked_bytes;
        self.acked_measured_msgs += other.acked_measured_msgs;
        self.acked_measured_bytes += other.acked_measured_bytes;
        self.uncompressed_batch_bytes += other.uncompressed_batch_bytes;
        self.wire_batch_bytes += other.wire_batch_bytes;
        self.produce_requests += other.produce_requests;
        self.consumed_msgs += other.consumed_msgs;
        self.consumed_bytes += other.consumed_bytes;
        self.consumed_measured_msgs += other.consumed_measured_msgs;
        self.consumed_measured_bytes += other.consumed_measured_bytes;
        self.fetch_requests += other.fetch_requests;
        self.last_ack_ns = self.last_ack_ns.max(other.last_ack_ns);
        self.last_consume_ns = self.last_consume_ns.max(other.last_consume_ns);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_insert(0) += v;
        }
        for (k, v) in other.acked_by_partition {
            *self.acked_by_partition.entry(k).or_insert(0) += v;
        }
        for (k, v) in other.trackers {
            self.trackers.entry(k).or_default().extend(v);
        }
    }
}

/// Kafka's name for an error code, for reports.
pub fn error_name(code: i16) -> String {
    match kafka_protocol::ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?} ({code})"),
        None => format!("error code {code}"),
    }
}
