//! Partition log behaviour on real files: appends, reads at every kind of offset, rolls,
//! restarts (clean and unclean), retention, DeleteRecords, durability, epochs, truncation.

mod support;

use std::rc::Rc;

use sluice_engine::batch::{batches, validate_stored, Validation};
use sluice_engine::error_code::ErrorCode;
use sluice_engine::partition_log::{AppendError, LogError, LogOptions, ReadBound};
use support::*;

#[test]
fn append_assigns_offsets_and_reads_from_any_offset_inside_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), config_with(&[]), small_writer_options(), true).await;
        let mut expected = Vec::new(); // (base, count)
        let mut next = 0i64;
        for i in 0..60u64 {
            let count = 1 + (i as usize % 5);
            let batch = tagged_batch(i, count, 50 + (i as usize * 37) % 700, 1_700_000_000_000 + i as i64);
            let info = log.append(&batch, 0).await.unwrap();
            assert_eq!((info.base_offset, info.last_offset), (next, next + count as i64 - 1));
            assert_eq!(info.record_count, count as i64);
            expected.push((next, count));
            next += count as i64;
        }
        assert_eq!(log.log_end_offset(), next);
        assert_eq!(log.high_watermark(), next);
        // Every offset, including those in the middle of a batch, returns its batch first.
        for &(base, count) in &expected {
            for o in base..base + count as i64 {
                let read = log.read(o, 1 << 20, ReadBound::HighWatermark, true).await.unwrap();
                assert_eq!(read.first_batch_offset, base, "offset {o}");
                let bytes = read.to_vec().await.unwrap();
                let info = validate_stored(&bytes).unwrap();
                assert_eq!(info.base_offset, base);
                assert_eq!(info.records_count as usize, count);
            }
        }
        // Reading at the end is empty; past the end is OFFSET_OUT_OF_RANGE.
        assert!(log.read(next, 1 << 20, ReadBound::HighWatermark, true).await.unwrap().is_empty());
        let err = log.read(next + 1, 100, ReadBound::HighWatermark, true).await.unwrap_err();
        assert_eq!(err.error_code(), ErrorCode::OFFSET_OUT_OF_RANGE);
        // All batches come back intact, in order.
        let all = read_all(&log, 0).await;
        assert_eq!(all.len(), expected.len());
        for ((base, bytes), (want_base, count)) in all.iter().zip(&expected) {
            assert_eq!(base, want_base);
            assert_eq!(validate_stored(bytes).unwrap().records_count as usize, *count);
        }
    });
}

#[test]
fn read_respects_max_bytes_min_one_batch_and_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let options = LogOptions { high_watermark_follows_durable_end: false, ..small_writer_options() };
        let log = open(dir.path(), config_with(&[]), options, true).await;
        let mut sizes = Vec::new();
        for i in 0..10u64 {
            let b = tagged_batch(i, 2, 300, 1000);
            sizes.push(b.len());
            log.append(&b, 0).await.unwrap();
        }
        assert_eq!(log.log_end_offset(), 20);
        assert_eq!(log.high_watermark(), 0, "replication owns the HW in this mode");
        assert!(log.read(0, 1 << 20, ReadBound::HighWatermark, true).await.unwrap().is_empty());
        // Followers may read to the LEO.
        let r = log.read(0, 1 << 20, ReadBound::LogEnd, true).await.unwrap();
        assert_eq!(r.len(), sizes.iter().sum::<usize>());
        log.set_high_watermark(7); // inside batch 3 (offsets 6,7): bound is that batch's start
        let r = log.read(0, 1 << 20, ReadBound::HighWatermark, true).await.unwrap();
        assert_eq!(r.len(), sizes[..3].iter().sum::<usize>());
        log.set_high_watermark(8);
        let r = log.read(0, 1 << 20, ReadBound::HighWatermark, true).await.unwrap();
        assert_eq!(r.len(), sizes[..4].iter().sum::<usize>());
        // max_bytes truncates (a partial trailing batch, like Kafka) …
        let r = log.read(0, sizes[0] + 10, ReadBound::HighWatermark, false).await.unwrap();
        assert_eq!(r.len(), sizes[0] + 10);
        // … and min_one_batch returns a whole first batch even when max_bytes is tiny.
        let r = log.read(2, 1, ReadBound::HighWatermark, true).await.unwrap();
        assert_eq!((r.len(), r.first_batch_offset), (sizes[1], 2));
        let r = log.read(2, 1, ReadBound::HighWatermark, false).await.unwrap();
        assert_eq!(r.len(), 1);
    });
}

