//! The consumer-protocol group state machine (KIP-848), sans I/O: one [`ConsumerGroup`] per
//! group id, next to the classic [`crate::group::coordinator::Group`].
//!
//! Owns: the group epoch (bumped by every membership, subscription or subscribed-topic
//! change), the target assignment and its epoch (recomputed by the server-side assignor,
//! [`assignor`], whenever the group epoch moves), each member's epoch and reconciliation
//! towards its target ([`reconciliation`]), which member owns which partition, static
//! membership (`group.instance.id`, epoch -2 to leave and keep the assignment), sessions and
//! revocation deadlines as plain millisecond inputs, and regex subscriptions resolved against
//! the [`TopicsImage`] the edge passes in. Committed offsets stay in the classic `Group` of the
//! same id (the edge keeps both); this type only validates commits' member epochs.
//!
//! Must never: do I/O, read a clock, use randomness, or let a partition be owned (assigned or
//! pending revocation) by two members at once.

pub mod assignor;
pub mod changes;
pub mod member;
pub mod reconciliation;
pub mod topics;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use member::{ConsumerMember, MemberState, LEAVE_GROUP_MEMBER_EPOCH, LEAVE_GROUP_STATIC_MEMBER_EPOCH};
pub use topics::{Assignment, TopicId, TopicInfo, TopicsImage};

use super::config::{AssignorName, ConsumerGroupConfig};
use assignor::MemberSpec;
use sluice_engine::error_code::codes;

/// One ConsumerGroupHeartbeat, decoded. `None` fields mean "unchanged since the last one".
#[derive(Clone, Debug, Default)]
pub struct HeartbeatRequest {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// The partitions the member owns now; `None`: unchanged since its last heartbeat.
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

/// What a ConsumerGroupHeartbeat answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatResponse {
    pub error: i16,
    pub error_message: Option<String>,
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's full assignment, when it is new to the member or changed.
    pub assignment: Option<Assignment>,
}

impl HeartbeatResponse {
    pub fn error(code: i16, message: impl Into<String>) -> HeartbeatResponse {
        HeartbeatResponse { error: code, error_message: Some(message.into()), ..Default::default() }
    }
}

/// Why a member left the group (for logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    Left,
    SessionExpired,
    RevocationTimedOut,
}

/// Kafka's consumer-group states (ConsumerGroupDescribe, ListGroups).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerGroupState {
    Empty,
    Assigning,
    Reconciling,
    Stable,
}

impl ConsumerGroupState {
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

/// Something the edge must act on: persist changed state, log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumerGroupEvent {
    /// The group's records changed (epochs, a member, the target assignment).
    Changed,
    /// A member was removed.
    Removed { member_id: String, why: Removal },
}

/// One consumer-protocol group. See the module docs.
#[derive(Clone, Debug)]
pub struct ConsumerGroup {
    pub id: String,
    group_epoch: i32,
    target_epoch: i32,
    members: BTreeMap<String, ConsumerMember>,
    /// instance id → member id.
    static_members: BTreeMap<String, String>,
    /// The target assignment, per member (every member has an entry).
    target: BTreeMap<String, Assignment>,
    /// Who owns each partition (assigned or pending revocation).
    owners: HashMap<(TopicId, i32), String>,
    /// The subscribed topics the target was computed from (name → id, partitions).
    subscribed_topics: BTreeMap<String, TopicInfo>,
    /// Regex → the topic names it matched at `topics_version`.
    resolved_regex: BTreeMap<String, BTreeSet<String>>,
    topics_version: Option<u64>,
    /// The assignor of the last target.
    assignor: Option<AssignorName>,
    events: Vec<ConsumerGroupEvent>,
    /// The durable state as last handed out for writing.
    written: changes::Written,
}

impl ConsumerGroup {
    pub fn new(id: &str) -> ConsumerGroup {
        ConsumerGroup {
            id: id.to_string(),
            group_epoch: 0,
            target_epoch: 0,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            target: BTreeMap::new(),
            owners: HashMap::new(),
            subscribed_topics: BTreeMap::new(),
            resolved_regex: BTreeMap::new(),
            topics_version: None,
            assignor: None,
            events: Vec::new(),
            written: changes::Written::default(),
        }
    }

