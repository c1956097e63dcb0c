//! Where a new partition's replicas go (Kafka's `StripedReplicaPlacer` in spirit): round-robin
//! across the unfenced brokers from a rotating start, the preferred leader first; when brokers
//! have a `broker.rack`, the brokers are taken in rack-alternating order so a partition's
//! replicas land on different racks while there are enough of them.
//!
//! Owns: the pure choice, unit-tested. The active controller calls it (with its image's
//! unfenced brokers) when it turns a CreateTopics / auto-create / CreatePartitions into a
//! command. Must never: read the clock or randomness (the start comes from the caller), or
//! place two replicas of a partition on one broker.

use std::collections::BTreeMap;

use crate::metadata_image::{codes, MetadataCommand, MetadataError, MetadataImage, PartitionAssignment};

/// One broker that may hold replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacementBroker {
    pub id: i32,
    pub rack: Option<String>,
}

/// Replica lists for `partitions` new partitions of `replication_factor` replicas each.
/// `start` rotates the first partition's preferred leader (the caller passes e.g. the image's
/// version, so topics do not all start on the same broker).
pub fn place_replicas(
    brokers: &[PlacementBroker],
    partitions: i32,
    replication_factor: i16,
    start: usize,
) -> Result<Vec<Vec<i32>>, MetadataError> {
    if replication_factor < 1 {
        return Err(MetadataError::new(codes::INVALID_REPLICATION_FACTOR, "Replication factor must be larger than 0."));
    }
    if replication_factor as usize > brokers.len() {
        return Err(MetadataError::new(
            codes::INVALID_REPLICATION_FACTOR,
            format!("Replication factor: {replication_factor} larger than available brokers: {}.", brokers.len()),
        ));
    }
    let order = rack_alternating(brokers);
    let racked = brokers.iter().any(|b| b.rack.is_some());
    let n = order.len();
    let mut out = Vec::with_capacity(partitions.max(0) as usize);
    for p in 0..partitions.max(0) as usize {
        let first = (start + p) % n;
        // Kafka's replica shift: followers of partitions p and p+n sit at different distances
        // from the leader, so the same pairs do not follow each other everywhere.
        // With racks, followers are the next brokers of the rack-alternating order (no shift).
        let shift = if n > 1 && !racked { (start + p) / n % (n - 1) } else { 0 };
        let mut replicas = vec![order[first]];
        for j in 0..(replication_factor as usize - 1) {
            replicas.push(order[(first + 1 + (shift + j) % (n - 1)) % n]);
        }
        out.push(replicas);
    }
    Ok(out)
}

/// On the active controller: fills in the replicas of a CreateTopic / CreatePartitions that
/// came without them (from a client's request) by [`place_replicas`] over the image's unfenced
/// brokers; other commands pass unchanged. A topic from before clustering (no assignments)
/// keeps growing without them.
pub fn assign_new_partitions(
    command: MetadataCommand,
    image: &MetadataImage,
) -> Result<MetadataCommand, MetadataError> {
    let brokers: Vec<PlacementBroker> =
        image.unfenced_brokers().map(|b| PlacementBroker { id: b.id, rack: b.rack.clone() }).collect();
    let start = image.version as usize;
    match command {
        MetadataCommand::CreateTopic { name, id, partitions, replication_factor, configs, assignments }
            if assignments.is_empty() =>
        {
            let assignments = place_replicas(
                &brokers,
                partitions.min(crate::metadata_image::MAX_PARTITIONS_PER_TOPIC),
                replication_factor,
                start,
            )?
            .into_iter()
            .map(PartitionAssignment::new)
            .collect();
            Ok(MetadataCommand::CreateTopic { name, id, partitions, replication_factor, configs, assignments })
        }
        MetadataCommand::CreatePartitions { name, total, new_assignments } if new_assignments.is_empty() => {
            let Some(topic) = image.topic(&name).filter(|t| !t.assignments.is_empty()) else {
                return Ok(MetadataCommand::CreatePartitions { name, total, new_assignments });
            };
            let added = total.min(crate::metadata_image::MAX_PARTITIONS_PER_TOPIC) - topic.partitions;
            let new_assignments = place_replicas(&brokers, added.max(0), topic.replication_factor, start)?
                .into_iter()
                .map(PartitionAssignment::new)
                .collect();
            Ok(MetadataCommand::CreatePartitions { name, total, new_assignments })
        }
        other => Ok(other),
    }
}