#[test]
fn segments_roll_by_size_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(
            dir.path(),
            config_with(&[("segment.bytes", "16384"), ("index.interval.bytes", "1024")]),
            small_writer_options(),
            true,
        )
        .await;
        let mut total = 0;
        for i in 0..100u64 {
            let b = tagged_batch(i, 3, 200, 1000 + i as i64);
            log.append(&b, 0).await.unwrap();
            total += 3;
        }
        let bases = log.segment_base_offsets();
        assert!(bases.len() >= 5, "expected several segments, got {bases:?}");
        assert_eq!(bases[0], 0);
        // The last roll's seal writes its segment's index files in the background.
        log.wait_sealed().await.unwrap();
        assert!(log.recovery_point() >= bases[bases.len() - 1], "sealed segments are fsynced");
        let names: Vec<String> = std::fs::read_dir(dir.path().join("t-0"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        for base in &bases[..bases.len() - 1] {
            for suffix in ["log", "index", "timeindex"] {
                assert!(names.contains(&format!("{base:020}.{suffix}")), "missing {base:020}.{suffix} in {names:?}");
            }
        }
        let all = read_all(&log, 0).await;
        assert_eq!(all.len(), 100);
        assert_eq!(all.last().unwrap().0, total - 3);
        // Sealed segment files hold exactly their batches: the write-behind's zero padding of
        // the last page is cut off when the segment is sealed.
        for w in bases.windows(2) {
            let path = dir.path().join("t-0").join(format!("{:020}.log", w[0]));
            let file_len = std::fs::metadata(path).unwrap().len();
            let batch_bytes: usize = all.iter().filter(|(b, _)| *b >= w[0] && *b < w[1]).map(|(_, v)| v.len()).sum();
            assert_eq!(file_len, batch_bytes as u64, "segment {}", w[0]);
        }
    });
}

#[test]
fn clean_restart_keeps_everything_and_continues_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let before = run(async {
        let log = open(dir.path(), config_with(&[("segment.bytes", "20000")]), small_writer_options(), true).await;
        for i in 0..50u64 {
            log.append(&tagged_batch(i, 2, 400, 5000 + i as i64), 3).await.unwrap();
        }
        let all = read_all(&log, 0).await;
        log.close().await.unwrap();
        assert!(matches!(log.append(&tagged_batch(0, 1, 1, 0), 3).await, Err(AppendError::Log(LogError::Closed))));
        all
    });
    run(async {
        let log = open(dir.path(), config_with(&[("segment.bytes", "20000")]), small_writer_options(), true).await;
        assert_eq!(log.log_end_offset(), 100);
        assert_eq!(read_all(&log, 0).await, before);
        assert_eq!(log.max_timestamp_offset().await.unwrap(), Some((98, 5049)));
        let info = log.append(&tagged_batch(99, 1, 10, 6000), 4).await.unwrap();
        assert_eq!(info.base_offset, 100);
        assert_eq!(log.leader_epoch_entries(), vec![(3, 0), (4, 100)]);
    });
}

