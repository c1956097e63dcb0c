//! `sluice broker`: starts one shard per core, opens the data dir, serves the Kafka protocol on
//! every shard (SO_REUSEPORT), and shuts down cleanly on SIGINT/SIGTERM, leaving the
//! clean-shutdown marker so the next start skips recovery.
//!
//! Owns: process lifecycle, in this order: settings → checks that change nothing (the data-dir
//! lock, the listen address) → storage options and the clean-shutdown marker → the shards'
//! phased start ([`crate::startup`]) → serving → shutdown. Signals are blocked in every thread
//! and taken with `sigwait` on the main thread — which is not a shard, so it may block.
//! Must never: change the data dir before every start-up check passed, let a shard accept a
//! client before every shard can answer, block on a shard thread, or write the clean-shutdown
//! marker unless every shard closed its logs cleanly.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use sluice_engine::checkpoint_file::{remove_leftover_temp_blocking, write_atomic_blocking};
use sluice_engine::data_dir_lock::{DataDirLock, DataDirLockError};
use sluice_engine::replica_state::ReplicaState;
use sluice_engine::shard::{available_cpus, ShardMesh, ShardPool, ShardPoolConfig, IO_MEMORY_BYTES};
use sluice_engine::shard_storage::{take_clean_shutdown_marker, write_clean_shutdown_marker, CLEAN_SHUTDOWN_MARKER};
use sluice_engine::watermark::Watermark;
use sluice_engine::{ShardStorage, StorageOptions};
use sluice_net::broker_config::BrokerConfig;
use sluice_net::controller;
use sluice_net::controller_quorum::{self, QuorumConfig};
use sluice_net::metadata_image::{ListenerEndpoint, MetadataImage};
use sluice_net::security::protocol::SecurityProtocol;
use sluice_net::server::ClientListener;
use sluice_net::shard_context::ShardContext;

use crate::broker_config::{self, BrokerSettings};
use crate::startup::{ShardReporter, StartupBarrier};

#[derive(Args, Debug)]
pub struct BrokerArgs {
    /// Directory holding the partition logs [default: log.dirs from --config/--set, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address Kafka clients connect to [default: listeners from --config/--set, else
    /// 127.0.0.1:9092].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Shards (one per core); defaults to every available CPU.
    #[arg(long)]
    pub cores: Option<usize>,
    /// Kafka-style properties file (broker names like log.segment.bytes, or topic names).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// One setting, `key=value`; repeatable; applied after --config.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Prometheus metrics, /healthz and /readyz on this address, or `none` [default:
    /// sluice.metrics.addr from --config/--set, else 127.0.0.1:9644 (skipped with a warning if
    /// that default is taken)].
    #[arg(long, value_name = "ADDR|none")]
    pub metrics_addr: Option<String>,
    /// Print the effective configuration, each value with its source (default, the --config
    /// file, --set, or a flag), and exit without touching anything.
    #[arg(long)]
    pub print_config: bool,
}

/// Exit codes of `sluice broker`.
pub mod exit_code {
    /// Stopped cleanly.
    pub const OK: i32 = 0;
    /// Start-up or shutdown failed (storage, metadata, a shard); the log says why.
    pub const FAILED: i32 = 1;
    /// Invalid flags or configuration; nothing was touched.
    pub const INVALID_CONFIG: i32 = 2;
    /// The data dir is locked or the address is taken by another live process; nothing was
    /// touched.
    pub const IN_USE: i32 = 3;
}

const DEFAULT_DATA_DIR: &str = "./data";
const DEFAULT_LISTEN: &str = "127.0.0.1:9092";
const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9644";
/// How long a metadata command may wait for the quorum (Kafka's forwarding uses the client's
/// request timeout, 30 s by default).
const QUORUM_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Longest a SIGTERM waits for the controller to move this broker's leaderships.
const CONTROLLED_SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

thread_local! {
    static STORAGE: RefCell<Option<Rc<ShardStorage>>> = const { RefCell::new(None) };
    static STOP: RefCell<Option<Rc<Watermark>>> = const { RefCell::new(None) };
}

