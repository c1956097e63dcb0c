//! `sluice broker`: starts one shard per core, opens the data dir, serves the Kafka protocol on
//! every shard (SO_REUSEPORT), and shuts down cleanly on SIGINT/SIGTERM, leaving the
//! clean-shutdown marker so the next start skips recovery.
//!
//! Owns: process lifecycle. Signals are blocked in every thread and taken with `sigwait` on
//! the main thread — which is not a shard, so it may block. Must never: block on a shard
//! thread, or write the clean-shutdown marker unless every shard closed its logs cleanly.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;

use clap::Args;
use std::sync::Arc;

use sluice_engine::shard::{available_cpus, ShardPool, ShardPoolConfig, IO_MEMORY_BYTES};
use sluice_engine::shard_storage::{take_clean_shutdown_marker, write_clean_shutdown_marker};
use sluice_engine::watermark::Watermark;
use sluice_engine::{ShardStorage, StorageOptions};
use sluice_net::broker_config::BrokerConfig;
use sluice_net::controller;
use sluice_net::shard_context::ShardContext;

use crate::broker_config::{self, BrokerSettings};

#[derive(Args, Debug)]
pub struct BrokerArgs {
    /// Directory holding the partition logs.
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// Address Kafka clients connect to.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    /// Shards (one per core); defaults to every available CPU.
    #[arg(long)]
    pub cores: Option<usize>,
    /// Kafka-style properties file (broker names like log.segment.bytes, or topic names).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// One setting, `key=value`; repeatable; applied after --config.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Reports a shard's start-up outcome exactly once; if the shard dies before reporting (a
/// panic), the drop reports the failure so the main thread never waits forever.
struct ReadyReport {
    shard: usize,
    tx: Option<std::sync::mpsc::Sender<Result<usize, String>>>,
}

impl ReadyReport {
    fn send(mut self, result: Result<usize, String>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(result);
        }
    }
}

impl Drop for ReadyReport {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Err(format!("shard {} exited during start-up", self.shard)));
        }
    }
}

thread_local! {
    static STORAGE: RefCell<Option<Rc<ShardStorage>>> = const { RefCell::new(None) };
    static STOP: RefCell<Option<Rc<Watermark>>> = const { RefCell::new(None) };
}

fn settings_from(args: &BrokerArgs) -> Result<BrokerSettings, String> {
    let mut settings = BrokerSettings::default();
    if let Some(path) = &args.config {
        let props = broker_config::load_file(path)?;
        broker_config::apply(&mut settings, &props)?;
    }
    let mut overrides = std::collections::BTreeMap::new();
    for kv in &args.set {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("--set expects KEY=VALUE, got {kv:?}"))?;
        overrides.insert(k.trim().to_string(), v.trim().to_string());
    }
    broker_config::apply(&mut settings, &overrides)?;
    Ok(settings)
}

