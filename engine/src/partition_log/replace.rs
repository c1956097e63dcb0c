//! Atomic replacement of a run of sealed segments by rewritten ones — what log compaction
//! needs — and, at open, settling a replacement that a crash interrupted.
//!
//! Owns: the replacement protocol, both halves. It is Kafka's (`LocalLog.replaceSegments`, and
//! `LogLoader` at start-up):
//! 1. each rewritten segment is written as `<base>.log.cleaned` ([`CleanedSegment`]) and
//!    fsynced;
//! 2. the `.cleaned` files are renamed to `.swap`, highest base offset first, and the directory
//!    is fsynced. This is the commit point;
//! 3. the segment map swaps the old segments for the new ones;
//! 4. the old segments' files are renamed to `.deleted`, then removed;
//! 5. the `.swap` files take their final names and the directory is fsynced; the new segments'
//!    index files are written.
//!
//! At open ([`settle_interrupted_replace`]): with a `.cleaned` file left the replacement had
//! not committed, so its `.swap` files (those at or above the lowest `.cleaned` base) and then
//! the `.cleaned` files are deleted; every `.swap` file left is completed — the segments it
//! overlaps and the index files at its base are deleted, and it is renamed to its final name.
//! `.deleted` files are removed. Index files are not part of the swap: open rebuilds missing
//! ones from the log.
//!
//! Must never: leave, at any crash point, two segments holding the same offset, or a
//! committed replacement with part of its new segments missing; let index files of a replaced
//! file describe its replacement; hold a `RefCell` borrow across an await; or run a blocking
//! syscall on the shard thread. The cleaner that decides what to keep is not here.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::OpenOptions;

use crate::batch::{batches, Validation};
use crate::checkpoint_file;
use crate::clock::now_ms;
use crate::log_recovery::scan_segment;
use crate::offset_index::{
    log_file_name, offset_index_file_name, parse_segment_base_offset, time_index_file_name, SegmentFileKind,
    MAX_POSITION,
};
use crate::segment::{use_page_cache, Segment};
use crate::segment_file::SegmentFile;
use crate::segment_writer::SegmentWriter;

use super::{io, settings_of, LogError, PartitionLog};

/// A rewritten segment's log file while it is written, before its replacement commits.
const CLEANED_SUFFIX: &str = ".cleaned";
/// A rewritten segment's log file once its replacement committed, before its final rename.
const SWAP_SUFFIX: &str = ".swap";
/// A replaced segment's files between their rename away and their removal.
const DELETED_SUFFIX: &str = ".deleted";

/// A segment rewritten by log compaction: `<base>.log.cleaned` in the partition's directory,
/// outside the log until [`PartitionLog::replace_segments`] swaps it in. Made by
/// [`PartitionLog::create_cleaned_segment`]; holds stored batches, offsets kept, ascending.
/// Dropped without a replacement, its file is left for the next open to delete.
pub struct CleanedSegment {
    /// Its `log_path` is the final name; the file is at the `.cleaned` one until the swap.
    segment: Segment,
    writer: SegmentWriter,
    index_interval_bytes: u64,
}

impl CleanedSegment {
    pub fn base_offset(&self) -> i64 {
        self.segment.base_offset
    }

    /// The offset after the last batch appended; the base offset while empty.
    pub fn next_offset(&self) -> i64 {
        self.segment.next_offset
    }

    pub fn size_bytes(&self) -> u64 {
        self.segment.size_bytes
    }

