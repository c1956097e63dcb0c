//! Rate limits for log lines that can fire once per event (per request, connection, partition
//! or accept), so a flood of one failure does not become a flood of log lines.
//!
//! Owns: the limiter ([`LogLimiter`], sans-I/O: the time is an input, so it is tested without a
//! runtime or a clock) and the macros that keep one limiter per call site and per thread
//! ([`warn_limited!`](crate::warn_limited), [`error_limited!`](crate::error_limited),
//! [`info_limited!`](crate::info_limited)). At most [`DEFAULT_MAX_EVENTS`] lines per
//! [`DEFAULT_INTERVAL_MS`] from one call site on one shard; the first line logged after a
//! suppression carries `suppressed = N`, the lines of that call site not logged since its
//! previous line.
//!
//! Must never: take a lock or be shared between threads (each shard thread has its own
//! limiter per call site, in a thread-local `Cell`), or be used for once-per-process lines
//! (start-up, shutdown, configuration): those are logged with plain `tracing` macros.

use std::sync::OnceLock;
use std::time::Instant;

/// Lines one call site may log per window, per shard. As the Linux kernel's `printk`
/// rate limit (a burst of 10 per 5 s): enough to see what fails and for which peers or
/// partitions, and a steady flood costs at most 2 lines a second per call site and shard.
pub const DEFAULT_MAX_EVENTS: u32 = 10;

/// Length of a rate-limit window. See [`DEFAULT_MAX_EVENTS`].
pub const DEFAULT_INTERVAL_MS: u64 = 5_000;

/// Admits at most `max_events` events per window of `interval_ms` and counts the rest. A
/// window opens at the first event after the previous one ended (fixed windows, not a sliding
/// one: constant state, two comparisons per event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLimiter {
    max_events: u32,
    interval_ms: u64,
    /// Start of the current window; `None` before the first event.
    window_start_ms: Option<u64>,
    admitted_in_window: u32,
    /// Events refused since the last admitted one.
    suppressed: u64,
}

impl LogLimiter {
    pub const fn new(max_events: u32, interval_ms: u64) -> LogLimiter {
        LogLimiter { max_events, interval_ms, window_start_ms: None, admitted_in_window: 0, suppressed: 0 }
    }

    /// [`DEFAULT_MAX_EVENTS`] per [`DEFAULT_INTERVAL_MS`]; what the macros use.
    pub const fn per_call_site() -> LogLimiter {
        LogLimiter::new(DEFAULT_MAX_EVENTS, DEFAULT_INTERVAL_MS)
    }

    /// Decides about one event at `now_ms` (any monotonic millisecond clock). `Some(n)`: log
    /// it, and say that `n` events were suppressed since the last logged one. `None`: drop it
    /// (it is counted). A clock that goes backwards keeps the current window.
    pub fn admit(&mut self, now_ms: u64) -> Option<u64> {
        let window_over = match self.window_start_ms {
            None => true,
            Some(start) => now_ms.saturating_sub(start) >= self.interval_ms,
        };
        if window_over {
            self.window_start_ms = Some(now_ms);
            self.admitted_in_window = 0;
        }
        if self.admitted_in_window < self.max_events {
            self.admitted_in_window += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
            None
        }
    }

