//! `sluice bench`: a Kafka-protocol load generator that drives any Kafka-compatible broker.
//!
//! Owns the run's lifecycle: resolve the workload (file + flags), create topics and learn
//! leaders on a short-lived set-up executor, start one client shard per core (glommio, pinned,
//! bounded io_memory) running its producers and consumers, print a progress line every second
//! from the shards' live counters, then merge the shards' results into the final table, the
//! verification verdict and the JSON. Consumers read either a static assignment or, with
//! `--group`, whatever their consumer group assigns them (`group_member`: join, heartbeat,
//! commit, leave); verification then joins each partition's segments across the group's
//! members. Must never: exit 0 when a message was refused, lost or duplicated, or when a
//! consumer failed to join its group (errors and failed verification make the exit code 1).

pub mod admin;
pub mod clock;
pub mod compression;
pub mod consumer;
pub mod group_member;
pub mod kafka_client;
pub mod key_distribution;
pub mod payload;
pub mod plan;
pub mod producer;
pub mod rate;
pub mod record_set;
pub mod recorder;
pub mod report;
pub mod run_state;
pub mod transaction;
pub mod verify;
pub mod workload;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use glommio::{LocalExecutorBuilder, Placement};
use sluice_engine::shard::{available_cpus, ShardPool, ShardPoolConfig};

use self::admin::ClusterLayout;
use self::payload::{PayloadKind, PayloadPool};
use self::plan::RunPlan;
use self::report::{BenchReport, Throughput, Verification};
use self::run_state::{RunShared, ShardResult};
use self::workload::{Acks, CompressionCodec, MessageSize, StartOffset, Workload, WorkloadFile, WorkloadKind};

/// io_memory of each bench executor: the bench does no DMA file I/O, and a broker on the same
/// machine needs its share of the 8 MiB memlock limit.
const BENCH_IO_MEMORY_BYTES: usize = 1 << 20;

