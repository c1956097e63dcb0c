//! Follower fetching for consumers (KIP-392): which replica a consumer in rack `client.rack`
//! should read a partition from, as its leader decides it (Kafka's `replica.selector.class`
//! and `ReplicaManager.findPreferredReadReplica`).
//!
//! Owns: the [`ReplicaSelector`] setting and the pure choice [`preferred_read_replica`]. Must
//! never: choose a replica outside the ISR, one that does not hold the fetch offset yet, or
//! name the leader itself (the leader then simply answers the fetch).
//!
//! Kafka's rules, followed here: only consumer fetches of v11+ (they carry `rack_id`) are
//! directed; the candidates are the leader and every in-sync follower whose log end is at or
//! past the fetch offset; `RackAwareReplicaSelector` prefers a candidate in the client's rack —
//! the leader if it is one, else the one with the highest log end offset, ties to the one
//! caught up most recently — and otherwise the leader. A follower answers a consumer's fetch
//! up to its own high watermark (which trails the leader's), so reading there never shows a
//! record the leader's consumers could not see.

/// Kafka's `replica.selector.class`: how a leader picks the replica a consumer reads from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplicaSelector {
    /// No selector (Kafka's default, and `org.apache.kafka.common.replica.LeaderSelector`):
    /// consumers read from the leader.
    #[default]
    Leader,
    /// `org.apache.kafka.common.replica.RackAwareReplicaSelector`.
    RackAware,
}

impl ReplicaSelector {
    /// Parses a `replica.selector.class` value (the Kafka class names; the empty string is
    /// "none").
    pub fn parse(value: &str) -> Result<ReplicaSelector, String> {
        match value.trim() {
            "" | "null" | "org.apache.kafka.common.replica.LeaderSelector" => Ok(ReplicaSelector::Leader),
            "org.apache.kafka.common.replica.RackAwareReplicaSelector" => Ok(ReplicaSelector::RackAware),
            other => Err(format!(
                "replica.selector.class: unsupported {other:?} (supported: \
                 org.apache.kafka.common.replica.RackAwareReplicaSelector, \
                 org.apache.kafka.common.replica.LeaderSelector)"
            )),
        }
    }
}

/// One replica a consumer could read from, as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaView {
    pub broker_id: i32,
    /// The broker's `broker.rack` (`None`: not set).
    pub rack: Option<String>,
    /// The leader's own log end, or the offset the follower last fetched from.
    pub log_end_offset: i64,
    /// How long ago it last caught up with the leader's log end (0 for the leader).
    pub time_since_caught_up_ms: i64,
    /// Whether it is in the ISR (the leader always is).
    pub in_sync: bool,
}