/// Everything start-up needs, decided from flags and settings before anything is touched.
pub(crate) struct StartPlan {
    pub(crate) data_dir: PathBuf,
    /// Every client listener; `listen` is the inter-broker one's address.
    pub(crate) listeners: Vec<ClientListener>,
    pub(crate) listen: SocketAddr,
    pub(crate) shard_count: usize,
    storage: StorageOptions,
    pub(crate) broker_config: BrokerConfig,
    reader_cache_fds_per_shard: usize,
    segment_cache_fds_per_shard: usize,
    /// A clustered node's quorum settings (`None`: the embedded one-node controller).
    quorum: Option<QuorumConfig>,
    /// The metrics endpoint's address (`None`: disabled), and whether it was asked for
    /// explicitly (a taken default is skipped with a warning; a taken explicit one fails).
    pub(crate) metrics_addr: Option<SocketAddr>,
    metrics_addr_explicit: bool,
    pub(crate) hot_keys_enabled: bool,
    pub(crate) max_connections: usize,
}

pub(crate) fn settings_from(args: &BrokerArgs) -> Result<BrokerSettings, String> {
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
    // Bounds across settings, once the file and the overrides are both in.
    settings.group_config.consumer.validate()?;
    Ok(settings)
}

/// Resolves `host:port` (empty host: every interface). Blocks on DNS: main thread only.
fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("listeners: cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("listeners: {host} resolves to no address"))
}