#[derive(Args, Debug, Default)]
pub struct BenchArgs {
    /// produce, consume or e2e (or `kind` in the workload file).
    pub kind: Option<String>,
    /// Workload file (TOML; OpenMessaging Benchmark field names accepted); flags override it.
    #[arg(long)]
    pub workload: Option<PathBuf>,
    #[arg(long)]
    pub bootstrap: Option<String>,
    /// PLAINTEXT (default) or SSL: every connection is TLS, checked against `--ssl-ca`.
    #[arg(long, value_name = "PROTOCOL")]
    pub security_protocol: Option<String>,
    /// CA bundle (PEM) the broker's certificate must chain to (`--security-protocol ssl`).
    #[arg(long, value_name = "PATH")]
    pub ssl_ca: Option<PathBuf>,
    /// Client shards (cores); defaults to every available CPU.
    #[arg(long)]
    pub cores: Option<usize>,
    /// Existing topic to use (repeatable); without it fresh topics are created.
    #[arg(long = "topic")]
    pub topic: Vec<String>,
    #[arg(long)]
    pub topics: Option<usize>,
    #[arg(long)]
    pub partitions: Option<usize>,
    #[arg(long)]
    pub replication_factor: Option<i16>,
    /// Value bytes: `1024`, or `100..2000` for uniform sizes.
    #[arg(long)]
    pub message_size: Option<MessageSize>,
    /// Producers per topic.
    #[arg(long)]
    pub producers: Option<usize>,
    /// Consumers per topic.
    #[arg(long)]
    pub consumers: Option<usize>,
    /// Total target rate, messages/s (0 or absent: max throughput).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Measured duration after warm-up.
    #[arg(long)]
    pub duration_secs: Option<f64>,
    /// Total messages to produce (consume: to read); instead of a duration.
    #[arg(long)]
    pub count: Option<u64>,
    #[arg(long)]
    pub warmup_secs: Option<f64>,
    #[arg(long)]
    pub batch_bytes: Option<usize>,
    #[arg(long)]
    pub linger_ms: Option<f64>,
    /// 0, 1, all (-1).
    #[arg(long)]
    pub acks: Option<Acks>,
    /// none, gzip, snappy, lz4, zstd.
    #[arg(long)]
    pub compression: Option<CompressionCodec>,
    /// Random keys from --key-space (partition by key hash); default unkeyed (sticky).
    #[arg(long)]
    pub keyed: bool,
    #[arg(long)]
    pub key_space: Option<u64>,
    /// With --keyed: uniform (default), zipf (exponent 1: key 0 hottest) or zipf:EXPONENT.
    #[arg(long, value_name = "uniform|zipf|zipf:S")]
    pub key_distribution: Option<key_distribution::KeyDistribution>,
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// earliest or latest (with --group: where partitions without a committed offset start).
    #[arg(long)]
    pub start: Option<String>,
    /// Consume through this consumer group (consume, e2e) instead of static assignment.
    #[arg(long)]
    pub group: Option<String>,
    /// random (incompressible) or text (compressible words).
    #[arg(long)]
    pub payload: Option<PayloadKind>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Produce in transactions (acks=all, at most 5 in flight); commit every --txn-commit-ms
    /// (default 100) or --txn-commit-messages, whichever comes first. e2e consumers then read
    /// committed data only.
    #[arg(long)]
    pub transactional: bool,
    /// Idempotent producers (producer id, epoch, sequences; acks=all, at most 5 in flight).
    #[arg(long)]
    pub idempotent: bool,
    #[arg(long)]
    pub txn_commit_ms: Option<f64>,
    #[arg(long)]
    pub txn_commit_messages: Option<u64>,
    #[arg(long)]
    pub name: Option<String>,
    /// Write the results JSON here (`-` for stdout).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

impl BenchArgs {
    fn to_file(&self) -> Result<WorkloadFile, String> {
        Ok(WorkloadFile {
            name: self.name.clone(),
            kind: match self.kind.as_deref() {
                None => None,
                Some("produce") => Some(WorkloadKind::Produce),
                Some("consume") => Some(WorkloadKind::Consume),
                Some("e2e") => Some(WorkloadKind::E2e),
                Some(other) => return Err(format!("unknown workload {other:?}: produce, consume or e2e")),
            },
            bootstrap: self.bootstrap.clone(),
            cores: self.cores,
            topic_names: (!self.topic.is_empty()).then(|| self.topic.clone()),
            topics: self.topics,
            partitions_per_topic: self.partitions,
            replication_factor: self.replication_factor,
            message_size: self.message_size,
            producers_per_topic: self.producers,
            consumers_per_topic: self.consumers,
            producer_rate_per_sec: self.rate,
            duration_secs: self.duration_secs,
            message_count: self.count,
            warmup_secs: self.warmup_secs,
            batch_bytes: self.batch_bytes,
            linger_ms: self.linger_ms,
            acks: self.acks,
            compression: self.compression,
            keyed: self.keyed.then_some(true),
            key_space: self.key_space,
            key_distribution: self.key_distribution.map(|d| match d {
                key_distribution::KeyDistribution::Uniform => "uniform".to_string(),
                key_distribution::KeyDistribution::Zipf { exponent } => format!("zipf:{exponent}"),
            }),
            max_in_flight: self.max_in_flight,
            start: match self.start.as_deref() {
                None => None,
                Some("earliest") => Some(StartOffset::Earliest),
                Some("latest") => Some(StartOffset::Latest),
                Some(other) => return Err(format!("--start {other:?}: earliest or latest")),
            },
            group: self.group.clone(),
            payload: self.payload,
            seed: self.seed,
            transactional: self.transactional.then_some(true),
            idempotent: self.idempotent.then_some(true),
            transaction_commit_ms: self.txn_commit_ms,
            transaction_commit_messages: self.txn_commit_messages,
            ..Default::default()
        })
    }
}

/// Resolves the workload from `--workload` and flags.
pub fn resolve_workload(args: &BenchArgs) -> Result<Workload, String> {
    let file = match &args.workload {
        Some(path) => {
            WorkloadFile::parse_toml(&std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?)?
        }
        None => WorkloadFile::default(),
    };
    let mut resolved = file.overlay(args.to_file()?);
    if resolved.cores.is_none() {
        resolved.cores = Some(available_cpus());
    }
    resolved.resolve(available_cpus())
}

pub fn run(args: BenchArgs) -> i32 {
    match (args.security_protocol.as_deref().map(str::to_ascii_uppercase).as_deref(), &args.ssl_ca) {
        (None | Some("PLAINTEXT"), None) => {}
        (Some("SSL"), Some(ca)) => match sluice_net::security::tls_config::client_config(ca) {
            Ok(config) => kafka_client::use_tls(config),
            Err(e) => {
                eprintln!("sluice bench: --ssl-ca: {e}");
                return 2;
            }
        },
        (Some("SSL"), None) => {
            eprintln!("sluice bench: --security-protocol ssl needs --ssl-ca");
            return 2;
        }
        (protocol, _) => {
            eprintln!(
                "sluice bench: --security-protocol {protocol:?}: expected PLAINTEXT or SSL (--ssl-ca only with SSL)"
            );
            return 2;
        }
    }
    let workload = match resolve_workload(&args) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("sluice bench: {e}");
            return 2;
        }
    };
    match run_workload(workload, !args.quiet) {
        Ok(report) => {
            let table = report::final_table(&report);
            let json = serde_json::to_string_pretty(&report).expect("report serializes");
            match args.json.as_deref() {
                Some(p) if p == std::path::Path::new("-") => {
                    eprint!("{table}");
                    println!("{json}");
                }
                Some(p) => {
                    print!("{table}");
                    if let Err(e) = std::fs::write(p, json + "\n") {
                        eprintln!("sluice bench: writing {}: {e}", p.display());
                        return 1;
                    }
                }
                None => print!("{table}"),
            }
            if report.ok {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("sluice bench: {e}");
            1
        }
    }
}

