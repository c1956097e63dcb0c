//! Segment replacement (what log compaction will swap its output in with): rewritten segments
//! replace a run of sealed ones in memory, on disk and across restarts; a crash at each step of
//! the `.cleaned` → `.swap` → `.deleted` → final-name protocol leaves, after open, either every
//! old segment or every new one — never an offset twice or a committed segment missing; and a
//! replacement that does not fit is refused without touching the log.

mod support;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sluice_engine::batch::validate_stored;
use sluice_engine::log_config::LogConfig;
use sluice_engine::partition_log::{CleanedSegment, LogError, PartitionLog, ReadBound};
use support::*;

/// (base offset, stored bytes) of each batch, in offset order.
type Batches = Vec<(i64, Vec<u8>)>;
/// (base offset, batches) of each rewritten segment.
type NewSegments = Vec<(i64, Batches)>;

fn config() -> LogConfig {
    config_with(&[("segment.bytes", "16384"), ("index.interval.bytes", "1024")])
}

fn partition_dir(dir: &Path) -> PathBuf {
    dir.join("t-0")
}

fn segment_file(dir: &Path, base: i64, suffix: &str) -> PathBuf {
    partition_dir(dir).join(format!("{base:020}{suffix}"))
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(partition_dir(dir)).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

fn assert_no_leftovers(dir: &Path) {
    let names = names(dir);
    for suffix in [".cleaned", ".swap", ".deleted", ".tmp"] {
        assert!(!names.iter().any(|n| n.ends_with(suffix)), "a {suffix} file is left: {names:?}");
    }
}

fn last_offset(batch: &(i64, Vec<u8>)) -> i64 {
    batch.0 + validate_stored(&batch.1).unwrap().last_offset_delta as i64
}

fn concat(batches: &[(i64, Vec<u8>)]) -> Vec<u8> {
    batches.iter().flat_map(|(_, b)| b.iter().copied()).collect()
}

/// Writes a log of several sealed segments and closes it cleanly: its batches and segment bases.
fn write_log(dir: &Path) -> (Batches, Vec<i64>) {
    run(async {
        let log = open(dir, config(), small_writer_options(), true).await;
        for i in 0..120u64 {
            let batch = tagged_batch(i, 1 + (i as usize % 3), 300 + (i as usize * 53) % 400, 1000 + i as i64);
            log.append(&batch, 0).await.unwrap();
        }
        let all = read_all(&log, 0).await;
        let bases = log.segment_base_offsets();
        assert!(bases.len() >= 6, "expected several sealed segments, got {bases:?}");
        log.close().await.unwrap();
        (all, bases)
    })
}

/// A compaction of the sealed segments `bases[1..4]` into two new segments: a third of the
/// batches and the batch at `bases[2]` are dropped, and the second new segment starts inside
/// the old segment at `bases[2]`, so only the overlap rule (not the base offsets) ties that
/// old segment to a new one.
struct Plan {
    old_bases: Vec<i64>,
    new_segments: NewSegments,
    before: Batches,
    after: Batches,
}

fn plan(before: &Batches, bases: &[i64]) -> Plan {
    let (start, end) = (bases[1], bases[4]);
    let kept: Batches = before
        .iter()
        .filter(|(b, _)| *b >= start && *b < end)
        .enumerate()
        .filter(|(i, (b, _))| i % 3 != 1 && *b != bases[2])
        .map(|(_, batch)| batch.clone())
        .collect();
    let split = kept.iter().position(|(b, _)| *b > bases[2]).unwrap();
    assert!(kept[split].0 < bases[3], "the second new segment must start inside the old segment at {}", bases[2]);
    let second_base = kept[split].0;
    let after: Batches = before
        .iter()
        .filter(|(b, _)| *b < start)
        .chain(&kept)
        .chain(before.iter().filter(|(b, _)| *b >= end))
        .cloned()
        .collect();
    Plan {
        old_bases: bases[1..4].to_vec(),
        new_segments: vec![(start, kept[..split].to_vec()), (second_base, kept[split..].to_vec())],
        before: before.clone(),
        after,
    }
}

async fn cleaned(log: &PartitionLog, base: i64, batches: &[(i64, Vec<u8>)]) -> CleanedSegment {
    let mut segment = log.create_cleaned_segment(base).await.unwrap();
    // In two appends, as a cleaner streaming its output would.
    let half = batches.len() / 2;
    segment.append(&concat(&batches[..half])).await.unwrap();
    segment.append(&concat(&batches[half..])).await.unwrap();
    segment
}

/// The log holds exactly `expected`, and a read at any offset starts at the batch that holds
/// it or, in a gap compaction left, at the next batch.
async fn check_log(log: &PartitionLog, expected: &Batches) {
    assert_eq!(&read_all(log, 0).await, expected);
    let end = last_offset(expected.last().unwrap()) + 1;
    assert_eq!(log.log_end_offset(), end);
    for offset in 0..end {
        let want = expected.iter().find(|b| last_offset(b) >= offset).unwrap();
        let read = log.read(offset, 1, ReadBound::HighWatermark, true).await.unwrap();
        assert_eq!(read.first_batch_offset, want.0, "read at offset {offset}");
        assert_eq!(read.to_vec().await.unwrap(), want.1, "read at offset {offset}");
    }
}

/// Appends one more batch, closes, reopens cleanly and checks everything is still there.
async fn append_close_and_reopen(dir: &Path, log: std::rc::Rc<PartitionLog>, expected: &Batches) {
    let next = log.log_end_offset();
    let info = log.append(&tagged_batch(7777, 2, 50, 9000), 0).await.unwrap();
    assert_eq!(info.base_offset, next);
    let mut expected = expected.clone();
    expected.push((next, read_all(&log, next).await.remove(0).1));
    log.close().await.unwrap();
    let log = open(dir, config(), small_writer_options(), true).await;
    check_log(&log, &expected).await;
    log.close().await.unwrap();
}

#[test]
fn replace_swaps_rewritten_segments_in_and_they_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (before, bases) = write_log(dir.path());
    let plan = plan(&before, &bases);
    run(async {
        let log = open(dir.path(), config(), small_writer_options(), true).await;
        let size_before = log.size_bytes();
        // A read taken before the swap goes on serving the old segment's bytes.
        let in_flight = log.read(bases[2], 1 << 20, ReadBound::HighWatermark, true).await.unwrap();
        let in_flight_bytes = in_flight.to_vec().await.unwrap();

        let mut new_segments = Vec::new();
        for (base, batches) in &plan.new_segments {
            new_segments.push(cleaned(&log, *base, batches).await);
        }
        assert!(names(dir.path()).iter().any(|n| n.ends_with(".log.cleaned")));
        log.replace_segments(&plan.old_bases, new_segments).await.unwrap();

        assert_eq!(in_flight.to_vec().await.unwrap(), in_flight_bytes);
        if let Some((file, position, len)) = in_flight.file_range() {
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, position).unwrap();
            assert_eq!(buf, in_flight_bytes, "a sendfile handle taken before the swap reads the old file");
        }
        let mut want_bases: Vec<i64> = bases.iter().copied().filter(|b| !plan.old_bases.contains(b)).collect();
        want_bases.extend(plan.new_segments.iter().map(|(b, _)| *b));
        want_bases.sort();
        assert_eq!(log.segment_base_offsets(), want_bases);
        assert!(log.size_bytes() < size_before);
        assert_eq!(log.log_start_offset(), 0);
        check_log(&log, &plan.after).await;
        // The sendfile handle of a new segment at an old base offset is the new file.
        let read = log.read(plan.old_bases[0], 1 << 20, ReadBound::HighWatermark, true).await.unwrap();
        let (file, position, len) = read.file_range().expect("a sealed segment is served by sendfile");
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, position).unwrap();
        assert_eq!(buf, read.to_vec().await.unwrap());

        assert_no_leftovers(dir.path());
        let names = names(dir.path());
        for (base, batches) in &plan.new_segments {
            for suffix in [".log", ".index", ".timeindex"] {
                assert!(names.contains(&format!("{base:020}{suffix}")), "missing {base:020}{suffix} in {names:?}");
            }
            let len = std::fs::metadata(segment_file(dir.path(), *base, ".log")).unwrap().len();
            assert_eq!(len, concat(batches).len() as u64, "the new segment file holds exactly its batches");
        }
        let gone = plan.old_bases.iter().filter(|b| !plan.new_segments.iter().any(|(n, _)| n == *b));
        for base in gone {
            assert!(!names.iter().any(|n| n.starts_with(&format!("{base:020}"))), "old segment {base} left files");
        }
        append_close_and_reopen(dir.path(), log, &plan.after).await;
    });
    // And after a crash (no close) too.
    run(async {
        let log = open(dir.path(), config(), small_writer_options(), false).await;
        assert_eq!(read_all(&log, 0).await[..plan.after.len()], plan.after[..]);
    });
}

