//! The segment writer on real files: every appended byte lands where it belongs whatever the
//! mix of partial pages, full chunks, eager writes and direct writes from shared memory; bytes
//! not yet written are served from memory; the file is preallocated ahead of the writes and
//! the padding never leaks into the logical bytes; Kafka's `preallocate` makes a segment file `segment.bytes` long until the
//! segment is sealed; a crash leaves zeros that recovery reads as the end of the log; a batch's
//! header and records go out in one write.

mod support;

use std::path::Path;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use glommio::io::{DmaFile, OpenOptions};
use sluice_engine::partition_log::LogOptions;
use sluice_engine::segment_writer::{
    align_down, is_direct_source, SegmentWriter, WriterOptions, MIN_DIRECT_WRITE_BYTES, PAGE_BYTES,
    PREALLOCATE_MIN_STEP_BYTES,
};
use support::*;

async fn create(path: &Path) -> Rc<DmaFile> {
    // As the partition log does: glommio's iopoll probe must see a file with data first.
    sluice_engine::iopoll_probe::prime(path.parent().unwrap()).await.unwrap();
    Rc::new(OpenOptions::new().read(true).write(true).create(true).truncate(true).dma_open(path).await.unwrap())
}

/// Runs `test` on a fresh executor with a new, empty segment file in a temp dir.
fn on_new_file<Fut: std::future::Future<Output = ()>>(test: impl FnOnce(Rc<DmaFile>) -> Fut) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg.log");
    run(async move { test(create(&path).await).await });
}