fn new_run_id() -> u32 {
    let t = clock::now_ns() ^ (std::process::id() as u64).rotate_left(32);
    (t ^ (t >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15) as u32 | 1
}

/// Creates topics (unless existing ones were named) and learns their leaders.
fn set_up(workload: &Workload, topics: Vec<String>) -> Result<ClusterLayout, String> {
    let bootstrap = workload.bootstrap.clone();
    let create = workload.topic_names.is_none();
    let partitions = workload.partitions_per_topic;
    let replication_factor = workload.replication_factor;
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("bench-setup")
        .io_memory(BENCH_IO_MEMORY_BYTES)
        .spawn(move || async move {
            let conn = crate::bench::kafka_client::connect(&bootstrap, "sluice-bench-admin").await?;
            if create {
                admin::create_topics(&conn, &topics, partitions, replication_factor).await?;
            }
            admin::layout(&conn, &topics).await
        })
        .map_err(|e| format!("set-up executor: {e}"))?
        .join()
        .map_err(|e| format!("set-up executor: {e}"))?
}

/// Runs a resolved workload to completion and returns its report.
pub fn run_workload(workload: Workload, show_progress: bool) -> Result<BenchReport, String> {
    let run_id = new_run_id();
    let topics = workload.topic_names_for_run(run_id);
    let layout = set_up(&workload, topics.clone())?;
    let plan = Arc::new(plan::plan(&workload, &layout));
    if workload.kind.produces() && plan.producers.is_empty() {
        return Err("no producers planned".into());
    }
    if workload.kind.consumes() && plan.consumers.is_empty() {
        return Err("no consumers planned".into());
    }
    let partitions = layout.leaders.iter().flat_map(|(t, ps)| ps.iter().map(move |(p, _)| (t.clone(), *p)));
    let run =
        Arc::new(RunShared::new(run_id, workload.clone(), partitions, plan.producers.len(), plan.consumers.len()));
    let wall_start = std::time::Instant::now();
    let config =
        ShardPoolConfig { shard_count: workload.cores, name: "bench".into(), io_memory_bytes: BENCH_IO_MEMORY_BYTES };
    let shard_run = run.clone();
    let shard_plan = plan.clone();
    let pool = ShardPool::start(&config, move |shard, _mesh| {
        let run = shard_run.clone();
        let plan = shard_plan.clone();
        async move { run_shard(shard, run, plan).await }
    })
    .map_err(|e| format!("starting client shards: {e}"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(pool.join());
    });
    let mut last = (0u64, 0u64, 0u64, 0u64);
    let mut last_t = std::time::Instant::now();
    let joined = loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(joined) => break joined,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let sum = |f: &dyn Fn(&run_state::LiveCounters) -> u64| run.live.iter().map(f).sum::<u64>();
                let now = (
                    sum(&|l| l.acked_msgs.load(Relaxed)),
                    sum(&|l| l.acked_bytes.load(Relaxed)),
                    sum(&|l| l.consumed_msgs.load(Relaxed)),
                    sum(&|l| l.consumed_bytes.load(Relaxed)),
                );
                let dt = last_t.elapsed().as_secs_f64();
                last_t = std::time::Instant::now();
                // The live p99 is the highest of the shards' own p99s (histograms stay on their
                // shards until the end): an upper bound of the merged p99, exact with one shard.
                // The final table merges the histograms.
                let max_p99 = |f: &dyn Fn(&run_state::LiveCounters) -> u64| {
                    run.live.iter().map(f).max().filter(|v| *v > 0).map(|us| us as f64 / 1000.0)
                };
                if show_progress {
                    eprintln!(
                        "{}",
                        report::progress_line(
                            wall_start.elapsed().as_secs_f64(),
                            (now.0 - last.0) as f64 / dt,
                            (now.1 - last.1) as f64 / 1e6 / dt,
                            (now.2 - last.2) as f64 / dt,
                            (now.3 - last.3) as f64 / 1e6 / dt,
                            max_p99(&|l| l.ack_p99_us.load(Relaxed)),
                            max_p99(&|l| l.e2e_p99_us.load(Relaxed)),
                            sum(&|l| l.errors.load(Relaxed)),
                            workload.kind.produces(),
                            workload.kind.consumes(),
                        )
                    );
                }
                last = now;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Err("client shards vanished".into()),
        }
    };
    let wall_seconds = wall_start.elapsed().as_secs_f64();
    let mut total: Option<ShardResult> = None;
    for (shard, r) in joined.into_iter().enumerate() {
        let r = r.map_err(|_| format!("client shard {shard} panicked"))?;
        match &mut total {
            None => total = Some(r),
            Some(t) => t.merge(r),
        }
    }
    let total = total.ok_or("no client shards")?;
    Ok(build_report(&workload, run_id, topics, &plan, &run, total, wall_seconds))
}