#[test]
fn a_run_compacted_to_nothing_leaves_an_empty_segment_and_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let (before, bases) = write_log(dir.path());
    let after: Batches = before.iter().filter(|(b, _)| *b < bases[1] || *b >= bases[3]).cloned().collect();
    run(async {
        let log = open(dir.path(), config(), small_writer_options(), true).await;
        let empty = log.create_cleaned_segment(bases[1]).await.unwrap();
        log.replace_segments(&bases[1..3], vec![empty]).await.unwrap();
        assert_eq!(std::fs::metadata(segment_file(dir.path(), bases[1], ".log")).unwrap().len(), 0);
        check_log(&log, &after).await;
        append_close_and_reopen(dir.path(), log, &after).await;
    });
}

#[test]
fn a_replacement_that_does_not_fit_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (before, bases) = write_log(dir.path());
    let plan = plan(&before, &bases);
    run(async {
        let log = open(dir.path(), config(), small_writer_options(), true).await;
        let active = *bases.last().unwrap();
        let (first, second) = (&plan.new_segments[0], &plan.new_segments[1]);
        let refusals: Vec<(Vec<i64>, NewSegments)> = vec![
            // The active segment is not sealed.
            (vec![bases[bases.len() - 2], active], vec![(bases[bases.len() - 2], Vec::new())]),
            // Not consecutive.
            (vec![bases[1], bases[3]], vec![first.clone()]),
            // Not starting at the first old base.
            (plan.old_bases.clone(), vec![second.clone()]),
            // New segments out of order.
            (plan.old_bases.clone(), vec![first.clone(), (first.0 + 1, Vec::new()), (first.0 + 1, Vec::new())]),
            // Offsets past the end of the run.
            (plan.old_bases[..2].to_vec(), plan.new_segments.clone()),
            // A new segment starting at the end of the run.
            (plan.old_bases.clone(), vec![first.clone(), (bases[4], Vec::new())]),
            // No new segment.
            (plan.old_bases.clone(), Vec::new()),
        ];
        for (old_bases, new_segments) in refusals {
            let mut segments = Vec::new();
            for (base, batches) in &new_segments {
                segments.push(cleaned(&log, *base, batches).await);
            }
            let err = log.replace_segments(&old_bases, segments).await.unwrap_err();
            assert!(matches!(err, LogError::InvalidReplace(_)), "{old_bases:?}: {err}");
            assert_no_leftovers(dir.path());
            assert_eq!(log.segment_base_offsets(), bases);
        }
        // A rewritten segment takes only valid stored batches, offsets increasing.
        let i = plan.before.iter().position(|(b, _)| *b >= bases[1]).unwrap();
        let mut segment = log.create_cleaned_segment(bases[1]).await.unwrap();
        segment.append(&plan.before[i + 1].1).await.unwrap();
        let err = segment.append(&plan.before[i].1).await.unwrap_err();
        assert!(matches!(err, LogError::InvalidReplace(_)), "{err}");
        let mut corrupt = plan.before[i + 2].1.clone();
        *corrupt.last_mut().unwrap() ^= 0xff;
        assert!(matches!(segment.append(&corrupt).await.unwrap_err(), LogError::Corrupt(_)));
        assert_eq!(segment.next_offset(), plan.before[i + 2].0);
        drop(segment);
        check_log(&log, &plan.before).await;
        log.close().await.unwrap();
    });
    // A dropped rewritten segment's `.cleaned` file is gone after the next open.
    run(async {
        let log = open(dir.path(), config(), small_writer_options(), true).await;
        assert_no_leftovers(dir.path());
        check_log(&log, &plan.before).await;
    });
}

