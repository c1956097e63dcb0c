//! Per-member reconciliation of the consumer protocol (Kafka's `CurrentAssignmentBuilder`):
//! moves a member from its current assignment towards its target, one safe step at a time.
//!
//! Revoke before assign: a member first gives up (and must report it no longer owns) the
//! partitions its target no longer holds, staying at its epoch meanwhile
//! ([`MemberState::UnrevokedPartitions`]); only then it moves to the target epoch and gets
//! the target partitions that no other member owns any more. The ones still owned elsewhere
//! wait ([`MemberState::UnreleasedPartitions`]) and come with a later heartbeat.
//!
//! Owns: that one decision, as a pure function. Must never: hand a member a partition another
//! member still owns (assigned or pending revocation), or drop a pending revocation the member
//! has not confirmed.

use std::collections::BTreeSet;

use super::member::{ConsumerMember, MemberState};
use super::topics::{Assignment, TopicId};

/// The member's next state. `owner_of(topic, partition)` is the member currently owning a
/// partition, if any; `owned` is what the member reported owning in this heartbeat (`None`:
/// not reported, so it is assumed to still own everything it did); `subscribed` are the
/// topics it subscribes to now (target partitions of other topics are ignored).
pub fn reconcile<'a>(
    member: &ConsumerMember,
    target_epoch: i32,
    target: &Assignment,
    subscribed: &BTreeSet<TopicId>,
    owner_of: impl Fn(&TopicId, i32) -> Option<&'a str>,
    owned: Option<&Assignment>,
) -> ConsumerMember {
    match member.state {
        MemberState::Stable if member.member_epoch == target_epoch => member.clone(),
        MemberState::UnrevokedPartitions if owns_any(owned, &member.pending_revocation) => member.clone(),
        _ => next_assignment(member, target_epoch, target, subscribed, owner_of, owned),
    }
}

/// Whether the member (by its report) still owns any of `partitions`.
fn owns_any(owned: Option<&Assignment>, partitions: &Assignment) -> bool {
    match owned {
        None => true,
        Some(owned) => super::topics::overlaps(owned, partitions),
    }
}

fn next_assignment<'a>(
    member: &ConsumerMember,
    target_epoch: i32,
    target: &Assignment,
    subscribed: &BTreeSet<TopicId>,
    owner_of: impl Fn(&TopicId, i32) -> Option<&'a str>,
    owned: Option<&Assignment>,
) -> ConsumerMember {
    let mut assigned = Assignment::new();
    let mut revoking = Assignment::new();
    let mut assigning = Assignment::new();
    let mut unreleased = false;
    let empty = BTreeSet::new();
    let topics: BTreeSet<&TopicId> = target.keys().chain(member.assigned.keys()).collect();
    for topic in topics {
        let target_partitions = if subscribed.contains(topic) { target.get(topic).unwrap_or(&empty) } else { &empty };
        let current = member.assigned.get(topic).unwrap_or(&empty);
        let keep: BTreeSet<i32> = current.intersection(target_partitions).copied().collect();
        let revoke: BTreeSet<i32> = current.difference(&keep).copied().collect();
        let mut assign = BTreeSet::new();
        for &p in target_partitions.difference(&keep) {
            // A partition this member itself was revoking is free for it (it confirmed the
            // revocation, or it would not be here); anyone else's is not.
            let free = match owner_of(topic, p) {
                None => true,
                Some(o) => o == member.member_id,
            };
            if free {
                assign.insert(p);
            } else {
                unreleased = true;
            }
        }
        if !keep.is_empty() {
            assigned.insert(*topic, keep);
        }
        if !revoke.is_empty() {
            revoking.insert(*topic, revoke);
        }
        if !assign.is_empty() {
            assigning.insert(*topic, assign);
        }
    }
    let mut next = member.clone();
    if !revoking.is_empty() && owns_any(owned, &revoking) {
        // Revoke first, at the current epoch.
        next.state = MemberState::UnrevokedPartitions;
        next.assigned = assigned;
        next.pending_revocation = revoking;
        return next;
    }
    for (topic, partitions) in assigning {
        assigned.entry(topic).or_default().extend(partitions);
    }
    next.state = if unreleased { MemberState::UnreleasedPartitions } else { MemberState::Stable };
    set_epoch(&mut next, target_epoch);
    next.assigned = assigned;
    next.pending_revocation = Assignment::new();
    next
}

fn set_epoch(member: &mut ConsumerMember, epoch: i32) {
    if member.member_epoch != epoch {
        member.previous_member_epoch = member.member_epoch;
        member.member_epoch = epoch;
    }
}