async fn run_shard(shard: usize, run: Arc<RunShared>, plan: Arc<RunPlan>) -> ShardResult {
    let result = Rc::new(RefCell::new(ShardResult::new(0)));
    let pool =
        Rc::new(PayloadPool::new(run.workload.payload, run.workload.message_size.max_bytes(), run.workload.seed));
    let mut tasks = Vec::new();
    for p in plan.producers.iter().filter(|p| p.shard == shard) {
        tasks.push(glommio::spawn_local(producer::run_producer(
            p.clone(),
            run.clone(),
            shard,
            pool.clone(),
            result.clone(),
        )));
    }
    for c in plan.consumers.iter().filter(|c| c.shard == shard) {
        tasks.push(glommio::spawn_local(consumer::run_consumer(c.clone(), run.clone(), shard, result.clone())));
    }
    let done = Rc::new(Cell::new(false));
    let progress = {
        let (done, result, run) = (done.clone(), result.clone(), run.clone());
        glommio::spawn_local(async move {
            while !done.get() {
                glommio::timer::sleep(Duration::from_millis(250)).await;
                let r = result.borrow();
                let live = &run.live[shard];
                live.ack_p99_us.store((r.ack_latency.quantile_ms(0.99) * 1000.0) as u64, Relaxed);
                live.e2e_p99_us.store((r.e2e_latency.quantile_ms(0.99) * 1000.0) as u64, Relaxed);
            }
        })
    };
    for t in tasks {
        t.await;
    }
    done.set(true);
    progress.await;
    Rc::try_unwrap(result).ok().expect("every task finished").into_inner()
}

