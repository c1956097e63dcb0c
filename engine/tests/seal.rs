//! A roll seals the old segment in the background (its fdatasync, index files, recovery point
//! and producer snapshot): what must still wait for that seal does. The seal's fault hook is
//! process-wide, so these tests have a binary of their own.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use sluice_engine::partition_log::{set_seal_fault_hook, SealStep};
use support::*;

/// Seals whose fdatasync completed, in this process.
static SEALS_SYNCED: AtomicUsize = AtomicUsize::new(0);
/// Tests of this file one at a time (they count seals).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Holds every seal before its fdatasync long enough that anything not waiting for it runs
/// first, and counts the seals past their fdatasync.
fn slow_counted_seals(step: SealStep) -> Option<Duration> {
    match step {
        SealStep::BeforeSync => Some(Duration::from_millis(30)),
        SealStep::AfterSync => {
            SEALS_SYNCED.fetch_add(1, Ordering::SeqCst);
            None
        }
    }
}

/// A flush (`flush.ms`'s timer, `flush.messages`) claims everything below the log end is
/// fsynced only once the segment a roll just closed, which was never synced, is — its
/// fdatasync runs in the background, held back here.
#[test]
fn a_flush_waits_for_the_rolled_segments_sync() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    set_seal_fault_hook(slow_counted_seals);
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), config_with(&[("segment.bytes", "4096")]), small_writer_options(), true).await;
        let mut appended = 0;
        for _ in 0..4 {
            let synced_before = SEALS_SYNCED.load(Ordering::SeqCst);
            let rolls = log.segment_count();
            while log.segment_count() == rolls {
                log.append(&tagged_batch(appended, 2, 300, 1000), 0).await.unwrap();
                appended += 1;
            }
            assert!(log.recovery_point() < log.log_end_offset(), "nothing synced the rolled segment yet");
            log.flush().await.unwrap();
            assert_eq!(
                SEALS_SYNCED.load(Ordering::SeqCst) - synced_before,
                1,
                "the flush returned before the seal's fdatasync"
            );
            assert_eq!(log.recovery_point(), log.log_end_offset());
        }
    });
}

/// Without a flush policy an append does not wait for the seal, but whatever reads the seal's
/// files or removes its segment does: retention, and truncation below the rolled segment.
#[test]
fn retention_and_truncation_wait_for_the_seal_and_leave_a_log_that_reopens() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    set_seal_fault_hook(slow_counted_seals);
    let dir = tempfile::tempdir().unwrap();
    let config = || config_with(&[("segment.bytes", "4096"), ("retention.bytes", "8192")]);
    let kept = run(async {
        let log = open(dir.path(), config(), small_writer_options(), true).await;
        let mut appended = 0;
        // Each round rolls and at once applies retention or truncates: both run while the
        // roll's seal may still be syncing the segment they look at.
        for round in 0..6u64 {
            let rolls = log.segment_count();
            while log.segment_count() == rolls {
                log.append(&tagged_batch(appended, 1, 500, 1000), 0).await.unwrap();
                appended += 1;
            }
            if round % 2 == 0 {
                log.apply_retention(sluice_engine::clock::now_ms()).await.unwrap();
            } else {
                // Cut back into the segment just rolled: the new active segment goes.
                let end = log.log_end_offset();
                log.truncate_to(end - 2).await.unwrap();
                appended = log.log_end_offset() as u64;
            }
            log.wait_sealed().await.unwrap();
            let end = log.log_end_offset();
            assert!(
                log.recovery_point() <= end,
                "round {round}: recovery point {} past the log end {end}",
                log.recovery_point()
            );
            for snapshot in snapshot_offsets(&dir.path().join("t-0")) {
                assert!(snapshot <= end, "round {round}: a producer snapshot at {snapshot}, past the log end {end}");
            }
        }
        let kept = read_all(&log, log.log_start_offset()).await;
        assert!(!kept.is_empty());
        log.close().await.unwrap();
        kept
    });
    run(async {
        let log = open(dir.path(), config(), small_writer_options(), true).await;
        assert_eq!(read_all(&log, log.log_start_offset()).await, kept, "a clean reopen serves the same batches");
    });
}

/// Offsets of the producer snapshots (`<offset>.snapshot`) in a partition directory.
fn snapshot_offsets(dir: &std::path::Path) -> Vec<i64> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".snapshot")?.parse().ok())
        .collect()
}