/// Runs the broker until a signal; returns the process exit code.
pub fn run(args: BrokerArgs) -> i32 {
    let settings = match settings_from(&args) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("invalid configuration: {e}");
            return 2;
        }
    };
    let shard_count = args.cores.unwrap_or_else(available_cpus);
    if shard_count == 0 || shard_count > 1024 {
        tracing::error!(cores = shard_count, "--cores must be between 1 and 1024");
        return 2;
    }
    let clean = match take_clean_shutdown_marker(&args.data_dir) {
        Ok(clean) => clean,
        Err(e) => {
            tracing::error!(data_dir = %args.data_dir.display(), error = %e, "cannot use data dir");
            return 1;
        }
    };
    if let Err(e) = sluice_net::server::check_address_free(args.listen) {
        tracing::error!(listen = %args.listen, error = %e, "cannot listen (is another broker running there?)");
        return 1;
    }
    block_shutdown_signals();
    abort_on_panic();

    let mut options = StorageOptions::new(&args.data_dir);
    if let Some(b) = settings.memory_budget_bytes {
        options.memory_budget_bytes = b;
    }
    if let Some(bytes) = settings.tail_cache_bytes {
        options.log_options.tail_cache_bytes = bytes;
    }
    if let Some(fill) = settings.tail_cache_fill {
        options.log_options.tail_cache_fill = fill;
    }
    if let Some(bytes) = settings.preallocate_max_step_bytes {
        options.log_options.writer.preallocate_max_step_bytes = bytes;
    }
    if let Some(direct) = settings.direct_io {
        options.log_options.direct_io = direct;
    }
    if let Some(ms) = settings.producer_id_expiration_ms {
        options.log_options.producer_id_expiration_ms = ms;
    }
    if let Some(ms) = settings.retention_check_interval_ms {
        options.retention_check_interval_ms = ms;
    }
    let image = match controller::load_or_init(&args.data_dir) {
        Ok(image) => image,
        Err(e) => {
            tracing::error!("cannot read cluster metadata: {e}");
            return 1;
        }
    };
    if !controller::metadata_path(&args.data_dir).exists() {
        // Persist the new cluster id before anything else so it never changes.
        let json = serde_json::to_vec_pretty(&image).expect("metadata serializes");
        if let Err(e) = std::fs::write(controller::metadata_path(&args.data_dir), json) {
            tracing::error!(error = %e, "cannot write cluster metadata");
            return 1;
        }
    }
    let mut broker_config =
        BrokerConfig::new(args.data_dir.clone(), advertised_host(&args.listen), args.listen.port() as i32);
    broker_config.default_log_config = settings.default_log_config.clone();
    settings.apply_to(&mut broker_config);
    if broker_config.produce_discard {
        tracing::warn!("sluice.produce.discard=true: produce requests are acknowledged and DISCARDED (benchmark mode)");
    }
    let broker_config = Arc::new(broker_config);
    let listen = args.listen;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<usize, String>>();
    let pool_config = ShardPoolConfig { shard_count, name: "sluice-shard".into(), io_memory_bytes: IO_MEMORY_BYTES };
    let pool = ShardPool::start(&pool_config, move |shard, mesh| {
        let options = options.clone();
        let image = image.clone();
        let broker_config = broker_config.clone();
        let report = ReadyReport { shard, tx: Some(ready_tx.clone()) };
        async move {
            let defaults = broker_config.default_log_config.clone();
            // The internal offsets topic is not in the metadata image (clients cannot produce to
            // or fetch it); its partitions open with their own config.
            let config_for = |topic: &str| {
                image.log_config(topic, &defaults).or_else(|| {
                    (topic == sluice_net::group::offsets_log::OFFSETS_TOPIC)
                        .then(|| sluice_net::group::offsets_log::offsets_topic_log_config(&defaults))
                })
            };
            let storage = match ShardStorage::open(shard, shard_count, options, clean, &config_for).await {
                Ok(s) => s,
                Err(e) => {
                    report.send(Err(format!("shard {shard}: {e}")));
                    return;
                }
            };
            let listener = match sluice_net::server::bind(listen) {
                Ok(l) => l,
                Err(e) => {
                    report.send(Err(format!("shard {shard}: cannot listen on {listen}: {e}")));
                    let _ = storage.close_all().await;
                    return;
                }
            };
            let ctx = Rc::new(ShardContext {
                shard,
                mesh,
                storage: storage.clone(),
                image: std::cell::RefCell::new(image.clone()),
                config: broker_config.clone(),
                controller_lock: glommio::sync::Semaphore::new(1),
            });
            ShardContext::install(ctx.clone());
            // Partitions of known topics that have no directory yet (new shard count, or a
            // crash between metadata commit and partition creation).
            let topics: Vec<(String, i32)> = image.topics.iter().map(|(n, t)| (n.clone(), t.partitions)).collect();
            for (topic, partitions) in topics {
                controller::ensure_partitions(&ctx, &topic, 0, partitions).await;
            }
            if let Err(e) = sluice_net::group::service::GroupShard::start(ctx.clone()).await {
                report.send(Err(format!("shard {shard}: cannot load consumer groups: {e}")));
                let _ = storage.close_all().await;
                return;
            }
            storage.spawn_background_tasks();
            glommio::spawn_local(sluice_net::server::serve(listener, ctx.clone())).detach();
            let partitions = storage.partitions().len();
            let stop = Watermark::new(0);
            STORAGE.with(|s| *s.borrow_mut() = Some(storage));
            STOP.with(|s| *s.borrow_mut() = Some(stop.clone()));
            report.send(Ok(partitions));
            let _ = stop.wait_for(1).await;
        }
    });
    let pool = match pool {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "could not start shards");
            return 1;
        }
    };
    // Every shard reports once (ReadyReport guarantees it), so this cannot wait forever.
    let mut partitions = 0;
    let mut failures = Vec::new();
    for _ in 0..shard_count {
        match ready_rx.recv() {
            Ok(Ok(n)) => partitions += n,
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push("start-up channel closed".to_string()),
        }
    }
    if !failures.is_empty() {
        for e in &failures {
            tracing::error!("start-up failed: {e}");
        }
        // Shards that did start hold open logs: close them properly, then stop.
        shutdown(&pool.mesh, shard_count);
        pool.join();
        return 1;
    }
    tracing::info!(
        data_dir = %args.data_dir.display(), listen = %args.listen, shards = shard_count, partitions, recovered = !clean,
        "sluice broker started"
    );
    let signal = wait_for_shutdown_signal();
    tracing::info!(signal, "shutting down");
    let all_closed = shutdown(&pool.mesh, shard_count);
    let joined = pool.join();
    if all_closed && joined.iter().all(|r| r.is_ok()) {
        if let Err(e) = write_clean_shutdown_marker(&args.data_dir) {
            tracing::error!(error = %e, "could not write the clean-shutdown marker");
            return 1;
        }
        tracing::info!("clean shutdown");
        0
    } else {
        tracing::error!("unclean shutdown: the next start will run recovery");
        1
    }
}