/// Where a crash interrupted a replacement, as the files show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CrashPoint {
    /// While writing the new segments: both `.cleaned`.
    CleanedWritten,
    /// While renaming them to `.swap`, highest first: the lower still `.cleaned`.
    OneSwapRenamed,
    /// Right after the commit: both `.swap`, the old segments untouched (plus an index `.swap`
    /// file, which the protocol never writes, to check it is not taken for a segment).
    Committed,
    /// While renaming the old segments' files to `.deleted`: the first old log file renamed,
    /// its index files (which would describe the new file at that base) still in place.
    OldPartlyDeleted,
    /// While removing the `.deleted` files: some removed, the rest still there.
    OldDeleted,
    /// While renaming the `.swap` files to their final names: the first one renamed.
    FirstSwapFinal,
}

impl CrashPoint {
    const ALL: [CrashPoint; 6] = [
        CrashPoint::CleanedWritten,
        CrashPoint::OneSwapRenamed,
        CrashPoint::Committed,
        CrashPoint::OldPartlyDeleted,
        CrashPoint::OldDeleted,
        CrashPoint::FirstSwapFinal,
    ];

    fn committed(self) -> bool {
        !matches!(self, CrashPoint::CleanedWritten | CrashPoint::OneSwapRenamed)
    }
}