fn build_report(
    w: &Workload,
    run_id: u32,
    topics: Vec<String>,
    plan: &RunPlan,
    run: &RunShared,
    total: ShardResult,
    wall_seconds: f64,
) -> BenchReport {
    let start_ns = run.start_ns_if_started().unwrap_or(0);
    let measure_from_ns = run.warmup_end_ns(start_ns);
    let secs = |last_ns: u64| last_ns.saturating_sub(measure_from_ns) as f64 / 1e9;
    let produce = w
        .kind
        .produces()
        .then(|| Throughput::new(total.acked_measured_msgs, total.acked_measured_bytes, secs(total.last_ack_ns)));
    let consume = w.kind.consumes().then(|| {
        Throughput::new(total.consumed_measured_msgs, total.consumed_measured_bytes, secs(total.last_consume_ns))
    });
    let verification = w.kind.consumes().then(|| {
        let counts_checked = w.kind == WorkloadKind::E2e;
        let seen: BTreeMap<(String, i32), verify::PartitionTracker> =
            total.trackers.iter().map(|(k, segments)| (k.clone(), verify::join_segments(segments.clone()))).collect();
        let verdicts = verify::verdicts(&total.acked_by_partition, &seen, counts_checked, w.transaction.is_some());
        let failed: Vec<_> = verdicts.iter().filter(|v| !v.ok).cloned().collect();
        Verification {
            counts_checked,
            ok: failed.is_empty() && run.acked_by_partition.len() == verdicts.len(),
            acked: total.acked_msgs,
            consumed: seen.values().map(|t| t.consumed_this_run + t.consumed_other).sum(),
            partitions_checked: verdicts.len(),
            failed_partitions: failed,
        }
    });
    let errors_total: u64 = total.errors.values().sum();
    let ok = errors_total == 0 && verification.as_ref().is_none_or(|v| v.ok) && !run.aborted();
    let errors: BTreeMap<String, u64> = total.errors;
    BenchReport {
        sluice_version: env!("CARGO_PKG_VERSION"),
        run_id: format!("{run_id:08x}"),
        workload: w.clone(),
        topics,
        producers: plan.producers.len(),
        consumers: plan.consumers.len(),
        wall_seconds,
        sent_msgs: total.sent_msgs,
        acked_msgs: total.acked_msgs,
        acked_bytes: total.acked_bytes,
        consumed_msgs: total.consumed_msgs,
        consumed_bytes: total.consumed_bytes,
        produce_requests: total.produce_requests,
        fetch_requests: total.fetch_requests,
        compression_ratio: if total.uncompressed_batch_bytes == 0 {
            1.0
        } else {
            total.wire_batch_bytes as f64 / total.uncompressed_batch_bytes as f64
        },
        produce,
        consume,
        ack_latency_ms: (w.kind.produces() && w.acks.0 != 0).then(|| total.ack_latency.summary()),
        e2e_latency_ms: (w.kind == WorkloadKind::E2e).then(|| total.e2e_latency.summary()),
        transactions_committed: w.transaction.map(|_| total.transactions_committed),
        commit_latency_ms: w.transaction.map(|_| total.commit_latency.summary()),
        warmup_excluded_msgs: total.ack_latency.excluded_warmup().max(total.e2e_latency.excluded_warmup()),
        errors_total,
        errors,
        verification,
        ok,
    }
}
