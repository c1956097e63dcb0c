//! Deterministic fault points for end-to-end tests, set through environment variables (never
//! through `server.properties`: they are not settings). Each one forces an ordering or a failure
//! that otherwise happens only by chance, so a test can reproduce it every time instead of
//! guessing with sleeps.
//!
//! Owns: reading the variables. Must never: change behaviour when the variables are unset.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use sluice_engine::checkpoint_file::{set_write_step_hook, WriteStep};
use sluice_engine::cleaner::CleanerStep;
use sluice_engine::partition_log::SealStep;

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

/// `SLUICE_FAULT_SHUTDOWN_DELAY_MS=<ms>`: after the first SIGTERM/SIGINT the main thread waits
/// this long before it starts the shutdown, so a test can send a second signal while the
/// shutdown is surely still running.
pub const SHUTDOWN_DELAY_VAR: &str = "SLUICE_FAULT_SHUTDOWN_DELAY_MS";

/// The shutdown delay, if the fault point is set.
pub fn shutdown_delay() -> Option<Duration> {
    Some(Duration::from_millis(std::env::var(SHUTDOWN_DELAY_VAR).ok()?.trim().parse().ok()?))
}

/// `SLUICE_FAULT_ABORT_IN_ATOMIC_WRITE=<file name>:<step>`: the process aborts (as in a crash:
/// no destructor, no shutdown) when a durable write of a file of that name (`metadata.json`,
/// `recovery-point.checkpoint`, `.clean_shutdown`, …) reaches the step: `after-temp-create`
/// (an empty temp file beside the old one), `after-temp-write` (the temp file holds the new
/// contents, synced) or `after-rename` (the new contents under the final name, the directory
/// not synced). See [`sluice_engine::checkpoint_file::WriteStep`].
pub const ABORT_IN_ATOMIC_WRITE_VAR: &str = "SLUICE_FAULT_ABORT_IN_ATOMIC_WRITE";

static ABORT_IN_ATOMIC_WRITE: OnceLock<(String, WriteStep)> = OnceLock::new();

/// Reads [`ABORT_IN_ATOMIC_WRITE_VAR`] and, if set, installs the engine's write-step hook
/// (nothing at all when unset). An unreadable value is an error: a crash test must not pass
/// because its fault never fired.
pub fn install_abort_in_atomic_write() -> Result<(), String> {
    let Ok(value) = std::env::var(ABORT_IN_ATOMIC_WRITE_VAR) else { return Ok(()) };
    let (file, step) = parse_abort_in_atomic_write(&value)
        .ok_or_else(|| format!("{ABORT_IN_ATOMIC_WRITE_VAR}={value}: expected <file name>:<after-temp-create|after-temp-write|after-rename>"))?;
    if ABORT_IN_ATOMIC_WRITE.set((file, step)).is_err() || !set_write_step_hook(abort_at_configured_step) {
        return Err(format!("{ABORT_IN_ATOMIC_WRITE_VAR} installed twice"));
    }
    Ok(())
}

fn parse_abort_in_atomic_write(value: &str) -> Option<(String, WriteStep)> {
    let (file, step) = value.rsplit_once(':')?;
    let step = match step.trim() {
        "after-temp-create" => WriteStep::TempCreated,
        "after-temp-write" => WriteStep::TempWritten,
        "after-rename" => WriteStep::Renamed,
        _ => return None,
    };
    let file = file.trim();
    (!file.is_empty() && !file.contains('/')).then(|| (file.to_string(), step))
}

fn abort_at_configured_step(path: &Path, step: WriteStep) {
    let Some((file, at)) = ABORT_IN_ATOMIC_WRITE.get() else { return };
    if step == *at && path.file_name().is_some_and(|name| name == file.as_str()) {
        crash(&format!(
            "fault point {ABORT_IN_ATOMIC_WRITE_VAR}: aborting in the write of {} at {step:?}",
            path.display()
        ));
    }
}

/// `SLUICE_FAULT_ABORT_IN_CLEANER=<before-swap|after-swap>:<group>`: the process aborts when a
/// cleaning pass reaches that step of that group of segments (0-based): `before-swap` with the
/// group's rewritten segment handed to its `.cleaned` file, `after-swap` once it replaced the
/// old segments. See [`sluice_engine::cleaner::CleanerStep`].
pub const ABORT_IN_CLEANER_VAR: &str = "SLUICE_FAULT_ABORT_IN_CLEANER";

static ABORT_IN_CLEANER: OnceLock<CleanerStep> = OnceLock::new();

/// Reads [`ABORT_IN_CLEANER_VAR`] and, if set, installs the cleaner's hook. An unreadable value
/// is an error, as for [`install_abort_in_atomic_write`].
pub fn install_abort_in_cleaner() -> Result<(), String> {
    let Ok(value) = std::env::var(ABORT_IN_CLEANER_VAR) else { return Ok(()) };
    let step = parse_abort_in_cleaner(&value)
        .ok_or_else(|| format!("{ABORT_IN_CLEANER_VAR}={value}: expected <before-swap|after-swap>:<group number>"))?;
    if ABORT_IN_CLEANER.set(step).is_err() {
        return Err(format!("{ABORT_IN_CLEANER_VAR} installed twice"));
    }
    sluice_engine::cleaner::set_fault_hook(abort_at_cleaner_step);
    Ok(())
}

