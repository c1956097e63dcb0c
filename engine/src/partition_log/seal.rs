//! A roll's seal of the segment it closed, in the background (Kafka flushes a rolled segment
//! asynchronously too): the segment's `fdatasync`, its index files, the recovery point and the
//! producer snapshot taken at the roll.
//!
//! Why: on the produce path a roll paid for all of that, and the first sync after a segment's
//! writes makes the host put the whole segment on its media — 0.4 s of every 256 MiB roll on
//! these machines (`tuning/results/issue20-table`). The roll itself now only drains the writer
//! (every byte written, none synced), cuts the preallocated tail off and starts the next
//! segment; the seal runs after it as a task of its own.
//!
//! Owns: the one seal in flight per log (`PartitionLog::seal`) and its steps ([`SealStep`],
//! for fault points).
//!
//! Contract: until the seal's `fdatasync` completes the recovery point (`flushed`) stays below
//! the rolled segment's end, so a crash rescans that segment and open syncs it; a flush
//! (`flush.messages`, `flush.ms`) waits for the seal before it claims anything past it.
//! Whatever changes the segment set — roll, retention, truncation, replacement, close, delete —
//! first waits for the seal under `exclusive`: at most one seal runs, and the segments it
//! writes files for do not change under it. Index, recovery-point and snapshot files a seal
//! cannot write are logged, not fatal: open rebuilds each (a scan, the older recovery point, a
//! replay after the older snapshot) and a clean close writes the indexes again.
//!
//! Must never: advance the recovery point before the segment's `fdatasync` completed, start a
//! second seal while one runs, hold a `RefCell` borrow across an await, or run a blocking
//! syscall on the shard thread.

use std::rc::Rc;
use std::sync::OnceLock;
use std::time::Duration;

use glommio::io::DmaFile;

use crate::watermark::Watermark;

use super::{io_error, LogError, PartitionLog, PendingSeal};

/// The steps of a seal a fault point can stop at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealStep {
    /// The roll is done (a new active segment takes appends); the old segment's bytes are
    /// written to its file, not yet fsynced.
    BeforeSync,
    /// The old segment is fsynced; its index files, the recovery point and the producer
    /// snapshot are not written yet.
    AfterSync,
}

static FAULT_HOOK: OnceLock<SealFaultHook> = OnceLock::new();

/// Called at each [`SealStep`]; a returned duration holds the seal there that long (tests
/// force a seal to be slow; the binary's fault point aborts instead of returning).
pub type SealFaultHook = fn(SealStep) -> Option<Duration>;

/// Installs the hook every seal calls at each [`SealStep`] (fault points; once per process,
/// at start-up). Without it a step costs one atomic load.
pub fn set_seal_fault_hook(hook: SealFaultHook) {
    let _ = FAULT_HOOK.set(hook);
}

async fn fault_point(step: SealStep) {
    if let Some(hold) = FAULT_HOOK.get().and_then(|hook| hook(step)) {
        glommio::timer::sleep(hold).await;
    }
}

/// What a roll leaves for its seal.
pub(super) struct SealWork {
    /// The rolled segment's file, every byte written (its writer drained and dropped: only
    /// the `fdatasync` is left).
    pub file: Rc<DmaFile>,
    /// The rolled segment's base offset, and its end (the new active segment's base).
    pub base: i64,
    pub next_base: i64,
    /// The producer table as of `next_base`, encoded at the roll (appends go on meanwhile).
    pub producer_snapshot: Vec<u8>,
}

impl PartitionLog {
    /// Starts sealing the segment a roll just closed. Caller holds `exclusive` and waited for
    /// the previous seal.
    pub(super) fn start_seal(&self, work: SealWork) {
        assert!(self.seal.borrow().is_none(), "a seal started while another one runs");
        let log = self.this.upgrade().expect("a log is used through its Rc");
        let done = Watermark::new(0);
        *self.seal.borrow_mut() = Some(PendingSeal { next_base: work.next_base, done: done.clone() });
        glommio::spawn_local(async move {
            let base = work.base;
            match log.seal(work).await {
                Ok(()) => done.advance(1),
                Err(e) => {
                    crate::error_limited!(topic = %log.topic, partition = log.partition, base, error = %e, "sealing a rolled segment failed: its fdatasync did not complete");
                    done.fail();
                }
            }
        })
        .detach();
    }

    async fn seal(&self, work: SealWork) -> Result<(), LogError> {
        fault_point(SealStep::BeforeSync).await;
        let started = std::time::Instant::now();
        let synced = work.file.fdatasync().await;
        crate::shard_metrics::note_fsync(started.elapsed());
        if let Err(e) = synced {
            // As a failed flush: appends fail until the shard recovers the log.
            self.flushed.fail();
            return Err(io_error(std::io::Error::from(e)));
        }
        // Nothing cut the rolled segment meanwhile: whatever does waits for this seal.
        let log_end = self.log_end.get();
        assert!(work.next_base as u64 <= log_end, "a seal ends at {} past the log end {log_end}", work.next_base);
        self.flushed.advance(work.next_base as u64);
        fault_point(SealStep::AfterSync).await;
        let files = async {
            self.write_segment_indexes(work.base).await?;
            self.write_recovery_point(self.recovery_point()).await?;
            self.store_producer_snapshot(work.next_base, &work.producer_snapshot).await
        }
        .await;
        if let Err(e) = files {
            crate::warn_limited!(
                topic = %self.topic, partition = self.partition, base = work.base, error = %e,
                "a rolled segment's index or checkpoint files were not written; the next start rebuilds them"
            );
        }
        Ok(())
    }

    /// Waits for the seal a roll left running, if any; an error if its `fdatasync` failed (once:
    /// the seal is forgotten after it is waited for).
    pub(super) async fn wait_for_seal(&self) -> Result<(), LogError> {
        let Some(done) = self.seal.borrow().as_ref().map(|s| s.done.clone()) else { return Ok(()) };
        let finished = done.wait_for(1).await;
        {
            let mut seal = self.seal.borrow_mut();
            if seal.as_ref().is_some_and(|s| Rc::ptr_eq(&s.done, &done)) {
                *seal = None;
            }
        }
        finished.map_err(|_| LogError::Io("the fdatasync of a rolled segment failed".into()))
    }

    /// The end of the segment a seal is syncing, while it runs: nothing at or past it may
    /// count as fsynced before the seal's `fdatasync` completes.
    pub(super) fn sealing_up_to(&self) -> Option<i64> {
        self.seal.borrow().as_ref().filter(|s| s.done.get() == 0).map(|s| s.next_base)
    }
}
