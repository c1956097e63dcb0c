//! Prometheus metrics, `/healthz` and `/readyz` (`--metrics-addr`, default 127.0.0.1:9644).
//!
//! Owns: each shard's own counters ([`ShardMetrics`], a thread local of plain `Cell`s and
//! `RefCell`s that only its shard touches: nothing is shared or locked on the data path), the
//! snapshot a shard hands over when asked ([`snapshot`]), and the pieces around it: the rate
//! windows ([`rate_window`]), the hot-key sketch ([`key_sketch`]), which responses count as
//! errors ([`response_errors`]), the merge and text format ([`exposition`]) and the HTTP
//! endpoint ([`http`]), which asks every shard for a snapshot
//! through the shard mesh on each scrape. The engine's own numbers (tail cache, fsync) are in
//! [`sluice_engine::shard_metrics`].
//!
//! Must never: take a lock or a cross-shard call on the data path, grow without bound (the
//! API table is fixed, topic and partition entries follow the topics that exist, the hot-key
//! sketch has a fixed capacity), or be the source of a broker decision.

pub mod exposition;
pub mod http;
pub mod key_sketch;
pub mod rate_window;
pub mod response_errors;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sluice_engine::shard_metrics::{EngineMetrics, LatencyHistogram};

use crate::quota::resolve::QuotaKind;
use key_sketch::{HotKey, KeySketch};
use rate_window::{Rate, RateWindow};

/// API keys counted (Kafka's are below 100; anything above shares the last slot).
const API_SLOTS: usize = 128;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApiStats {
    pub requests: u64,
    pub errors: u64,
    pub latency: LatencyHistogram,
}

#[derive(Clone, Debug, Default)]
struct TopicStats {
    io: TopicIo,
    /// Produce rates of the partitions this shard owns (appends happen on the owner shard).
    partitions: HashMap<i32, RateWindow>,
}

/// Bytes and records produced to (appended on this shard) and bytes fetched from a topic
/// (answered by this shard's connections).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopicIo {
    pub bytes_in: u64,
    pub records_in: u64,
    pub bytes_out: u64,
}

/// One shard's counters. See the module docs.
pub struct ShardMetrics {
    apis: RefCell<Vec<ApiStats>>,
    topics: RefCell<HashMap<String, TopicStats>>,
    connections_open: Cell<u64>,
    connections_accepted: Cell<u64>,
    /// Requests (connections) throttled by a client quota and their throttle time, per
    /// [`QuotaKind`] (produce, fetch, connection).
    quota_throttles: Cell<[QuotaThrottles; 3]>,
    /// Task run time accumulated from glommio's executor stats (which reset when read).
    busy_ns: Cell<u64>,
    sketch: RefCell<KeySketch>,
    hot_keys_enabled: Cell<bool>,
}

thread_local! {
    static METRICS: ShardMetrics = ShardMetrics::new();
}

/// Monotonic milliseconds since the first call in the process (rate windows and the key
/// sketch take time as an input; this is where the broker reads it).
pub fn monotonic_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl ShardMetrics {
    fn new() -> ShardMetrics {
        // Seeded per thread so shards sample different batches.
        let seed = {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(std::thread::current().id())
        };
        ShardMetrics {
            apis: RefCell::new(vec![ApiStats::default(); API_SLOTS]),
            topics: RefCell::new(HashMap::new()),
            connections_open: Cell::new(0),
            connections_accepted: Cell::new(0),
            quota_throttles: Cell::new([QuotaThrottles::default(); 3]),
            busy_ns: Cell::new(0),
            sketch: RefCell::new(KeySketch::new(seed)),
            hot_keys_enabled: Cell::new(true),
        }
    }
}

/// A request of API `api_key` was answered after `elapsed`; `error`: its response carried an
/// error code (or the request closed the connection).
pub fn record_request(api_key: i16, elapsed: Duration, error: bool) {
    let slot = usize::try_from(api_key).unwrap_or(API_SLOTS - 1).min(API_SLOTS - 1);
    METRICS.with(|m| {
        let mut apis = m.apis.borrow_mut();
        let stats = &mut apis[slot];
        stats.requests += 1;
        stats.errors += u64::from(error);
        stats.latency.record(elapsed);
    });
}

/// A produce appended `records` (`record_count` records) to a partition; called on the
/// partition's owner shard. Feeds the topic's counters, the partition's rate window and (one
/// set in [`key_sketch::SAMPLE_ONE_IN`]) the hot-key sketch.
pub fn record_produce(topic: &str, partition: i32, records: &[u8], record_count: u64) {
    let now_ms = monotonic_ms();
    METRICS.with(|m| {
        {
            let mut topics = m.topics.borrow_mut();
            let stats = match topics.get_mut(topic) {
                Some(s) => s,
                None => topics.entry(topic.to_string()).or_default(),
            };
            stats.io.bytes_in += records.len() as u64;
            stats.io.records_in += record_count;
            stats.partitions.entry(partition).or_default().add(now_ms, records.len() as u64, record_count);
        }
        if m.hot_keys_enabled.get() {
            let mut sketch = m.sketch.borrow_mut();
            if sketch.sample_next() {
                sketch.add_record_set(now_ms, topic, partition, records);
            }
        }
    });
}