#[test]
fn unclean_restart_keeps_everything_that_was_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let before = run(async {
        let log = open(dir.path(), config_with(&[("segment.bytes", "30000")]), small_writer_options(), true).await;
        for i in 0..80u64 {
            log.append(&tagged_batch(i, 1 + (i as usize % 3), 250, 1000), 0).await.unwrap();
        }
        log.flush().await.unwrap();
        assert_eq!(log.recovery_point(), log.log_end_offset());
        let all = read_all(&log, 0).await;
        drop(log); // crash: no close, no marker, no index files for the active segment
        all
    });
    run(async {
        let log = open(dir.path(), config_with(&[("segment.bytes", "30000")]), small_writer_options(), false).await;
        assert_eq!(read_all(&log, 0).await, before);
        let next =
            before.last().map(|(b, bytes)| b + validate_stored(bytes).unwrap().last_offset_delta as i64 + 1).unwrap();
        assert_eq!(log.log_end_offset(), next);
    });
}

#[test]
fn invalid_or_oversized_batches_are_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), config_with(&[("max.message.bytes", "2000")]), small_writer_options(), true).await;
        log.append(&tagged_batch(1, 2, 100, 1000), 0).await.unwrap();
        let size_before = log.size_bytes();

        let mut corrupt = tagged_batch(2, 2, 100, 1000);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let err = log.append(&corrupt, 0).await.unwrap_err();
        assert_eq!(err.error_code(), ErrorCode::CORRUPT_MESSAGE);

        // More than one batch (valid or not) is INVALID_RECORD, like Kafka's produce rule.
        let mut pair = tagged_batch(3, 1, 10, 1000);
        pair.extend_from_slice(&corrupt);
        assert_eq!(log.append(&pair, 0).await.unwrap_err().error_code(), ErrorCode::INVALID_RECORD);
        let mut two_good = tagged_batch(3, 1, 10, 1000);
        two_good.extend_from_slice(&tagged_batch(4, 1, 10, 1000));
        assert_eq!(log.append(&two_good, 0).await.unwrap_err().error_code(), ErrorCode::INVALID_RECORD);

        let big = tagged_batch(4, 1, 3000, 1000);
        let err = log.append(&big, 0).await.unwrap_err();
        assert_eq!(err.error_code(), ErrorCode::MESSAGE_TOO_LARGE);

        let mut truncated = tagged_batch(5, 1, 10, 1000);
        truncated.truncate(truncated.len() - 3);
        // No whole batch: INVALID_RECORD (Kafka: "must have at least one record batch").
        assert_eq!(log.append(&truncated, 0).await.unwrap_err().error_code(), ErrorCode::INVALID_RECORD);
        assert_eq!(log.append(&truncated[..30], 0).await.unwrap_err().error_code(), ErrorCode::INVALID_RECORD);
        assert_eq!(log.append(&Vec::new(), 0).await.unwrap_err().error_code(), ErrorCode::INVALID_RECORD);

        assert_eq!(log.log_end_offset(), 2);
        assert_eq!(log.size_bytes(), size_before);
        assert_eq!(read_all(&log, 0).await.len(), 1);
    });
}

#[test]
fn timestamps_log_append_time_and_lookup_by_time() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log =
            open(dir.path(), config_with(&[("message.timestamp.type", "LogAppendTime")]), small_writer_options(), true)
                .await;
        let before = sluice_engine::clock::now_ms();
        let info = log.append(&tagged_batch(1, 3, 10, 1), 0).await.unwrap();
        assert!(info.log_append_time_ms >= before);
        let bytes = log.read(0, 1 << 20, ReadBound::HighWatermark, true).await.unwrap().to_vec().await.unwrap();
        let stored = validate_stored(&bytes).expect("CRC still valid after LogAppendTime rewrite");
        assert_eq!(stored.max_timestamp, info.log_append_time_ms);
        assert_eq!(stored.timestamp_type(), sluice_engine::batch::TimestampType::LogAppendTime);
    });
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), config_with(&[("index.interval.bytes", "100")]), small_writer_options(), true).await;
        let now = sluice_engine::clock::now_ms();
        for i in 0..20i64 {
            log.append(&tagged_batch(i as u64, 2, 100, now - 100_000 + i * 1000), 0).await.unwrap();
        }
        assert_eq!(log.offset_for_timestamp(now - 100_000).await.unwrap(), Some((0, now - 100_000)));
        assert_eq!(log.offset_for_timestamp(now - 100_000 + 5500).await.unwrap(), Some((12, now - 100_000 + 6000)));
        assert_eq!(log.offset_for_timestamp(now).await.unwrap(), None);
        assert_eq!(log.max_timestamp_offset().await.unwrap(), Some((38, now - 100_000 + 19_000)));
        // Too old for message.timestamp.before.max.ms → INVALID_TIMESTAMP.
        log.set_config(config_with(&[("message.timestamp.before.max.ms", "1000")]));
        let err = log.append(&tagged_batch(1, 1, 1, now - 60_000), 0).await.unwrap_err();
        assert_eq!(err.error_code(), ErrorCode::INVALID_TIMESTAMP);
    });
}

