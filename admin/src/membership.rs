//! The console consumer's membership in a consumer group (the classic protocol, as Kafka's
//! console consumer with `--group`): join (JoinGroup, protocol type `consumer`, the `range`
//! assignor, JoinGroup v4+'s MEMBER_ID_REQUIRED round), assign when elected leader, sync,
//! heartbeat between fetches, commit as the member, leave on exit. The embedded `consumer`
//! protocol and the range assignor are the bench's (`sluice_harness::bench::group_member`),
//! which are pure and unit-tested there.
//!
//! Owns: the member id and generation. Must never: keep consuming after the coordinator said
//! to rejoin (the caller drops its partitions and calls [`Member::join`] again), or wait on a
//! join without a deadline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest};
use sluice_engine::error_code::codes;
use sluice_harness::bench::group_member::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription, range_assignment, ASSIGNOR,
    PROTOCOL_TYPE,
};

use crate::error::{kafka_error, CliError, CliResult};
use crate::offsets::{commit, Committer, TopicOffsets};
use crate::session::{s, Session};

/// Kafka's console consumer defaults (session.timeout.ms 45 s is the 3.x default; 10 s keeps
/// a killed CLI's partitions from waiting long). Heartbeats go out every 3 s.
pub const SESSION_TIMEOUT_MS: i32 = 10_000;
pub const REBALANCE_TIMEOUT_MS: i32 = 30_000;
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
const JOIN_DEADLINE: Duration = Duration::from_secs(90);
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

pub struct Member {
    pub group: String,
    topic: String,
    member_id: String,
    generation_id: i32,
    last_heartbeat: Instant,
}

/// Whether the member still holds its partitions.
#[derive(Debug, PartialEq, Eq)]
pub enum Standing {
    Member,
    Rejoin,
}

impl Member {
    pub fn new(group: &str, topic: &str) -> Member {
        Member {
            group: group.to_string(),
            topic: topic.to_string(),
            member_id: String::new(),
            generation_id: -1,
            last_heartbeat: Instant::now(),
        }
    }

    /// Joins (or rejoins) the group; returns this member's partitions of the topic.
    pub fn join(&mut self, session: &mut Session) -> CliResult<Vec<i32>> {
        let deadline = Instant::now() + JOIN_DEADLINE;
        loop {
            if Instant::now() >= deadline {
                return Err(CliError::kafka(format!(
                    "could not join group '{}' within {}s; see it with `sluice group describe {}`",
                    self.group,
                    JOIN_DEADLINE.as_secs(),
                    self.group
                )));
            }
            match self.join_once(session)? {
                Some(partitions) => {
                    self.last_heartbeat = Instant::now();
                    return Ok(partitions);
                }
                None => std::thread::sleep(RETRY_BACKOFF),
            }
        }
    }

