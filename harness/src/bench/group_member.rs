//! One bench consumer's membership in a Kafka consumer group (the classic protocol): find the
//! coordinator (FindCoordinator, key type 0), join (JoinGroup with protocol type `consumer` and
//! the `range` protocol, including JoinGroup v4+'s MEMBER_ID_REQUIRED round), compute the
//! assignment when elected leader, sync (SyncGroup), heartbeat, read and commit offsets
//! (OffsetFetch, OffsetCommit with generation and member id), leave (LeaveGroup).
//!
//! Owns: the coordinator connection, the member id and generation; the `consumer` embedded
//! protocol (ConsumerProtocolSubscription / ConsumerProtocolAssignment, written as version 0)
//! and the leader's range assignment — both pure and unit-tested without a runtime. The
//! consumer owns positions and decides when to heartbeat, commit and rejoin.
//!
//! Must never: wait without a bound (every request has a timeout, a join and an offset read an
//! overall deadline), take a group error code for success (each becomes an `Err` or a rejoin
//! carrying Kafka's error name), or assign one partition to two members.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, ConsumerProtocolSubscription, FindCoordinatorRequest, GroupId,
    HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

use crate::bench::kafka_client::KafkaConnection;
use crate::bench::run_state::error_name;

/// Session timeout asked for (Kafka's broker minimum is 6 s); heartbeats go out every second.
pub const SESSION_TIMEOUT_MS: i32 = 10_000;
/// How long the coordinator waits for members to rejoin in a rebalance.
pub const REBALANCE_TIMEOUT_MS: i32 = 20_000;
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
pub const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait for the answer to a request that the broker answers at once.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// JoinGroup and SyncGroup are answered when the rebalance completes: at most the rebalance
/// timeout (which also bounds the initial rebalance delay) after the broker got them.
const REBALANCE_REQUEST_TIMEOUT: Duration = Duration::from_millis(REBALANCE_TIMEOUT_MS as u64 + 15_000);
/// Longest a whole join (coordinator look-up, join, sync, their retries) may take.
const JOIN_DEADLINE: Duration = Duration::from_secs(90);
/// Longest an offset read may keep retrying (coordinator loading or moving).
const OFFSET_FETCH_DEADLINE: Duration = Duration::from_secs(30);
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

pub const PROTOCOL_TYPE: &str = "consumer";
pub const ASSIGNOR: &str = "range";
/// ConsumerProtocolSubscription / Assignment version written.
const CONSUMER_PROTOCOL_VERSION: i16 = 0;
/// Highest version decoded field by field; newer versions only append fields, so they are read
/// as this one (what Kafka's clients do).
const MAX_CONSUMER_PROTOCOL_VERSION: i16 = 3;

/// Kafka error codes (the one table: `sluice_engine::error_code`).
use sluice_engine::error_code::codes;

/// Topic → partitions.
pub type TopicAssignment = BTreeMap<String, Vec<i32>>;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Writes a `consumer` protocol message: its version, then the message at that version.
fn encode_versioned<M: Encodable>(message: &M) -> Result<Bytes, String> {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(CONSUMER_PROTOCOL_VERSION);
    message.encode(&mut buf, CONSUMER_PROTOCOL_VERSION).map_err(|e| format!("encode consumer protocol: {e}"))?;
    Ok(buf.freeze())
}