#[test]
fn retention_by_bytes_and_time_deletes_whole_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), config_with(&[("segment.bytes", "8192")]), small_writer_options(), true).await;
        for i in 0..60u64 {
            log.append(&tagged_batch(i, 2, 400, sluice_engine::clock::now_ms()), 0).await.unwrap();
        }
        let segments_before = log.segment_count();
        assert!(segments_before > 4);
        let size_before = log.size_bytes();
        log.set_config(config_with(&[("segment.bytes", "8192"), ("retention.bytes", &(size_before / 2).to_string())]));
        let deleted = log.apply_retention(sluice_engine::clock::now_ms()).await.unwrap();
        assert!(deleted > 0);
        assert!(log.size_bytes() >= size_before / 2, "never below retention.bytes");
        assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
        let lso = log.log_start_offset();
        assert_eq!(
            log.read(lso - 1, 100, ReadBound::HighWatermark, true).await.unwrap_err().error_code(),
            ErrorCode::OFFSET_OUT_OF_RANGE
        );
        assert_eq!(read_all(&log, lso).await.first().unwrap().0, lso);

        // retention.ms = 0 in the future: everything goes, a fresh active segment remains.
        log.set_config(config_with(&[("segment.bytes", "8192"), ("retention.ms", "0")]));
        log.apply_retention(sluice_engine::clock::now_ms() + 10_000).await.unwrap();
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.log_start_offset(), 120);
        assert_eq!(log.log_end_offset(), 120);
        assert_eq!(
            log.append(&tagged_batch(1, 1, 1, sluice_engine::clock::now_ms()), 0).await.unwrap().base_offset,
            120
        );
    });
}

#[test]
fn delete_records_moves_the_start_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), config_with(&[("segment.bytes", "8192")]), small_writer_options(), true).await;
        for i in 0..40u64 {
            log.append(&tagged_batch(i, 2, 400, 1000), 0).await.unwrap();
        }
        let err = log.delete_records_before(81).await.unwrap_err();
        assert_eq!(err.error_code(), ErrorCode::OFFSET_OUT_OF_RANGE);
        assert_eq!(log.delete_records_before(33).await.unwrap(), 33);
        assert_eq!(log.log_start_offset(), 33);
        assert!(log.segment_base_offsets()[0] <= 33);
        assert!(log.segment_base_offsets()[0] > 0, "segments wholly below were deleted");
        // A read at the new start returns the batch holding 33 (it starts at 32).
        let r = log.read(33, 1000, ReadBound::HighWatermark, true).await.unwrap();
        assert_eq!(r.first_batch_offset, 32);
        assert!(log.read(31, 1000, ReadBound::HighWatermark, true).await.is_err());
        assert_eq!(log.delete_records_before(10).await.unwrap(), 33, "never moves backwards");
        assert_eq!(log.delete_records_before(-1).await.unwrap(), 80, "-1 means the high watermark");
        log.close().await.unwrap();
    });
    run(async {
        let log = open(dir.path(), config_with(&[("segment.bytes", "8192")]), small_writer_options(), true).await;
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (80, 80));
    });
}