fn parse_abort_in_cleaner(value: &str) -> Option<CleanerStep> {
    let (step, group) = value.split_once(':')?;
    let group: usize = group.trim().parse().ok()?;
    match step.trim() {
        "before-swap" => Some(CleanerStep::BeforeSwap(group)),
        "after-swap" => Some(CleanerStep::AfterSwap(group)),
        _ => None,
    }
}

fn abort_at_cleaner_step(step: CleanerStep) {
    if ABORT_IN_CLEANER.get() == Some(&step) {
        crash(&format!("fault point {ABORT_IN_CLEANER_VAR}: aborting the cleaner at {step:?}"));
    }
}

/// `SLUICE_FAULT_ABORT_IN_SEAL=<before-sync|after-sync>`: the process aborts when the first
/// background seal of a rolled segment reaches that step: `before-sync` with the next segment
/// taking appends and the rolled one written but not fsynced, `after-sync` once it is fsynced
/// but its index files, the recovery point and the producer snapshot are not written. See
/// [`sluice_engine::partition_log::SealStep`].
pub const ABORT_IN_SEAL_VAR: &str = "SLUICE_FAULT_ABORT_IN_SEAL";

static ABORT_IN_SEAL: OnceLock<SealStep> = OnceLock::new();

/// Reads [`ABORT_IN_SEAL_VAR`] and, if set, installs the seal's hook. An unreadable value is an
/// error, as for [`install_abort_in_atomic_write`].
pub fn install_abort_in_seal() -> Result<(), String> {
    let Ok(value) = std::env::var(ABORT_IN_SEAL_VAR) else { return Ok(()) };
    let step = parse_abort_in_seal(&value)
        .ok_or_else(|| format!("{ABORT_IN_SEAL_VAR}={value}: expected before-sync or after-sync"))?;
    if ABORT_IN_SEAL.set(step).is_err() {
        return Err(format!("{ABORT_IN_SEAL_VAR} installed twice"));
    }
    sluice_engine::partition_log::set_seal_fault_hook(abort_at_seal_step);
    Ok(())
}

fn parse_abort_in_seal(value: &str) -> Option<SealStep> {
    match value.trim() {
        "before-sync" => Some(SealStep::BeforeSync),
        "after-sync" => Some(SealStep::AfterSync),
        _ => None,
    }
}

fn abort_at_seal_step(step: SealStep) -> Option<Duration> {
    if ABORT_IN_SEAL.get() == Some(&step) {
        crash(&format!("fault point {ABORT_IN_SEAL_VAR}: aborting a segment's seal at {step:?}"));
    }
    None
}

/// Ends the process as a crash would: no destructor, no shutdown, no core file.
fn crash(message: &str) -> ! {
    crate::logging::fatal(message);
    // A crash, not a core file in the test's working directory.
    let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: setrlimit only reads the struct; the process aborts right after.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
    std::process::abort();
}

/// `SLUICE_FAULT_TXN_HOLD_MARKERS=1`: the transaction coordinator never writes the markers of an
/// ending transaction, which stays in PrepareCommit/PrepareAbort (a crash between EndTxn's
/// answer and the markers, made certain).
pub const TXN_HOLD_MARKERS_VAR: &str = "SLUICE_FAULT_TXN_HOLD_MARKERS";

pub fn txn_hold_markers() -> bool {
    std::env::var(TXN_HOLD_MARKERS_VAR).is_ok_and(|v| v.trim() == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abort_in_atomic_write_values_parse() {
        assert_eq!(
            parse_abort_in_atomic_write("metadata.json:after-rename"),
            Some(("metadata.json".to_string(), WriteStep::Renamed))
        );
        assert_eq!(
            parse_abort_in_atomic_write(".clean_shutdown:after-temp-create"),
            Some((".clean_shutdown".to_string(), WriteStep::TempCreated))
        );
        assert_eq!(
            parse_abort_in_atomic_write("recovery-point.checkpoint:after-temp-write"),
            Some(("recovery-point.checkpoint".to_string(), WriteStep::TempWritten))
        );
        for bad in ["metadata.json", "metadata.json:before-anything", ":after-rename", "a/b:after-rename"] {
            assert_eq!(parse_abort_in_atomic_write(bad), None, "{bad}");
        }
    }

    #[test]
    fn abort_in_cleaner_values_parse() {
        assert_eq!(parse_abort_in_cleaner("before-swap:0"), Some(CleanerStep::BeforeSwap(0)));
        assert_eq!(parse_abort_in_cleaner("after-swap:2"), Some(CleanerStep::AfterSwap(2)));
        for bad in ["before-swap", "after-swap:x", "during:1", ":1"] {
            assert_eq!(parse_abort_in_cleaner(bad), None, "{bad}");
        }
    }

    #[test]
    fn abort_in_seal_values_parse() {
        assert_eq!(parse_abort_in_seal("before-sync"), Some(SealStep::BeforeSync));
        assert_eq!(parse_abort_in_seal(" after-sync "), Some(SealStep::AfterSync));
        for bad in ["", "sync", "before-sync:1"] {
            assert_eq!(parse_abort_in_seal(bad), None, "{bad}");
        }
    }
}