    /// Appends stored batches (as the log holds them: offsets assigned, CRCs valid) whose
    /// offsets continue above what the segment holds. Nothing is appended if one is refused.
    pub async fn append(&mut self, stored_batches: &[u8]) -> Result<(), LogError> {
        let mut infos = Vec::new();
        let (mut next_offset, mut size_bytes) = (self.segment.next_offset, self.segment.size_bytes);
        for item in batches(stored_batches, Validation::Stored) {
            let (_, info) = item.map_err(|e| LogError::Corrupt(format!("rewritten batch: {e}")))?;
            if info.base_offset < next_offset {
                return Err(LogError::InvalidReplace(format!(
                    "batch at offset {} after offset {next_offset}",
                    info.base_offset
                )));
            }
            if !self.segment.offset_index.can_append_offset(info.last_offset()) || size_bytes > MAX_POSITION as u64 {
                return Err(LogError::InvalidReplace(format!(
                    "batch at offset {} does not fit one segment from {}",
                    info.base_offset, self.segment.base_offset
                )));
            }
            next_offset = info.next_offset();
            size_bytes += info.total_len as u64;
            infos.push(info);
        }
        self.writer.append(stored_batches).await.map_err(io)?;
        for info in &infos {
            self.segment.note_batch(self.segment.size_bytes, info, self.index_interval_bytes);
        }
        Ok(())
    }
}

impl PartitionLog {
    /// Starts a rewritten segment at `base_offset` for [`PartitionLog::replace_segments`]: an
    /// empty `<base>.log.cleaned` in the partition's directory.
    pub async fn create_cleaned_segment(&self, base_offset: i64) -> Result<CleanedSegment, LogError> {
        if base_offset < 0 {
            return Err(LogError::InvalidReplace(format!("negative base offset {base_offset}")));
        }
        let settings = settings_of(&self.config.borrow());
        let log_path = Segment::paths(&self.dir, base_offset).0;
        let cleaned_path = with_suffix(&log_path, CLEANED_SUFFIX);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(&cleaned_path)
            .await
            .map_err(io)?;
        if !self.options.direct_io {
            use_page_cache(&file).map_err(io)?;
        }
        let file = Rc::new(file);
        let writer = SegmentWriter::new(file.clone(), 0, &[], self.options.writer);
        // Pinned until it has its final name: a reopen by that name before then would open the
        // segment it replaces.
        let segment_file = SegmentFile::from_open(log_path.clone(), self.options.direct_io, file, true);
        let segment = Segment::from_parts(base_offset, log_path, segment_file, 0, settings, None, now_ms());
        Ok(CleanedSegment { segment, writer, index_interval_bytes: settings.index_interval_bytes })
    }

    /// Swaps the consecutive sealed segments at `old_bases` for `new_segments` (log
    /// compaction), crash-safely (see the module docs):
    /// 1. the new segments' `.cleaned` files are written out and fsynced;
    /// 2. renamed to `.swap`, highest base offset first, and the directory fsynced — the
    ///    commit point: open finishes the replacement from here on and abandons it before;
    /// 3. the segment map swaps the old segments for the new ones (reads in flight keep the
    ///    file handles they took);
    /// 4. the old segments' files are renamed to `.deleted`, then removed;
    /// 5. the `.swap` files take their final names, the directory is fsynced and the new
    ///    segments' index files are written.
    ///
    /// `old_bases` must not include the active segment. `new_segments` must start at
    /// `old_bases[0]`, be in ascending order without overlapping, and hold only offsets below
    /// the base of the segment after the run; a replacement that does not fit is refused with
    /// [`LogError::InvalidReplace`]. A refusal or an error before the commit point leaves the
    /// log as it was and deletes the new files; after it, the log serves the new segments, the
    /// next open finishes the renames, and further replacements are refused until then.
    pub async fn replace_segments(&self, old_bases: &[i64], new_segments: Vec<CleanedSegment>) -> Result<(), LogError> {
        let new_bases: Vec<i64> = new_segments.iter().map(CleanedSegment::base_offset).collect();
        let new_files: Vec<Rc<SegmentFile>> = new_segments.iter().map(|s| s.segment.file.clone()).collect();
        let final_paths: Vec<PathBuf> = new_segments.iter().map(|s| s.segment.log_path.clone()).collect();
        let cleaned_paths: Vec<PathBuf> = final_paths.iter().map(|p| with_suffix(p, CLEANED_SUFFIX)).collect();
        let swap_paths: Vec<PathBuf> = final_paths.iter().map(|p| with_suffix(p, SWAP_SUFFIX)).collect();
        let _permit = self.exclusive.acquire_permit(1).await.map_err(|_| LogError::Closed)?;
        // The replaced segments' index files may still be on their way (a roll's seal).
        let sealed = self.wait_for_seal().await;
        let refusal = if self.closed.get() {
            Err(LogError::Closed)
        } else if let Err(e) = sealed {
            Err(e)
        } else if self.replace_awaits_open.get() {
            Err(LogError::InvalidReplace("an interrupted replacement awaits the next open".into()))
        } else {
            self.check_replacement(old_bases, &new_segments)
        };
        if let Err(e) = refusal {
            for path in &cleaned_paths {
                if let Err(e) = checkpoint_file::remove_if_exists(path).await {
                    tracing::warn!(path = %path.display(), error = %e, "cannot delete a refused rewritten segment");
                }
            }
            return Err(e);
        }
        if let Err(e) = commit_replacement(&self.dir, &new_segments, &cleaned_paths, &swap_paths).await {
            if !abandon_replacement(&cleaned_paths, &swap_paths).await {
                self.replace_awaits_open.set(true);
            }
            return Err(e);
        }
        let old_segments: Vec<Segment> = {
            let mut state = self.state.borrow_mut();
            let old_segments: Vec<Segment> =
                old_bases.iter().map(|b| state.segments.remove(b).expect("checked")).collect();
            for new in new_segments {
                state.segments.insert(new.segment.base_offset, new.segment);
            }
            // The aborted transactions the old segments indexed move to the new ones.
            let aborted: Vec<_> = old_segments.iter().flat_map(|s| s.txn_index.entries().to_vec()).collect();
            super::txn::merge_aborted(&mut state.segments, &aborted);
            old_segments
        };
        tracing::info!(topic = %self.topic, partition = self.partition, ?old_bases, ?new_bases, "replacing segments");
        if let Err(e) = self.finish_replacement(&old_segments, &swap_paths, &final_paths).await {
            self.replace_awaits_open.set(true);
            return Err(e);
        }
        for file in new_files {
            file.unpin();
        }
        for base in new_bases {
            self.write_segment_indexes(base).await?;
        }
        self.write_txn_indexes().await?;
        Ok(())
    }