/// Makes any panic end the process. A panic on a shard thread kills its executor, and with it
/// every partition and connection the shard owns, while the process stays up: clients hang,
/// and a shutdown waits for that shard forever (seen once, from a writer bug). Kafka halts on
/// fatal errors; so does sluice: the message and backtrace are printed, then the process
/// aborts, so a supervisor restarts it and recovery runs.
fn abort_on_panic() {
    let print = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        print(info);
        crate::logging::fatal("a broker thread panicked; aborting (the next start runs recovery)");
        std::process::abort();
    }));
}

/// Closes every shard's logs and stops the shards. True if every shard closed cleanly.
fn shutdown(mesh: &sluice_engine::ShardMesh, shard_count: usize) -> bool {
    let mut all_ok = true;
    for shard in 0..shard_count {
        let rx = mesh.send(shard, || async {
            let storage = STORAGE.with(|s| s.borrow().clone());
            let result = match storage {
                Some(storage) => storage.close_all().await.map_err(|e| e.to_string()),
                None => Ok(()),
            };
            if let Some(stop) = STOP.with(|s| s.borrow().clone()) {
                stop.advance(1);
            }
            result
        });
        let result = match rx {
            Ok(rx) => futures::executor::block_on(rx).map_err(|_| "shard exited".to_string()).and_then(|r| r),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = result {
            tracing::error!(shard, error = %e, "shard did not close cleanly");
            all_ok = false;
        }
    }
    all_ok
}

/// The host clients are told to connect to: the listen address, or loopback for a wildcard.
fn advertised_host(listen: &SocketAddr) -> String {
    if listen.ip().is_unspecified() {
        "localhost".to_string()
    } else {
        listen.ip().to_string()
    }
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Blocks SIGINT/SIGTERM in this thread; threads spawned afterwards inherit the mask.
fn block_shutdown_signals() {
    let set = signal_set();
    // SAFETY: valid set; a null old-set pointer is allowed.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn wait_for_shutdown_signal() -> &'static str {
    let set = signal_set();
    let mut sig: libc::c_int = 0;
    // SAFETY: valid set and out-pointer; the signals are blocked so sigwait receives them.
    unsafe {
        libc::sigwait(&set, &mut sig);
    }
    if sig == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    }
}