impl StartPlan {
    /// Flags win over `--config`/`--set` (as a command line does over a file).
    pub(crate) fn new(args: &BrokerArgs) -> Result<StartPlan, String> {
        let settings = settings_from(args)?;
        let shard_count = args.cores.unwrap_or_else(available_cpus);
        if shard_count == 0 || shard_count > 1024 {
            return Err(format!("--cores must be between 1 and 1024, got {shard_count}"));
        }
        let data_dir = args
            .data_dir
            .clone()
            .or_else(|| settings.log_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let node_id = settings.node_id.unwrap_or(1);
        let resolved = settings.listeners.resolve(node_id)?;
        let quorum_plan = settings.listeners.quorum(node_id)?;
        // (listener, advertised endpoint); `--listen` replaces the inter-broker listener's
        // address (the only one without `listeners`).
        let mut client: Vec<(ClientListener, ListenerEndpoint)> = Vec::new();
        let inter_broker = match &resolved {
            None => {
                let addr = args.listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
                let name = SecurityProtocol::Plaintext.name().to_string();
                let advertised =
                    ListenerEndpoint { name: name.clone(), host: advertised_host(&addr), port: addr.port() as i32 };
                client.push((
                    ClientListener { name, protocol: SecurityProtocol::Plaintext, addr, tls: None },
                    advertised,
                ));
                0
            }
            Some(resolved) => {
                for (i, endpoint) in resolved.endpoints.iter().enumerate() {
                    let flag = args.listen.filter(|_| i == resolved.inter_broker);
                    let addr = match flag {
                        Some(flag) => flag,
                        None => resolve(&endpoint.listen.host, endpoint.listen.port)?,
                    };
                    let name = endpoint.listen.name.clone();
                    let (host, port) = match (&endpoint.advertised, flag) {
                        (Some(advertised), None) => (advertised.host.clone(), advertised.port),
                        _ => (advertised_host(&addr), addr.port()),
                    };
                    let tls = match endpoint.protocol.uses_tls() {
                        true => Some(settings.tls.build(&name)?),
                        false => None,
                    };
                    let advertised = ListenerEndpoint { name: name.clone(), host, port: port as i32 };
                    client.push((ClientListener { name, protocol: endpoint.protocol, addr, tls }, advertised));
                }
                resolved.inter_broker
            }
        };
        for (i, (a, _)) in client.iter().enumerate() {
            if let Some((b, _)) = client[..i].iter().find(|(b, _)| b.addr == a.addr) {
                return Err(format!("listeners: {} and {} both listen on {}", b.name, a.name, a.addr));
            }
        }
        let listen = client[inter_broker].0.addr;
        let advertised_host = client[inter_broker].1.host.clone();
        let advertised_port = client[inter_broker].1.port as u16;
        let advertised_listeners: Vec<ListenerEndpoint> = client.iter().map(|(_, a)| a.clone()).collect();
        let listeners: Vec<ClientListener> = client.into_iter().map(|(l, _)| l).collect();
        let mut storage = StorageOptions::new(&data_dir);
        if let Some(b) = settings.memory_budget_bytes {
            storage.memory_budget_bytes = b;
        }
        if let Some(bytes) = settings.tail_cache_bytes {
            storage.log_options.tail_cache_bytes = bytes;
        }
        if let Some(fill) = settings.tail_cache_fill {
            storage.log_options.tail_cache_fill = fill;
        }
        if let Some(bytes) = settings.preallocate_max_step_bytes {
            storage.log_options.writer.preallocate_max_step_bytes = bytes;
        }
        if let Some(direct) = settings.direct_io {
            storage.log_options.direct_io = direct;
        }
        if let Some(ms) = settings.producer_id_expiration_ms {
            storage.log_options.producer_id_expiration_ms = ms;
        }
        if let Some(ms) = settings.retention_check_interval_ms {
            storage.retention_check_interval_ms = ms;
        }
        if let Some(enabled) = settings.cleaner_enabled {
            storage.cleaner.enabled = enabled;
        }
        if let Some(ms) = settings.cleaner_backoff_ms {
            storage.cleaner.backoff_ms = ms;
        }
        // Kafka's log.cleaner.dedupe.buffer.size is shared by the cleaner threads; here by the
        // shards, one cleaner each.
        let dedupe_bytes = settings.cleaner_dedupe_buffer_bytes.unwrap_or(storage.cleaner.dedupe_buffer_bytes);
        storage.cleaner.dedupe_buffer_bytes = (dedupe_bytes / shard_count).max(1);
        let mut broker_config = BrokerConfig::new(data_dir.clone(), advertised_host, advertised_port as i32);
        broker_config.advertised_listeners = advertised_listeners;
        broker_config.default_log_config = settings.default_log_config.clone();
        settings.apply_to(&mut broker_config);
        let quorum = match quorum_plan {
            None => None,
            Some(plan) => {
                let controller_listen = match &plan.controller_listener {
                    Some(l) => Some(resolve(&l.host, l.port)?),
                    None => None,
                };
                if let Some(l) = listeners.iter().find(|l| Some(l.addr) == controller_listen) {
                    return Err(format!(
                        "the CONTROLLER listener and the client listener {} are both {}",
                        l.name, l.addr
                    ));
                }
                let config = QuorumConfig {
                    node_id,
                    voters: plan.voters,
                    is_controller: plan.is_controller,
                    controller_listen,
                    election_timeout_ms: settings.election_timeout_ms.unwrap_or(1000),
                    fetch_timeout_ms: settings.fetch_timeout_ms.unwrap_or(2000),
                    heartbeat_interval_ms: settings.heartbeat_interval_ms.unwrap_or(2000),
                    session_timeout_ms: settings.session_timeout_ms.unwrap_or(9000),
                    request_timeout_ms: QUORUM_REQUEST_TIMEOUT_MS,
                    snapshot_entries: settings.metadata_snapshot_entries.unwrap_or(10_000),
                    rack: settings.broker_rack.clone(),
                    leader_rebalance_interval_ms: settings
                        .auto_leader_rebalance
                        .unwrap_or(true)
                        .then(|| settings.leader_imbalance_check_interval_s.unwrap_or(300).saturating_mul(1000)),
                    leader_imbalance_percentage: settings.leader_imbalance_percentage.unwrap_or(10),
                    metadata_dir: data_dir.join(controller_quorum::METADATA_LOG_DIR),
                    default_log_config: settings.default_log_config.clone(),
                };
                if config.fetch_timeout_ms <= (config.election_timeout_ms / 4).max(10) {
                    return Err("controller.quorum.fetch.timeout.ms must exceed the leader's heartbeat \
                         (a quarter of controller.quorum.election.timeout.ms, at least 10 ms)"
                        .into());
                }
                if config.heartbeat_interval_ms >= config.session_timeout_ms {
                    return Err("broker.heartbeat.interval.ms must be below broker.session.timeout.ms".into());
                }
                broker_config.quorum = Some(Arc::new(config.clone()));
                Some(config)
            }
        };
        // Descriptors: connections get a quarter of the open-files limit, sealed segment files a
        // quarter and sendfile handles an eighth; the rest is for the active segments (one per
        // partition) and everything else.
        let open_files = open_files_limit();
        let max_connections = settings.max_connections.unwrap_or((open_files / 4).max(64));
        broker_config.max_connections_per_shard =
            max_connections.div_ceil(shard_count).min(sluice_net::server::MAX_CONNECTIONS_PER_SHARD);
        let metrics_from_flag = match &args.metrics_addr {
            Some(flag) => Some(broker_config::parse_metrics_addr(flag).map_err(|e| format!("--metrics-addr: {e}"))?),
            None => None,
        };
        let metrics_addr_explicit = metrics_from_flag.is_some() || settings.metrics_addr.is_some();
        let metrics_addr = metrics_from_flag
            .or(settings.metrics_addr)
            .unwrap_or_else(|| Some(DEFAULT_METRICS_ADDR.parse().expect("valid default")));
        let reader_cache_fds = settings.reader_cache_fds.unwrap_or((open_files / 8).max(16));
        let segment_cache_fds = settings.segment_cache_fds.unwrap_or((open_files / 4).max(16));
        Ok(StartPlan {
            data_dir,
            listeners,
            listen,
            shard_count,
            storage,
            broker_config,
            reader_cache_fds_per_shard: reader_cache_fds.div_ceil(shard_count),
            segment_cache_fds_per_shard: segment_cache_fds.div_ceil(shard_count),
            quorum,
            metrics_addr,
            metrics_addr_explicit,
            hot_keys_enabled: settings.hot_keys_enabled.unwrap_or(true),
            max_connections,
        })
    }
}

/// Runs the broker until a signal; returns the process exit code ([`exit_code`]).
pub fn run(args: BrokerArgs) -> i32 {
    // The limit decides how many descriptors connections and sendfile handles may take.
    raise_open_files_limit();
    if args.print_config {
        return match crate::print_config::render(&args) {
            Ok(text) => {
                print!("{text}");
                exit_code::OK
            }
            Err(e) => {
                tracing::error!("invalid configuration: {e}");
                exit_code::INVALID_CONFIG
            }
        };
    }
    // Before any shard runs: the first checksum would otherwise time the paths on a shard.
    let crc = sluice_engine::crc::calibrate();
    tracing::info!(
        path = ?crc.path,
        dedicated_gb_per_s = format!("{:.1}", crc.dedicated_gb_per_s),
        folding_gb_per_s = format!("{:.1}", crc.folding_gb_per_s),
        "CRC-32C code path chosen"
    );
    let mut plan = match StartPlan::new(&args) {
        Ok(plan) => plan,
        Err(e) => {
            tracing::error!("invalid configuration: {e}");
            return exit_code::INVALID_CONFIG;
        }
    };
    if let Err(e) = crate::fault_points::install_abort_in_atomic_write()
        .and_then(|()| crate::fault_points::install_abort_in_cleaner())
        .and_then(|()| crate::fault_points::install_abort_in_seal())
    {
        tracing::error!("invalid fault point: {e}");
        return exit_code::INVALID_CONFIG;
    }
    match crate::storage_format::take_bootstrap_credentials(&plan.data_dir) {
        Ok(commands) => {
            let _ = BOOTSTRAP_CREDENTIALS.set(commands);
        }
        Err(e) => {
            tracing::error!("cannot read the credentials of `sluice storage format`: {e}");
            return exit_code::INVALID_CONFIG;
        }
    }
    // Checks that change nothing come first: a refused start leaves the data dir as it was
    // (its clean-shutdown marker included).
    let _lock = match DataDirLock::acquire(&plan.data_dir) {
        Ok(lock) => lock,
        Err(e @ DataDirLockError::InUse(_)) => {
            tracing::error!(data_dir = %plan.data_dir.display(), "cannot use data dir: {e}");
            return exit_code::IN_USE;
        }
        Err(e) => {
            tracing::error!(data_dir = %plan.data_dir.display(), "cannot use data dir: {e}");
            return exit_code::FAILED;
        }
    };
    for listener in &plan.listeners {
        if let Err(e) = sluice_net::server::check_address_free(listener.addr) {
            tracing::error!(listener = %listener.name, listen = %listener.addr, error = %e, "cannot listen (is another broker running there?)");
            return exit_code::IN_USE;
        }
    }
    if let Some(addr) = plan.metrics_addr {
        if let Err(e) = sluice_net::server::check_address_free(addr) {
            if plan.metrics_addr_explicit {
                tracing::error!(%addr, error = %e, "cannot serve metrics there (--metrics-addr, sluice.metrics.addr)");
                return exit_code::IN_USE;
            }
            tracing::warn!(%addr, error = %e, "the default metrics address is taken; serving no metrics (set --metrics-addr)");
            plan.metrics_addr = None;
        }
    }
    if let Some(listen) = plan.quorum.as_ref().and_then(|q| q.controller_listen) {
        if let Err(e) = sluice_net::server::check_address_free(listen) {
            tracing::error!(%listen, error = %e, "cannot listen on the CONTROLLER listener");
            return exit_code::IN_USE;
        }
    }
    // A clustered node's image is the quorum's state machine (`__cluster_metadata-0/`), not
    // `metadata.json`.
    let mut quorum_state = None;
    let loaded = match &plan.quorum {
        Some(quorum) => controller_quorum::state_machine::StateMachine::load(
            &quorum.metadata_dir,
            quorum.default_log_config.clone(),
        )
        .map(|state| {
            let image = state.image().clone();
            quorum_state = Some(state);
            image
        })
        .map_err(|e| e.to_string()),
        None => controller::load_or_init(&plan.data_dir),
    };
    let image = match loaded {
        Ok(image) => image,
        Err(e) => {
            tracing::error!("cannot read cluster metadata: {e}");
            return exit_code::FAILED;
        }
    };

    // From here on start-up may change the data dir. A crash inside a durable write left its
    // temp file: the final name holds the old or the new contents whole, the temp file neither.
    // (Partition directories drop theirs when they open.)
    let metadata_path = controller::metadata_path(&plan.data_dir);
    for path in [metadata_path.clone(), plan.data_dir.join(CLEAN_SHUTDOWN_MARKER)] {
        if let Err(e) = remove_leftover_temp_blocking(&path) {
            tracing::error!(path = %path.display(), error = %e, "cannot remove the temp file of an interrupted write");
            return exit_code::FAILED;
        }
    }
    if !metadata_path.exists() && plan.quorum.is_none() {
        // Persist the new cluster id before anything else so it never changes.
        let json = serde_json::to_vec_pretty(&image).expect("metadata serializes");
        if let Err(e) = write_atomic_blocking(&metadata_path, &json) {
            tracing::error!(error = %e, "cannot write cluster metadata");
            return exit_code::FAILED;
        }
    }
    // A clustered node: the controller thread starts (after the signal mask, which it
    // inherits), then this broker registers and catches up before any shard starts; the shards
    // start from the image as of its registration.
    let image = match (plan.quorum.clone(), quorum_state) {
        (Some(quorum), Some(state)) => {
            if metadata_path.exists() {
                tracing::warn!(
                    path = %metadata_path.display(),
                    "a one-node metadata file is in this data dir; a clustered node ignores it (its metadata is the quorum's)"
                );
            }
            block_shutdown_signals();
            if let Err(e) = controller_quorum::node::start(quorum.clone(), state) {
                tracing::error!("cannot start the controller quorum: {e}");
                return exit_code::FAILED;
            }
            let registration = sluice_net::metadata_image::BrokerRegistration {
                id: plan.broker_config.node_id,
                host: plan.broker_config.advertised_host.clone(),
                port: plan.broker_config.advertised_port,
                rack: quorum.rack.clone(),
                fenced: false,
                listeners: plan.broker_config.advertised_listeners.clone(),
            };
            match controller_quorum::registration::register_blocking(registration, shutdown_signal_pending) {
                Ok((image, _)) => image,
                Err(e) => {
                    // Nothing was opened: a signal before registration is a clean stop.
                    tracing::warn!("{e}");
                    return if shutdown_signal_pending() { exit_code::OK } else { exit_code::FAILED };
                }
            }
        }
        _ => image,
    };
    let clean = match take_clean_shutdown_marker(&plan.data_dir) {
        Ok(clean) => clean,
        Err(e) => {
            tracing::error!(data_dir = %plan.data_dir.display(), error = %e, "cannot use data dir");
            return exit_code::FAILED;
        }
    };
    block_shutdown_signals();
    abort_on_panic();
    if plan.broker_config.produce_discard {
        tracing::warn!("sluice.produce.discard=true: produce requests are acknowledged and DISCARDED (benchmark mode)");
    }
    let (data_dir, listen, shard_count) = (plan.data_dir.clone(), plan.listen, plan.shard_count);
    let listeners: Vec<String> =
        plan.listeners.iter().map(|l| format!("{}://{} ({})", l.name, l.addr, l.protocol)).collect();
    let barrier = StartupBarrier::new(shard_count);
    let pool = start_shards(plan, image, clean, &barrier);
    let pool = match pool {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "could not start shards");
            return exit_code::FAILED;
        }
    };
    let partitions = match barrier.run() {
        Ok(partitions) => partitions,
        Err(failures) => {
            for e in &failures {
                tracing::error!("start-up failed: {e}");
            }
            // Shards closed what they had opened; those still running stop with the rest.
            shutdown(&pool.mesh, shard_count);
            pool.join();
            return exit_code::FAILED;
        }
    };
    tracing::info!(
        data_dir = %data_dir.display(), listen = %listen, listeners = %listeners.join(","), shards = shard_count, partitions, recovered = !clean,
        "sluice broker started"
    );
    let signal = wait_for_shutdown_signal();
    tracing::info!(signal, "shutting down");
    exit_at_second_signal();
    if let Some(delay) = crate::fault_points::shutdown_delay() {
        std::thread::sleep(delay);
    }
    controller::controlled_shutdown_blocking(CONTROLLED_SHUTDOWN_WAIT);
    let all_closed = shutdown(&pool.mesh, shard_count);
    let joined = pool.join();
    if all_closed && joined.iter().all(|r| r.is_ok()) {
        if let Err(e) = write_clean_shutdown_marker(&data_dir) {
            tracing::error!(error = %e, "could not write the clean-shutdown marker");
            return exit_code::FAILED;
        }
        tracing::info!("clean shutdown");
        exit_code::OK
    } else {
        tracing::error!("unclean shutdown: the next start will run recovery");
        exit_code::FAILED
    }
}

