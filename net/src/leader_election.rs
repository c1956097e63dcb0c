//! Leader elections when a broker is fenced or comes back (Kafka's
//! `ReplicationControlManager.handleBrokerFenced` / `handleBrokerUnfenced` with
//! `unclean.leader.election.enable=false`, its default).
//!
//! Also the elections an administrator asks for (ElectLeaders, KIP-460): preferred — the first
//! replica leads again if it is in sync and alive — and unclean — a leaderless partition is
//! led by any live replica, in sync or not, accepting the loss of what only the ISR had.
//!
//! Owns: the pure rules — given one partition's assignment and a broker that changed (or an
//! election asked for), the assignment after it. Applied by [`crate::metadata_image::MetadataImage`] for the
//! `FenceBroker` / `UnfenceBroker` / `RegisterBroker` commands, so every node computes the
//! same result from the same log. Must never: do I/O, read the clock, or elect a replica that
//! is outside the ISR or fenced (that would be an unclean election and could lose acknowledged
//! records).

use crate::metadata_image::PartitionAssignment;

/// The assignment after broker `fenced` was fenced, or `None` if it does not change: the broker
/// leaves the ISR unless it is its last member (then the ISR keeps it, so the partition can come
/// back with it, and nobody else — who may lack acknowledged records — leads); if it led, the
/// first replica (in preferred order) left in the ISR and not fenced leads instead, else nobody
/// (-1). A leader change bumps the leader epoch; any change bumps the partition epoch.
pub fn after_fencing(
    assignment: &PartitionAssignment,
    fenced: i32,
    is_fenced: impl Fn(i32) -> bool,
) -> Option<PartitionAssignment> {
    if !assignment.replicas.contains(&fenced) {
        return None;
    }
    let mut next = assignment.clone();
    if next.isr.len() > 1 {
        next.isr.retain(|r| *r != fenced);
    }
    if next.leader == fenced {
        next.leader = next
            .replicas
            .iter()
            .copied()
            .find(|r| *r != fenced && next.isr.contains(r) && !is_fenced(*r))
            .unwrap_or(-1);
        next.leader_epoch += 1;
    }
    if next == *assignment {
        return None;
    }
    next.partition_epoch += 1;
    Some(next)
}

/// The assignment after broker `unfenced` came back (heartbeat or re-registration), or `None`:
/// a partition without a leader whose ISR holds it is led by it again.
pub fn after_unfencing(assignment: &PartitionAssignment, unfenced: i32) -> Option<PartitionAssignment> {
    if assignment.leader != -1 || !assignment.isr.contains(&unfenced) {
        return None;
    }
    let mut next = assignment.clone();
    next.leader = unfenced;
    next.leader_epoch += 1;
    next.partition_epoch += 1;
    Some(next)
}

/// What an ElectLeaders asks for (Kafka's `ElectionType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ElectionType {
    /// The preferred (first) replica, if it is in sync and not fenced.
    Preferred,
    /// Any live replica for a partition without a leader.
    Unclean,
}

impl ElectionType {
    /// From the request's `election_type` (0 preferred, 1 unclean).
    pub fn from_wire(value: i8) -> Option<ElectionType> {
        match value {
            0 => Some(ElectionType::Preferred),
            1 => Some(ElectionType::Unclean),
            _ => None,
        }
    }
}

/// The assignment after an election of `kind`, or the Kafka error code saying why there is
/// none: ELECTION_NOT_NEEDED (the preferred replica leads already; an unclean election of a
/// partition that has a leader), PREFERRED_LEADER_NOT_AVAILABLE (it is fenced or out of the
/// ISR), ELIGIBLE_LEADERS_NOT_AVAILABLE (no live replica at all). An unclean leader becomes
/// the whole ISR.
pub fn elect(
    assignment: &PartitionAssignment,
    kind: ElectionType,
    is_fenced: impl Fn(i32) -> bool,
) -> Result<PartitionAssignment, sluice_engine::error_code::ErrorCode> {
    use sluice_engine::error_code::ErrorCode;
    let mut next = assignment.clone();
    match kind {
        ElectionType::Preferred => {
            let preferred = *assignment.replicas.first().ok_or(ErrorCode::PREFERRED_LEADER_NOT_AVAILABLE)?;
            if assignment.leader == preferred {
                return Err(ErrorCode::ELECTION_NOT_NEEDED);
            }
            if is_fenced(preferred) || !assignment.isr.contains(&preferred) {
                return Err(ErrorCode::PREFERRED_LEADER_NOT_AVAILABLE);
            }
            next.leader = preferred;
        }
        ElectionType::Unclean => {
            if assignment.leader != -1 {
                return Err(ErrorCode::ELECTION_NOT_NEEDED);
            }
            let live = |r: &i32| !is_fenced(*r);
            let leader = assignment
                .replicas
                .iter()
                .copied()
                .find(|r| assignment.isr.contains(r) && live(r))
                .or_else(|| assignment.replicas.iter().copied().find(live))
                .ok_or(ErrorCode::ELIGIBLE_LEADERS_NOT_AVAILABLE)?;
            if !assignment.isr.contains(&leader) {
                next.isr = vec![leader];
            }
            next.leader = leader;
        }
    }
    next.leader_epoch += 1;
    next.partition_epoch += 1;
    Ok(next)
}