async fn file_bytes(file: &DmaFile, len: u64) -> Vec<u8> {
    file.read_at(0, len as usize).await.unwrap().to_vec()
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

#[test]
fn every_byte_lands_across_partial_pages_chunks_and_eager_writes() {
    for seed in 1..=12u64 {
        on_new_file(|file| async move {
            let mut rng = Rng(seed);
            let options = WriterOptions { chunk_bytes: 8192, max_in_flight: 2, ..WriterOptions::default() };
            let writer = SegmentWriter::new(file.clone(), 0, &[], options);
            let mut expected: Vec<u8> = Vec::new();
            for step in 0..300u64 {
                // Sizes from a few bytes (inside one page) to several chunks.
                let len = match rng.below(4) {
                    0 => 1 + rng.below(100),
                    1 => 1 + rng.below(PAGE_BYTES),
                    2 => 1 + rng.below(3 * 8192),
                    3 if rng.below(2) == 0 => MIN_DIRECT_WRITE_BYTES + rng.below(4 * MIN_DIRECT_WRITE_BYTES),
                    _ => PAGE_BYTES - (expected.len() as u64 % PAGE_BYTES), // up to a page end
                } as usize;
                let data = pattern(seed * 1000 + step, len);
                match rng.below(3) {
                    0 => writer.append(&data).await.unwrap(),
                    // Shared memory, placed for a direct write (or, one time in four, not).
                    _ => {
                        let aligned = rng.below(4) != 0;
                        let shared = placed(&data, writer.logical_len(), aligned);
                        assert_eq!(is_direct_source(&shared, writer.logical_len()), aligned);
                        writer.append_shared(shared).await.unwrap();
                    }
                }
                expected.extend_from_slice(&data);
                assert_eq!(writer.logical_len(), expected.len() as u64, "seed {seed} step {step}");
                // Whatever is not on disk yet is served from memory, byte for byte.
                let from = rng.below(expected.len() as u64);
                let to = from + 1 + rng.below(expected.len() as u64 - from);
                let written = writer.written_len();
                if from >= written {
                    let mut out = vec![0u8; (to - from) as usize];
                    assert!(writer.copy_unwritten(from, &mut out), "seed {seed} step {step}: {from}..{to} in memory");
                    assert_eq!(out, expected[from as usize..to as usize], "seed {seed} step {step}");
                }
                match rng.below(10) {
                    0 => writer.write_out().await.unwrap(),
                    1 => glommio::yield_if_needed().await,
                    _ => {}
                }
                assert!(writer.written_len() <= writer.logical_len());
            }
            writer.sync().await.unwrap();
            assert_eq!(writer.written_len(), expected.len() as u64);
            let on_disk = file_bytes(&file, expected.len() as u64).await;
            assert!(on_disk == expected, "seed {seed}: file bytes differ from what was appended");
        });
    }
}

/// `data` in shared memory whose first byte sits at `file_pos`'s offset within a page (or,
/// if not `aligned`, one byte off it).
fn placed(data: &[u8], file_pos: u64, aligned: bool) -> Bytes {
    let page = PAGE_BYTES as usize;
    let mut mem = BytesMut::zeroed(data.len() + 2 * page);
    let base = mem.as_ptr() as usize;
    let wanted = file_pos as usize % page + usize::from(!aligned);
    let start = (wanted + page - base % page) % page;
    mem[start..start + data.len()].copy_from_slice(data);
    mem.freeze().slice(start..start + data.len())
}

#[test]
fn shared_memory_is_written_in_place_when_placed_and_copied_when_not() {
    on_new_file(|file| async move {
        let writer = SegmentWriter::new(file.clone(), 0, &[], WriterOptions::default());
        let mut expected = pattern(1, 3000); // a partial page before the batch
        writer.append(&expected).await.unwrap();
        for (i, aligned) in [true, false, true].into_iter().enumerate() {
            let data = pattern(2 + i as u64, 300_000);
            let shared = placed(&data, writer.logical_len(), aligned);
            writer.append_shared(shared.clone()).await.unwrap();
            expected.extend_from_slice(&data);
            // Written from the caller's memory: the writer holds it until the write is done.
            assert_eq!(!shared.is_unique(), aligned, "batch {i}");
            writer.write_out().await.unwrap();
            assert!(shared.is_unique(), "batch {i}: released once written");
        }
        writer.sync().await.unwrap();
        assert!(file_bytes(&file, expected.len() as u64).await == expected);
    });
}

#[test]
fn a_reopened_partial_page_is_completed_in_place() {
    on_new_file(|file| async move {
        let options = WriterOptions { chunk_bytes: 8192, max_in_flight: 2, ..WriterOptions::default() };
        let first = pattern(1, 5000);
        let writer = SegmentWriter::new(file.clone(), 0, &[], options);
        writer.append(&first).await.unwrap();
        writer.sync().await.unwrap();
        drop(writer);

        // As after a restart: the partial page is read back and handed to a new writer.
        let tail_start = align_down(first.len() as u64) as usize;
        let writer = SegmentWriter::new(file.clone(), first.len() as u64, &first[tail_start..], options);
        assert_eq!(writer.logical_len(), 5000);
        let second = pattern(2, 20_000);
        writer.append(&second).await.unwrap();
        writer.sync().await.unwrap();
        let mut expected = first.clone();
        expected.extend_from_slice(&second);
        assert!(file_bytes(&file, expected.len() as u64).await == expected);
    });
}

#[test]
fn the_file_is_preallocated_ahead_in_growing_steps() {
    on_new_file(|file| async move {
        let options = WriterOptions { preallocate_max_step_bytes: 4 << 20, ..WriterOptions::default() };
        let writer = SegmentWriter::new(file.clone(), 0, &[], options);
        writer.append(&pattern(3, 10_000)).await.unwrap();
        writer.sync().await.unwrap();
        let small = file.file_size().await.unwrap();
        assert!(small <= 2 * PREALLOCATE_MIN_STEP_BYTES, "a small segment holds about one minimum step: {small}");
        assert_eq!(writer.preallocated_len(), small);

        let mut len = 10_000u64;
        while len < (20 << 20) {
            writer.append(&pattern(len, 300_000)).await.unwrap();
            len += 300_000;
        }
        writer.sync().await.unwrap();
        let size = file.file_size().await.unwrap();
        assert!(size > len, "preallocated past the logical end ({size} <= {len})");
        assert!(size - len <= (4 << 20) + PREALLOCATE_MIN_STEP_BYTES, "at most one max step ahead: {size} for {len}");
        // The size is a preallocation target — unless, on a busy machine, the last writes
        // overtook a preallocation still in flight and extended the file to their own last page.
        assert!(
            size % PREALLOCATE_MIN_STEP_BYTES == 0 || size == len.next_multiple_of(4096),
            "size {size} is neither a preallocation target nor the last page written ({len} bytes)"
        );
        // The padding after the logical end is zeros (what recovery reads as the end).
        let tail = file.read_at(len, 4096).await.unwrap();
        assert!(tail.iter().all(|b| *b == 0));
    });
}

#[test]
fn without_preallocation_the_file_ends_at_the_last_page_written() {
    on_new_file(|file| async move {
        let options = WriterOptions { preallocate_max_step_bytes: 0, ..WriterOptions::default() };
        let writer = SegmentWriter::new(file.clone(), 0, &[], options);
        writer.append(&pattern(4, 3 << 20)).await.unwrap();
        writer.append(&pattern(5, 123)).await.unwrap();
        writer.sync().await.unwrap();
        assert_eq!(file.file_size().await.unwrap(), (3 << 20) + PAGE_BYTES);
        assert_eq!(writer.preallocated_len(), 0);
    });
}

#[test]
fn a_held_append_and_the_append_after_it_share_one_eager_write() {
    on_new_file(|file| async move {
        let writer = SegmentWriter::new(file.clone(), 0, &[], WriterOptions::default());
        let (header, records) = (pattern(6, 61), pattern(7, 2_000));
        // Idle disk: a held append submits nothing; the append after it one write for both.
        writer.append_held(&header).await.unwrap();
        assert_eq!(writer.writes_issued(), 0);
        writer.append(&records).await.unwrap();
        assert_eq!(writer.writes_issued(), 1);
        // Up to the page end, so the next batch starts on a fresh page as the first did.
        let filler = pattern(8, (PAGE_BYTES - writer.logical_len()) as usize);
        writer.append(&filler).await.unwrap();
        writer.write_out().await.unwrap();
        // The same two parts through plain appends: the first goes out alone, and the second
        // rewrites its page once the first write completes.
        let before = writer.writes_issued();
        writer.append(&header).await.unwrap();
        writer.append(&records).await.unwrap();
        writer.write_out().await.unwrap();
        assert_eq!(writer.writes_issued() - before, 2);
        writer.sync().await.unwrap();
        let expected = [&header[..], &records[..], &filler[..], &header[..], &records[..]].concat();
        assert!(file_bytes(&file, expected.len() as u64).await == expected);
    });
}

fn log_file(dir: &Path) -> std::path::PathBuf {
    dir.join("t-0").join("00000000000000000000.log")
}

#[test]
fn kafka_preallocate_makes_the_active_segment_segment_bytes_long_until_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let written = run(async move {
        let config = config_with(&[("segment.bytes", "8388608"), ("preallocate", "true")]);
        let log = open(&d, config, LogOptions::default(), true).await;
        for i in 0..20 {
            log.append(&tagged_batch(i, 3, 200, 1000 + i as i64), 0).await.unwrap();
        }
        log.flush().await.unwrap();
        assert_eq!(std::fs::metadata(log_file(&d)).unwrap().len(), 8 << 20, "allocated up front");
        let all = read_all(&log, 0).await;
        log.close().await.unwrap();
        all
    });
    let logical: u64 = written.iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(std::fs::metadata(log_file(dir.path())).unwrap().len(), logical, "a clean close trims the file");
    let d = dir.path().to_path_buf();
    let again = run(async move {
        let log = open(&d, config_with(&[("preallocate", "true")]), LogOptions::default(), true).await;
        read_all(&log, 0).await
    });
    assert_eq!(again, written);
}