/// Starts one executor per shard, each running [`shard_main`].
fn start_shards(
    plan: StartPlan,
    image: MetadataImage,
    clean: bool,
    barrier: &StartupBarrier,
) -> std::io::Result<ShardPool<()>> {
    let pool_config = ShardPoolConfig {
        shard_count: plan.shard_count,
        name: "sluice-shard".into(),
        io_memory_bytes: IO_MEMORY_BYTES,
    };
    let reporters: Vec<_> = (0..plan.shard_count).map(|shard| barrier.reporter(shard)).collect();
    let reporters = Arc::new(std::sync::Mutex::new(reporters.into_iter().map(Some).collect::<Vec<_>>()));
    let shared = Arc::new(ShardPlan {
        shard_count: plan.shard_count,
        listeners: plan.listeners.into_iter().map(Arc::new).collect(),
        storage: plan.storage,
        image,
        clean,
        broker_config: Arc::new(plan.broker_config),
        reader_cache_fds: plan.reader_cache_fds_per_shard,
        segment_cache_fds: plan.segment_cache_fds_per_shard,
        metrics_addr: plan.metrics_addr,
        metrics_addr_explicit: plan.metrics_addr_explicit,
        hot_keys_enabled: plan.hot_keys_enabled,
    });
    ShardPool::start(&pool_config, move |shard, mesh| {
        let plan = shared.clone();
        // Start-up hand-off of each shard's reporter (not on the data path).
        let reporter = reporters.lock().expect("start-up").get_mut(shard).and_then(Option::take).expect("reporter");
        shard_main(shard, mesh, plan, reporter)
    })
}

