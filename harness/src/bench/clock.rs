//! The bench's one clock: nanoseconds of CLOCK_MONOTONIC, the same on every thread of the
//! process, so a producer shard's send time and a consumer shard's receive time compare.
//!
//! Must never: be mixed with wall-clock time (only batch timestamps use wall-clock ms).

/// Monotonic nanoseconds since an arbitrary start (boot).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec we pass; CLOCK_MONOTONIC always exists.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Wall-clock milliseconds since the Unix epoch (record batch timestamps).
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