    /// Events refused since the last admitted one.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

/// Milliseconds since this process first asked; the clock of the macros. `Instant` is the
/// vDSO's monotonic clock: no blocking syscall, no lock after the first call.
pub fn monotonic_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// `tracing::warn!`, limited per call site and shard (see the [module docs](crate::log_limit)).
/// Same arguments as `tracing::warn!` (fields, then the message).
#[macro_export]
macro_rules! warn_limited {
    ($($arg:tt)+) => { $crate::__event_limited!(WARN, $crate::log_limit::monotonic_ms(), $($arg)+) };
}

/// `tracing::error!`, limited per call site and shard (see the [module docs](crate::log_limit)).
#[macro_export]
macro_rules! error_limited {
    ($($arg:tt)+) => { $crate::__event_limited!(ERROR, $crate::log_limit::monotonic_ms(), $($arg)+) };
}

/// `tracing::info!`, limited per call site and shard (see the [module docs](crate::log_limit)).
#[macro_export]
macro_rules! info_limited {
    ($($arg:tt)+) => { $crate::__event_limited!(INFO, $crate::log_limit::monotonic_ms(), $($arg)+) };
}

/// The macros' body: `$now_ms` is the clock reading (tests pass their own).
#[doc(hidden)]
#[macro_export]
macro_rules! __event_limited {
    ($level:ident, $now_ms:expr, $($arg:tt)+) => {{
        ::std::thread_local! {
            static LIMITER: ::std::cell::Cell<$crate::log_limit::LogLimiter> =
                const { ::std::cell::Cell::new($crate::log_limit::LogLimiter::per_call_site()) };
        }
        let admitted = LIMITER.with(|cell| {
            let mut limiter = cell.get();
            let admitted = limiter.admit($now_ms);
            cell.set(limiter);
            admitted
        });
        match admitted {
            ::std::option::Option::Some(0) => $crate::__tracing::event!($crate::__tracing::Level::$level, $($arg)+),
            ::std::option::Option::Some(suppressed) => {
                $crate::__tracing::event!($crate::__tracing::Level::$level, suppressed, $($arg)+)
            }
            ::std::option::Option::None => {}
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_max_events_per_window_then_counts_the_rest() {
        let mut limiter = LogLimiter::new(3, 1_000);
        let admitted: Vec<Option<u64>> = (0..5).map(|i| limiter.admit(100 + i)).collect();
        assert_eq!(admitted, vec![Some(0), Some(0), Some(0), None, None]);
        assert_eq!(limiter.suppressed(), 2);
        // Still the window that opened at 100.
        assert_eq!(limiter.admit(1_099), None);
        assert_eq!(limiter.suppressed(), 3);
    }

    #[test]
    fn the_first_event_of_a_new_window_reports_the_suppressed_count() {
        let mut limiter = LogLimiter::new(2, 1_000);
        for _ in 0..7 {
            limiter.admit(0);
        }
        assert_eq!(limiter.admit(1_000), Some(5));
        assert_eq!(limiter.suppressed(), 0);
        assert_eq!(limiter.admit(1_000), Some(0));
        assert_eq!(limiter.admit(1_000), None);
    }

    #[test]
    fn a_window_opens_at_the_first_event_after_a_quiet_spell() {
        let mut limiter = LogLimiter::new(1, 1_000);
        assert_eq!(limiter.admit(0), Some(0));
        assert_eq!(limiter.admit(500), None);
        // Long quiet: the window opens at 10_000, not at a multiple of the interval.
        assert_eq!(limiter.admit(10_000), Some(1));
        assert_eq!(limiter.admit(10_999), None);
        assert_eq!(limiter.admit(11_000), Some(1));
    }

    #[test]
    fn a_clock_going_backwards_keeps_the_window() {
        let mut limiter = LogLimiter::new(1, 1_000);
        assert_eq!(limiter.admit(5_000), Some(0));
        assert_eq!(limiter.admit(10), None);
        assert_eq!(limiter.admit(6_000), Some(1));
    }

    #[test]
    fn zero_max_events_suppresses_everything() {
        let mut limiter = LogLimiter::new(0, 1_000);
        assert_eq!(limiter.admit(0), None);
        assert_eq!(limiter.admit(5_000), None);
        assert_eq!(limiter.suppressed(), 2);
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let mut limiter = LogLimiter::per_call_site();
        let admitted = (0..100).filter(|_| limiter.admit(0).is_some()).count();
        assert_eq!(admitted, DEFAULT_MAX_EVENTS as usize);
        assert_eq!(limiter.admit(DEFAULT_INTERVAL_MS - 1), None);
        assert_eq!(limiter.admit(DEFAULT_INTERVAL_MS), Some(100 - DEFAULT_MAX_EVENTS as u64 + 1));
    }

    /// Counts the events it sees and those that carry a `suppressed` field.
    #[derive(Default)]
    struct CountingSubscriber {
        events: std::sync::atomic::AtomicUsize,
        with_suppressed: std::sync::atomic::AtomicUsize,
    }

    impl tracing::Subscriber for CountingSubscriber {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            use std::sync::atomic::Ordering::Relaxed;
            self.events.fetch_add(1, Relaxed);
            if event.metadata().fields().field("suppressed").is_some() {
                self.with_suppressed.fetch_add(1, Relaxed);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn the_macro_limits_each_call_site_on_its_own() {
        use std::sync::atomic::Ordering::Relaxed;
        let subscriber = std::sync::Arc::new(CountingSubscriber::default());
        tracing::subscriber::with_default(subscriber.clone(), || {
            // Far fewer than DEFAULT_INTERVAL_MS pass here: one window per call site.
            for i in 0..100 {
                crate::warn_limited!(i, "first call site");
                crate::error_limited!(error = %"boom", "second call site");
            }
        });
        assert_eq!(subscriber.events.load(Relaxed), 2 * DEFAULT_MAX_EVENTS as usize);
        assert_eq!(subscriber.with_suppressed.load(Relaxed), 0);
    }

    #[test]
    fn the_macro_reports_the_suppressed_count_when_the_window_reopens() {
        use std::sync::atomic::Ordering::Relaxed;
        let subscriber = std::sync::Arc::new(CountingSubscriber::default());
        tracing::subscriber::with_default(subscriber.clone(), || {
            for now_ms in [0, 0, 0, 1, 2, DEFAULT_INTERVAL_MS + 2, DEFAULT_INTERVAL_MS + 3] {
                for _ in 0..DEFAULT_MAX_EVENTS {
                    crate::__event_limited!(WARN, now_ms, "a call site with its own clock");
                }
            }
        });
        // One window of DEFAULT_MAX_EVENTS, then a second whose first line says how many the
        // first one dropped.
        assert_eq!(subscriber.events.load(Relaxed), 2 * DEFAULT_MAX_EVENTS as usize);
        assert_eq!(subscriber.with_suppressed.load(Relaxed), 1);
    }

    #[test]
    fn each_thread_has_its_own_limiter() {
        use std::sync::atomic::Ordering::Relaxed;
        let subscriber = std::sync::Arc::new(CountingSubscriber::default());
        let log = |subscriber: std::sync::Arc<CountingSubscriber>| {
            tracing::subscriber::with_default(subscriber, || {
                for _ in 0..50 {
                    crate::warn_limited!("one call site, two threads");
                }
            })
        };
        let other = subscriber.clone();
        std::thread::spawn(move || log(other)).join().unwrap();
        log(subscriber.clone());
        assert_eq!(subscriber.events.load(Relaxed), 2 * DEFAULT_MAX_EVENTS as usize);
    }
}