/// Broker ids by id, or — when any broker has a rack — one from each rack in turn (racks and
/// brokers in id order), so neighbours in the list are on different racks.
fn rack_alternating(brokers: &[PlacementBroker]) -> Vec<i32> {
    let mut sorted: Vec<&PlacementBroker> = brokers.iter().collect();
    sorted.sort_by_key(|b| b.id);
    if sorted.iter().all(|b| b.rack.is_none()) {
        return sorted.iter().map(|b| b.id).collect();
    }
    let mut racks: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for b in &sorted {
        racks.entry(b.rack.as_deref().unwrap_or("")).or_default().push(b.id);
    }
    let mut out = Vec::with_capacity(sorted.len());
    for round in 0.. {
        let before = out.len();
        for ids in racks.values() {
            if let Some(id) = ids.get(round) {
                out.push(*id);
            }
        }
        if out.len() == before {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brokers(ids: &[i32], racks: Option<&[&str]>) -> Vec<PlacementBroker> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| PlacementBroker { id: *id, rack: racks.map(|r| r[i].to_string()) })
            .collect()
    }

    #[test]
    fn round_robin_with_the_preferred_leader_first_and_a_rotating_start() {
        let placed = place_replicas(&brokers(&[1, 2, 3], None), 3, 3, 0).unwrap();
        let leaders: Vec<i32> = placed.iter().map(|r| r[0]).collect();
        assert_eq!(leaders, vec![1, 2, 3]);
        assert_eq!(place_replicas(&brokers(&[1, 2, 3], None), 1, 2, 1).unwrap()[0][0], 2);
        assert_eq!(place_replicas(&brokers(&[1, 2, 3], None), 2, 1, 0).unwrap(), vec![vec![1], vec![2]]);
    }

    #[test]
    fn too_few_brokers_is_kafkas_invalid_replication_factor() {
        let e = place_replicas(&brokers(&[1, 2], None), 1, 3, 0).unwrap_err();
        assert_eq!(e.code, codes::INVALID_REPLICATION_FACTOR);
        assert_eq!(e.message, "Replication factor: 3 larger than available brokers: 2.");
        assert_eq!(place_replicas(&brokers(&[1], None), 1, 0, 0).unwrap_err().code, codes::INVALID_REPLICATION_FACTOR);
    }

    #[test]
    fn racks_alternate() {
        let b = brokers(&[1, 2, 3, 4], Some(&["a", "a", "b", "b"]));
        for replicas in place_replicas(&b, 8, 2, 0).unwrap() {
            let racks: Vec<_> =
                replicas.iter().map(|id| b.iter().find(|x| x.id == *id).unwrap().rack.clone()).collect();
            assert_ne!(racks[0], racks[1], "{replicas:?}");
        }
    }

    #[test]
    fn the_active_controller_places_requests_that_came_without_replicas() {
        use crate::metadata_image::BrokerRegistration;
        let mut image = MetadataImage::new("c".into());
        for (id, fenced) in [(1, false), (2, true), (3, false)] {
            let b = BrokerRegistration { id, host: "h".into(), port: 1, rack: None, fenced, listeners: Vec::new() };
            image.brokers.insert(id, b);
        }
        let create = |rf: i16, assignments: Vec<PartitionAssignment>| MetadataCommand::CreateTopic {
            name: "t".into(),
            id: [1; 16],
            partitions: 2,
            replication_factor: rf,
            configs: BTreeMap::new(),
            assignments,
        };
        let MetadataCommand::CreateTopic { assignments, .. } =
            assign_new_partitions(create(2, vec![]), &image).unwrap()
        else {
            unreachable!()
        };
        assert_eq!(assignments.len(), 2);
        assert!(assignments.iter().all(|a| a.replicas.len() == 2 && !a.replicas.contains(&2)), "{assignments:?}");
        let e = assign_new_partitions(create(3, vec![]), &image).unwrap_err();
        assert_eq!(e.message, "Replication factor: 3 larger than available brokers: 2.");
        let manual = create(1, vec![PartitionAssignment::new(vec![2]), PartitionAssignment::new(vec![1])]);
        assert_eq!(assign_new_partitions(manual.clone(), &image).unwrap(), manual, "explicit replicas are kept");
        let other = MetadataCommand::DeleteTopic { name: "t".into() };
        assert_eq!(assign_new_partitions(other.clone(), &image).unwrap(), other);
    }

    proptest! {
        #[test]
        fn replicas_are_distinct_registered_and_leaders_spread(
            n in 1usize..8, rf in 1i16..8, partitions in 1i32..40, start in 0usize..100,
        ) {
            let ids: Vec<i32> = (1..=n as i32).map(|i| i * 10).collect();
            let b = brokers(&ids, None);
            match place_replicas(&b, partitions, rf, start) {
                Err(e) => prop_assert!(rf as usize > n && e.code == codes::INVALID_REPLICATION_FACTOR),
                Ok(placed) => {
                    prop_assert_eq!(placed.len(), partitions as usize);
                    for r in &placed {
                        prop_assert_eq!(r.len(), rf as usize);
                        let set: std::collections::BTreeSet<_> = r.iter().collect();
                        prop_assert_eq!(set.len(), r.len());
                        prop_assert!(r.iter().all(|id| ids.contains(id)));
                    }
                    let mut led = std::collections::BTreeMap::new();
                    for r in &placed { *led.entry(r[0]).or_insert(0) += 1; }
                    let (lo, hi) = (led.values().min().unwrap(), led.values().max().unwrap());
                    prop_assert!(hi - lo <= 1 || led.len() < n, "{:?}", led);
                }
            }
        }
    }
}