/// The replica other than the leader that a consumer in `client_rack` should read from at
/// `fetch_offset`, or `None` for the leader. `replicas` holds every replica, `leader_id`'s
/// among them.
pub fn preferred_read_replica(
    selector: ReplicaSelector,
    client_rack: &str,
    leader_id: i32,
    fetch_offset: i64,
    replicas: &[ReplicaView],
) -> Option<i32> {
    if selector == ReplicaSelector::Leader || client_rack.is_empty() {
        return None;
    }
    let candidates =
        replicas.iter().filter(|r| r.broker_id == leader_id || (r.in_sync && r.log_end_offset >= fetch_offset));
    let same_rack: Vec<&ReplicaView> = candidates.filter(|r| r.rack.as_deref() == Some(client_rack)).collect();
    if same_rack.iter().any(|r| r.broker_id == leader_id) {
        return None;
    }
    let chosen = same_rack.iter().max_by(|a, b| {
        a.log_end_offset
            .cmp(&b.log_end_offset)
            .then(b.time_since_caught_up_ms.cmp(&a.time_since_caught_up_ms))
            .then(b.broker_id.cmp(&a.broker_id))
    })?;
    debug_assert_ne!(chosen.broker_id, leader_id);
    Some(chosen.broker_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn view(broker_id: i32, rack: &str, log_end_offset: i64, in_sync: bool) -> ReplicaView {
        ReplicaView {
            broker_id,
            rack: (!rack.is_empty()).then(|| rack.to_string()),
            log_end_offset,
            time_since_caught_up_ms: 0,
            in_sync,
        }
    }

    #[test]
    fn kafka_class_names_parse_and_others_are_refused() {
        assert_eq!(ReplicaSelector::parse(""), Ok(ReplicaSelector::Leader));
        assert_eq!(
            ReplicaSelector::parse("org.apache.kafka.common.replica.RackAwareReplicaSelector"),
            Ok(ReplicaSelector::RackAware)
        );
        assert_eq!(
            ReplicaSelector::parse("org.apache.kafka.common.replica.LeaderSelector"),
            Ok(ReplicaSelector::Leader)
        );
        assert!(ReplicaSelector::parse("com.example.Mine").is_err());
    }

    #[test]
    fn a_follower_in_the_clients_rack_is_preferred_to_a_leader_elsewhere() {
        let replicas = [view(1, "a", 100, true), view(2, "b", 100, true), view(3, "c", 100, true)];
        assert_eq!(preferred_read_replica(ReplicaSelector::RackAware, "b", 1, 50, &replicas), Some(2));
        // The leader's rack, no rack, an unknown rack, or no selector: the leader.
        assert_eq!(preferred_read_replica(ReplicaSelector::RackAware, "a", 1, 50, &replicas), None);
        assert_eq!(preferred_read_replica(ReplicaSelector::RackAware, "", 1, 50, &replicas), None);
        assert_eq!(preferred_read_replica(ReplicaSelector::RackAware, "z", 1, 50, &replicas), None);
        assert_eq!(preferred_read_replica(ReplicaSelector::Leader, "b", 1, 50, &replicas), None);
    }

    #[test]
    fn a_follower_out_of_sync_or_behind_the_fetch_offset_is_not_chosen() {
        let replicas = [view(1, "a", 100, true), view(2, "b", 100, false), view(3, "b", 40, true)];
        assert_eq!(preferred_read_replica(ReplicaSelector::RackAware, "b", 1, 50, &replicas), None);
        assert_eq!(preferred_read_replica(ReplicaSelector::RackAware, "b", 1, 40, &replicas), Some(3));
    }

    #[test]
    fn among_several_in_the_rack_the_most_caught_up_wins() {
        let mut replicas = vec![view(1, "a", 100, true), view(2, "b", 90, true), view(3, "b", 95, true)];
        assert_eq!(preferred_read_replica(ReplicaSelector::RackAware, "b", 1, 50, &replicas), Some(3));
        replicas[1].log_end_offset = 95;
        replicas[2].time_since_caught_up_ms = 500;
        assert_eq!(preferred_read_replica(ReplicaSelector::RackAware, "b", 1, 50, &replicas), Some(2));
    }

    proptest! {
        #[test]
        fn the_choice_is_an_in_sync_follower_in_the_rack_holding_the_offset(
            racks in proptest::collection::vec(0u8..3, 1..6),
            ends in proptest::collection::vec(0i64..100, 6),
            in_sync in proptest::collection::vec(any::<bool>(), 6),
            leader in 0usize..6,
            fetch_offset in 0i64..100,
            client in 0u8..4,
        ) {
            let leader = leader % racks.len();
            let replicas: Vec<ReplicaView> = racks
                .iter()
                .enumerate()
                .map(|(i, r)| view(i as i32, &format!("r{r}"), ends[i], in_sync[i] || i == leader))
                .collect();
            let client_rack = format!("r{client}");
            match preferred_read_replica(ReplicaSelector::RackAware, &client_rack, leader as i32, fetch_offset, &replicas) {
                Some(id) => {
                    let r = &replicas[id as usize];
                    prop_assert_ne!(id, leader as i32);
                    prop_assert!(r.in_sync && r.log_end_offset >= fetch_offset);
                    prop_assert_eq!(r.rack.as_deref(), Some(client_rack.as_str()));
                    prop_assert_ne!(replicas[leader].rack.as_deref(), Some(client_rack.as_str()));
                }
                None => {
                    let leader_in_rack = replicas[leader].rack.as_deref() == Some(client_rack.as_str());
                    let follower_in_rack = replicas.iter().any(|r| {
                        r.broker_id != leader as i32 && r.in_sync && r.log_end_offset >= fetch_offset
                            && r.rack.as_deref() == Some(client_rack.as_str())
                    });
                    prop_assert!(leader_in_rack || !follower_in_rack);
                }
            }
        }
    }
}
