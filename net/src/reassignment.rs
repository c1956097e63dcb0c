//! Moving a partition's replicas (AlterPartitionReassignments, KIP-455, as KRaft does it): the
//! new replicas are added as followers first; once every one of them is in the ISR the
//! reassignment completes — the replica set becomes the target, the removed replicas leave the
//! ISR, and a leader outside the target hands over to the first in-sync target replica. A
//! cancellation drops the added replicas and restores the original set.
//!
//! Owns: the pure rules, applied by [`crate::metadata_image::MetadataImage`] (so every node
//! computes the same assignment from the same log). Must never: do I/O, complete a
//! reassignment before every added replica is in sync (the new set could lack acknowledged
//! records), or leave the partition without its ISR's leader.

use sluice_engine::error_code::ErrorCode;

use crate::metadata_image::PartitionAssignment;

/// The assignment once a reassignment to `target` starts (or is replaced by a new target), or
/// why it cannot. A target equal to the current replicas with nothing pending is a no-op
/// (`Ok(None)`); one that adds nobody completes at once.
pub fn start(
    current: &PartitionAssignment,
    target: &[i32],
    is_fenced: impl Fn(i32) -> bool,
) -> Result<Option<PartitionAssignment>, ErrorCode> {
    let distinct = target.iter().collect::<std::collections::BTreeSet<_>>().len() == target.len();
    if target.is_empty() || !distinct {
        return Err(ErrorCode::INVALID_REPLICA_ASSIGNMENT);
    }
    let original = original_replicas(current);
    if target == original.as_slice() && current.adding_replicas.is_empty() {
        return Ok(None);
    }
    let mut next = current.clone();
    next.adding_replicas = target.iter().copied().filter(|r| !original.contains(r)).collect();
    next.removing_replicas = original.iter().copied().filter(|r| !target.contains(r)).collect();
    // The target first (its first replica is the preferred leader), then those leaving.
    next.replicas = target.to_vec();
    next.replicas.extend(next.removing_replicas.iter().copied());
    // Replicas added by an earlier target that this one drops leave the ISR too.
    next.isr.retain(|r| next.replicas.contains(r));
    next.partition_epoch += 1;
    Ok(Some(finish_if_caught_up(&next, is_fenced).unwrap_or(next)))
}

/// The assignment after a cancellation, or NO_REASSIGNMENT_IN_PROGRESS.
pub fn cancel(current: &PartitionAssignment) -> Result<PartitionAssignment, ErrorCode> {
    if current.adding_replicas.is_empty() && current.removing_replicas.is_empty() {
        return Err(ErrorCode::NO_REASSIGNMENT_IN_PROGRESS);
    }
    let mut next = current.clone();
    next.replicas = original_replicas(current);
    next.isr.retain(|r| next.replicas.contains(r));
    next.adding_replicas.clear();
    next.removing_replicas.clear();
    next.partition_epoch += 1;
    Ok(next)
}

/// The completed assignment once every added replica is in the ISR, or `None`.
pub fn finish_if_caught_up(
    current: &PartitionAssignment,
    is_fenced: impl Fn(i32) -> bool,
) -> Option<PartitionAssignment> {
    let pending = !current.adding_replicas.is_empty() || !current.removing_replicas.is_empty();
    if !pending || !current.adding_replicas.iter().all(|r| current.isr.contains(r)) {
        return None;
    }
    let mut next = current.clone();
    next.replicas.retain(|r| !current.removing_replicas.contains(r));
    let in_target_isr: Vec<i32> = next.isr.iter().copied().filter(|r| next.replicas.contains(r)).collect();
    if in_target_isr.is_empty() {
        return None; // nobody of the target is in sync yet: keep the old set
    }
    next.isr = in_target_isr;
    if !next.replicas.contains(&next.leader) {
        next.leader = next.replicas.iter().copied().find(|r| next.isr.contains(r) && !is_fenced(*r)).unwrap_or(-1);
        next.leader_epoch += 1;
    }
    next.adding_replicas.clear();
    next.removing_replicas.clear();
    next.partition_epoch += 1;
    Some(next)
}

/// The replica set before the ongoing reassignment (the current one if none).
fn original_replicas(current: &PartitionAssignment) -> Vec<i32> {
    current.replicas.iter().copied().filter(|r| !current.adding_replicas.contains(r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reassignment_adds_first_and_completes_once_the_new_replicas_are_in_sync() {
        let current = PartitionAssignment::new(vec![1, 2, 3]);
        let moving = start(&current, &[2, 3, 4], |_| false).unwrap().unwrap();
        assert_eq!(moving.replicas, vec![2, 3, 4, 1]);
        assert_eq!((moving.adding_replicas.clone(), moving.removing_replicas.clone()), (vec![4], vec![1]));
        assert_eq!((moving.leader, moving.isr.clone(), moving.partition_epoch), (1, vec![1, 2, 3], 1));
        assert!(finish_if_caught_up(&moving, |_| false).is_none(), "4 is not in sync yet");
        let mut caught_up = moving.clone();
        caught_up.isr.push(4);
        let done = finish_if_caught_up(&caught_up, |_| false).unwrap();
        assert_eq!((done.replicas.clone(), done.isr.clone()), (vec![2, 3, 4], vec![2, 3, 4]));
        assert_eq!((done.leader, done.leader_epoch), (2, 1), "the leader left: the first in-sync target leads");
        assert!(done.adding_replicas.is_empty() && done.removing_replicas.is_empty());
        assert_eq!(start(&done, &[2, 3, 4], |_| false), Ok(None), "already there");
    }

    #[test]
    fn removals_complete_at_once_and_a_cancellation_restores_the_original_set() {
        let current = PartitionAssignment::new(vec![1, 2, 3]);
        let shrunk = start(&current, &[1, 2], |_| false).unwrap().unwrap();
        assert_eq!((shrunk.replicas.clone(), shrunk.isr.clone(), shrunk.leader), (vec![1, 2], vec![1, 2], 1));
        let moving = start(&current, &[1, 2, 5], |_| false).unwrap().unwrap();
        let back = cancel(&moving).unwrap();
        assert_eq!((back.replicas.clone(), back.isr.clone()), (vec![1, 2, 3], vec![1, 2, 3]));
        assert_eq!(cancel(&back), Err(ErrorCode::NO_REASSIGNMENT_IN_PROGRESS));
        assert_eq!(start(&current, &[1, 1], |_| false), Err(ErrorCode::INVALID_REPLICA_ASSIGNMENT));
    }
}