/// What every shard starts from (shared, read-only).
struct ShardPlan {
    shard_count: usize,
    listeners: Vec<Arc<ClientListener>>,
    storage: StorageOptions,
    image: MetadataImage,
    clean: bool,
    broker_config: Arc<BrokerConfig>,
    reader_cache_fds: usize,
    segment_cache_fds: usize,
    metrics_addr: Option<SocketAddr>,
    /// The address was asked for (a flag or setting): failing to bind it fails the start.
    metrics_addr_explicit: bool,
    hot_keys_enabled: bool,
}

/// One shard's life: the start-up phases ([`crate::startup::PHASES`]), then serving until the
/// main thread's shutdown closes its logs.
async fn shard_main(shard: usize, mesh: ShardMesh, plan: Arc<ShardPlan>, mut reporter: ShardReporter) {
    // The metrics endpoint serves /healthz from the start (and /readyz 503 until start-up ends).
    sluice_net::metrics::set_hot_keys_enabled(plan.hot_keys_enabled);
    if let (controller::CONTROLLER_SHARD, Some(addr)) = (shard, plan.metrics_addr) {
        match sluice_net::metrics::http::bind(addr) {
            Ok(listener) => {
                let bound = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
                tracing::info!(addr = %bound, "metrics endpoint listening (/metrics, /healthz, /readyz)");
                glommio::spawn_local(sluice_net::metrics::http::serve(listener, plan.broker_config.clone())).detach();
            }
            Err(e) if plan.metrics_addr_explicit => {
                return reporter.fail(format!("cannot serve metrics on {addr}: {e}"))
            }
            // The default address, taken since the check at start (another broker on this
            // host): serve without metrics, as when it was taken before.
            Err(e) => {
                tracing::warn!(%addr, error = %e, "the default metrics address is taken; serving no metrics (set --metrics-addr)")
            }
        }
    }
    // Phase "storage": open the partitions this shard owns, install the context.
    sluice_engine::reader_cache::set_capacity(plan.reader_cache_fds);
    sluice_engine::segment_file::set_capacity(plan.segment_cache_fds);
    if let Some(delay) = crate::fault_points::shard_open_delay(shard) {
        glommio::timer::sleep(delay).await;
    }
    let defaults = plan.broker_config.default_log_config.clone();
    // The internal topics are not in the metadata image (clients cannot produce to or
    // fetch it); its partitions open with their own config.
    let config_for = |topic: &str| {
        plan.image.log_config(topic, &defaults).or_else(|| {
            (topic == sluice_net::group::offsets_log::OFFSETS_TOPIC
                || topic == sluice_net::txn::state_log::TXN_STATE_TOPIC)
                .then(|| sluice_net::internal_topic::internal_topic_log_config(&defaults))
        })
    };
    let storage = match ShardStorage::open(shard, plan.shard_count, plan.storage.clone(), plan.clean, &config_for).await
    {
        Ok(s) => s,
        Err(e) => return reporter.fail(e.to_string()),
    };
    let ctx = Rc::new(ShardContext {
        shard,
        mesh,
        storage: storage.clone(),
        image: RefCell::new(plan.image.clone()),
        config: plan.broker_config.clone(),
        controller_lock: glommio::sync::Semaphore::new(1),
        single_node_replica_state: Rc::new(ReplicaState::single_node(plan.broker_config.node_id)),
        replica_states: RefCell::new(Default::default()),
        fetch_sessions: ShardContext::new_fetch_sessions(plan.broker_config.fetch_sessions, shard, plan.shard_count),
    });
    ctx.refresh_replica_states();
    ShardContext::install(ctx.clone());
    if !reporter.barrier(0).await {
        let _ = storage.close_all().await;
        return;
    }

    // Phase "partitions and groups": every shard can answer calls from here on. Partitions of
    // known topics that have no directory yet (new shard count, or a crash between metadata
    // commit and partition creation), then the consumer groups this shard coordinates.
    let topics: Vec<(String, i32)> = plan.image.topics.iter().map(|(n, t)| (n.clone(), t.partitions)).collect();
    for (topic, partitions) in topics {
        controller::ensure_partitions(&ctx, &topic, 0, partitions).await;
    }
    sluice_net::replication::reconcile(&ctx);
    if let Err(e) = sluice_net::group::service::GroupShard::start(ctx.clone()).await {
        reporter.fail(format!("cannot load consumer groups: {e}"));
        let _ = storage.close_all().await;
        return;
    }
    if let Err(e) = sluice_net::txn::service::TxnShard::start(ctx.clone()).await {
        reporter.fail(format!("cannot load transactions: {e}"));
        let _ = storage.close_all().await;
        return;
    }
    if !reporter.barrier(storage.partitions().len()).await {
        let _ = storage.close_all().await;
        return;
    }
    // Phase "listeners": bind every client listener; accept clients once every shard is bound.
    let mut bound = Vec::with_capacity(plan.listeners.len());
    for spec in &plan.listeners {
        match sluice_net::server::bind(spec.addr) {
            Ok(l) => bound.push((l, spec.clone())),
            Err(e) => {
                reporter.fail(format!("cannot listen on {} ({}): {e}", spec.addr, spec.name));
                let _ = storage.close_all().await;
                return;
            }
        }
    }
    if !reporter.barrier(storage.partitions().len()).await {
        let _ = storage.close_all().await;
        return;
    }
    reporter.finish();
    if shard == controller::CONTROLLER_SHARD {
        sluice_net::metrics::http::set_started(); // every shard passed every phase
                                                  // A clustered node: metadata committed since its registration reaches every shard from
                                                  // here on (started once start-up can no longer fail; the channel holds it meanwhile).
        sluice_net::controller_quorum::bridge::start(ctx.clone());
        if let Some(commands) = BOOTSTRAP_CREDENTIALS.get().filter(|c| !c.is_empty()) {
            glommio::spawn_local(commit_bootstrap_credentials(commands.clone(), ctx.config.data_dir.clone())).detach();
        }
    }
    storage.spawn_background_tasks();
    let open_connections = Rc::new(std::cell::Cell::new(0usize));
    for (listener, spec) in bound {
        glommio::spawn_local(sluice_net::server::serve(listener, spec, open_connections.clone(), ctx.clone())).detach();
    }
    let stop = Watermark::new(0);
    STORAGE.with(|s| *s.borrow_mut() = Some(storage));
    STOP.with(|s| *s.borrow_mut() = Some(stop.clone()));
    let _ = stop.wait_for(1).await;
}