#[test]
fn flush_always_syncs_before_acking_and_concurrent_appends_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), config_with(&[("flush.messages", "1")]), small_writer_options(), true).await;
        log.append(&tagged_batch(1, 1, 10, 1000), 0).await.unwrap();
        assert_eq!(log.recovery_point(), 1);
        let syncs_before = log.sync_count();
        let mut tasks = Vec::new();
        for i in 0..64u64 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                let info = log.append(&tagged_batch(i, 1, 100, 1000), 0).await.unwrap();
                assert!(log.recovery_point() > info.last_offset, "acked before its fsync");
            }));
        }
        for t in tasks {
            t.await;
        }
        let syncs = log.sync_count() - syncs_before;
        assert!((1..64).contains(&syncs), "64 concurrent appends took {syncs} fdatasyncs");
        assert_eq!(log.recovery_point(), 65);
    });
    let dir = tempfile::tempdir().unwrap();
    run(async {
        // flush.ms: the append does not wait; flush_if_due syncs once the interval passed.
        let log = open(dir.path(), config_with(&[("flush.ms", "10")]), small_writer_options(), true).await;
        log.append(&tagged_batch(1, 1, 10, 1000), 0).await.unwrap();
        assert_eq!(log.recovery_point(), 0);
        log.flush_if_due(sluice_engine::clock::now_ms() + 1000).await.unwrap();
        assert_eq!(log.recovery_point(), 1);
    });
}

#[test]
fn leader_epochs_are_tracked_persisted_and_truncated() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), config_with(&[]), small_writer_options(), true).await;
        for (epoch, count) in [(0, 3usize), (0, 2), (2, 4), (5, 1)] {
            log.append(&tagged_batch(epoch as u64, count, 10, 1000), epoch).await.unwrap();
        }
        assert_eq!(log.leader_epoch_entries(), vec![(0, 0), (2, 5), (5, 9)]);
        assert_eq!(log.end_offset_for_epoch(0), (0, 5));
        assert_eq!(log.end_offset_for_epoch(1), (0, 5));
        assert_eq!(log.end_offset_for_epoch(5), (5, 10));
        // Every stored batch carries its partition leader epoch.
        let epochs: Vec<i32> =
            read_all(&log, 0).await.iter().map(|(_, b)| validate_stored(b).unwrap().partition_leader_epoch).collect();
        assert_eq!(epochs, vec![0, 0, 2, 5]);
        log.truncate_to(5).await.unwrap();
        assert_eq!(log.log_end_offset(), 5);
        assert_eq!(log.leader_epoch_entries(), vec![(0, 0)]);
        assert_eq!(log.append(&tagged_batch(9, 1, 10, 1000), 6).await.unwrap().base_offset, 5);
        log.close().await.unwrap();
    });
    run(async {
        let log = open(dir.path(), config_with(&[]), small_writer_options(), true).await;
        assert_eq!(log.leader_epoch_entries(), vec![(0, 0), (6, 5)]);
        assert_eq!(log.log_end_offset(), 6);
    });
}

