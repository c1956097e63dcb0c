//! One member of a consumer-protocol group: its subscription, its epochs, its reconciliation
//! state and the partitions it owns (assigned, or pending revocation).
//!
//! Owns: plain member data. Must never: decide anything (the group and
//! [`super::reconciliation`] do).

use std::collections::BTreeSet;

use super::topics::Assignment;

/// Member epoch a static member leaves with to keep its assignment (Kafka's
/// `LEAVE_GROUP_STATIC_MEMBER_EPOCH`).
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;
/// Member epoch of a member leaving for good (`LEAVE_GROUP_MEMBER_EPOCH`).
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;

/// Kafka's `MemberState` of the consumer protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// The member owns exactly its assigned partitions at the target epoch (or is
    /// waiting for a newer target).
    Stable,
    /// The member must revoke `pending_revocation` before it may move to the next epoch.
    UnrevokedPartitions,
    /// The member is at the target epoch but some of its target partitions are still owned
    /// by other members; it gets them once they are released.
    UnreleasedPartitions,
}

impl MemberState {
    /// Kafka's name (persisted in CurrentMemberAssignment records).
    pub fn value(self) -> i8 {
        match self {
            MemberState::Stable => 1,
            MemberState::UnrevokedPartitions => 2,
            MemberState::UnreleasedPartitions => 3,
        }
    }

    pub fn from_value(v: i8) -> MemberState {
        match v {
            2 => MemberState::UnrevokedPartitions,
            3 => MemberState::UnreleasedPartitions,
            _ => MemberState::Stable,
        }
    }
}

/// One member. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: MemberState,
    pub rebalance_timeout_ms: u64,
    /// `server_assignor` the member asked for, if any.
    pub server_assignor: Option<String>,
    pub subscribed_topic_names: BTreeSet<String>,
    pub subscribed_topic_regex: Option<String>,
    /// Partitions the member owns and may keep (told in its last assignment).
    pub assigned: Assignment,
    /// Partitions the member must give up before moving on (still its own until then).
    pub pending_revocation: Assignment,
    /// The session ends unless the member heartbeats before this.
    pub session_deadline_ms: u64,
    /// While revoking: fenced unless it has revoked by this (its rebalance timeout).
    pub revocation_deadline_ms: Option<u64>,
}

impl ConsumerMember {
    pub fn new(member_id: &str) -> ConsumerMember {
        ConsumerMember {
            member_id: member_id.to_string(),
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            member_epoch: 0,
            previous_member_epoch: 0,
            state: MemberState::Stable,
            rebalance_timeout_ms: 0,
            server_assignor: None,
            subscribed_topic_names: BTreeSet::new(),
            subscribed_topic_regex: None,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            session_deadline_ms: 0,
            revocation_deadline_ms: None,
        }
    }

    /// Left with epoch -2: keeps its assignment until the instance rejoins or its session ends.
    pub fn is_static_left(&self) -> bool {
        self.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH
    }

    /// Every partition the member owns: assigned and pending revocation.
    pub fn owned(&self) -> impl Iterator<Item = (&[u8; 16], i32)> {
        self.assigned.iter().chain(self.pending_revocation.iter()).flat_map(|(t, ps)| ps.iter().map(move |p| (t, *p)))
    }
}