/// A fetch response carries `bytes` of `topic`'s records.
pub fn record_fetch(topic: &str, bytes: u64) {
    if bytes == 0 {
        return;
    }
    METRICS.with(|m| {
        let mut topics = m.topics.borrow_mut();
        let stats = match topics.get_mut(topic) {
            Some(s) => s,
            None => topics.entry(topic.to_string()).or_default(),
        };
        stats.io.bytes_out += bytes;
    });
}

pub fn connection_opened() {
    METRICS.with(|m| {
        m.connections_open.set(m.connections_open.get() + 1);
        m.connections_accepted.set(m.connections_accepted.get() + 1);
    });
}

/// Throttles for one kind of client quota.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaThrottles {
    pub count: u64,
    pub throttle_ms: u64,
}

/// The slot of a quota kind in [`ShardSnapshot::quota_throttles`].
pub fn quota_slot(kind: QuotaKind) -> usize {
    match kind {
        QuotaKind::Produce => 0,
        QuotaKind::Fetch => 1,
        QuotaKind::Connection => 2,
    }
}

/// A client over its `kind` quota was throttled for `throttle_ms` (on the connection's shard).
pub fn record_quota_throttle(kind: QuotaKind, throttle_ms: i64) {
    METRICS.with(|m| {
        let mut all = m.quota_throttles.get();
        let slot = &mut all[quota_slot(kind)];
        slot.count += 1;
        slot.throttle_ms += throttle_ms.max(0) as u64;
        m.quota_throttles.set(all);
    });
}

pub fn connection_closed() {
    METRICS.with(|m| m.connections_open.set(m.connections_open.get().saturating_sub(1)));
}

/// `sluice.hot.keys.enable` (default true): whether produce batches are sampled for hot keys.
pub fn set_hot_keys_enabled(enabled: bool) {
    METRICS.with(|m| m.hot_keys_enabled.set(enabled));
}

/// A partition this shard owns, as a scrape reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionSnapshot {
    pub topic: String,
    pub partition: i32,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub size_bytes: u64,
    pub rate: Rate,
}

/// A committed offset of a group this shard coordinates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedSnapshot {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Everything one shard reports to a scrape (plain data: it crosses to the scraping shard).
#[derive(Clone, Debug, Default)]
pub struct ShardSnapshot {
    pub shard: usize,
    pub apis: Vec<(i16, ApiStats)>,
    pub topics: Vec<(String, TopicIo)>,
    pub partitions: Vec<PartitionSnapshot>,
    pub committed: Vec<CommittedSnapshot>,
    pub hot_keys: Vec<HotKey>,
    pub hot_key_sampled_sets: u64,
    pub hot_key_skipped_compressed_batches: u64,
    pub connections_open: u64,
    pub connections_accepted: u64,
    /// By [`quota_slot`]: produce, fetch, connection.
    pub quota_throttles: [QuotaThrottles; 3],
    pub busy_seconds: f64,
    pub engine: EngineMetrics,
}

/// This shard's snapshot. Runs on the shard (through the mesh); needs its context installed.
pub fn snapshot() -> ShardSnapshot {
    let ctx = crate::shard_context::ShardContext::current();
    let now_ms = monotonic_ms();
    let mut out =
        ShardSnapshot { shard: ctx.shard, engine: sluice_engine::shard_metrics::snapshot(), ..Default::default() };
    let logs = ctx.storage.partitions();
    METRICS.with(|m| {
        m.busy_ns.set(m.busy_ns.get() + glommio::executor().executor_stats().executor_runtime().as_nanos() as u64);
        out.busy_seconds = m.busy_ns.get() as f64 / 1e9;
        out.connections_open = m.connections_open.get();
        out.connections_accepted = m.connections_accepted.get();
        out.quota_throttles = m.quota_throttles.get();
        out.apis = m
            .apis
            .borrow()
            .iter()
            .enumerate()
            .filter(|(_, s)| s.requests > 0)
            .map(|(key, s)| (key as i16, *s))
            .collect();
        let mut topics = m.topics.borrow_mut();
        // Windows of partitions that are gone or idle for a minute are dropped here.
        for stats in topics.values_mut() {
            stats.partitions.retain(|_, w| !w.is_idle(now_ms));
        }
        out.topics = topics.iter().map(|(name, s)| (name.clone(), s.io)).collect();
        out.partitions = logs
            .iter()
            .map(|log| PartitionSnapshot {
                topic: log.topic().to_string(),
                partition: log.partition(),
                log_start_offset: log.log_start_offset(),
                log_end_offset: log.log_end_offset(),
                high_watermark: log.high_watermark(),
                size_bytes: log.size_bytes(),
                rate: topics
                    .get(log.topic())
                    .and_then(|t| t.partitions.get(&log.partition()))
                    .map(|w| w.rate(now_ms))
                    .unwrap_or_default(),
            })
            .collect();
        let mut sketch = m.sketch.borrow_mut();
        out.hot_keys = sketch.report(now_ms);
        out.hot_key_sampled_sets = sketch.sampled_batches;
        out.hot_key_skipped_compressed_batches = sketch.skipped_compressed_batches;
    });
    if let Some(groups) = crate::group::service::GroupShard::try_current() {
        groups.for_each_group(|g| {
            for ((topic, partition), committed) in g.offsets() {
                out.committed.push(CommittedSnapshot {
                    group: g.id.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    offset: committed.offset,
                });
            }
        });
    }
    out
}
