//! A cluster of real `sluice` processes for end-to-end tests: N `broker,controller` voters and
//! M `process.roles=broker` nodes on fixed 127.0.0.1 ports and data dirs, each startable,
//! stoppable (SIGTERM), killable (SIGKILL) and restartable on the same ports and data dir; plus
//! raw Metadata / DescribeCluster helpers and a deadline poll.
//!
//! Quorum timeouts are small (see [`FAST_SETTINGS`]) so elections and fencing take about a
//! second or two, not Kafka's defaults.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{DescribeClusterRequest, MetadataRequest, MetadataResponse};

use super::{free_port, raw, Broker};

/// Quorum and session settings every node gets unless a test overrides them.
pub const FAST_SETTINGS: &[(&str, &str)] = &[
    ("controller.quorum.fetch.timeout.ms", "600"),
    ("controller.quorum.election.timeout.ms", "300"),
    ("broker.heartbeat.interval.ms", "200"),
    ("broker.session.timeout.ms", "2000"),
    // Leaders move back to preferred replicas only in the tests that ask (Kafka's default: 300 s).
    ("auto.leader.rebalance.enable", "false"),
];

pub struct ClusterNode {
    pub id: i32,
    pub port: u16,
    /// The CONTROLLER listener's port (voters only).
    pub controller_port: Option<u16>,
    pub data_dir: PathBuf,
    pub process: Option<Broker>,
    /// Extra `--set` values for this node only.
    pub extra: Vec<(String, String)>,
}

pub struct Cluster {
    pub nodes: Vec<ClusterNode>,
    /// `--cores` of every node (1 unless a test sets it before starting nodes).
    pub cores: usize,
    pub voters: String,
    pub settings: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// `voters` broker,controller nodes (ids 1..=voters) and `brokers` broker-only nodes (the
    /// next ids), not started.
    pub fn new(voters: usize, brokers: usize, settings: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut nodes = Vec::new();
        for i in 0..voters + brokers {
            let id = i as i32 + 1;
            nodes.push(ClusterNode {
                id,
                port: free_port(),
                controller_port: (i < voters).then(free_port),
                data_dir: dir.path().join(format!("node-{id}")),
                process: None,
                extra: Vec::new(),
            });
        }
        let voters = nodes
            .iter()
            .filter_map(|n| n.controller_port.map(|p| format!("{}@127.0.0.1:{p}", n.id)))
            .collect::<Vec<_>>()
            .join(",");
        let mut all: Vec<(String, String)> =
            FAST_SETTINGS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        for (k, v) in settings {
            all.retain(|(key, _)| key != k);
            all.push((k.to_string(), v.to_string()));
        }
        Cluster { nodes, cores: 1, voters, settings: all, _dir: dir }
    }

    /// Starts every node and waits until each serves.
    pub fn start(voters: usize, brokers: usize) -> Cluster {
        Cluster::start_with(voters, brokers, &[])
    }

    pub fn start_with(voters: usize, brokers: usize, settings: &[(&str, &str)]) -> Cluster {
        let mut cluster = Cluster::new(voters, brokers, settings);
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i);
        }
        for i in 0..cluster.nodes.len() {
            cluster.wait_started(i);
        }
        cluster
    }

    /// The command line of node `i`.
    pub fn args(&self, i: usize) -> Vec<String> {
        let node = &self.nodes[i];
        let mut args: Vec<String> = vec![
            "broker".into(),
            "--data-dir".into(),
            node.data_dir.display().to_string(),
            "--cores".into(),
            self.cores.to_string(),
        ];
        let mut set = |k: &str, v: String| {
            args.push("--set".into());
            args.push(format!("{k}={v}"));
        };
        set("node.id", node.id.to_string());
        match node.controller_port {
            Some(cp) => {
                set("process.roles", "broker,controller".into());
                set("listeners", format!("PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{cp}", node.port));
            }
            None => {
                set("process.roles", "broker".into());
                set("listeners", format!("PLAINTEXT://127.0.0.1:{}", node.port));
            }
        }
        set("controller.quorum.voters", self.voters.clone());
        for (k, v) in self.settings.iter().chain(node.extra.iter()) {
            set(k, v.clone());
        }
        args
    }

    /// Starts node `i` (does not wait).
    pub fn spawn(&mut self, i: usize) {
        assert!(self.nodes[i].process.is_none(), "node {} runs already", self.nodes[i].id);
        let args = self.args(i);
        let port = self.nodes[i].port;
        self.nodes[i].process = Some(Broker::spawn(&args, port, &[]));
    }

    /// Waits until node `i` serves; on failure says which node and whether it still runs.
    pub fn wait_started(&mut self, i: usize) {
        let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.process(i).wait_for("sluice broker started");
        }));
        if let Err(e) = waited {
            let id = self.nodes[i].id;
            let running = self.nodes[i].process.as_mut().is_some_and(|p| p.is_running());
            eprintln!("node {id} did not start (still running: {running})");
            std::panic::resume_unwind(e);
        }
    }

    /// Starts node `i` again on the same ports and data dir, and waits until it serves.
    /// Starts node `i` again on its ports and data dir (after a kill: once the dead process's
    /// sockets are released) and waits until it serves.
    pub fn restart(&mut self, i: usize) {
        super::wait_for_port_release(self.nodes[i].port);
        if let Some(port) = self.nodes[i].controller_port {
            super::wait_for_port_release(port);
        }
        self.spawn(i);
        self.wait_started(i);
    }

    pub fn process(&self, i: usize) -> &Broker {
        self.nodes[i].process.as_ref().expect("node is running")
    }

    /// SIGKILL node `i` and reap it.
    pub fn kill(&mut self, i: usize) {
        let process = self.nodes[i].process.take().expect("node is running");
        process.signal(libc::SIGKILL);
        process.wait_exit();
    }

    /// SIGTERM node `i`; returns its exit code.
    pub fn stop(&mut self, i: usize) -> i32 {
        let process = self.nodes[i].process.take().expect("node is running");
        process.signal(libc::SIGTERM);
        process.wait_exit()
    }

    pub fn bootstrap(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[i].port)
    }

    /// The index of the node with id `id`.
    pub fn index_of(&self, id: i32) -> usize {
        self.nodes.iter().position(|n| n.id == id).expect("known node id")
    }

    /// The indexes of running nodes.
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].process.is_some()).collect()
    }
}