/// Reads a `consumer` protocol message written at any version.
fn decode_versioned<M: Decodable>(bytes: &[u8], what: &str) -> Result<M, String> {
    if bytes.len() < 2 {
        return Err(format!("{what}: {} bytes, no version", bytes.len()));
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    if version < 0 {
        return Err(format!("{what}: version {version}"));
    }
    let mut body = Bytes::copy_from_slice(&bytes[2..]);
    M::decode(&mut body, version.min(MAX_CONSUMER_PROTOCOL_VERSION)).map_err(|e| format!("{what} v{version}: {e}"))
}

/// The JoinGroup protocol metadata of a member subscribing to `topics` (user data null).
pub fn encode_subscription(topics: &[String]) -> Result<Bytes, String> {
    encode_versioned(&ConsumerProtocolSubscription::default().with_topics(topics.iter().map(|t| s(t)).collect()))
}

pub fn decode_subscription(metadata: &[u8]) -> Result<Vec<String>, String> {
    let sub: ConsumerProtocolSubscription = decode_versioned(metadata, "ConsumerProtocolSubscription")?;
    Ok(sub.topics.iter().map(|t| t.to_string()).collect())
}

/// A member's SyncGroup assignment (user data null).
pub fn encode_assignment(assignment: &TopicAssignment) -> Result<Bytes, String> {
    encode_versioned(
        &ConsumerProtocolAssignment::default().with_assigned_partitions(
            assignment
                .iter()
                .map(|(t, ps)| TopicPartition::default().with_topic(TopicName(s(t))).with_partitions(ps.clone()))
                .collect(),
        ),
    )
}

/// An assignment from SyncGroup; empty bytes are an empty assignment (Kafka's leader may send
/// nothing for a member that gets nothing).
pub fn decode_assignment(bytes: &[u8]) -> Result<TopicAssignment, String> {
    if bytes.is_empty() {
        return Ok(TopicAssignment::new());
    }
    let a: ConsumerProtocolAssignment = decode_versioned(bytes, "ConsumerProtocolAssignment")?;
    let mut out = TopicAssignment::new();
    for tp in a.assigned_partitions {
        out.entry(tp.topic.0.to_string()).or_default().extend(tp.partitions);
    }
    for ps in out.values_mut() {
        ps.sort_unstable();
        ps.dedup();
    }
    Ok(out)
}

/// Kafka's range assignor, computed by the group leader: for each topic, the members subscribed
/// to it in member-id order each get a contiguous run of its partitions, the first
/// `partitions % members` one more. `subscriptions`: member id → topics; `partitions`: the
/// partitions of every topic the leader knows (topics it does not know are assigned to nobody).
/// Every member appears in the result, possibly with nothing.
pub fn range_assignment(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partitions: &BTreeMap<String, Vec<i32>>,
) -> BTreeMap<String, TopicAssignment> {
    let mut out: BTreeMap<String, TopicAssignment> =
        subscriptions.keys().map(|m| (m.clone(), TopicAssignment::new())).collect();
    for (topic, parts) in partitions {
        let members: Vec<&String> =
            subscriptions.iter().filter(|(_, topics)| topics.contains(topic)).map(|(m, _)| m).collect();
        if members.is_empty() {
            continue;
        }
        let mut parts = parts.clone();
        parts.sort_unstable();
        parts.dedup();
        let (each, extra) = (parts.len() / members.len(), parts.len() % members.len());
        let mut next = 0;
        for (i, m) in members.into_iter().enumerate() {
            let n = each + usize::from(i < extra);
            if n > 0 {
                out.get_mut(m).expect("every member present").insert(topic.clone(), parts[next..next + n].to_vec());
            }
            next += n;
        }
    }
    out
}

/// What a heartbeat or commit asks of the consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Drop every partition and join again. `error`: why, when it is a failure worth
    /// reporting (a missed generation, a refused commit) rather than an ordinary rebalance.
    Rejoin {
        error: Option<String>,
    },
}

/// Why a group call did not succeed.
enum Failure {
    /// Worth retrying (coordinator moving or loading, connection lost, no answer in time).
    Retry(String),
    Fatal(String),
}

impl Failure {
    fn reason(self) -> String {
        match self {
            Failure::Retry(r) | Failure::Fatal(r) => r,
        }
    }
}

enum Step {
    Assigned(TopicAssignment),
    /// Join again at once (a member id was just handed out).
    Again,
    /// Join again after a pause.
    Retry(String),
}

pub struct GroupMember {
    pub group_id: String,
    client_id: String,
    bootstrap: String,
    subscription: Vec<String>,
    coordinator: Option<KafkaConnection>,
    member_id: String,
    generation_id: i32,
    protocol_name: String,
}

