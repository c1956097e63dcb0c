//! Partition log on real files: idempotent-producer deduplication across restarts (clean,
//! unclean, without snapshots), truncation and retention; compressed batches validated,
//! stored unchanged or rewritten in the topic's `compression.type`.

mod support;

use sluice_engine::batch::{set_producer, validate_from_client, validate_stored, Compression};
use sluice_engine::compressed_batch::recompress;
use sluice_engine::error_code::ErrorCode;
use sluice_engine::partition_log::AppendError;
use support::*;

/// A batch of `count` records from producer `pid`/`epoch` starting at sequence `seq`.
fn idempotent_batch(tag: u64, count: usize, pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
    let mut batch = tagged_batch(tag, count, 40, 1_700_000_000_000 + tag as i64);
    set_producer(&mut batch, pid, epoch, seq);
    batch
}

#[test]
fn duplicates_are_acknowledged_with_original_offsets_and_never_written_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    // (clean restart?, delete the snapshots first?)
    let restarts = [(true, false), (false, false), (false, true), (true, true)];
    let mut seq = 0i32;
    let mut sent: Vec<(Vec<u8>, i64)> = Vec::new(); // (batch, base offset)
    for (round, (clean, drop_snapshots)) in restarts.iter().enumerate() {
        run(async {
            let config = config_with(&[("segment.bytes", "4096")]);
            let log = open(dir.path(), config, small_writer_options(), *clean).await;
            // Retries of the previous run's last five batches, after the restart.
            let end = log.log_end_offset();
            for (batch, base) in sent.iter().rev().take(5) {
                let info = log.append(batch, 0).await.unwrap();
                assert_eq!((info.base_offset, info.last_offset), (*base, base + 2), "round {round}");
            }
            assert_eq!(log.log_end_offset(), end, "no duplicate written after restart");
            // New batches, several segments' worth, so snapshots are taken on roll.
            for i in 0..30u64 {
                let batch = idempotent_batch(round as u64 * 100 + i, 3, 77, 0, seq);
                let before = log.log_end_offset();
                let info = log.append(&batch, 0).await.unwrap();
                assert_eq!(info.base_offset, before);
                sent.push((batch, info.base_offset));
                seq += 3;
            }
            // Retries of each of the last five batches: original offsets, nothing written.
            let end = log.log_end_offset();
            for (batch, base) in &sent[sent.len() - 5..] {
                let info = log.append(batch, 0).await.unwrap();
                assert_eq!((info.base_offset, info.last_offset), (*base, base + 2));
            }
            assert_eq!(log.log_end_offset(), end, "duplicates are not appended");
            // Errors: a gap, a stale epoch.
            let gap = log.append(&idempotent_batch(9, 1, 77, 0, seq + 1), 0).await.unwrap_err();
            assert_eq!(gap.error_code(), ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER, "{gap}");
            if round == 0 {
                // Stale-epoch check needs a newer epoch first: a separate producer.
                log.append(&idempotent_batch(1, 1, 88, 5, 0), 0).await.unwrap();
            }
            let stale = log.append(&idempotent_batch(2, 1, 88, 4, 1), 0).await.unwrap_err();
            assert_eq!(stale.error_code(), ErrorCode::INVALID_PRODUCER_EPOCH, "{stale}");
            assert!(matches!(stale, AppendError::Producer(_)));
            if *clean {
                log.close().await.unwrap();
            }
        });
        if *drop_snapshots {
            for entry in std::fs::read_dir(dir.path().join("t-0")).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "snapshot") {
                    std::fs::remove_file(path).unwrap();
                }
            }
        }
    }
    // After all restarts, the log holds each batch exactly once, in order.
    run(async {
        let log = open(dir.path(), config_with(&[("segment.bytes", "4096")]), small_writer_options(), false).await;
        let all = read_all(&log, 0).await;
        let producer_batches: Vec<_> =
            all.iter().filter(|(_, b)| validate_stored(b).unwrap().producer_id == 77).collect();
        assert_eq!(producer_batches.len(), sent.len());
        for ((base, bytes), (batch, want_base)) in producer_batches.iter().zip(&sent) {
            assert_eq!(base, want_base);
            assert_eq!(bytes[61..], batch[61..], "record bytes unchanged");
        }
        let snapshots = std::fs::read_dir(dir.path().join("t-0"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "snapshot"))
            .count();
        assert!((1..=2).contains(&snapshots), "snapshots kept: {snapshots}");
    });
}

