//! The cluster metadata quorum (KRaft's role) on [openraft]: the controllers (`process.roles`
//! with `controller`, the voters of `controller.quorum.voters`) replicate a log of
//! [`MetadataCommand`]s whose state machine is the [`MetadataImage`]; every node applies the
//! committed commands in log order and hands each to every local shard through
//! [`crate::controller::apply_on_shard`].
//!
//! Owns: the controller thread and everything on it — the raft log and vote under
//! `<data-dir>/__cluster_metadata-0/` ([`log_store`]), the durable state machine
//! ([`state_machine`]), the internal RPC ([`rpc`], [`network`], [`server`]), broker
//! heartbeats and fencing ([`broker_liveness`]), and the thread's main loop ([`node`]). Must
//! never: run on a shard thread, block a shard, or let a shard see a command before it is
//! committed.
//!
//! **Runtime.** openraft needs a `Send` async runtime (tokio); glommio shards are `!Send`
//! thread-per-core executors. So the quorum runs on **its own std thread with a tokio
//! current-thread runtime**, and talks to the shards only through bounded channels: shards
//! send calls (submit, controlled shutdown) on a bounded tokio mpsc (runtime-agnostic, so a
//! glommio task can await it), and committed commands come back on a bounded channel that a
//! task on shard 0 drains ([`bridge`]). Blocking file I/O (fsync of the log, the vote and the
//! image) happens on that thread, never on a shard.
//!
//! **Broker-only nodes fetch** (`process.roles=broker`): they run no raft and listen on no
//! controller port; a loop on their controller thread asks a voter for the committed commands
//! after its last applied index (`FetchMetadata`), like Kafka brokers fetching
//! `__cluster_metadata` from the controllers. Chosen over openraft learners because a learner
//! needs a listening RPC endpoint and a membership change per broker, and because it is
//! Kafka's model; a voter answers from a bounded ring of recent commands, or with its whole
//! image when the broker is further behind.
//!
//! **Internal RPC, not Kafka's KRaft wire format**: TCP on the CONTROLLER listener, each message
//! one frame of a 4-byte big-endian length and a JSON body ([`rpc`]), at most
//! [`rpc::MAX_FRAME_BYTES`]; requests and responses alternate on a connection. Garbage (an
//! oversized length, a body that does not decode) closes the connection with one log line.
//! Kafka tools that speak KRaft's Vote/Fetch APIs to a controller will not work with it.
//!
//! **Start-up.** The main thread starts the controller thread, then registers this broker
//! (`RegisterBroker`: its advertised client endpoint, which followers replicate from, and
//! `broker.rack`) and waits until this node applied the log that far ([`node::register_blocking`],
//! retried until a quorum answers or a signal arrives); only then do the shards start, from the
//! image as of that moment, so no client is served from a stale image.
//!
//! **Timeouts** map Kafka's settings: a follower that hears nothing from the leader for
//! `controller.quorum.fetch.timeout.ms` (2000) plus a random part of
//! `controller.quorum.election.timeout.ms` (1000) becomes a candidate (openraft's election
//! timeout range); the leader heartbeats four times per election timeout.

pub mod bridge;
pub mod broker_liveness;
pub mod log_store;
pub mod network;
pub mod node;
pub mod rpc;
pub mod server;
pub mod state_machine;
pub mod store;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::metadata_image::{MetadataCommand, MetadataError, MetadataImage};

openraft::declare_raft_types!(
    /// The metadata log's types: entries carry [`MetadataCommand`]s, each answered by a
    /// [`CommandOutcome`].
    pub MetadataRaft:
        D = MetadataCommand,
        R = CommandOutcome,
);

/// Kafka's directory name for the metadata log.
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";

/// What applying one command did (the same on every node).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutcome {
    /// Why it was refused (it then changed nothing).
    pub error: Option<MetadataError>,
    /// The image's first unreserved producer id before the command (AllocateProducerIds's
    /// block starts there).
    pub producer_id_start: i64,
}

/// A command committed and applied on the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    /// Its index in the metadata log: the caller waits until its node applied this far.
    pub index: u64,
    pub producer_id_start: i64,
}

/// The quorum settings of a clustered node (Kafka names in comments).
#[derive(Clone, Debug)]
pub struct QuorumConfig {
    /// `node.id`.
    pub node_id: i32,
    /// `controller.quorum.voters`: id → `host:port` of its CONTROLLER listener.
    pub voters: BTreeMap<i32, String>,
    /// `process.roles` holds `controller` (this node is one of the voters).
    pub is_controller: bool,
    /// Where this controller listens (its CONTROLLER listener).
    pub controller_listen: Option<std::net::SocketAddr>,
    /// `controller.quorum.election.timeout.ms` (1000).
    pub election_timeout_ms: u64,
    /// `controller.quorum.fetch.timeout.ms` (2000).
    pub fetch_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms` (2000).
    pub heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms` (9000).
    pub session_timeout_ms: u64,
    /// How long a submitted command may take before REQUEST_TIMED_OUT (`request.timeout.ms`
    /// of Kafka's forwarding, 30000).
    pub request_timeout_ms: u64,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// `<data-dir>/__cluster_metadata-0`.
    pub metadata_dir: PathBuf,
    /// The topic defaults commands are validated against.
    pub default_log_config: sluice_engine::log_config::LogConfig,
}

/// Parses `controller.quorum.voters` (`id@host:port,...`).
pub fn parse_voters(value: &str) -> Result<BTreeMap<i32, String>, String> {
    let mut voters = BTreeMap::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, address) = item
            .split_once('@')
            .ok_or_else(|| format!("controller.quorum.voters: expected id@host:port, got {item:?}"))?;
        let id: i32 = id.trim().parse().map_err(|_| format!("controller.quorum.voters: bad node id in {item:?}"))?;
        let (host, port) =
            address.rsplit_once(':').ok_or_else(|| format!("controller.quorum.voters: {item:?} has no port"))?;
        let port: u16 = port.parse().map_err(|_| format!("controller.quorum.voters: bad port in {item:?}"))?;
        if id < 0 || host.is_empty() {
            return Err(format!("controller.quorum.voters: bad voter {item:?}"));
        }
        if voters.insert(id, format!("{host}:{port}")).is_some() {
            return Err(format!("controller.quorum.voters: node {id} appears twice"));
        }
    }
    if voters.is_empty() {
        return Err("controller.quorum.voters: no voter given".into());
    }
    Ok(voters)
}

/// The active controller's node id as this node last saw it (-1: none known). Written by the
/// controller thread, read by Metadata / DescribeCluster on any shard.
static ACTIVE_CONTROLLER: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

pub fn active_controller() -> i32 {
    ACTIVE_CONTROLLER.load(std::sync::atomic::Ordering::Relaxed)
}

pub(crate) fn set_active_controller(id: i32) {
    ACTIVE_CONTROLLER.store(id, std::sync::atomic::Ordering::Relaxed);
}

/// A fresh image for a new quorum member: no cluster id until the first leader sets it.
pub fn empty_image() -> MetadataImage {
    MetadataImage::new(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_parse_like_kafkas() {
        let v = parse_voters("1@127.0.0.1:9093, 2@host-b:19093,3@[::1]:29093").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[&2], "host-b:19093");
        for bad in ["", "1@a", "x@a:1", "1@a:1,1@b:2", "1:a:1", "-1@a:1", "1@:5"] {
            assert!(parse_voters(bad).is_err(), "{bad}");
        }
    }
}
