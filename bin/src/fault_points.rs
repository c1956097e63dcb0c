//! Deterministic fault points for end-to-end tests, set through environment variables (never
//! through `server.properties`: they are not settings). Each one forces an ordering or a failure
//! that otherwise happens only by chance, so a test can reproduce it every time instead of
//! guessing with sleeps.
//!
//! Owns: reading the variables. Must never: change behaviour when the variables are unset.

use std::time::Duration;

/// `SLUICE_FAULT_SHARD_OPEN_DELAY_MS=<shard>:<ms>`: that shard starts opening its storage only
/// after the delay, so the other shards finish start-up first (the start-up race of a slow
/// recovery).
pub const SHARD_OPEN_DELAY_VAR: &str = "SLUICE_FAULT_SHARD_OPEN_DELAY_MS";

/// The start-up delay for `shard`, if the fault point names it.
pub fn shard_open_delay(shard: usize) -> Option<Duration> {
    let value = std::env::var(SHARD_OPEN_DELAY_VAR).ok()?;
    let (target, ms) = value.split_once(':')?;
    if target.trim().parse::<usize>().ok()? != shard {
        return None;
    }
    Some(Duration::from_millis(ms.trim().parse().ok()?))
}

/// `SLUICE_FAULT_TXN_HOLD_MARKERS=1`: the transaction coordinator never writes the markers of an
/// ending transaction, which stays in PrepareCommit/PrepareAbort (a crash between EndTxn's
/// answer and the markers, made certain).
pub const TXN_HOLD_MARKERS_VAR: &str = "SLUICE_FAULT_TXN_HOLD_MARKERS";

pub fn txn_hold_markers() -> bool {
    std::env::var(TXN_HOLD_MARKERS_VAR).is_ok_and(|v| v.trim() == "1")
}
