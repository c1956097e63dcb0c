//! When to try again after a failure, doubling the wait each time up to a ceiling: the
//! schedule of a partition's recovery from a failed write (a full disk), which must not spin
//! while the disk stays full nor wait long once it has room. Pure: time is an input.
//!
//! Owns: the current delay and the time of the next attempt. Must never: allow two attempts
//! closer than the first delay, or wait longer than the ceiling.

/// Backoff state of one thing being retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryBackoff {
    first_delay_ms: i64,
    max_delay_ms: i64,
    delay_ms: i64,
    next_attempt_ms: i64,
}

impl RetryBackoff {
    /// A failure seen at `now_ms`: the first attempt is due after `first_delay_ms`.
    pub fn new(now_ms: i64, first_delay_ms: i64, max_delay_ms: i64) -> RetryBackoff {
        assert!(first_delay_ms > 0 && max_delay_ms >= first_delay_ms);
        RetryBackoff {
            first_delay_ms,
            max_delay_ms,
            delay_ms: first_delay_ms,
            next_attempt_ms: now_ms + first_delay_ms,
        }
    }

    pub fn is_due(&self, now_ms: i64) -> bool {
        now_ms >= self.next_attempt_ms
    }

    /// An attempt was made at `now_ms` (whether or not it helped): the next waits twice as long.
    pub fn attempted(&mut self, now_ms: i64) {
        self.delay_ms = (self.delay_ms * 2).min(self.max_delay_ms);
        self.next_attempt_ms = now_ms + self.delay_ms;
    }

    /// Whether a whole further delay passed after the next attempt was due without anyone
    /// needing it: the failures are over, and a new one starts again from the first delay.
    pub fn settled(&self, now_ms: i64) -> bool {
        now_ms >= self.next_attempt_ms + self.delay_ms
    }

    pub fn delay_ms(&self) -> i64 {
        self.delay_ms
    }

    pub fn first_delay_ms(&self) -> i64 {
        self.first_delay_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_ceiling_and_is_due_only_after_the_delay() {
        let mut b = RetryBackoff::new(1_000, 100, 1_000);
        assert!(!b.is_due(1_099));
        assert!(b.is_due(1_100));
        let mut now = 1_100;
        let mut delays = Vec::new();
        for _ in 0..6 {
            b.attempted(now);
            delays.push(b.delay_ms());
            assert!(!b.is_due(now + b.delay_ms() - 1));
            now += b.delay_ms();
            assert!(b.is_due(now));
        }
        assert_eq!(delays, vec![200, 400, 800, 1_000, 1_000, 1_000]);
        assert!(!b.settled(now + 999));
        assert!(b.settled(now + 1_000));
    }
}