#[test]
fn truncation_forgets_the_removed_batches_of_a_producer() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), config_with(&[]), small_writer_options(), true).await;
        for i in 0..4 {
            log.append(&idempotent_batch(i, 2, 5, 0, i as i32 * 2), 0).await.unwrap();
        }
        log.truncate_to(4).await.unwrap(); // keeps sequences 0..3
        let again = log.append(&idempotent_batch(2, 2, 5, 0, 4), 0).await.unwrap();
        assert_eq!(again.base_offset, 4, "sequence 4 is new again after truncation");
        let dup = log.append(&idempotent_batch(1, 2, 5, 0, 2), 0).await.unwrap();
        assert_eq!(dup.base_offset, 2, "what survived is still deduplicated");
        assert_eq!(log.log_end_offset(), 6);
    });
}

/// Opens partition 0 of `topic` with the given topic configs.
async fn open_topic(
    dir: &std::path::Path,
    topic: &str,
    configs: &[(&str, &str)],
) -> std::rc::Rc<sluice_engine::PartitionLog> {
    sluice_engine::PartitionLog::open(dir, topic, 0, config_with(configs), small_writer_options(), true)
        .await
        .expect("open log")
}

#[test]
fn compressed_batches_are_stored_unchanged_or_rewritten_per_compression_type() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let plain = tagged_batch(1, 20, 300, 1_700_000_000_000);
        let info = validate_from_client(&plain).unwrap();
        let mut scratch = Vec::new();
        for (i, codec) in
            [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd].iter().enumerate()
        {
            let compressed = recompress(&plain, &info, *codec, &mut scratch).unwrap();
            // producer: stored byte for byte (but for the base offset).
            let topic = format!("p{i}");
            let log = open_topic(dir.path(), &topic, &[]).await;
            log.append(&compressed, 0).await.unwrap();
            let stored = &read_all(&log, 0).await[0].1;
            assert_eq!(stored[16..], compressed[16..], "{codec:?} kept as sent (after offset and leader epoch)");
            // compression.type=uncompressed: rewritten to the original records.
            let log = open_topic(dir.path(), &format!("u{i}"), &[("compression.type", "uncompressed")]).await;
            log.append(&compressed, 0).await.unwrap();
            let stored = &read_all(&log, 0).await[0].1;
            assert_eq!(stored[16..], plain[16..], "{codec:?} decompressed on append");
            // compression.type=zstd: uncompressed input is compressed.
            let log = open_topic(dir.path(), &format!("z{i}"), &[("compression.type", "zstd")]).await;
            log.append(&compressed, 0).await.unwrap();
            let stored = read_all(&log, 0).await[0].1.clone();
            let stored_info = validate_stored(&stored).unwrap();
            assert_eq!(stored_info.compression(), Compression::Zstd);
            let back = recompress(&stored, &stored_info, Compression::None, &mut scratch).unwrap();
            assert_eq!(back[16..], plain[16..], "{codec:?} → zstd round-trips");
        }
    });
}

#[test]
fn corrupt_compressed_batches_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), config_with(&[]), small_writer_options(), true).await;
        let plain = tagged_batch(1, 20, 300, 1_700_000_000_000);
        let info = validate_from_client(&plain).unwrap();
        let mut bad = recompress(&plain, &info, Compression::Lz4, &mut Vec::new()).unwrap();
        let len = bad.len();
        for b in &mut bad[70..len - 8] {
            *b = b.wrapping_mul(7).wrapping_add(3);
        }
        sluice_engine::batch::reframe(&mut bad, Compression::Lz4); // valid CRC over garbage
        let err = log.append(&bad, 0).await.unwrap_err();
        assert!(matches!(err.error_code(), ErrorCode::CORRUPT_MESSAGE | ErrorCode::INVALID_RECORD), "{err}");
        assert_eq!(log.log_end_offset(), 0);
        // max.message.bytes applies to the batch as stored (after recompression).
        let log =
            open_topic(dir.path(), "small", &[("compression.type", "uncompressed"), ("max.message.bytes", "2000")])
                .await;
        let zipped = recompress(&plain, &info, Compression::Zstd, &mut Vec::new()).unwrap();
        assert!(zipped.len() < 2000 && plain.len() > 2000);
        let err = log.append(&zipped, 0).await.unwrap_err();
        assert_eq!(err.error_code(), ErrorCode::MESSAGE_TOO_LARGE, "{err}");
        assert_eq!(log.log_end_offset(), 0);
    });
}