    /// Refuses a replacement that does not fit the log (see [`PartitionLog::replace_segments`]).
    fn check_replacement(&self, old_bases: &[i64], new_segments: &[CleanedSegment]) -> Result<(), LogError> {
        let invalid = |why: String| Err(LogError::InvalidReplace(why));
        let (Some(&first_old), Some(first_new)) = (old_bases.first(), new_segments.first()) else {
            return invalid("a replacement needs old segments and at least one new segment".into());
        };
        let run: Vec<i64> = {
            let state = self.state.borrow();
            state.segments.range(first_old..).map(|(b, _)| *b).take(old_bases.len() + 1).collect()
        };
        if run.len() != old_bases.len() + 1 || run[..old_bases.len()] != *old_bases {
            return invalid(format!("{old_bases:?} are not consecutive sealed segments of the log"));
        }
        let run_end = run[old_bases.len()];
        if first_new.base_offset() != first_old {
            return invalid(format!("the first new segment starts at {}, not {first_old}", first_new.base_offset()));
        }
        for pair in new_segments.windows(2) {
            if pair[1].base_offset() <= pair[0].base_offset() || pair[1].base_offset() < pair[0].next_offset() {
                return invalid(format!(
                    "new segment at {} overlaps the one at {}",
                    pair[1].base_offset(),
                    pair[0].base_offset()
                ));
            }
        }
        let last_new = new_segments.last().expect("non-empty");
        if last_new.base_offset() >= run_end || last_new.next_offset() > run_end {
            return invalid(format!(
                "new segments reach offset {}, past the run's end {run_end}",
                last_new.next_offset().max(last_new.base_offset() + 1)
            ));
        }
        if let Some(foreign) = new_segments.iter().find(|s| s.segment.log_path.parent() != Some(self.dir.as_path())) {
            return invalid(format!("{} is not in this log's directory", foreign.segment.log_path.display()));
        }
        Ok(())
    }