impl GroupMember {
    pub fn new(group_id: &str, client_id: &str, bootstrap: &str, subscription: Vec<String>) -> GroupMember {
        GroupMember {
            group_id: group_id.to_string(),
            client_id: client_id.to_string(),
            bootstrap: bootstrap.to_string(),
            subscription,
            coordinator: None,
            member_id: String::new(),
            generation_id: -1,
            protocol_name: ASSIGNOR.to_string(),
        }
    }

    /// The coordinator's "host:port", from the bootstrap broker.
    async fn find_coordinator(&self) -> Result<String, Failure> {
        let conn = within(
            REQUEST_TIMEOUT,
            "connect",
            &self.bootstrap,
            crate::bench::kafka_client::connect(&self.bootstrap, &self.client_id),
        )
        .await?;
        let version = conn.version_for(ApiKey::FindCoordinator).map_err(Failure::Fatal)?;
        let mut request = FindCoordinatorRequest::default().with_key_type(0);
        request = if version >= 4 {
            request.with_coordinator_keys(vec![s(&self.group_id)])
        } else {
            request.with_key(s(&self.group_id))
        };
        let response = within(REQUEST_TIMEOUT, "FindCoordinator", &conn.addr, conn.call(&request)).await?;
        let (code, host, port) = if version >= 4 {
            let c = response
                .coordinators
                .first()
                .ok_or_else(|| Failure::Fatal("FindCoordinator: answer without a coordinator".into()))?;
            (c.error_code, c.host.to_string(), c.port)
        } else {
            (response.error_code, response.host.to_string(), response.port)
        };
        match code {
            0 => Ok(format!("{host}:{port}")),
            codes::COORDINATOR_LOAD_IN_PROGRESS | codes::COORDINATOR_NOT_AVAILABLE | codes::NOT_COORDINATOR => {
                Err(Failure::Retry(format!("FindCoordinator: {}", error_name(code))))
            }
            code => Err(Failure::Fatal(format!("FindCoordinator: {}", error_name(code)))),
        }
    }

    /// The coordinator connection, found and connected if need be.
    async fn coordinator(&mut self) -> Result<&KafkaConnection, Failure> {
        if self.coordinator.is_none() {
            let addr = self.find_coordinator().await?;
            let conn =
                within(REQUEST_TIMEOUT, "connect", &addr, crate::bench::kafka_client::connect(&addr, &self.client_id))
                    .await?;
            self.coordinator = Some(conn);
        }
        Ok(self.coordinator.as_ref().expect("just set"))
    }

    async fn version(&mut self, api: ApiKey) -> Result<i16, Failure> {
        self.coordinator().await?.version_for(api).map_err(Failure::Fatal)
    }

    /// Sends `request` to the coordinator; a lost connection or a missing answer drops the
    /// connection (the next call finds the coordinator again).
    async fn call<R: Request>(&mut self, request: &R, limit: Duration, what: &str) -> Result<R::Response, Failure> {
        let conn = self.coordinator().await?;
        let addr = conn.addr.clone();
        let answer = within(limit, what, &addr, conn.call(request)).await;
        if answer.is_err() {
            self.coordinator = None;
        }
        answer
    }

    /// Joins the group (again): JoinGroup, the leader's assignment, SyncGroup. Returns this
    /// member's assignment. Retries what is worth retrying until [`JOIN_DEADLINE`].
    /// `partitions`: every partition of every topic the leader may have to assign.
    pub async fn join(&mut self, partitions: &BTreeMap<String, Vec<i32>>) -> Result<TopicAssignment, String> {
        let deadline = Instant::now() + JOIN_DEADLINE;
        let mut last = String::from("nothing tried");
        loop {
            if Instant::now() >= deadline {
                return Err(format!(
                    "group {}: not joined within {} s (last: {last})",
                    self.group_id,
                    JOIN_DEADLINE.as_secs()
                ));
            }
            match self.join_once(partitions).await {
                Ok(Step::Assigned(a)) => return Ok(a),
                Ok(Step::Again) => {}
                Ok(Step::Retry(why)) | Err(Failure::Retry(why)) => {
                    last = why;
                    glommio::timer::sleep(RETRY_BACKOFF).await;
                }
                Err(Failure::Fatal(e)) => return Err(format!("group {}: {e}", self.group_id)),
            }
        }
    }

