//! Log compaction (`cleanup.policy=compact`): keep at least the latest record of every key.
//!
//! The pure parts, unit-tested without a runtime: [`choice`] (which section of which log is
//! cleanable, and the dirtiest log), [`offset_map`] (the bounded key → latest offset map over a
//! dirty section) and [`record_filter`] (rewriting a batch with the records kept). The I/O
//! edges: [`clean_pass`] (one cleaning of one log, swapped in through the segment set's
//! crash-safe [`crate::partition_log::PartitionLog::replace_segments`]) and [`shard_cleaner`]
//! (the shard's loop: checkpoints, the key map, which log next).

pub mod choice;
pub mod clean_pass;
pub mod offset_map;
pub mod record_filter;
pub mod shard_cleaner;

/// Points inside a cleaning where a test can stop the process (a crash at a known step).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanerStep {
    /// After the `n`-th group of a pass was swapped in (0-based).
    AfterGroup(usize),
}

static FAULT_HOOK: std::sync::OnceLock<fn(CleanerStep)> = std::sync::OnceLock::new();

/// Installs the hook the cleaner calls at each [`CleanerStep`] (the binary's fault points; once,
/// at start-up). Without it the steps cost one atomic load.
pub fn set_fault_hook(hook: fn(CleanerStep)) {
    let _ = FAULT_HOOK.set(hook);
}

fn fault_point(step: CleanerStep) {
    if let Some(hook) = FAULT_HOOK.get() {
        hook(step);
    }
}