    /// Steps 4 and 5 of [`PartitionLog::replace_segments`], after the commit point.
    async fn finish_replacement(
        &self,
        old_segments: &[Segment],
        swap_paths: &[PathBuf],
        final_paths: &[PathBuf],
    ) -> Result<(), LogError> {
        let mut deleted = Vec::new();
        for old in old_segments {
            // The cached sendfile handle of the old file would keep its space until evicted.
            crate::reader_cache::forget(&old.log_path);
            let (_, index_path, time_index_path) = Segment::paths(&self.dir, old.base_offset);
            let txn_index = crate::txn_index::txn_index_path(&self.dir, old.base_offset);
            for path in [old.log_path.clone(), index_path, time_index_path, txn_index] {
                let deleted_path = with_suffix(&path, DELETED_SUFFIX);
                match glommio::io::rename(&path, &deleted_path).await.map_err(std::io::Error::from) {
                    Ok(()) => deleted.push(deleted_path),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // indexes not written yet
                    Err(e) => return Err(io(e)),
                }
            }
        }
        // Open readers keep their file descriptor; unlinking is safe under them.
        for path in &deleted {
            checkpoint_file::remove_if_exists(path).await.map_err(io)?;
        }
        for (swap_path, final_path) in swap_paths.iter().zip(final_paths) {
            glommio::io::rename(swap_path, final_path).await.map_err(io)?;
        }
        sync_dir(&self.dir).await
    }
}

/// Steps 1 and 2 of [`PartitionLog::replace_segments`], up to the commit point.
async fn commit_replacement(
    dir: &Path,
    new_segments: &[CleanedSegment],
    cleaned_paths: &[PathBuf],
    swap_paths: &[PathBuf],
) -> Result<(), LogError> {
    for new in new_segments {
        new.writer.sync().await.map_err(io)?;
        // Cut the writer's padding and preallocated space; the size is on disk with the data.
        let file = new.segment.file.get().await.map_err(io)?;
        file.truncate(new.segment.size_bytes).await.map_err(io)?;
        file.fdatasync().await.map_err(io)?;
    }
    // Highest first: until the lowest is renamed a `.cleaned` file at or below every `.swap`
    // file is left, which open reads as "not committed".
    for (cleaned_path, swap_path) in cleaned_paths.iter().zip(swap_paths).rev() {
        glommio::io::rename(cleaned_path, swap_path).await.map_err(io)?;
    }
    sync_dir(dir).await
}

/// Deletes the files of a replacement that did not commit, keeping it uncommitted at every
/// step: the lowest `.swap` file goes back to `.cleaned` first, then the `.swap` files go, then
/// the `.cleaned` ones, lowest last. False when that could not be done; the files are left as
/// they are for open to settle.
async fn abandon_replacement(cleaned_paths: &[PathBuf], swap_paths: &[PathBuf]) -> bool {
    let (Some(lowest_cleaned), Some(lowest_swap)) = (cleaned_paths.first(), swap_paths.first()) else { return true };
    match glommio::io::rename(lowest_swap, lowest_cleaned).await.map_err(std::io::Error::from) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // never renamed
        Err(e) => {
            tracing::error!(path = %lowest_swap.display(), error = %e, "cannot abandon a segment replacement");
            return false;
        }
    }
    for path in swap_paths.iter().chain(cleaned_paths.iter().rev()) {
        if let Err(e) = checkpoint_file::remove_if_exists(path).await {
            tracing::error!(path = %path.display(), error = %e, "cannot delete a file of an abandoned replacement");
            return false;
        }
    }
    true
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// fsyncs a directory, so the renames in it are on disk (through io_uring).
async fn sync_dir(dir: &Path) -> Result<(), LogError> {
    let directory = glommio::io::Directory::open(dir).await.map_err(io)?;
    let synced = directory.sync().await.map_err(io);
    directory.close().await.map_err(io)?;
    synced
}