    async fn join_once(&mut self, partitions: &BTreeMap<String, Vec<i32>>) -> Result<Step, Failure> {
        let version = self.version(ApiKey::JoinGroup).await?;
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(s(&self.group_id)))
            .with_session_timeout_ms(SESSION_TIMEOUT_MS)
            .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
            .with_member_id(s(&self.member_id))
            .with_protocol_type(s(PROTOCOL_TYPE))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s(ASSIGNOR))
                .with_metadata(encode_subscription(&self.subscription).map_err(Failure::Fatal)?)]);
        let joined = self.call(&request, REBALANCE_REQUEST_TIMEOUT, "JoinGroup").await?;
        match joined.error_code {
            0 => {}
            codes::MEMBER_ID_REQUIRED => {
                self.member_id = joined.member_id.to_string();
                return Ok(Step::Again);
            }
            codes::UNKNOWN_MEMBER_ID => {
                self.member_id.clear();
                return Ok(Step::Again);
            }
            code => return Err(self.failure(code, "JoinGroup")),
        }
        self.member_id = joined.member_id.to_string();
        self.generation_id = joined.generation_id;
        self.protocol_name =
            joined.protocol_name.as_ref().map(|p| p.to_string()).unwrap_or_else(|| ASSIGNOR.to_string());
        if version >= 7 && joined.protocol_type.as_ref().is_some_and(|t| t.as_str() != PROTOCOL_TYPE) {
            return Err(Failure::Fatal(format!("JoinGroup: protocol type {:?}", joined.protocol_type)));
        }
        let assignments = if joined.leader == joined.member_id {
            let subscriptions: BTreeMap<String, Vec<String>> = joined
                .members
                .iter()
                // A member whose subscription does not decode (not a bench member) gets nothing.
                .map(|m| (m.member_id.to_string(), decode_subscription(&m.metadata).unwrap_or_default()))
                .collect();
            let mut out = Vec::with_capacity(subscriptions.len());
            for (member, assignment) in range_assignment(&subscriptions, partitions) {
                out.push(
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(&member))
                        .with_assignment(encode_assignment(&assignment).map_err(Failure::Fatal)?),
                );
            }
            out
        } else {
            Vec::new()
        };
        let sync_version = self.version(ApiKey::SyncGroup).await?;
        let mut request = SyncGroupRequest::default()
            .with_group_id(GroupId(s(&self.group_id)))
            .with_generation_id(self.generation_id)
            .with_member_id(s(&self.member_id))
            .with_assignments(assignments);
        if sync_version >= 5 {
            request =
                request.with_protocol_type(Some(s(PROTOCOL_TYPE))).with_protocol_name(Some(s(&self.protocol_name)));
        }
        let synced = self.call(&request, REBALANCE_REQUEST_TIMEOUT, "SyncGroup").await?;
        match synced.error_code {
            0 => decode_assignment(&synced.assignment).map(Step::Assigned).map_err(Failure::Fatal),
            codes::REBALANCE_IN_PROGRESS | codes::ILLEGAL_GENERATION => {
                Ok(Step::Retry(format!("SyncGroup: {}", error_name(synced.error_code))))
            }
            codes::UNKNOWN_MEMBER_ID => {
                self.member_id.clear();
                Ok(Step::Again)
            }
            code => Err(self.failure(code, "SyncGroup")),
        }
    }

    /// A nonzero group error code as a [`Failure`]: coordinator errors (after which the
    /// coordinator is looked up again) and rebalances are worth retrying, others are fatal.
    fn failure(&mut self, code: i16, what: &str) -> Failure {
        let reason = format!("{what}: {}", error_name(code));
        match code {
            codes::COORDINATOR_NOT_AVAILABLE | codes::NOT_COORDINATOR => {
                self.coordinator = None;
                Failure::Retry(reason)
            }
            codes::COORDINATOR_LOAD_IN_PROGRESS | codes::REBALANCE_IN_PROGRESS => Failure::Retry(reason),
            _ => Failure::Fatal(reason),
        }
    }

    /// One heartbeat. REBALANCE_IN_PROGRESS asks for a rejoin; a missed generation or an
    /// unknown member id too, reported as an error (this member was dropped from the group).
    pub async fn heartbeat(&mut self) -> Result<Outcome, String> {
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(s(&self.group_id)))
            .with_generation_id(self.generation_id)
            .with_member_id(s(&self.member_id));
        let response = match self.call(&request, REQUEST_TIMEOUT, "Heartbeat").await {
            Ok(r) => r,
            Err(Failure::Retry(why)) => return Ok(Outcome::Rejoin { error: Some(why) }),
            Err(Failure::Fatal(e)) => return Err(format!("group {}: {e}", self.group_id)),
        };
        self.outcome(response.error_code, "Heartbeat", true)
    }

    /// What a heartbeat's or commit's error code asks for. `routine`: a heartbeat, for which a
    /// rebalance or a moving coordinator is ordinary; for a commit they mean positions were
    /// not saved, which is reported.
    fn outcome(&mut self, code: i16, what: &str, routine: bool) -> Result<Outcome, String> {
        match code {
            0 => Ok(Outcome::Ok),
            codes::REBALANCE_IN_PROGRESS if routine => Ok(Outcome::Rejoin { error: None }),
            codes::COORDINATOR_LOAD_IN_PROGRESS | codes::COORDINATOR_NOT_AVAILABLE | codes::NOT_COORDINATOR => {
                self.coordinator = None;
                Ok(Outcome::Rejoin { error: (!routine).then(|| format!("{what}: {}", error_name(code))) })
            }
            codes::REBALANCE_IN_PROGRESS | codes::ILLEGAL_GENERATION => {
                Ok(Outcome::Rejoin { error: Some(format!("{what}: {}", error_name(code))) })
            }
            codes::UNKNOWN_MEMBER_ID => {
                self.member_id.clear();
                Ok(Outcome::Rejoin { error: Some(format!("{what}: {}", error_name(code))) })
            }
            code => Err(format!("group {}: {what}: {}", self.group_id, error_name(code))),
        }
    }

    /// Commits `offsets` (partition, next offset to read) of `topic` under this generation.
    pub async fn commit(&mut self, topic: &str, offsets: &[(i32, i64)]) -> Result<Outcome, String> {
        if offsets.is_empty() {
            return Ok(Outcome::Ok);
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(&self.group_id)))
            .with_generation_id_or_member_epoch(self.generation_id)
            .with_member_id(s(&self.member_id))
            .with_topics(vec![OffsetCommitRequestTopic::default().with_name(TopicName(s(topic))).with_partitions(
                offsets
                    .iter()
                    .map(|(p, o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*o)
                            .with_committed_metadata(Some(StrBytes::from_static_str("")))
                    })
                    .collect(),
            )]);
        let response = match self.call(&request, REQUEST_TIMEOUT, "OffsetCommit").await {
            Ok(r) => r,
            Err(Failure::Retry(why)) => return Ok(Outcome::Rejoin { error: Some(why) }),
            Err(Failure::Fatal(e)) => return Err(format!("group {}: {e}", self.group_id)),
        };
        let mut answered = 0;
        for t in &response.topics {
            for p in &t.partitions {
                answered += 1;
                if p.error_code != 0 {
                    return self.outcome(p.error_code, &format!("OffsetCommit {topic}/{}", p.partition_index), false);
                }
            }
        }
        if answered != offsets.len() {
            return Err(format!("OffsetCommit {topic}: {answered} partitions answered of {}", offsets.len()));
        }
        Ok(Outcome::Ok)
    }

    /// The group's committed offsets of `partitions` of `topic` (`None`: nothing committed).
    pub async fn committed(&mut self, topic: &str, partitions: &[i32]) -> Result<HashMap<i32, Option<i64>>, String> {
        if partitions.is_empty() {
            return Ok(HashMap::new());
        }
        let deadline = Instant::now() + OFFSET_FETCH_DEADLINE;
        loop {
            match self.committed_once(topic, partitions).await {
                Ok(offsets) => return Ok(offsets),
                Err(Failure::Retry(why)) if Instant::now() < deadline => {
                    tracing::debug!("OffsetFetch {}: {why}; retrying", self.group_id);
                    glommio::timer::sleep(RETRY_BACKOFF).await;
                }
                Err(f) => return Err(format!("group {}: {}", self.group_id, f.reason())),
            }
        }
    }

    async fn committed_once(&mut self, topic: &str, partitions: &[i32]) -> Result<HashMap<i32, Option<i64>>, Failure> {
        let request = OffsetFetchRequest::default().with_group_id(GroupId(s(&self.group_id))).with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partition_indexes(partitions.to_vec()),
        ]));
        let response = self.call(&request, REQUEST_TIMEOUT, "OffsetFetch").await?;
        if response.error_code != 0 {
            return Err(self.failure(response.error_code, "OffsetFetch"));
        }
        let mut out = HashMap::new();
        for t in response.topics.iter().filter(|t| t.name.0.as_str() == topic) {
            for p in &t.partitions {
                match p.error_code {
                    0 => {}
                    codes::UNSTABLE_OFFSET_COMMIT => {
                        return Err(Failure::Retry(format!("OffsetFetch: {}", error_name(p.error_code))))
                    }
                    code => {
                        return Err(Failure::Fatal(format!(
                            "OffsetFetch {topic}/{}: {}",
                            p.partition_index,
                            error_name(code)
                        )))
                    }
                }
                out.insert(p.partition_index, (p.committed_offset >= 0).then_some(p.committed_offset));
            }
        }
        if let Some(p) = partitions.iter().find(|p| !out.contains_key(p)) {
            return Err(Failure::Fatal(format!("OffsetFetch {topic}/{p}: no answer")));
        }
        Ok(out)
    }

    /// Leaves the group (LeaveGroup); nothing to do if it never joined.
    pub async fn leave(&mut self) -> Result<(), String> {
        if self.member_id.is_empty() {
            return Ok(());
        }
        let request = LeaveGroupRequest::default()
            .with_group_id(GroupId(s(&self.group_id)))
            .with_members(vec![MemberIdentity::default().with_member_id(s(&self.member_id))]);
        let response = self
            .call(&request, REQUEST_TIMEOUT, "LeaveGroup")
            .await
            .map_err(|f| format!("group {}: {}", self.group_id, f.reason()))?;
        let code = if response.error_code != 0 {
            response.error_code
        } else {
            response.members.iter().map(|m| m.error_code).find(|c| *c != 0).unwrap_or(0)
        };
        self.member_id.clear();
        if code != 0 {
            return Err(format!("group {}: LeaveGroup: {}", self.group_id, error_name(code)));
        }
        Ok(())
    }
}