    /// A group as the log left it: members' sessions restart now; partitions claimed twice
    /// (a log cut between two members' records) stay with the first member.
    pub fn restore(
        id: &str,
        now_ms: u64,
        config: &ConsumerGroupConfig,
        topics: &TopicsImage,
        group: changes::GroupRecord,
        members: Vec<ConsumerMember>,
        mut targets: BTreeMap<String, Assignment>,
    ) -> ConsumerGroup {
        let mut g = ConsumerGroup::new(id);
        g.group_epoch = group.group_epoch;
        g.target_epoch = group.target_epoch;
        g.assignor = group.assignor.as_deref().and_then(AssignorName::parse);
        for mut m in members {
            m.session_deadline_ms = now_ms + config.session_timeout_ms;
            m.revocation_deadline_ms =
                (m.state == MemberState::UnrevokedPartitions).then_some(now_ms + m.rebalance_timeout_ms);
            for set in [&mut m.assigned, &mut m.pending_revocation] {
                for (t, ps) in set.iter_mut() {
                    ps.retain(|p| !g.owners.contains_key(&(*t, *p)));
                }
                set.retain(|_, ps| !ps.is_empty());
            }
            if let Some(instance) = &m.instance_id {
                g.static_members.insert(instance.clone(), m.member_id.clone());
            }
            targets.entry(m.member_id.clone()).or_default();
            g.claim(&m);
            g.members.insert(m.member_id.clone(), m);
        }
        targets.retain(|id, _| g.members.contains_key(id));
        g.target = targets;
        g.subscribed_topics = group.subscribed_topics.clone();
        g.target_epoch = g.target_epoch.min(g.group_epoch);
        g.written = changes::Written::loaded(group, &g.members, &g.target);
        // Topics changed while the group was not loaded: a new epoch and target, like any
        // other subscribed-topic change.
        if g.refresh_topics(topics) || g.target_epoch < g.group_epoch {
            if g.target_epoch == g.group_epoch {
                g.group_epoch += 1;
            }
            g.compute_target(config, topics);
        }
        g.events.clear();
        debug_assert!(g.check_invariants());
        g
    }

    /// The durable state changed since the last call, to be written.
    pub fn take_changes(&mut self) -> changes::Changes {
        let group = changes::GroupRecord {
            group_epoch: self.group_epoch,
            target_epoch: self.target_epoch,
            assignor: self.assignor.map(|a| a.name().to_string()),
            subscribed_topics: self.subscribed_topics.clone(),
        };
        self.written.take(group, &self.members, &self.target)
    }

    /// Deletions of everything written (the group goes away).
    pub fn take_tombstones(&mut self) -> changes::Changes {
        self.written.tombstones()
    }