/// Settles a segment replacement that a crash interrupted ([`PartitionLog::replace_segments`])
/// and returns the directory's file names as they are then.
///
/// A `.cleaned` file left means the replacement had not committed: its `.swap` files at or
/// above the lowest `.cleaned` base offset are deleted (the `.cleaned` to `.swap` renames go
/// highest base first, so that is all of them), then the `.cleaned` files. Every `.swap` file
/// left belongs to a committed replacement: the segments whose offsets it overlaps are
/// deleted, with the index files at its own base offset (they index the file it replaces), and
/// it takes its final name. Each step can be repeated after a crash in the middle of it.
pub(super) async fn settle_interrupted_replace(
    dir: &Path,
    names: Vec<String>,
    direct_io: bool,
    max_batch_bytes: usize,
) -> Result<Vec<String>, LogError> {
    let mut cleaned = Vec::new();
    let mut swaps = Vec::new();
    let mut rest = Vec::new();
    for name in names {
        if let Some(stem) = name.strip_suffix(CLEANED_SUFFIX) {
            cleaned.push((parse_segment_base_offset(stem).map(|(base, _)| base), name));
        } else if let Some(stem) = name.strip_suffix(SWAP_SUFFIX) {
            swaps.push((parse_segment_base_offset(stem), name));
        } else {
            rest.push(name);
        }
    }
    let lowest_cleaned = cleaned.iter().filter_map(|(base, _)| *base).min();
    let mut committed = Vec::new();
    for (parsed, name) in swaps {
        match parsed {
            Some((base, SegmentFileKind::Log)) if lowest_cleaned.is_none_or(|lowest| base < lowest) => {
                committed.push(base)
            }
            _ => {
                tracing::info!(dir = %dir.display(), file = %name, "deleting a swap file of an uncommitted segment replacement");
                checkpoint_file::remove_if_exists(&dir.join(&name)).await.map_err(io)?;
            }
        }
    }
    // Only now the `.cleaned` files: a crash before this point abandons the same swaps again.
    for (_, name) in &cleaned {
        checkpoint_file::remove_if_exists(&dir.join(name)).await.map_err(io)?;
    }
    committed.sort_unstable();
    for base in committed {
        let final_name = log_file_name(base);
        let swap_path = dir.join(format!("{final_name}{SWAP_SUFFIX}"));
        let swap_next = next_offset_in(&swap_path, base, direct_io, max_batch_bytes).await?;
        let mut log_bases: Vec<i64> = rest
            .iter()
            .filter_map(|n| match parse_segment_base_offset(n) {
                Some((b, SegmentFileKind::Log)) => Some(b),
                _ => None,
            })
            .collect();
        log_bases.sort_unstable();
        // Segments starting inside the swap's offsets, the one at its base however empty it
        // is, and the one before if it reaches into them.
        let mut overlapped: Vec<i64> =
            log_bases.iter().copied().filter(|b| *b == base || (*b > base && *b < swap_next)).collect();
        if let Some(&floor) = log_bases.iter().rev().find(|b| **b < base) {
            if next_offset_in(&dir.join(log_file_name(floor)), floor, direct_io, max_batch_bytes).await? > base {
                overlapped.push(floor);
            }
        }
        let mut doomed = vec![offset_index_file_name(base), time_index_file_name(base)];
        for b in &overlapped {
            doomed.extend([log_file_name(*b), offset_index_file_name(*b), time_index_file_name(*b)]);
        }
        for name in &doomed {
            checkpoint_file::remove_if_exists(&dir.join(name)).await.map_err(io)?;
        }
        rest.retain(|n| !doomed.contains(n));
        glommio::io::rename(&swap_path, dir.join(&final_name)).await.map_err(io)?;
        tracing::warn!(dir = %dir.display(), base, ?overlapped, "finished a segment replacement that a crash interrupted");
        rest.push(final_name);
    }
    Ok(rest)
}

/// The offset after the last valid batch of the segment file at `path` (`base_offset` when it
/// holds none).
async fn next_offset_in(
    path: &Path,
    base_offset: i64,
    direct_io: bool,
    max_batch_bytes: usize,
) -> Result<i64, LogError> {
    let file = Segment::open_file(path, direct_io).await.map_err(io)?;
    let file_size = file.file_size().await.map_err(io)?;
    let mut next_offset = base_offset;
    scan_segment(&file, file_size, base_offset, max_batch_bytes, &mut |_, info| next_offset = info.next_offset())
        .await
        .map_err(io)?;
    file.close_rc().await.map_err(io)?;
    Ok(next_offset)
}