/// Leaves the files of `plan` as a crash at `point` would (the log is not open).
fn stage(dir: &Path, plan: &Plan, point: CrashPoint) {
    let rename = |from: PathBuf, to: PathBuf| std::fs::rename(&from, &to).unwrap_or_else(|e| panic!("{from:?}: {e}"));
    let old_files = |base: i64| [".log", ".index", ".timeindex"].map(|s| segment_file(dir, base, s));
    match point {
        CrashPoint::CleanedWritten | CrashPoint::OneSwapRenamed | CrashPoint::Committed => {}
        CrashPoint::OldPartlyDeleted => {
            let base = plan.old_bases[0];
            rename(segment_file(dir, base, ".log"), segment_file(dir, base, ".log.deleted"));
        }
        CrashPoint::OldDeleted | CrashPoint::FirstSwapFinal => {
            for &base in &plan.old_bases {
                for path in old_files(base) {
                    let mut deleted = path.clone().into_os_string();
                    deleted.push(".deleted");
                    rename(path, deleted.into());
                }
            }
            for path in old_files(plan.old_bases[0]) {
                let mut deleted = path.into_os_string();
                deleted.push(".deleted");
                std::fs::remove_file(deleted).unwrap();
            }
        }
    }
    for (i, (base, batches)) in plan.new_segments.iter().enumerate() {
        let suffix = match point {
            CrashPoint::CleanedWritten => ".log.cleaned",
            CrashPoint::OneSwapRenamed if i == 0 => ".log.cleaned",
            CrashPoint::FirstSwapFinal if i == 0 => ".log",
            _ => ".log.swap",
        };
        std::fs::write(segment_file(dir, *base, suffix), concat(batches)).unwrap();
    }
    if point == CrashPoint::Committed {
        std::fs::write(segment_file(dir, plan.new_segments[1].0, ".index.swap"), [0u8; 16]).unwrap();
    }
}

#[test]
fn open_settles_a_replacement_interrupted_at_each_step() {
    for point in CrashPoint::ALL {
        for clean_shutdown in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let (before, bases) = write_log(dir.path());
            let plan = plan(&before, &bases);
            stage(dir.path(), &plan, point);
            let expected = if point.committed() { &plan.after } else { &plan.before };
            run(async {
                let log = open(dir.path(), config(), small_writer_options(), clean_shutdown).await;
                assert_no_leftovers(dir.path());
                if point.committed() {
                    // Index files at a replaced base described the old file: gone, rebuilt later.
                    let first_new = plan.new_segments[0].0;
                    assert!(!segment_file(dir.path(), first_new, ".index").exists(), "{point:?}: stale index kept");
                    let mut want: Vec<i64> = bases.iter().copied().filter(|b| !plan.old_bases.contains(b)).collect();
                    want.extend(plan.new_segments.iter().map(|(b, _)| *b));
                    want.sort();
                    assert_eq!(log.segment_base_offsets(), want, "{point:?}");
                } else {
                    assert_eq!(log.segment_base_offsets(), bases, "{point:?}");
                }
                check_log(&log, expected).await;
                append_close_and_reopen(dir.path(), log, expected).await;
            });
        }
    }
}

#[test]
fn a_sendfile_handle_is_only_taken_on_the_segments_own_file() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), config(), small_writer_options(), true).await;
        for i in 0..40u64 {
            log.append(&tagged_batch(i, 2, 400, 1000 + i as i64), 0).await.unwrap();
        }
        log.roll().await.unwrap();
        // Another file takes the sealed segment's name before any read opened its sendfile
        // handle (as a replacement's does): reads must go on serving the segment's own bytes.
        let path = segment_file(dir.path(), 0, ".log");
        let own = std::fs::read(&path).unwrap();
        std::fs::rename(&path, segment_file(dir.path(), 0, ".log.moved")).unwrap();
        std::fs::write(&path, vec![0xaa; own.len()]).unwrap();
        let read = log.read(0, 1 << 20, ReadBound::HighWatermark, true).await.unwrap();
        let bytes = read.to_vec().await.unwrap();
        assert_eq!(bytes, own[..bytes.len()]);
        assert!(read.file_range().is_none(), "a handle on the file now at the segment's path was used");
        // Once the name is the segment's own file again, sendfile is back.
        std::fs::rename(segment_file(dir.path(), 0, ".log.moved"), &path).unwrap();
        let read = log.read(0, 1 << 20, ReadBound::HighWatermark, true).await.unwrap();
        let (file, position, len) = read.file_range().expect("sendfile handle");
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, position).unwrap();
        assert_eq!(buf, bytes);
    });
}
