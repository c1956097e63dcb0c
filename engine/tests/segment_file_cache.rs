//! Sealed segment files are opened on demand and closed least recently used first
//! (`sluice_engine::segment_file`): a log with many segments holds at most the shard's
//! capacity of sealed files plus its active one open — at open, while it is read end to end,
//! and after — reads still return every byte, and a handle whose file was replaced under its
//! name (compaction) refuses to reopen the new file.

mod support;

use std::path::Path;
use std::rc::Rc;

use glommio::io::OpenOptions;
use sluice_engine::segment_file::{self, SegmentFile};
use support::*;

/// Descriptors of this process open on files under `dir` (the test's own temp dir, so tests
/// running in parallel do not count each other's).
fn fds_under(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

/// glommio closes a dropped file on its ring's next turn: wait for the count to come down to
/// `at_most` (a bounded number of turns, not a guessed time), and return it.
async fn settled_fds_under(dir: &Path, at_most: usize) -> usize {
    for _turn in 0..1000 {
        let open = fds_under(dir);
        if open <= at_most {
            return open;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
    fds_under(dir)
}

#[test]
fn a_log_of_many_segments_keeps_at_most_the_cache_capacity_of_sealed_files_open() {
    const CAPACITY: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(&[("segment.bytes", "16384"), ("index.interval.bytes", "1024")]);
    let written = run(async {
        segment_file::set_capacity(CAPACITY);
        let log = open(dir.path(), config.clone(), small_writer_options(), true).await;
        for i in 0..200u64 {
            log.append(&tagged_batch(i, 1 + (i as usize % 3), 300 + (i as usize * 53) % 400, 1000 + i as i64), 0)
                .await
                .unwrap();
        }
        assert!(log.segment_base_offsets().len() > 3 * CAPACITY, "{:?}", log.segment_base_offsets());
        assert!(segment_file::open_count() <= CAPACITY);
        // Rolling sealed every segment but the last; at most CAPACITY of them are still open.
        let open_now = settled_fds_under(dir.path(), CAPACITY + 1).await;
        assert!(open_now <= CAPACITY + 1, "{open_now} files open under the log");
        let all = read_all(&log, 0).await;
        log.close().await.unwrap();
        all
    });
    assert_eq!(written.len(), 200);

    // Open again (clean and after a crash: the unclean open scans every segment), read the log
    // end to end: still every batch, still at most CAPACITY sealed files open.
    for clean in [true, false] {
        let dir = dir.path();
        let config = config.clone();
        let written = written.clone();
        run(async move {
            segment_file::set_capacity(CAPACITY);
            // Files dropped when an earlier executor ended were never closed by it (glommio
            // closes on its ring): they stay open, uncounted here.
            let bound = fds_under(dir) + CAPACITY + 1;
            let log = open(dir, config, small_writer_options(), clean).await;
            let after_open = settled_fds_under(dir, bound).await;
            assert!(after_open <= bound, "clean={clean}: {after_open} files open after open");
            assert_eq!(read_all(&log, 0).await, written, "clean={clean}");
            // And from the middle of every segment: each read reopens a closed file.
            for (base, _) in written.iter().step_by(7) {
                let read = log.read(*base, 4096, sluice_engine::ReadBound::HighWatermark, true).await.unwrap();
                assert!(!read.is_empty());
                let bytes = read.to_vec().await.unwrap();
                let expected = written.iter().find(|(b, _)| b == base).unwrap();
                assert_eq!(&bytes[..expected.1.len()], expected.1.as_slice(), "batch at {base}");
            }
            let after_reads = settled_fds_under(dir, bound).await;
            assert!(after_reads <= bound, "clean={clean}: {after_reads} files open after reads");
            assert!(segment_file::open_count() <= CAPACITY);
            log.close().await.unwrap();
        });
    }
}

async fn open_dma(path: &Path) -> Rc<glommio::io::DmaFile> {
    Rc::new(OpenOptions::new().read(true).write(true).dma_open(path).await.unwrap())
}

#[test]
fn a_closed_handle_reopens_its_own_file_and_refuses_one_that_replaced_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (dir.path().join("a.log"), dir.path().join("b.log"), dir.path().join("c.log"));
    for path in [&a, &b, &c] {
        std::fs::write(path, vec![0u8; 4096]).unwrap();
    }
    run(async {
        segment_file::set_capacity(1);
        let file_a = SegmentFile::from_open(a.clone(), true, open_dma(&a).await, false);
        let file_b = SegmentFile::from_open(b.clone(), true, open_dma(&b).await, false);
        assert!(!file_a.is_open(), "over capacity: the least recently used file closes");
        assert!(file_b.is_open());
        // Reopened by its path: the same file again (and now b is the one closed).
        assert_eq!(file_a.get().await.unwrap().inode(), file_a.inode());
        assert!(file_a.is_open() && !file_b.is_open());
        // A pinned file (an active segment's) is never closed.
        let pinned = SegmentFile::from_open(c.clone(), true, open_dma(&c).await, true);
        file_b.get().await.unwrap();
        assert!(pinned.is_open());
        // b's name now belongs to another file: the closed handle must not open it.
        drop(file_a);
        std::fs::rename(&c, &b).unwrap();
        let file_a2 = SegmentFile::from_open(a.clone(), true, open_dma(&a).await, false);
        assert!(!file_b.is_open());
        let err = file_b.get().await.expect_err("the name now holds another file");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        // Unpinned, the pinned one joins the order and the least recently used one closes.
        pinned.unpin();
        assert!(pinned.is_open() && !file_a2.is_open());
        assert_eq!(segment_file::open_count(), 1);
    });
}