    /// One JoinGroup + SyncGroup round; `None` when it must be repeated.
    fn join_once(&mut self, session: &mut Session) -> CliResult<Option<Vec<i32>>> {
        let metadata = encode_subscription(std::slice::from_ref(&self.topic))?;
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_session_timeout_ms(SESSION_TIMEOUT_MS)
            .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
            .with_member_id(s(&self.member_id))
            .with_protocol_type(s(PROTOCOL_TYPE))
            .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(s(ASSIGNOR)).with_metadata(metadata)]);
        let joined = session.coordinator(&self.group)?.call(&request)?;
        match joined.error_code {
            0 => {}
            codes::MEMBER_ID_REQUIRED => {
                self.member_id = joined.member_id.to_string();
                return Ok(None);
            }
            codes::UNKNOWN_MEMBER_ID => {
                self.member_id.clear();
                return Ok(None);
            }
            codes::REBALANCE_IN_PROGRESS
            | codes::COORDINATOR_LOAD_IN_PROGRESS
            | codes::COORDINATOR_NOT_AVAILABLE
            | codes::NOT_COORDINATOR => return Ok(None),
            code => return Err(kafka_error(&format!("join group '{}'", self.group), code, None)),
        }
        self.member_id = joined.member_id.to_string();
        self.generation_id = joined.generation_id;
        let assignments = if joined.leader == joined.member_id {
            let mut subscriptions = BTreeMap::new();
            for m in &joined.members {
                subscriptions.insert(m.member_id.to_string(), decode_subscription(&m.metadata)?);
            }
            let mut partitions = BTreeMap::new();
            for topic in subscriptions.values().flatten() {
                if !partitions.contains_key(topic) {
                    // A topic a member names that does not exist gets no partitions.
                    if let Ok(parts) = session.partitions(topic) {
                        partitions.insert(topic.clone(), parts.iter().map(|p| p.partition).collect());
                    }
                }
            }
            range_assignment(&subscriptions, &partitions)
                .iter()
                .map(|(member, a)| {
                    Ok(SyncGroupRequestAssignment::default()
                        .with_member_id(s(member))
                        .with_assignment(encode_assignment(a)?))
                })
                .collect::<Result<Vec<_>, String>>()?
        } else {
            Vec::new()
        };
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_generation_id(self.generation_id)
            .with_member_id(s(&self.member_id))
            .with_protocol_type(Some(s(PROTOCOL_TYPE)))
            .with_protocol_name(Some(s(ASSIGNOR)))
            .with_assignments(assignments);
        let synced = session.coordinator(&self.group)?.call(&sync)?;
        match synced.error_code {
            0 => {}
            codes::REBALANCE_IN_PROGRESS | codes::ILLEGAL_GENERATION | codes::NOT_COORDINATOR => return Ok(None),
            codes::UNKNOWN_MEMBER_ID => {
                self.member_id.clear();
                return Ok(None);
            }
            code => return Err(kafka_error(&format!("sync group '{}'", self.group), code, None)),
        }
        let mine = decode_assignment(&synced.assignment)?;
        Ok(Some(mine.get(&self.topic).cloned().unwrap_or_default()))
    }

    /// Heartbeats when one is due.
    pub fn heartbeat_if_due(&mut self, session: &mut Session) -> CliResult<Standing> {
        if self.last_heartbeat.elapsed() < HEARTBEAT_INTERVAL {
            return Ok(Standing::Member);
        }
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_generation_id(self.generation_id)
            .with_member_id(s(&self.member_id));
        let response = session.coordinator(&self.group)?.call(&request)?;
        self.last_heartbeat = Instant::now();
        self.standing(response.error_code, "heartbeat")
    }

    fn standing(&mut self, code: i16, what: &str) -> CliResult<Standing> {
        match code {
            0 => Ok(Standing::Member),
            codes::REBALANCE_IN_PROGRESS | codes::ILLEGAL_GENERATION | codes::NOT_COORDINATOR => Ok(Standing::Rejoin),
            codes::UNKNOWN_MEMBER_ID | codes::FENCED_INSTANCE_ID => {
                self.member_id.clear();
                Ok(Standing::Rejoin)
            }
            code => Err(kafka_error(&format!("{what} in group '{}'", self.group), code, None)),
        }
    }

    /// Commits `offsets` as this member.
    pub fn commit(&mut self, session: &mut Session, offsets: &TopicOffsets) -> CliResult<Standing> {
        if offsets.is_empty() {
            return Ok(Standing::Member);
        }
        let committer = Committer::Member { member_id: &self.member_id, generation_id: self.generation_id };
        let code = commit(session, &self.group, committer, offsets)?;
        self.standing(code, "commit offsets")
    }

    /// Leaves the group, so its partitions are reassigned at once (best effort).
    pub fn leave(&mut self, session: &mut Session) {
        if self.member_id.is_empty() {
            return;
        }
        let request = LeaveGroupRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_members(vec![MemberIdentity::default().with_member_id(s(&self.member_id))]);
        if let Ok(conn) = session.coordinator(&self.group) {
            let _ = conn.call(&request);
        }
    }
}