    pub fn group_epoch(&self) -> i32 {
        self.group_epoch
    }
    pub fn target_epoch(&self) -> i32 {
        self.target_epoch
    }
    pub fn members(&self) -> impl Iterator<Item = &ConsumerMember> {
        self.members.values()
    }
    pub fn member(&self, member_id: &str) -> Option<&ConsumerMember> {
        self.members.get(member_id)
    }
    pub fn member_count(&self) -> usize {
        self.members.len()
    }
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
    pub fn target_of(&self, member_id: &str) -> Option<&Assignment> {
        self.target.get(member_id)
    }
    pub fn assignor_name(&self) -> Option<AssignorName> {
        self.assignor
    }
    /// Names of the topics some member subscribes to (that exist).
    pub fn subscribed_topic_names(&self) -> impl Iterator<Item = &String> {
        self.subscribed_topics.keys()
    }
    pub fn owner_of(&self, topic: &TopicId, partition: i32) -> Option<&str> {
        self.owners.get(&(*topic, partition)).map(String::as_str)
    }

    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.target_epoch != self.group_epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| !m.is_static_left() && (m.member_epoch != self.target_epoch || m.state != MemberState::Stable))
        {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// Takes the events produced since the last call.
    pub fn take_events(&mut self) -> Vec<ConsumerGroupEvent> {
        std::mem::take(&mut self.events)
    }

    /// Kafka's checks of a request that do not depend on the group.
    pub fn validate_request(
        req: &HeartbeatRequest,
        version: i16,
        config: &ConsumerGroupConfig,
    ) -> Result<(), (i16, String)> {
        let invalid = |m: &str| Err((codes::INVALID_REQUEST, m.to_string()));
        if req.member_id.is_empty() && (version >= 1 || req.member_epoch != 0) {
            return invalid("MemberId can't be empty.");
        }
        if req.instance_id.as_deref() == Some("") {
            return invalid("InstanceId can't be empty.");
        }
        if req.rack_id.as_deref() == Some("") {
            return invalid("RackId can't be empty.");
        }
        match req.member_epoch {
            0 => {
                if req.rebalance_timeout_ms == -1 {
                    return invalid("RebalanceTimeoutMs must be provided in first request.");
                }
                if !req.owned.as_ref().is_some_and(|o| o.is_empty()) {
                    return invalid("TopicPartitions must be empty when (re-)joining.");
                }
                let has_regex = req.subscribed_topic_regex.as_deref().is_some_and(|r| !r.is_empty());
                if req.subscribed_topic_names.is_none() && !has_regex {
                    return invalid("SubscribedTopicNames or SubscribedTopicRegex must be set in first request.");
                }
            }
            LEAVE_GROUP_STATIC_MEMBER_EPOCH if req.instance_id.is_none() => {
                return invalid("InstanceId can't be null when leaving with epoch -2.");
            }
            e if e < LEAVE_GROUP_STATIC_MEMBER_EPOCH => return invalid("MemberEpoch is invalid."),
            _ => {}
        }
        if let Some(regex) = req.subscribed_topic_regex.as_deref().filter(|r| !r.is_empty()) {
            if let Err(e) = topics::compile_regex(regex) {
                return Err((
                    codes::INVALID_REGULAR_EXPRESSION,
                    format!("SubscribedTopicRegex `{regex}` is not a valid regular expression: {e}"),
                ));
            }
        }
        if let Some(name) = req.server_assignor.as_deref() {
            let known = AssignorName::parse(name).is_some_and(|a| config.assignors.contains(&a));
            if !known {
                return Err((codes::UNSUPPORTED_ASSIGNOR, format!("ServerAssignor {name} is not supported.")));
            }
        }
        Ok(())
    }

    /// One ConsumerGroupHeartbeat (already validated by [`ConsumerGroup::validate_request`]).
    pub fn heartbeat(
        &mut self,
        now_ms: u64,
        config: &ConsumerGroupConfig,
        topics: &TopicsImage,
        req: HeartbeatRequest,
    ) -> HeartbeatResponse {
        let result = self.heartbeat_inner(now_ms, config, topics, req);
        debug_assert!(self.check_invariants(), "consumer group {} broke an invariant", self.id);
        match result {
            Ok(r) => r,
            Err((code, message)) => HeartbeatResponse::error(code, message),
        }
    }

    fn heartbeat_inner(
        &mut self,
        now_ms: u64,
        config: &ConsumerGroupConfig,
        topics: &TopicsImage,
        req: HeartbeatRequest,
    ) -> Result<HeartbeatResponse, (i16, String)> {
        if req.member_epoch == LEAVE_GROUP_MEMBER_EPOCH || req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            return self.leave(now_ms, config, topics, &req);
        }
        let interval = config.heartbeat_interval_ms as i32;
        let is_join = req.member_epoch == 0;
        let mut bump = false;
        let old = if is_join {
            let (member, changed) = self.join_member(config, &req)?;
            bump |= changed;
            member
        } else {
            let Some(member) = self.members.get(&req.member_id) else {
                return Err((
                    codes::UNKNOWN_MEMBER_ID,
                    format!("Member {} is not a member of group {}.", req.member_id, self.id),
                ));
            };
            if member.instance_id != req.instance_id && req.instance_id.is_some() {
                return Err((codes::FENCED_INSTANCE_ID, "The instance id does not match the member's.".into()));
            }
            check_member_epoch(member, req.member_epoch, req.owned.as_ref())?;
            member.clone()
        };
        // Subscription updates.
        let mut updated = old.clone();
        updated.client_id = req.client_id.clone();
        updated.client_host = req.client_host.clone();
        if req.rack_id.is_some() {
            updated.rack_id = req.rack_id.clone();
        }
        if req.rebalance_timeout_ms >= 0 {
            updated.rebalance_timeout_ms = req.rebalance_timeout_ms as u64;
        }
        if let Some(names) = &req.subscribed_topic_names {
            updated.subscribed_topic_names = names.iter().filter(|n| !n.is_empty()).cloned().collect();
        }
        if let Some(regex) = &req.subscribed_topic_regex {
            updated.subscribed_topic_regex = Some(regex.clone()).filter(|r| !r.is_empty());
        }
        if let Some(a) = &req.server_assignor {
            updated.server_assignor = Some(a.clone());
        }
        bump |= updated.subscribed_topic_names != old.subscribed_topic_names
            || updated.subscribed_topic_regex != old.subscribed_topic_regex
            || updated.server_assignor != old.server_assignor;
        updated.session_deadline_ms = now_ms + config.session_timeout_ms;
        if changes::durable(&updated) != changes::durable(&old) {
            self.events.push(ConsumerGroupEvent::Changed);
        }
        self.put_member(updated);
        if self.refresh_topics(topics) {
            bump = true;
        }
        if bump {
            self.group_epoch += 1;
            self.events.push(ConsumerGroupEvent::Changed);
        }
        if self.group_epoch > self.target_epoch {
            self.compute_target(config, topics);
        }
        // Reconcile.
        let member = self.members[&req.member_id].clone();
        let next = self.reconciled(&member, topics, req.owned.as_ref());
        let entered_revocation = next.state == MemberState::UnrevokedPartitions
            && (member.state != MemberState::UnrevokedPartitions
                || next.pending_revocation != member.pending_revocation);
        let mut next = next;
        if entered_revocation {
            next.revocation_deadline_ms = Some(now_ms + next.rebalance_timeout_ms);
        } else if next.state != MemberState::UnrevokedPartitions {
            next.revocation_deadline_ms = None;
        }
        let assignment_changed = next.assigned != old.assigned;
        if next != member {
            self.events.push(ConsumerGroupEvent::Changed);
        }
        let full_request = req.rebalance_timeout_ms != -1
            && (req.subscribed_topic_names.is_some() || req.subscribed_topic_regex.is_some())
            && req.owned.is_some();
        let response = HeartbeatResponse {
            error: codes::NONE,
            error_message: None,
            member_id: next.member_id.clone(),
            member_epoch: next.member_epoch,
            heartbeat_interval_ms: interval,
            assignment: (is_join || full_request || assignment_changed).then(|| next.assigned.clone()),
        };
        self.put_member(next);
        Ok(response)
    }

    /// A member joining with epoch 0: new, rejoining after being fenced (it owns nothing now),
    /// or a static member taking over its instance's assignment. Returns the member and
    /// whether membership changed (a group epoch bump).
    fn join_member(
        &mut self,
        config: &ConsumerGroupConfig,
        req: &HeartbeatRequest,
    ) -> Result<(ConsumerMember, bool), (i16, String)> {
        if let Some(instance) = &req.instance_id {
            if let Some(previous_id) = self.static_members.get(instance).cloned() {
                if previous_id != req.member_id {
                    let previous = &self.members[&previous_id];
                    if !previous.is_static_left() {
                        return Err((
                            codes::UNRELEASED_INSTANCE_ID,
                            format!("Static member {previous_id} with instance id {instance} is still in the group."),
                        ));
                    }
                    if self.members.contains_key(&req.member_id) {
                        return Err((
                            codes::FENCED_INSTANCE_ID,
                            format!("Member {} is another member than instance {instance}'s.", req.member_id),
                        ));
                    }
                    return Ok((self.replace_static_member(&previous_id, &req.member_id), false));
                }
            }
        }
        if let Some(existing) = self.members.get(&req.member_id).cloned() {
            if existing.instance_id.is_some() && existing.instance_id != req.instance_id {
                return Err((codes::FENCED_INSTANCE_ID, "The instance id does not match the member's.".into()));
            }
            // Rejoining with epoch 0: the member has given up its partitions.
            let mut fresh = existing;
            self.release(&fresh);
            fresh.assigned.clear();
            fresh.pending_revocation.clear();
            fresh.previous_member_epoch = fresh.member_epoch;
            fresh.member_epoch = 0;
            fresh.state = MemberState::Stable;
            fresh.revocation_deadline_ms = None;
            self.members.insert(fresh.member_id.clone(), fresh.clone());
            return Ok((fresh, false));
        }
        if self.members.len() >= config.max_size {
            return Err((
                codes::GROUP_MAX_SIZE_REACHED,
                format!("The consumer group has reached its maximum capacity of {} members.", config.max_size),
            ));
        }
        let mut member = ConsumerMember::new(&req.member_id);
        member.instance_id = req.instance_id.clone();
        if let Some(instance) = &req.instance_id {
            self.static_members.insert(instance.clone(), req.member_id.clone());
        }
        self.target.insert(req.member_id.clone(), Assignment::new());
        self.members.insert(req.member_id.clone(), member.clone());
        Ok((member, true))
    }

    /// The new member id takes over a static member that left with epoch -2: its epoch,
    /// assignment and target, so nothing is reassigned.
    fn replace_static_member(&mut self, previous_id: &str, member_id: &str) -> ConsumerMember {
        let mut previous = self.members.remove(previous_id).expect("static member exists");
        self.release(&previous);
        let target = self.target.remove(previous_id).unwrap_or_default();
        previous.member_id = member_id.to_string();
        previous.member_epoch = previous.previous_member_epoch;
        previous.state = MemberState::Stable;
        previous.revocation_deadline_ms = None;
        if let Some(instance) = &previous.instance_id {
            self.static_members.insert(instance.clone(), member_id.to_string());
        }
        self.target.insert(member_id.to_string(), target);
        self.claim(&previous);
        self.members.insert(member_id.to_string(), previous.clone());
        self.events.push(ConsumerGroupEvent::Changed);
        previous
    }

    fn leave(
        &mut self,
        now_ms: u64,
        config: &ConsumerGroupConfig,
        topics: &TopicsImage,
        req: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, (i16, String)> {
        let member_id = match &req.instance_id {
            Some(instance) => match self.static_members.get(instance) {
                Some(id) if *id == req.member_id => id.clone(),
                Some(_) => {
                    return Err((codes::FENCED_INSTANCE_ID, format!("Instance {instance} belongs to another member.")))
                }
                None => return Err((codes::UNKNOWN_MEMBER_ID, format!("Instance {instance} is not in the group."))),
            },
            None => req.member_id.clone(),
        };
        if !self.members.contains_key(&member_id) {
            return Err((
                codes::UNKNOWN_MEMBER_ID,
                format!("Member {member_id} is not a member of group {}.", self.id),
            ));
        }
        let response = HeartbeatResponse {
            member_id: member_id.clone(),
            member_epoch: req.member_epoch,
            heartbeat_interval_ms: 0,
            ..Default::default()
        };
        if req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            // Keeps its assignment (and target) for the instance's return.
            let mut member = self.members[&member_id].clone();
            self.release(&member);
            member.pending_revocation.clear();
            if member.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                member.previous_member_epoch = member.member_epoch;
            }
            member.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
            member.state = MemberState::Stable;
            member.revocation_deadline_ms = None;
            self.claim(&member);
            self.members.insert(member_id, member);
            self.events.push(ConsumerGroupEvent::Changed);
        } else {
            self.remove_member(now_ms, config, topics, &member_id, Removal::Left);
        }
        Ok(response)
    }

    /// Removes a member: its partitions are free, the group epoch moves and a new target is
    /// computed.
    pub fn remove_member(
        &mut self,
        _now_ms: u64,
        config: &ConsumerGroupConfig,
        topics: &TopicsImage,
        member_id: &str,
        why: Removal,
    ) {
        self.remove_members(config, topics, &[(member_id.to_string(), why)]);
    }

    /// Removes members at once: one group epoch bump and one target computation for all of
    /// them (a group whose members all time out together costs one assignment, not one each).
    fn remove_members(&mut self, config: &ConsumerGroupConfig, topics: &TopicsImage, removed: &[(String, Removal)]) {
        let mut any = false;
        for (member_id, why) in removed {
            let Some(member) = self.members.remove(member_id) else { continue };
            self.release(&member);
            self.target.remove(member_id);
            if let Some(instance) = &member.instance_id {
                if self.static_members.get(instance).is_some_and(|m| m == member_id) {
                    self.static_members.remove(instance);
                }
            }
            self.events.push(ConsumerGroupEvent::Removed { member_id: member_id.clone(), why: *why });
            any = true;
        }
        if !any {
            return;
        }
        self.group_epoch += 1;
        self.refresh_topics(topics);
        self.compute_target(config, topics);
        self.events.push(ConsumerGroupEvent::Changed);
        debug_assert!(self.check_invariants());
    }

    /// The earliest session or revocation deadline, if any.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.members.values().flat_map(|m| std::iter::once(m.session_deadline_ms).chain(m.revocation_deadline_ms)).min()
    }

    /// Removes members whose session ended or who did not revoke in time.
    pub fn tick(&mut self, now_ms: u64, config: &ConsumerGroupConfig, topics: &TopicsImage) -> Vec<(String, Removal)> {
        let due: Vec<(String, Removal)> = self
            .members
            .values()
            .filter_map(|m| {
                if m.session_deadline_ms <= now_ms {
                    Some((m.member_id.clone(), Removal::SessionExpired))
                } else if m.revocation_deadline_ms.is_some_and(|d| d <= now_ms) {
                    Some((m.member_id.clone(), Removal::RevocationTimedOut))
                } else {
                    None
                }
            })
            .collect();
        self.remove_members(config, topics, &due);
        due
    }

    /// Re-resolves subscriptions when the topics changed; whether the subscribed topics'
    /// metadata changed (a group epoch bump).
    fn refresh_topics(&mut self, topics: &TopicsImage) -> bool {
        let regexes: BTreeSet<String> =
            self.members.values().filter_map(|m| m.subscribed_topic_regex.clone()).collect();
        let resolved_same =
            regexes.len() == self.resolved_regex.len() && regexes.iter().all(|r| self.resolved_regex.contains_key(r));
        if self.topics_version != Some(topics.version) || !resolved_same {
            self.resolved_regex = regexes
                .into_iter()
                .map(|r| {
                    let matched = topics::resolve_regex(&r, topics);
                    (r, matched)
                })
                .collect();
            self.topics_version = Some(topics.version);
        }
        let mut names: BTreeSet<&String> = BTreeSet::new();
        for m in self.members.values() {
            names.extend(m.subscribed_topic_names.iter());
            if let Some(r) = &m.subscribed_topic_regex {
                names.extend(self.resolved_regex.get(r).into_iter().flatten());
            }
        }
        let subscribed: BTreeMap<String, TopicInfo> =
            names.into_iter().filter_map(|n| topics.topics.get(n).map(|t| (n.clone(), *t))).collect();
        if subscribed != self.subscribed_topics {
            self.subscribed_topics = subscribed;
            true
        } else {
            false
        }
    }

    /// Topics a member subscribes to that exist, by id.
    fn subscribed_ids(&self, member: &ConsumerMember, topics: &TopicsImage) -> BTreeSet<TopicId> {
        let mut ids: BTreeSet<TopicId> =
            member.subscribed_topic_names.iter().filter_map(|n| topics.topics.get(n)).map(|t| t.id).collect();
        if let Some(r) = &member.subscribed_topic_regex {
            for n in self.resolved_regex.get(r).into_iter().flatten() {
                if let Some(t) = topics.topics.get(n) {
                    ids.insert(t.id);
                }
            }
        }
        ids
    }

    /// A new target assignment at the group epoch.
    fn compute_target(&mut self, config: &ConsumerGroupConfig, topics: &TopicsImage) {
        let assignor = self.pick_assignor(config);
        let specs: BTreeMap<String, MemberSpec> = self
            .members
            .values()
            .map(|m| {
                let spec = MemberSpec {
                    subscribed: self.subscribed_ids(m, topics),
                    previous: self.target.get(&m.member_id).cloned().unwrap_or_default(),
                };
                (m.member_id.clone(), spec)
            })
            .collect();
        let partitions: BTreeMap<TopicId, i32> =
            self.subscribed_topics.values().map(|t| (t.id, t.partitions)).collect();
        self.target = assignor::assign(assignor, &specs, &partitions);
        self.assignor = Some(assignor);
        self.target_epoch = self.group_epoch;
        self.events.push(ConsumerGroupEvent::Changed);
    }

    /// The assignor most members ask for, else the configured default.
    fn pick_assignor(&self, config: &ConsumerGroupConfig) -> AssignorName {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = m.server_assignor.as_deref() {
                *votes.entry(a).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(name, n)| (*n, std::cmp::Reverse(*name)))
            .and_then(|(name, _)| AssignorName::parse(name))
            .filter(|a| config.assignors.contains(a))
            .unwrap_or_else(|| config.default_assignor())
    }

    /// The member's next state towards its target (ownership is updated by `put_member`).
    fn reconciled(&self, member: &ConsumerMember, topics: &TopicsImage, owned: Option<&Assignment>) -> ConsumerMember {
        let empty = Assignment::new();
        let target = self.target.get(&member.member_id).unwrap_or(&empty);
        let subscribed = self.subscribed_ids(member, topics);
        reconciliation::reconcile(member, self.target_epoch, target, &subscribed, |t, p| self.owner_of(t, p), owned)
    }

    /// Stores a member, moving partition ownership from its old state to the new one.
    fn put_member(&mut self, member: ConsumerMember) {
        if let Some(old) = self.members.get(&member.member_id).cloned() {
            self.release(&old);
        }
        self.claim(&member);
        self.members.insert(member.member_id.clone(), member);
    }

    fn release(&mut self, member: &ConsumerMember) {
        for (t, p) in member.owned() {
            if self.owners.get(&(*t, p)).is_some_and(|o| *o == member.member_id) {
                self.owners.remove(&(*t, p));
            }
        }
    }

    fn claim(&mut self, member: &ConsumerMember) {
        for (t, p) in member.owned() {
            let previous = self.owners.insert((*t, p), member.member_id.clone());
            assert!(
                previous.is_none() || previous.as_deref() == Some(member.member_id.as_str()),
                "partition {p} of a topic given to {} while {previous:?} owns it",
                member.member_id
            );
        }
    }

    /// Kafka's OffsetCommit check for a consumer group (`generation_id_or_member_epoch` is the
    /// member epoch): UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH (older), FENCED_MEMBER_EPOCH
    /// (newer). Members-less commits (epoch < 0) are accepted while the group is empty.
    pub fn validate_offset_commit(&self, member_id: &str, member_epoch: i32) -> Result<(), i16> {
        if member_epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let member = self.members.get(member_id).ok_or(codes::UNKNOWN_MEMBER_ID)?;
        match member_epoch.cmp(&member.member_epoch) {
            std::cmp::Ordering::Greater => Err(codes::FENCED_MEMBER_EPOCH),
            std::cmp::Ordering::Less => Err(codes::STALE_MEMBER_EPOCH),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    /// Kafka's OffsetFetch check (v9+): a request without a member id and with a negative epoch
    /// (admin clients, consumers outside the group) is accepted; otherwise the member must
    /// exist (UNKNOWN_MEMBER_ID) at that epoch (STALE_MEMBER_EPOCH).
    pub fn validate_offset_fetch(&self, member_id: Option<&str>, member_epoch: i32) -> Result<(), i16> {
        if member_id.is_none() && member_epoch < 0 {
            return Ok(());
        }
        let member = member_id.and_then(|id| self.members.get(id)).ok_or(codes::UNKNOWN_MEMBER_ID)?;
        if member.member_epoch != member_epoch {
            return Err(codes::STALE_MEMBER_EPOCH);
        }
        Ok(())
    }

    /// Every partition owned at most once and by its member; every member has a target.
    pub fn check_invariants(&self) -> bool {
        let mut seen = HashMap::new();
        for m in self.members.values() {
            if !self.target.contains_key(&m.member_id) {
                return false;
            }
            for (t, p) in m.owned() {
                if seen.insert((*t, p), m.member_id.clone()).is_some() {
                    return false;
                }
            }
        }
        seen == self.owners && self.target.len() == self.members.len()
    }
}

/// Kafka's `throwIfMemberEpochIsInvalid`: a newer epoch than the member's is fenced; an older
/// one only passes if it is the previous epoch and the member owns no more than it is
/// assigned (the response carrying the new epoch was lost).
fn check_member_epoch(member: &ConsumerMember, received: i32, owned: Option<&Assignment>) -> Result<(), (i16, String)> {
    let fenced = || {
        Err((codes::FENCED_MEMBER_EPOCH, format!("The consumer group member has a greater member epoch ({received}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.", member.member_epoch)))
    };
    if member.is_static_left() || received > member.member_epoch {
        return fenced();
    }
    if received < member.member_epoch {
        let subset = owned.is_some_and(|o| {
            o.iter().all(|(t, ps)| ps.is_empty() || member.assigned.get(t).is_some_and(|a| ps.is_subset(a)))
        });
        if received != member.previous_member_epoch || !subset {
            return Err((codes::FENCED_MEMBER_EPOCH, format!("The consumer group member has a smaller member epoch ({received}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.", member.member_epoch)));
        }
    }
    Ok(())
}