#[test]
fn a_crash_leaves_preallocated_zeros_that_recovery_cuts_off() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let written = run(async move {
        let log = open(&d, config_with(&[]), small_writer_options(), true).await;
        for i in 0..300 {
            log.append(&tagged_batch(i, 2, 900, 1000 + i as i64), 0).await.unwrap();
        }
        log.flush().await.unwrap();
        let all = read_all(&log, 0).await;
        drop(log); // no close: as if the process died
        all
    });
    let logical: u64 = written.iter().map(|(_, b)| b.len() as u64).sum();
    let size = std::fs::metadata(log_file(dir.path())).unwrap().len();
    assert!(size > logical, "the crashed segment still carries its preallocated tail ({size} <= {logical})");
    let d = dir.path().to_path_buf();
    let recovered = run(async move {
        let log = open(&d, config_with(&[]), small_writer_options(), false).await;
        let all = read_all(&log, 0).await;
        let next = log.append(&tagged_batch(999, 1, 10, 1), 0).await.unwrap();
        assert_eq!(next.base_offset, 600, "offsets continue after the last batch");
        all
    });
    assert_eq!(recovered, written, "every flushed batch survives, byte for byte");
}

/// The step follows the write rate (a second of writes ahead), within the segment's size and
/// four times it, and the limits: a quiet partition stays at the minimum, a burst on a small
/// segment does not reserve a whole step, a steady stream reaches the maximum.
#[test]
fn preallocation_steps_follow_the_write_rate() {
    use sluice_engine::segment_writer::preallocation_step_bytes;
    use std::time::Duration;
    let max = 32 << 20;
    let min = PREALLOCATE_MIN_STEP_BYTES;
    assert_eq!(preallocation_step_bytes(70, None, max), min, "one small record: the minimum");
    assert_eq!(
        preallocation_step_bytes(100 << 10, Some((10 << 10, Duration::from_secs(60))), max),
        100 << 10,
        "slow: the segment's size"
    );
    assert_eq!(
        preallocation_step_bytes(1 << 20, Some((1 << 20, Duration::from_millis(1))), max),
        4 << 20,
        "a burst on a small segment: at most four times what it holds"
    );
    assert_eq!(
        preallocation_step_bytes(64 << 20, Some((5 << 20, Duration::from_millis(100))), max),
        max,
        "50 MB/s on a grown segment: the maximum"
    );
    assert_eq!(
        preallocation_step_bytes(8 << 20, Some((2 << 20, Duration::from_millis(100))), max),
        20 << 20,
        "a second ahead at 20 MB/s"
    );
}
