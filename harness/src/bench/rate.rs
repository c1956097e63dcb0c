//! The send schedule of one producer: with a target rate, message `i` is *intended* to be
//! sent at `start + i / rate`, whatever happened to earlier messages; at max throughput a
//! message is intended to be sent when it is created.
//!
//! Latency is measured from the intended time (see `recorder`), so a stalled producer does not
//! hide the stall by sending late (coordinated omission). Owns: the schedule arithmetic. Must
//! never: sleep or read the clock itself (callers pass `now_ns`), so it is testable without a
//! runtime.

/// Messages one schedule hands out per call at most (bounds the work between yields).
pub const MAX_DUE_PER_CALL: u64 = 100_000;

#[derive(Clone, Debug)]
pub struct RateSchedule {
    start_ns: u64,
    /// `None`: as fast as possible.
    rate_per_sec: Option<f64>,
    /// Messages handed out so far.
    issued: u64,
}

impl RateSchedule {
    pub fn fixed(start_ns: u64, rate_per_sec: f64) -> RateSchedule {
        assert!(rate_per_sec > 0.0 && rate_per_sec.is_finite(), "rate must be positive");
        RateSchedule { start_ns, rate_per_sec: Some(rate_per_sec), issued: 0 }
    }

    pub fn unlimited(start_ns: u64) -> RateSchedule {
        RateSchedule { start_ns, rate_per_sec: None, issued: 0 }
    }

    pub fn is_fixed_rate(&self) -> bool {
        self.rate_per_sec.is_some()
    }

    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// Intended send time of message `index` (fixed rate only).
    pub fn intended_ns(&self, index: u64) -> u64 {
        match self.rate_per_sec {
            Some(rate) => self.start_ns + (index as f64 * 1e9 / rate) as u64,
            None => self.start_ns,
        }
    }

    /// When the next message is due; `now_ns` at max throughput.
    pub fn next_due_ns(&self, now_ns: u64) -> u64 {
        match self.rate_per_sec {
            Some(_) => self.intended_ns(self.issued),
            None => now_ns,
        }
    }

    /// Takes the next message if it is due at `now_ns`; returns its intended send time.
    pub fn take_due(&mut self, now_ns: u64) -> Option<u64> {
        let due = self.next_due_ns(now_ns);
        if due > now_ns {
            return None;
        }
        self.issued += 1;
        Some(due)
    }

    /// How many messages are due at `now_ns` and not yet taken (capped at [`MAX_DUE_PER_CALL`]).
    pub fn backlog(&self, now_ns: u64) -> u64 {
        match self.rate_per_sec {
            None => MAX_DUE_PER_CALL,
            Some(rate) => {
                if now_ns < self.start_ns {
                    return 0;
                }
                let due_total = ((now_ns - self.start_ns) as f64 * rate / 1e9).floor() as u64 + 1;
                due_total.saturating_sub(self.issued).min(MAX_DUE_PER_CALL)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn fixed_rate_spaces_messages_evenly_from_start() {
        let mut s = RateSchedule::fixed(1_000 * MS, 1000.0);
        assert_eq!(s.take_due(999 * MS), None, "nothing before start");
        assert_eq!(s.take_due(1_000 * MS), Some(1_000 * MS));
        assert_eq!(s.take_due(1_000 * MS), None, "next is 1 ms later");
        assert_eq!(s.next_due_ns(0), 1_001 * MS);
        // Late by 10 ms: ten messages are due at once, each with its own intended time.
        let now = 1_011 * MS;
        assert_eq!(s.backlog(now), 11);
        let taken: Vec<u64> = std::iter::from_fn(|| s.take_due(now)).collect();
        assert_eq!(taken.len(), 11);
        assert_eq!(taken[0], 1_001 * MS);
        assert_eq!(taken[10], 1_011 * MS);
        assert_eq!(s.issued(), 12);
    }

    #[test]
    fn rate_over_a_second_is_the_rate() {
        let mut s = RateSchedule::fixed(0, 12_345.0);
        let n = std::iter::from_fn(|| s.take_due(1_000 * MS - 1)).count();
        assert_eq!(n, 12_345);
        assert_eq!(s.backlog(1_000 * MS - 1), 0);
    }

    #[test]
    fn unlimited_is_always_due_now() {
        let mut s = RateSchedule::unlimited(5);
        assert_eq!(s.take_due(42), Some(42));
        assert_eq!(s.take_due(43), Some(43));
        assert!(!s.is_fixed_rate());
    }
}