/// The SCRAM users `sluice storage format` left for this start (read before the shards start).
static BOOTSTRAP_CREDENTIALS: std::sync::OnceLock<Vec<sluice_net::security::image::SecurityCommand>> =
    std::sync::OnceLock::new();

/// Commits the credentials `storage format` prepared, then marks them applied. In a cluster
/// the quorum may need a moment: each is retried for up to a minute. (Clients that try to
/// authenticate in the first moments after start may not find the user yet.)
async fn commit_bootstrap_credentials(commands: Vec<sluice_net::security::image::SecurityCommand>, data_dir: PathBuf) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for command in commands {
        loop {
            match controller::submit(sluice_net::metadata_image::MetadataCommand::Security(command.clone())).await {
                Ok(()) => break,
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e.message, "bootstrap credential not committed yet; retrying");
                    glommio::timer::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e.message, "could not commit a bootstrap SCRAM credential");
                    return;
                }
            }
        }
    }
    let _ = glommio::executor()
        .spawn_blocking(move || crate::storage_format::bootstrap_credentials_applied(&data_dir))
        .await;
    tracing::info!("SCRAM credentials of `sluice storage format` committed");
}

/// The soft limit on open files.
fn open_files_limit() -> usize {
    // SAFETY: getrlimit with a valid out-struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
    }
}