/// A replica becoming leader records its epoch at once (Kafka's `maybeAssignEpochStartOffset`):
/// the checkpoint on disk has it before any append, and the epoch's appends leave the file as
/// it is. An older or equal epoch changes nothing.
#[test]
fn a_leader_epoch_assigned_before_any_append_is_checkpointed_then() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("t-0").join("leader-epoch-checkpoint");
    run(async {
        let log = open(dir.path(), config_with(&[]), small_writer_options(), true).await;
        assert!(log.assign_leader_epoch(3).await.unwrap());
        assert_eq!(log.leader_epoch_entries(), vec![(3, 0)]);
        let written = std::fs::read_to_string(&checkpoint).unwrap();
        assert_eq!(written, "0\n1\n3 0\n", "Kafka's checkpoint format: version, count, entries");
        let modified = std::fs::metadata(&checkpoint).unwrap().modified().unwrap();
        for i in 0..3 {
            log.append(&tagged_batch(i, 2, 10, 1000), 3).await.unwrap();
        }
        assert_eq!(log.leader_epoch_entries(), vec![(3, 0)]);
        assert_eq!(std::fs::metadata(&checkpoint).unwrap().modified().unwrap(), modified, "no rewrite by the appends");
        assert!(!log.assign_leader_epoch(3).await.unwrap());
        assert!(!log.assign_leader_epoch(1).await.unwrap());
        assert!(log.assign_leader_epoch(4).await.unwrap());
        assert_eq!(log.leader_epoch_entries(), vec![(3, 0), (4, 6)]);
        assert_eq!(log.end_offset_for_epoch(3), (3, 6));
        log.close().await.unwrap();
    });
    run(async {
        // An epoch without records starts at the log end: the open drops it, as Kafka's load
        // does (`truncateFromEnd(logEndOffset)`); leadership assigns it again.
        let log = open(dir.path(), config_with(&[]), small_writer_options(), true).await;
        assert_eq!(log.leader_epoch_entries(), vec![(3, 0)]);
    });
}

#[test]
fn truncate_across_segments_then_append() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), config_with(&[("segment.bytes", "4096")]), small_writer_options(), true).await;
        for i in 0..40u64 {
            log.append(&tagged_batch(i, 1, 500, 1000), 0).await.unwrap();
        }
        assert!(log.segment_count() > 3);
        log.truncate_to(7).await.unwrap();
        assert_eq!(log.log_end_offset(), 7);
        assert_eq!(read_all(&log, 0).await.len(), 7);
        let info = log.append(&tagged_batch(99, 2, 10, 1000), 0).await.unwrap();
        assert_eq!(info.base_offset, 7);
        assert_eq!(read_all(&log, 0).await.len(), 8);
        log.close().await.unwrap();
    });
    run(async {
        let log = open(dir.path(), config_with(&[("segment.bytes", "4096")]), small_writer_options(), false).await;
        assert_eq!(log.log_end_offset(), 9);
    });
}

#[test]
fn tailing_reads_see_unwritten_bytes_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        // Big chunks: appends stay in memory until written out eagerly in the background.
        let options = LogOptions {
            writer: sluice_engine::segment_writer::WriterOptions {
                chunk_bytes: 1 << 20,
                max_in_flight: 4,
                ..Default::default()
            },
            ..LogOptions::default()
        };
        let log: Rc<_> = open(dir.path(), config_with(&[]), options, true).await;
        for i in 0..200u64 {
            log.append(&tagged_batch(i, 1, 1000, 1000), 0).await.unwrap();
            // Read back immediately: the bytes may be in flight or in the current chunk.
            let r = log.read(i as i64, 1 << 20, ReadBound::HighWatermark, true).await.unwrap();
            let bytes = r.to_vec().await.unwrap();
            let got: Vec<_> = batches(&bytes, Validation::Stored).map(|b| b.unwrap().1.base_offset).collect();
            assert_eq!(got, vec![i as i64]);
        }
    });
}

#[test]
fn lookup_by_time_is_exact_inside_a_multi_record_batch() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), config_with(&[]), small_writer_options(), true).await;
        let now = sluice_engine::clock::now_ms();
        let base = now - 60_000;
        let batch = sluice_engine::batch::build_batch_with_timestamps(0, b"v", base, &[0, 1_000, 2_000, 500]);
        log.append(&batch, 0).await.unwrap();
        assert_eq!(log.offset_for_timestamp(base + 1).await.unwrap(), Some((1, base + 1_000)));
        assert_eq!(log.offset_for_timestamp(base + 1_500).await.unwrap(), Some((2, base + 2_000)));
        assert_eq!(log.offset_for_timestamp(base + 2_001).await.unwrap(), None);
        // The max timestamp belongs to offset 2, not to the batch's base offset.
        assert_eq!(log.max_timestamp_offset().await.unwrap(), Some((2, base + 2_000)));
    });
}