/// `call` bounded by `limit`; a lost connection or no answer in time is worth retrying.
async fn within<T>(
    limit: Duration,
    what: &str,
    addr: &str,
    call: impl Future<Output = Result<T, String>>,
) -> Result<T, Failure> {
    match glommio::timer::timeout(limit, async { Ok::<_, glommio::GlommioError<()>>(call.await) }).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::Retry(format!("{what}: {e}"))),
        Err(_) => Err(Failure::Retry(format!("{what}: no answer from {addr} within {} s", limit.as_secs()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(members: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        members.iter().map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect())).collect()
    }

    fn parts(topics: &[(&str, i32)]) -> BTreeMap<String, Vec<i32>> {
        topics.iter().map(|(t, n)| (t.to_string(), (0..*n).collect())).collect()
    }

    #[test]
    fn range_spreads_partitions_in_member_order_with_the_remainder_first() {
        let a = range_assignment(&subs(&[("m-b", &["t"]), ("m-a", &["t"]), ("m-c", &["t"])]), &parts(&[("t", 7)]));
        assert_eq!(a["m-a"]["t"], vec![0, 1, 2]);
        assert_eq!(a["m-b"]["t"], vec![3, 4]);
        assert_eq!(a["m-c"]["t"], vec![5, 6]);
    }

    #[test]
    fn range_gives_every_partition_to_exactly_one_subscriber() {
        for members in 1..=9 {
            for n in 0..=12 {
                let names: Vec<String> = (0..members).map(|i| format!("member-{i}")).collect();
                let s: BTreeMap<String, Vec<String>> =
                    names.iter().map(|m| (m.clone(), vec!["t".to_string()])).collect();
                let a = range_assignment(&s, &parts(&[("t", n)]));
                assert_eq!(a.len(), members, "every member answered");
                let mut all: Vec<i32> = a.values().flat_map(|x| x.get("t").cloned().unwrap_or_default()).collect();
                all.sort_unstable();
                assert_eq!(all, (0..n).collect::<Vec<_>>(), "{members} members, {n} partitions");
                let sizes: Vec<usize> = a.values().map(|x| x.get("t").map_or(0, Vec::len)).collect();
                assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "balanced: {sizes:?}");
            }
        }
    }

    #[test]
    fn range_assigns_a_topic_only_to_its_subscribers_and_unknown_topics_to_nobody() {
        let a = range_assignment(
            &subs(&[("x", &["t1"]), ("y", &["t1", "t2"]), ("z", &["nope"])]),
            &parts(&[("t1", 4), ("t2", 3)]),
        );
        assert_eq!(a["x"], BTreeMap::from([("t1".to_string(), vec![0, 1])]));
        assert_eq!(a["y"], BTreeMap::from([("t1".to_string(), vec![2, 3]), ("t2".to_string(), vec![0, 1, 2])]));
        assert!(a["z"].is_empty());
        // Deterministic: the same input gives the same answer.
        assert_eq!(
            a,
            range_assignment(
                &subs(&[("x", &["t1"]), ("y", &["t1", "t2"]), ("z", &["nope"])]),
                &parts(&[("t1", 4), ("t2", 3)])
            )
        );
    }

    #[test]
    fn subscription_is_kafkas_v0_layout_and_round_trips() {
        let bytes = encode_subscription(&["ab".to_string()]).unwrap();
        // version 0, topics [ "ab" ], user data null.
        assert_eq!(&bytes[..], &[0, 0, 0, 0, 0, 1, 0, 2, b'a', b'b', 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(decode_subscription(&bytes).unwrap(), vec!["ab".to_string()]);
        // The broker's own decoder (used for DescribeGroups and OffsetDelete) reads it too.
        assert_eq!(sluice_net::group::consumer_subscription_topics(&bytes), Some(vec!["ab".to_string()]));
    }

    #[test]
    fn a_newer_subscription_version_is_read_as_the_newest_known() {
        // v1 as Kafka's Java client writes it: topics, user data, owned partitions.
        let v1 = ConsumerProtocolSubscription::default().with_topics(vec![s("t")]).with_owned_partitions(vec![]);
        let mut buf = BytesMut::new();
        buf.put_i16(1);
        v1.encode(&mut buf, 1).unwrap();
        assert_eq!(decode_subscription(&buf).unwrap(), vec!["t".to_string()]);
        assert!(decode_subscription(&[0]).is_err());
        assert!(decode_subscription(&[0xff, 0xff, 0, 0]).is_err(), "negative version");
        assert!(decode_subscription(&[0, 0, 0, 0, 0, 9]).is_err(), "truncated");
    }

    #[test]
    fn assignment_is_kafkas_v0_layout_and_round_trips() {
        let a = TopicAssignment::from([("t".to_string(), vec![2, 5])]);
        let bytes = encode_assignment(&a).unwrap();
        // version 0, [ topic "t", partitions [2, 5] ], user data null.
        assert_eq!(
            &bytes[..],
            &[0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(decode_assignment(&bytes).unwrap(), a);
        assert_eq!(
            decode_assignment(&encode_assignment(&TopicAssignment::new()).unwrap()).unwrap(),
            TopicAssignment::new()
        );
        assert_eq!(decode_assignment(&[]).unwrap(), TopicAssignment::new(), "empty bytes: nothing assigned");
        assert!(decode_assignment(&[0, 0, 0, 0, 0, 1]).is_err(), "truncated");
    }
}