/// Raises the soft limit on open files to the hard limit (as Kafka's packaging asks operators
/// to): partitions, segments and connections each hold descriptors.
fn raise_open_files_limit() {
    // SAFETY: getrlimit/setrlimit with a valid struct; no memory is retained.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur < limit.rlim_max {
            let previous = limit.rlim_cur;
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                tracing::info!(from = previous, to = limit.rlim_max, "raised the open-files limit");
            }
        }
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

/// Whether SIGINT/SIGTERM arrived (they are blocked, so they wait as pending until
/// [`wait_for_shutdown_signal`]). Does not block: start-up phases that may wait long ask it.
fn shutdown_signal_pending() -> bool {
    let watched = signal_set();
    // SAFETY: sigset_t is plain data; sigpending fills it.
    unsafe {
        let mut pending: libc::sigset_t = std::mem::zeroed();
        if libc::sigpending(&mut pending) != 0 {
            return false;
        }
        [libc::SIGINT, libc::SIGTERM]
            .iter()
            .any(|s| libc::sigismember(&pending, *s) == 1 && libc::sigismember(&watched, *s) == 1)
    }
}

/// After the first signal: a thread that waits for another one and then exits at once, without
/// the clean-shutdown marker (the next start runs recovery) — for an operator who will not wait
/// for a slow shutdown.
fn exit_at_second_signal() {
    let spawned = std::thread::Builder::new().name("sluice-second-signal".into()).spawn(|| {
        let signal = wait_for_shutdown_signal();
        crate::logging::fatal(&format!(
            "second signal ({signal}) during shutdown: exiting now, without a clean shutdown"
        ));
        std::process::exit(exit_code::FAILED);
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch for a second signal");
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
