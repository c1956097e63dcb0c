//! The controller thread: one std thread running a tokio current-thread runtime (see the
//! module doc of [`super`] for why), holding this node's part of the quorum — the openraft
//! instance on a voter, the fetch loop on a broker-only node — and serving the shards' calls.
//!
//! Owns: submitting commands (on the active controller: placement, then a raft write; elsewhere:
//! forwarded to it, at most two hops, retried while no leader is known until the request
//! timeout), heartbeats (this broker's, and on the active controller everyone's), fencing
//! brokers whose session expired and unfencing those that come back, controlled shutdown, and
//! the answers to peers' RPCs. (A broker-only node's fetch loop is in
//! [`super::metadata_fetcher`], start-up registration in [`super::registration`].) Must never: be called from a shard except through
//! [`QuorumHandle`]'s bounded queue, or fence a broker on a node that is not the active
//! controller.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::storage::Adaptor;
use openraft::{BasicNode, Raft, ServerState, SnapshotPolicy};
use tokio::sync::{mpsc, oneshot};

use super::broker_liveness::BrokerLiveness;
use super::log_store::LogStore;
use super::network::NetworkFactory;
use super::rpc::{Pool, Request, Response};
use super::state_machine::{Applied, StateMachine};
use super::store::Store;
use super::{set_active_controller, MetadataRaft, QuorumConfig, Submitted};
use crate::metadata_image::{codes, MetadataCommand, MetadataError};

/// Calls queued from the shards (bounded: a full queue is REQUEST_TIMED_OUT, not a wait).
pub const CALL_QUEUE: usize = 1024;
/// Committed commands queued for the shards' bridge.
pub const APPLIED_QUEUE: usize = 1024;
/// The most log entries one AppendEntries carries (openraft's default is 300).
const MAX_PAYLOAD_ENTRIES: u64 = 8;
/// The largest metadata command, as JSON: `MAX_PAYLOAD_ENTRIES` of them fit one CONTROLLER
/// frame ([`super::rpc::MAX_FRAME_BYTES`], 64 MiB) with room to spare. A topic of the most
/// partitions (10,000) with five replicas each is about 2 MB.
const MAX_COMMAND_BYTES: usize = 6 << 20;
const _: () = assert!(MAX_PAYLOAD_ENTRIES as usize * MAX_COMMAND_BYTES < super::rpc::MAX_FRAME_BYTES);
/// How often the active controller looks for expired sessions, and a broker-only node polls.
pub(super) const TICK: Duration = Duration::from_millis(100);

/// A call from a shard.
pub enum Call {
    /// `timeout`: how long to keep trying to reach an active controller (then
    /// REQUEST_TIMED_OUT).
    Submit { command: MetadataCommand, timeout: Duration, reply: oneshot::Sender<Result<Submitted, MetadataError>> },
    /// Stop heartbeating and fence this broker (its leaderships move), within `wait`.
    ControlledShutdown { wait: Duration, reply: oneshot::Sender<Result<(), MetadataError>> },
}

/// The shards' way in: a bounded queue to the controller thread.
pub struct QuorumHandle {
    pub calls: mpsc::Sender<Call>,
}

static HANDLE: OnceLock<QuorumHandle> = OnceLock::new();
/// The receiving end of committed commands and the index the shards start from, taken once
/// by shard 0's bridge.
pub(super) static APPLIED: Mutex<Option<(mpsc::Receiver<Applied>, u64)>> = Mutex::new(None);

pub fn handle() -> Option<&'static QuorumHandle> {
    HANDLE.get()
}