/// Polls `f` every 50 ms until it returns `Some`, at most `timeout`; panics with `what`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A raw client, or `None` if the node does not accept connections.
pub fn try_connect(bootstrap: &str) -> Option<raw::RawClient> {
    std::net::TcpStream::connect(bootstrap).ok()?;
    Some(raw::RawClient::connect(bootstrap))
}

/// Metadata v12 for `topics` (all topics for `None`), without auto-creation.
pub fn metadata(bootstrap: &str, topics: Option<&[&str]>) -> MetadataResponse {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;
    let topics = topics.map(|names| {
        names
            .iter()
            .map(|n| MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(n.to_string())))))
            .collect()
    });
    let request = MetadataRequest::default().with_topics(topics).with_allow_auto_topic_creation(false);
    raw::RawClient::connect(bootstrap).send(&request, 12)
}

/// The broker ids Metadata lists, sorted.
pub fn metadata_broker_ids(bootstrap: &str) -> Vec<i32> {
    let mut ids: Vec<i32> = metadata(bootstrap, Some(&[])).brokers.iter().map(|b| b.node_id.0).collect();
    ids.sort_unstable();
    ids
}

/// One partition as Metadata shows it: (index, leader, leader epoch, replicas, ISR).
pub type PartitionView = (i32, i32, i32, Vec<i32>, Vec<i32>);

/// A topic's partitions as Metadata on `bootstrap` shows them (`None`: unknown there).
pub fn partitions(bootstrap: &str, topic: &str) -> Option<Vec<PartitionView>> {
    let response = metadata(bootstrap, Some(&[topic]));
    let t = response.topics.first()?;
    if t.error_code != 0 {
        return None;
    }
    let mut out: Vec<PartitionView> = t
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.leader_id.0,
                p.leader_epoch,
                p.replica_nodes.iter().map(|b| b.0).collect(),
                p.isr_nodes.iter().map(|b| b.0).collect(),
            )
        })
        .collect();
    out.sort_by_key(|p| p.0);
    Some(out)
}

/// DescribeCluster: (controller id, broker ids sorted).
pub fn describe_cluster(bootstrap: &str) -> (i32, Vec<i32>) {
    let response = raw::RawClient::connect(bootstrap).send(&DescribeClusterRequest::default(), 0);
    let mut ids: Vec<i32> = response.brokers.iter().map(|b| b.broker_id.0).collect();
    ids.sort_unstable();
    (response.controller_id.0, ids)
}

/// CreateTopics v7 of one topic with `partitions` and `replication_factor`: (error code, message).
pub fn create_topic_rf(bootstrap: &str, name: &str, partitions: i32, replication_factor: i16) -> (i16, Option<String>) {
    let mut request = super::create_topics_request(name, partitions, &[]);
    request.topics[0].replication_factor = replication_factor;
    let response = raw::RawClient::connect(bootstrap).send(&request, 7);
    let t = &response.topics[0];
    (t.error_code, t.error_message.as_ref().map(|m| m.to_string()))
}
