//! What of a consumer group's durable state changed since it was last written: the group's
//! epochs, each member (subscription, epochs, current assignment) and each member's target.
//! The edge turns [`Changes`] into `__consumer_offsets` records (Kafka writes the same parts as
//! ConsumerGroupMetadata, ConsumerGroupMemberMetadata, ConsumerGroupTargetAssignmentMetadata/
//! Member and ConsumerGroupCurrentMemberAssignment records).
//!
//! Owns: the last-written view and the diff against it. Must never: count session or
//! revocation deadlines as durable (they restart on load), so heartbeats write nothing.

use std::collections::BTreeMap;

use super::member::ConsumerMember;
use super::topics::{Assignment, TopicInfo};

/// The group-level durable fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupRecord {
    pub group_epoch: i32,
    pub target_epoch: i32,
    pub assignor: Option<String>,
    /// The subscribed topics the target was computed from (Kafka's PartitionMetadata record):
    /// a topic change while the coordinator was away moves the epoch on load.
    pub subscribed_topics: BTreeMap<String, TopicInfo>,
}

/// A diff to write: `None` values are deletions (tombstones).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub group: Option<GroupRecord>,
    pub members: Vec<(String, Option<ConsumerMember>)>,
    pub targets: Vec<(String, Option<Assignment>)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.group.is_none() && self.members.is_empty() && self.targets.is_empty()
    }
}

/// The state as last written.
#[derive(Clone, Debug, Default)]
pub struct Written {
    group: Option<GroupRecord>,
    members: BTreeMap<String, ConsumerMember>,
    targets: BTreeMap<String, Assignment>,
}

/// A member without its deadlines (what is durable of it).
pub fn durable(member: &ConsumerMember) -> ConsumerMember {
    ConsumerMember { session_deadline_ms: 0, revocation_deadline_ms: None, ..member.clone() }
}

impl Written {
    /// The diff from the last written state to `group`/`members`/`targets`, which becomes the
    /// written state.
    pub fn take(
        &mut self,
        group: GroupRecord,
        members: &BTreeMap<String, ConsumerMember>,
        targets: &BTreeMap<String, Assignment>,
    ) -> Changes {
        let mut changes = Changes::default();
        if self.group.as_ref() != Some(&group) {
            changes.group = Some(group.clone());
            self.group = Some(group);
        }
        for (id, m) in members {
            let d = durable(m);
            if self.members.get(id) != Some(&d) {
                changes.members.push((id.clone(), Some(d.clone())));
                self.members.insert(id.clone(), d);
            }
        }
        let gone: Vec<String> = self.members.keys().filter(|id| !members.contains_key(*id)).cloned().collect();
        for id in gone {
            self.members.remove(&id);
            changes.members.push((id, None));
        }
        for (id, t) in targets {
            if self.targets.get(id) != Some(t) {
                changes.targets.push((id.clone(), Some(t.clone())));
                self.targets.insert(id.clone(), t.clone());
            }
        }
        let gone: Vec<String> = self.targets.keys().filter(|id| !targets.contains_key(*id)).cloned().collect();
        for id in gone {
            self.targets.remove(&id);
            changes.targets.push((id, None));
        }
        changes
    }

    /// Everything written, as deletions (the group is deleted).
    pub fn tombstones(&mut self) -> Changes {
        let written = std::mem::take(self);
        Changes {
            group: None,
            members: written.members.into_keys().map(|id| (id, None)).collect(),
            targets: written.targets.into_keys().map(|id| (id, None)).collect(),
        }
    }

    /// A state loaded from the log counts as written.
    pub fn loaded(
        group: GroupRecord,
        members: &BTreeMap<String, ConsumerMember>,
        targets: &BTreeMap<String, Assignment>,
    ) -> Written {
        Written {
            group: Some(group),
            members: members.iter().map(|(id, m)| (id.clone(), durable(m))).collect(),
            targets: targets.clone(),
        }
    }
}