pub fn take_applied_receiver() -> Option<(mpsc::Receiver<Applied>, u64)> {
    APPLIED.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// The state machine, shared with the main thread's start-up ([`super::registration`]).
pub(super) static STATE: OnceLock<Arc<Mutex<StateMachine>>> = OnceLock::new();

fn not_controller(message: impl Into<String>) -> MetadataError {
    MetadataError::new(codes::NOT_CONTROLLER, message)
}

/// Starts the controller thread with the state machine loaded at start-up, and waits (at most
/// `request_timeout_ms`) until it listens and its raft instance runs. Main thread only.
pub fn start(config: QuorumConfig, state: StateMachine) -> Result<(), String> {
    let (applied_tx, applied_rx) = mpsc::channel(APPLIED_QUEUE);
    let (calls_tx, calls_rx) = mpsc::channel(CALL_QUEUE);
    *APPLIED.lock().unwrap_or_else(|p| p.into_inner()) = Some((applied_rx, state.last_applied_index()));
    let state = Arc::new(Mutex::new(state));
    STATE.set(state.clone()).map_err(|_| "the controller thread runs already".to_string())?;
    HANDLE.set(QuorumHandle { calls: calls_tx }).map_err(|_| "the controller thread runs already".to_string())?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let wait = Duration::from_millis(config.request_timeout_ms.max(1000));
    std::thread::Builder::new()
        .name("sluice-controller".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("controller runtime: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                match Node::start(config, state, applied_tx).await {
                    Ok(node) => {
                        let _ = ready_tx.send(Ok(()));
                        node.serve_calls(calls_rx).await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(|e| format!("cannot start the controller thread: {e}"))?;
    ready_rx.recv_timeout(wait).map_err(|_| "the controller thread did not start in time".to_string())?
}

pub struct Node {
    pub(super) config: QuorumConfig,
    pub(super) raft: Option<Raft<MetadataRaft>>,
    pub(super) state: Arc<Mutex<StateMachine>>,
    pub(super) applied: mpsc::Sender<Applied>,
    pub(super) pool: Arc<Pool>,
    liveness: Mutex<BrokerLiveness>,
    unfencing: Mutex<HashSet<i32>>,
    shutting_down: AtomicBool,
    clock: Instant,
    /// Which voter a broker-only node (or a node without a known leader) asks next.
    next_voter: AtomicUsize,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Node {
    async fn start(
        config: QuorumConfig,
        state: Arc<Mutex<StateMachine>>,
        applied: mpsc::Sender<Applied>,
    ) -> Result<Arc<Node>, String> {
        let pool = Arc::new(Pool::default());
        let mut listener = None;
        let raft = if config.is_controller {
            let listen = config.controller_listen.ok_or("a controller needs a CONTROLLER listener")?;
            listener = Some(
                tokio::net::TcpListener::bind(listen)
                    .await
                    .map_err(|e| format!("cannot listen on the CONTROLLER listener {listen}: {e}"))?,
            );
            let log = LogStore::open(&config.metadata_dir)
                .map_err(|e| format!("cannot open the metadata log in {}: {e}", config.metadata_dir.display()))?;
            let store = Store { log: Arc::new(Mutex::new(log)), state: state.clone(), applied: applied.clone() };
            let (log_store, state_machine) = Adaptor::new(store);
            let raft_config = openraft::Config {
                cluster_name: "sluice-metadata".into(),
                heartbeat_interval: (config.election_timeout_ms / 4).max(10),
                election_timeout_min: config.fetch_timeout_ms,
                election_timeout_max: config.fetch_timeout_ms + config.election_timeout_ms.max(1),
                install_snapshot_timeout: config.request_timeout_ms.max(1000),
                snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_entries),
                max_in_snapshot_log_to_keep: config.snapshot_entries / 10,
                max_payload_entries: MAX_PAYLOAD_ENTRIES,
                ..Default::default()
            }
            .validate()
            .map_err(|e| format!("controller quorum timeouts: {e}"))?;
            let network = NetworkFactory { pool: pool.clone() };
            let raft = Raft::new(config.node_id as u64, Arc::new(raft_config), network, log_store, state_machine)
                .await
                .map_err(|e| format!("cannot start the metadata quorum: {e}"))?;
            // Every voter proposes the same initial membership: exactly the configured voters.
            // Only a node with an empty log and no vote may initialize; for the others this is
            // refused (NotAllowed), which is fine.
            let members: BTreeMap<u64, BasicNode> =
                config.voters.iter().map(|(id, address)| (*id as u64, BasicNode::new(address.clone()))).collect();
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(voters = ?config.voters, "metadata quorum initialized"),
                Err(e) => tracing::debug!(error = %e, "metadata quorum already initialized"),
            }
            Some(raft)
        } else {
            None
        };
        let node = Arc::new(Node {
            config,
            raft,
            state,
            applied,
            pool,
            liveness: Mutex::new(BrokerLiveness::default()),
            unfencing: Mutex::new(HashSet::new()),
            shutting_down: AtomicBool::new(false),
            clock: Instant::now(),
            next_voter: AtomicUsize::new(0),
        });
        if let Some(listener) = listener {
            tokio::spawn(super::server::serve(listener, node.clone()));
        }
        tokio::spawn(node.clone().heartbeat_loop());
        if node.raft.is_some() {
            tokio::spawn(node.clone().controller_tick_loop());
        } else {
            tokio::spawn(node.clone().fetch_loop());
        }
        Ok(node)
    }

    async fn serve_calls(self: Arc<Self>, mut calls: mpsc::Receiver<Call>) {
        while let Some(call) = calls.recv().await {
            let node = self.clone();
            tokio::spawn(async move {
                match call {
                    Call::Submit { command, timeout, reply } => {
                        let _ = reply.send(node.submit(command, timeout).await);
                    }
                    Call::ControlledShutdown { wait, reply } => {
                        let _ = reply.send(node.controlled_shutdown(wait).await);
                    }
                }
            });
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms)
    }

    /// (Is this node the raft leader, the leader's id if known.)
    fn leadership(&self) -> (bool, Option<u64>) {
        match &self.raft {
            Some(raft) => {
                let metrics = raft.metrics();
                let m = metrics.borrow();
                (m.state == ServerState::Leader, m.current_leader)
            }
            None => {
                let known = super::active_controller();
                (false, (known >= 0).then_some(known as u64))
            }
        }
    }

    /// Where to send something for the active controller: the known leader's controller
    /// address, else the voters in turn.
    fn target_address(&self) -> String {
        let (_, leader) = self.leadership();
        if let Some(address) = leader.and_then(|id| self.config.voters.get(&(id as i32))) {
            return address.clone();
        }
        self.next_voter_address()
    }

    pub(super) fn next_voter_address(&self) -> String {
        let i = self.next_voter.fetch_add(1, Ordering::Relaxed) % self.config.voters.len();
        self.config.voters.values().nth(i).cloned().expect("at least one voter")
    }

    /// Submits a command from this node: retried while there is no reachable leader, until the
    /// request timeout.
    pub async fn submit(&self, command: MetadataCommand, timeout: Duration) -> Result<Submitted, MetadataError> {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now()).max(TICK);
            match self.submit_once(command.clone(), 0, remaining).await {
                Err(e) if e.code == codes::NOT_CONTROLLER && Instant::now() < deadline => {
                    tracing::debug!(error = %e.message, "no active controller yet; retrying");
                    tokio::time::sleep(TICK).await;
                }
                Err(e) if e.code == codes::NOT_CONTROLLER => {
                    return Err(MetadataError::new(
                        codes::REQUEST_TIMED_OUT,
                        format!("no active controller within the request timeout: {}", e.message),
                    ))
                }
                other => return other,
            }
        }
    }

    /// One try, within `timeout`: written here if this node leads, else forwarded once more.
    async fn submit_once(
        &self,
        command: MetadataCommand,
        hops: u8,
        timeout: Duration,
    ) -> Result<Submitted, MetadataError> {
        let (is_leader, _) = self.leadership();
        if is_leader {
            return self.write_as_leader(command, timeout).await;
        }
        if hops >= 2 {
            return Err(not_controller("this node is not the active controller"));
        }
        let target = self.target_address();
        let request = Request::Submit { command, hops: hops + 1 };
        match self.pool.call(&target, &request, timeout).await {
            Ok(Response::Submitted(result)) => result,
            Ok(other) => Err(not_controller(format!("{target} answered {other:?}"))),
            Err(e) => {
                self.next_voter.fetch_add(1, Ordering::Relaxed);
                Err(not_controller(format!("{target}: {e}")))
            }
        }
    }

    /// On the active controller: placement for new partitions, then the raft write, within
    /// `timeout` (a leader that lost its quorum — e.g. one that restarted into its old term —
    /// may never commit; the caller then retries, perhaps elsewhere).
    async fn write_as_leader(&self, command: MetadataCommand, timeout: Duration) -> Result<Submitted, MetadataError> {
        match tokio::time::timeout(timeout, self.write_as_leader_unbounded(command)).await {
            Ok(result) => result,
            Err(_) => Err(not_controller(format!("not committed within {} ms", timeout.as_millis()))),
        }
    }

    async fn write_as_leader_unbounded(&self, command: MetadataCommand) -> Result<Submitted, MetadataError> {
        let raft = self.raft.as_ref().ok_or_else(|| not_controller("not a controller"))?;
        if let MetadataCommand::RegisterBroker(b) = &command {
            // A registration is a sign of life: its session starts now (else a broker back from
            // a long absence would be fenced again before its first heartbeat).
            lock(&self.liveness).heartbeat(b.id, self.now_ms());
        }
        let (prepared, needs_cluster_id) = {
            let state = lock(&self.state);
            (crate::placement::assign_new_partitions(command, state.image())?, state.image().cluster_id.is_empty())
        };
        if needs_cluster_id {
            let init = MetadataCommand::InitCluster { cluster_id: crate::controller::new_cluster_id() };
            // Refused harmlessly if another leader's was committed first.
            let _ = raft.client_write(init).await;
        }
        // A limit on every log entry: an AppendEntries of `MAX_PAYLOAD_ENTRIES` of them must fit
        // one CONTROLLER frame, or the quorum could never replicate it.
        let command_bytes = serde_json::to_vec(&prepared).map_or(usize::MAX, |json| json.len());
        if command_bytes > MAX_COMMAND_BYTES {
            return Err(MetadataError::new(
                codes::INVALID_REQUEST,
                format!("the metadata change is {command_bytes} bytes, more than the {MAX_COMMAND_BYTES} allowed"),
            ));
        }
        match raft.client_write(prepared).await {
            Ok(response) => match response.data.error {
                Some(e) => Err(e),
                None => {
                    Ok(Submitted { index: response.log_id.index, producer_id_start: response.data.producer_id_start })
                }
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(not_controller(format!("leadership moved to {:?}", f.leader_id)))
            }
            Err(e) => Err(not_controller(e.to_string())),
        }
    }

    /// A broker's heartbeat (this node's, or one forwarded here).
    async fn heartbeat(&self, broker_id: i32, shutting_down: bool, hops: u8) -> Result<(), MetadataError> {
        let (is_leader, _) = self.leadership();
        if !is_leader {
            if hops >= 2 {
                return Err(not_controller("this node is not the active controller"));
            }
            let target = self.target_address();
            let request = Request::Heartbeat { broker_id, shutting_down, hops: hops + 1 };
            // A heartbeat that cannot arrive within half a session is not worth waiting for:
            // the next one goes out on time (perhaps to a new controller).
            let timeout = Duration::from_millis((self.config.session_timeout_ms / 2).max(1));
            return match self.pool.call(&target, &request, timeout.min(self.request_timeout())).await {
                Ok(Response::Heartbeat(result)) => result,
                Ok(other) => Err(not_controller(format!("{target} answered {other:?}"))),
                Err(e) => {
                    self.next_voter.fetch_add(1, Ordering::Relaxed);
                    Err(not_controller(format!("{target}: {e}")))
                }
            };
        }
        let registered = lock(&self.state).image().brokers.get(&broker_id).map(|b| b.fenced);
        let Some(fenced) = registered else {
            // Only registered brokers have sessions (the map stays bounded by the image).
            return Err(MetadataError::new(codes::INVALID_REQUEST, format!("broker {broker_id} is not registered")));
        };
        lock(&self.liveness).heartbeat(broker_id, self.now_ms());
        if fenced && !shutting_down && lock(&self.unfencing).insert(broker_id) {
            tracing::info!(broker_id, "a fenced broker heartbeats again: unfencing it");
            let result =
                self.write_as_leader(MetadataCommand::UnfenceBroker { id: broker_id }, self.request_timeout()).await;
            lock(&self.unfencing).remove(&broker_id);
            result?;
        }
        Ok(())
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        let interval = Duration::from_millis(self.config.heartbeat_interval_ms.max(1));
        loop {
            if !self.shutting_down.load(Ordering::Relaxed) {
                if let Err(e) = self.heartbeat(self.config.node_id, false, 0).await {
                    tracing::debug!(error = %e.message, "heartbeat not delivered");
                }
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// Tracks who leads (for Metadata's controller id) and, on the active controller, fences
    /// brokers whose session expired.
    async fn controller_tick_loop(self: Arc<Self>) {
        let mut last_rebalance_ms = 0u64;
        loop {
            tokio::time::sleep(TICK).await;
            let (is_leader, leader) = self.leadership();
            set_active_controller(leader.map_or(-1, |l| l as i32));
            let now = self.now_ms();
            {
                let mut liveness = lock(&self.liveness);
                if is_leader && !liveness.is_active() {
                    tracing::info!(node_id = self.config.node_id, "this node is the active controller");
                    liveness.became_active(now);
                } else if !is_leader && liveness.is_active() {
                    liveness.lost_leadership();
                }
            }
            if !is_leader {
                continue;
            }
            let unfenced: Vec<i32> = lock(&self.state).image().unfenced_brokers().map(|b| b.id).collect();
            let expired = lock(&self.liveness).expired(unfenced, now, self.config.session_timeout_ms);
            if let Some(interval) = self.config.leader_rebalance_interval_ms {
                if now.saturating_sub(last_rebalance_ms) >= interval {
                    last_rebalance_ms = now;
                    self.rebalance_leaders().await;
                }
            }
            for id in expired {
                tracing::warn!(
                    broker_id = id,
                    session_timeout_ms = self.config.session_timeout_ms,
                    "broker session expired: fencing it and moving its leaderships"
                );
                if let Err(e) = self.write_as_leader(MetadataCommand::FenceBroker { id }, self.request_timeout()).await
                {
                    tracing::warn!(broker_id = id, error = %e.message, "fencing failed");
                }
            }
        }
    }

    /// Kafka's leader rebalance: partitions whose preferred replica is eligible again move back
    /// to it when a broker's share led elsewhere is over `leader.imbalance.per.broker.percentage`.
    async fn rebalance_leaders(&self) {
        let partitions = lock(&self.state).image().imbalanced_partitions(self.config.leader_imbalance_percentage);
        if partitions.is_empty() {
            return;
        }
        tracing::info!(partitions = partitions.len(), "moving partitions back to their preferred leaders");
        let command =
            MetadataCommand::ElectLeaders { kind: crate::leader_election::ElectionType::Preferred, partitions };
        if let Err(e) = self.write_as_leader(command, self.request_timeout()).await {
            tracing::warn!(error = %e.message, "preferred leader election failed");
        }
    }

    async fn controlled_shutdown(&self, wait: Duration) -> Result<(), MetadataError> {
        self.shutting_down.store(true, Ordering::Relaxed);
        let id = self.config.node_id;
        let registered = lock(&self.state).image().brokers.get(&id).is_some_and(|b| !b.fenced);
        if !registered {
            return Ok(());
        }
        tracing::info!(wait_ms = wait.as_millis() as u64, "controlled shutdown: fencing this broker");
        match tokio::time::timeout(wait, self.submit(MetadataCommand::FenceBroker { id }, wait)).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => Err(MetadataError::new(codes::REQUEST_TIMED_OUT, "controlled shutdown timed out")),
        }
    }

    /// Answers a peer's RPC.
    pub async fn handle_rpc(&self, request: Request) -> Response {
        match (request, &self.raft) {
            (Request::AppendEntries(rpc), Some(raft)) => Response::AppendEntries(raft.append_entries(rpc).await),
            (Request::Vote(rpc), Some(raft)) => Response::Vote(raft.vote(rpc).await),
            (Request::InstallSnapshot(rpc), Some(raft)) => Response::InstallSnapshot(raft.install_snapshot(rpc).await),
            (Request::Submit { command, hops }, _) => {
                Response::Submitted(self.submit_once(command, hops, self.request_timeout()).await)
            }
            (Request::Heartbeat { broker_id, shutting_down, hops }, _) => {
                Response::Heartbeat(self.heartbeat(broker_id, shutting_down, hops).await)
            }
            (Request::FetchMetadata { after_index }, Some(_)) => Response::Metadata {
                reply: lock(&self.state).fetch(after_index),
                active_controller: super::active_controller(),
            },
            (_, None) => Response::Refused("not a controller".into()),
        }
    }
}