/// The assignment after a preferred-leader election, or `None` if not possible or not needed:
/// the first replica leads again when it is in the ISR and not fenced (Kafka's
/// `auto.leader.rebalance.enable`).
pub fn preferred_leader(
    assignment: &PartitionAssignment,
    is_fenced: impl Fn(i32) -> bool,
) -> Option<PartitionAssignment> {
    elect(assignment, ElectionType::Preferred, is_fenced).ok()
}

/// Partitions to move back to their preferred leader (Kafka's leader rebalance check): for each
/// broker, the partitions it prefers to lead but does not; when more than
/// `imbalance_percentage` of a broker's preferred partitions are led elsewhere, those of them
/// whose preferred leader is eligible. `partitions` yields (topic, index, assignment).
pub fn imbalanced<'a>(
    partitions: impl Iterator<Item = (&'a str, i32, &'a PartitionAssignment)>,
    is_fenced: impl Fn(i32) -> bool,
    imbalance_percentage: u32,
) -> Vec<(String, i32)> {
    use std::collections::BTreeMap;
    let mut preferred: BTreeMap<i32, (usize, Vec<(String, i32)>)> = BTreeMap::new();
    for (topic, index, assignment) in partitions {
        let Some(first) = assignment.replicas.first() else { continue };
        let entry = preferred.entry(*first).or_default();
        entry.0 += 1;
        if preferred_leader(assignment, &is_fenced).is_some() {
            entry.1.push((topic.to_string(), index));
        }
    }
    let mut out = Vec::new();
    for (total, movable) in preferred.into_values() {
        if movable.len() * 100 > total * imbalance_percentage as usize {
            out.extend(movable);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn assignment(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionAssignment {
        PartitionAssignment {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 3,
            partition_epoch: 7,
            adding_replicas: vec![],
            removing_replicas: vec![],
        }
    }

    #[test]
    fn the_next_in_sync_replica_leads_with_bumped_epochs() {
        let next = after_fencing(&assignment(&[1, 2, 3], &[1, 2, 3], 1), 1, |_| false).unwrap();
        assert_eq!((next.leader, next.isr.clone(), next.leader_epoch, next.partition_epoch), (2, vec![2, 3], 4, 8));
        // A fenced ISR member is skipped.
        let next = after_fencing(&assignment(&[1, 2, 3], &[1, 2, 3], 1), 1, |r| r == 2).unwrap();
        assert_eq!(next.leader, 3);
    }

    #[test]
    fn a_follower_leaves_the_isr_and_the_leader_stays() {
        let next = after_fencing(&assignment(&[1, 2, 3], &[1, 2, 3], 1), 3, |_| false).unwrap();
        assert_eq!((next.leader, next.isr.clone(), next.leader_epoch, next.partition_epoch), (1, vec![1, 2], 3, 8));
        assert_eq!(after_fencing(&assignment(&[1, 2], &[1, 2], 1), 3, |_| false), None, "not a replica");
        assert_eq!(after_fencing(&assignment(&[1, 2, 3], &[1], 1), 3, |_| false), None, "out of sync already");
    }

    #[test]
    fn the_last_isr_member_stays_and_the_partition_goes_leaderless_until_it_returns() {
        let fenced = after_fencing(&assignment(&[1, 2], &[1], 1), 1, |_| false).unwrap();
        assert_eq!((fenced.leader, fenced.isr.clone(), fenced.leader_epoch), (-1, vec![1], 4));
        assert_eq!(after_unfencing(&fenced, 2), None, "2 is not in sync: no unclean election");
        let back = after_unfencing(&fenced, 1).unwrap();
        assert_eq!((back.leader, back.leader_epoch, back.partition_epoch), (1, 5, 9));
        assert_eq!(after_unfencing(&back, 1), None, "has a leader");
    }

    #[test]
    fn preferred_leaders_return_when_eligible_and_the_imbalance_is_over_the_threshold() {
        let moved = assignment(&[1, 2, 3], &[1, 2, 3], 2);
        let back = preferred_leader(&moved, |_| false).unwrap();
        assert_eq!((back.leader, back.leader_epoch, back.partition_epoch), (1, 4, 8));
        assert_eq!(preferred_leader(&moved, |r| r == 1), None, "fenced");
        assert_eq!(preferred_leader(&assignment(&[1, 2], &[2], 2), |_| false), None, "out of sync");
        assert_eq!(preferred_leader(&back, |_| false), None, "already");
        let led = assignment(&[1, 2, 3], &[1, 2, 3], 1);
        // Broker 1 prefers 10 partitions and leads 9: 10% is not over 10%.
        let mut parts: Vec<(String, i32, PartitionAssignment)> = (0..9).map(|p| ("t".into(), p, led.clone())).collect();
        parts.push(("t".into(), 9, moved.clone()));
        fn view(parts: &[(String, i32, PartitionAssignment)]) -> Vec<(&str, i32, &PartitionAssignment)> {
            parts.iter().map(|(t, p, a)| (t.as_str(), *p, a)).collect()
        }
        assert!(imbalanced(view(&parts).into_iter(), |_| false, 10).is_empty());
        parts.push(("u".into(), 0, moved.clone()));
        assert_eq!(imbalanced(view(&parts).into_iter(), |_| false, 10), vec![("t".into(), 9), ("u".into(), 0)]);
        assert!(imbalanced(view(&parts).into_iter(), |r| r == 1, 10).is_empty());
    }

    proptest! {
        #[test]
        fn elections_never_pick_a_fenced_or_out_of_sync_leader(
            n in 1usize..6, isr_mask in 1u32..64, leader_pick in 0usize..6, fenced_pick in 0usize..6,
            others_fenced in 0u32..64,
        ) {
            let replicas: Vec<i32> = (1..=n as i32).collect();
            let mut isr: Vec<i32> = replicas.iter().copied().filter(|r| isr_mask & (1 << (r - 1)) != 0).collect();
            if isr.is_empty() { isr.push(replicas[0]); }
            let leader = isr[leader_pick % isr.len()];
            let fenced = replicas[fenced_pick % n];
            let is_fenced = |r: i32| r == fenced || others_fenced & (1 << (r - 1)) != 0;
            // A fenced broker leads nothing (fencing it moved its leaderships).
            prop_assume!(leader == fenced || !is_fenced(leader));
            let before = assignment(&replicas, &isr, leader);
            if let Some(after) = after_fencing(&before, fenced, is_fenced) {
                prop_assert!(after.leader == -1 || (after.isr.contains(&after.leader) && !is_fenced(after.leader)));
                prop_assert!(!after.isr.is_empty());
                prop_assert!(after.isr.iter().all(|r| before.isr.contains(r)));
                prop_assert_eq!(after.partition_epoch, before.partition_epoch + 1);
                prop_assert_eq!(after.leader_epoch, before.leader_epoch + i32::from(after.leader != before.leader));
            }
        }
    }

    #[test]
    fn preferred_and_unclean_elections_follow_kafka() {
        use sluice_engine::error_code::ErrorCode;
        let fenced = |r: i32| r == 3;
        let mut a = PartitionAssignment::new(vec![1, 2, 3]);
        assert_eq!(elect(&a, ElectionType::Preferred, fenced).unwrap_err(), ErrorCode::ELECTION_NOT_NEEDED);
        a.leader = 2;
        let b = elect(&a, ElectionType::Preferred, fenced).unwrap();
        assert_eq!((b.leader, b.leader_epoch, b.partition_epoch), (1, 1, 1));
        a.isr = vec![2, 3];
        assert_eq!(
            elect(&a, ElectionType::Preferred, fenced).unwrap_err(),
            ErrorCode::PREFERRED_LEADER_NOT_AVAILABLE,
            "the preferred replica is out of sync"
        );
        assert_eq!(elect(&a, ElectionType::Unclean, fenced).unwrap_err(), ErrorCode::ELECTION_NOT_NEEDED);
        // Leaderless, the ISR's last member (3) fenced: an unclean election picks a live replica.
        a.leader = -1;
        a.isr = vec![3];
        let c = elect(&a, ElectionType::Unclean, fenced).unwrap();
        assert_eq!((c.leader, c.isr.clone()), (1, vec![1]));
        assert_eq!(elect(&a, ElectionType::Unclean, |_| true).unwrap_err(), ErrorCode::ELIGIBLE_LEADERS_NOT_AVAILABLE);
    }
}
