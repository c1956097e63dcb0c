//! Broker sessions on the active controller (Kafka's `BrokerHeartbeatManager`): when each
//! broker last heartbeat, and which unfenced brokers have been silent longer than
//! `broker.session.timeout.ms`. Heartbeats live in the active controller's memory, not in the
//! log; a controller that becomes active gives every broker a whole session from that moment.
//!
//! Owns: the pure decision (time is an input, in milliseconds of a monotonic clock). Must
//! never: fence a broker that heartbeat within the session timeout, or read the clock itself.

use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct BrokerLiveness {
    last_heartbeat_ms: HashMap<i32, u64>,
    /// When this node became the active controller (None: it is not).
    active_since_ms: Option<u64>,
}

impl BrokerLiveness {
    /// This node became the active controller at `now_ms`: earlier heartbeats went elsewhere.
    pub fn became_active(&mut self, now_ms: u64) {
        self.last_heartbeat_ms.clear();
        self.active_since_ms = Some(now_ms);
    }

    pub fn lost_leadership(&mut self) {
        self.active_since_ms = None;
        self.last_heartbeat_ms.clear();
    }

    pub fn is_active(&self) -> bool {
        self.active_since_ms.is_some()
    }

    pub fn heartbeat(&mut self, broker_id: i32, now_ms: u64) {
        self.last_heartbeat_ms.insert(broker_id, now_ms);
    }

    /// Unfenced brokers whose session expired at `now_ms`, by id.
    pub fn expired(&self, unfenced: impl IntoIterator<Item = i32>, now_ms: u64, session_timeout_ms: u64) -> Vec<i32> {
        let Some(since) = self.active_since_ms else { return Vec::new() };
        let mut out: Vec<i32> = unfenced
            .into_iter()
            .filter(|id| {
                let last = self.last_heartbeat_ms.get(id).copied().unwrap_or(since).max(since);
                now_ms.saturating_sub(last) > session_timeout_ms
            })
            .collect();
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_brokers_expire_after_the_session_timeout_counted_from_activation() {
        let mut l = BrokerLiveness::default();
        assert!(l.expired([1, 2], 100_000, 9000).is_empty(), "not active: fences nobody");
        l.became_active(1000);
        l.heartbeat(1, 5000);
        assert!(l.expired([1, 2], 10_000, 9000).is_empty(), "2 has its whole session from activation");
        assert_eq!(l.expired([1, 2], 10_001, 9000), vec![2]);
        assert_eq!(l.expired([1, 2], 14_001, 9000), vec![1, 2]);
        l.heartbeat(1, 14_000);
        assert_eq!(l.expired([1, 2], 14_001, 9000), vec![2]);
        assert_eq!(l.expired([1], 14_001, 9000), Vec::<i32>::new(), "only unfenced brokers are asked about");
        l.lost_leadership();
        assert!(l.expired([1, 2], 1_000_000, 9000).is_empty());
    }
}
