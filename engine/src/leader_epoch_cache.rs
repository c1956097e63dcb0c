//! The leader epoch cache of one partition (leader epoch → first offset written in it), and the
//! text formats of the small checkpoint files that persist it and other per-partition offsets.
//!
//! Owns: the epoch entries and Kafka's rules for changing and querying them — a port of
//! `org.apache.kafka.storage.internals.epoch.LeaderEpochFileCache` (assign, endOffsetFor,
//! truncateFromEnd, truncateFromStart, epochForOffset) — and the `leader-epoch-checkpoint` text
//! format of Kafka's `CheckpointFile` (version line, count line, one "epoch start_offset" line
//! per entry). Also the single-offset checkpoint text used for the recovery point and the log
//! start offset.
//!
//! Must never: do I/O (callers write the text with `checkpoint_file`), panic on text read from
//! disk (`decode` returns `CheckpointError`), or hold entries whose epochs or start offsets do
//! not strictly increase.

use std::fmt;

/// Kafka's `OffsetsForLeaderEpochResponse.UNDEFINED_EPOCH`.
pub const UNDEFINED_EPOCH: i32 = -1;
/// Kafka's `OffsetsForLeaderEpochResponse.UNDEFINED_EPOCH_OFFSET`.
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;
/// Version line of Kafka's leader-epoch checkpoint (`LeaderEpochCheckpointFile.CURRENT_VERSION`).
pub const CHECKPOINT_VERSION: i32 = 0;
/// Most entries a checkpoint may hold. Each leader election adds at most one, so this is far
/// beyond any real partition; it bounds what a corrupt file can make us allocate.
pub const MAX_EPOCH_ENTRIES: usize = 1 << 20;
/// Longest line text quoted back in a `CheckpointError`.
const MAX_QUOTED_LINE_BYTES: usize = 128;

/// The first offset written under a leader epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// Why checkpoint text was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointError {
    /// The version line holds a number other than the supported version.
    UnsupportedVersion { found: i64 },
    /// A line (1-based) that does not parse; its text, shortened.
    Malformed { line_number: usize, line: String },
    /// The count line disagrees with the entry lines that follow.
    CountMismatch { expected: i64, found: usize },
    /// The count line exceeds `MAX_EPOCH_ENTRIES`.
    TooManyEntries { count: i64 },
    /// An entry with a negative epoch or start offset, or one that does not strictly increase
    /// on the previous entry in both epoch and start offset. `index` is 0-based.
    InvalidEntry { index: usize, entry: EpochEntry, previous: Option<EpochEntry> },
    /// A single-offset checkpoint holding a negative offset.
    NegativeOffset { value: i64 },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::UnsupportedVersion { found } => {
                write!(f, "unrecognised checkpoint version {found}, expected {CHECKPOINT_VERSION}")
            }
            CheckpointError::Malformed { line_number, line } => {
                write!(f, "malformed line {line_number} in checkpoint: {line:?}")
            }
            CheckpointError::CountMismatch { expected, found } => {
                write!(f, "expected {expected} entries in checkpoint, found {found}")
            }
            CheckpointError::TooManyEntries { count } => {
                write!(f, "checkpoint claims {count} entries, more than {MAX_EPOCH_ENTRIES}")
            }
            CheckpointError::InvalidEntry { index, entry, previous } => {
                write!(
                    f,
                    "checkpoint entry {index} (epoch {} start {}) is invalid after {previous:?}",
                    entry.epoch, entry.start_offset
                )
            }
            CheckpointError::NegativeOffset { value } => write!(f, "checkpoint offset {value} is negative"),
        }
    }
}

impl std::error::Error for CheckpointError {}

fn malformed(line_number: usize, line: &str) -> CheckpointError {
    let mut end = line.len().min(MAX_QUOTED_LINE_BYTES);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    CheckpointError::Malformed { line_number, line: line[..end].to_string() }
}

/// Leader epoch → start offset, ordered by epoch.
///
/// Invariant: epochs and start offsets both strictly increase along `entries`, and all are
/// non-negative. (Kafka's `assign` removes any entry with an epoch or a start offset at or above
/// the new one's, so start offsets are strictly increasing there too.)
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    pub fn new() -> LeaderEpochCache {
        LeaderEpochCache { entries: Vec::new() }
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn latest_entry(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    pub fn earliest_entry(&self) -> Option<EpochEntry> {
        self.entries.first().copied()
    }

    /// The latest epoch with messages assigned to it (Kafka's `latestEpoch`).
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Kafka's `assign(epoch, startOffset)`; returns whether the cache changed.
    ///
    /// Ignored (false) when the latest entry already has this epoch and a start offset at or
    /// below `start_offset` — an epoch, once assigned, keeps its first offset. Ignored too when
    /// `epoch` or `start_offset` is negative (Kafka throws `IllegalArgumentException`).
    /// Otherwise every entry from the end whose epoch is `>= epoch` or whose start offset is
    /// `>= start_offset` is removed (Kafka's `maybeTruncateNonMonotonicEntries`) and the new
    /// entry appended. So, exactly as in Kafka, an epoch *lower* than the latest is not ignored:
    /// it truncates the later epochs (`LeaderEpochFileCacheTest.
    /// shouldEnforceMonotonicallyIncreasingEpochs`), and the same epoch with a lower start offset
    /// replaces the latest entry.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        let update_needed = match self.entries.last() {
            None => true,
            Some(latest) => epoch != latest.epoch || start_offset < latest.start_offset,
        };
        if !update_needed {
            return false;
        }
        while let Some(last) = self.entries.last() {
            if last.epoch >= epoch || last.start_offset >= start_offset {
                self.entries.pop();
            } else {
                break;
            }
        }
        debug_assert!(self.entries.len() < MAX_EPOCH_ENTRIES, "leader epoch cache is implausibly large");
        self.entries.push(EpochEntry { epoch, start_offset });
        self.debug_check_invariants();
        true
    }

    /// The epoch of the leader that wrote `offset`: the entry with the largest start offset
    /// `<= offset` (Kafka's `epochForOffset`). None when `offset` precedes every entry.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        let after = self.entries.partition_point(|e| e.start_offset <= offset);
        if after == 0 {
            None
        } else {
            Some(self.entries[after - 1].epoch)
        }
    }

    /// Kafka's `endOffsetFor(requestedEpoch, logEndOffset)`, the answer to OffsetsForLeaderEpoch:
    /// `(epoch, end_offset)` where `epoch` is the largest known epoch `<= requested_epoch` and
    /// `end_offset` is the start offset of the first epoch after it (or the log end offset when
    /// `requested_epoch` is the latest epoch). Case by case, as in Kafka:
    /// - `requested_epoch == UNDEFINED_EPOCH` → `(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)`;
    /// - `requested_epoch` is the latest epoch → `(requested_epoch, log_end_offset)`;
    /// - no epoch above `requested_epoch` (includes the empty cache) →
    ///   `(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)`;
    /// - no epoch at or below it (it predates the first entry) → `(requested_epoch, start offset
    ///   of the first entry)` — note: the *requested* epoch, not UNDEFINED;
    /// - otherwise → `(largest epoch <= requested, start offset of the next higher epoch)`.
    pub fn end_offset_for(&self, requested_epoch: i32, log_end_offset: i64) -> (i32, i64) {
        if requested_epoch == UNDEFINED_EPOCH {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        }
        if self.latest_epoch() == Some(requested_epoch) {
            return (requested_epoch, log_end_offset);
        }
        let higher = self.entries.partition_point(|e| e.epoch <= requested_epoch);
        if higher == self.entries.len() {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        }
        let higher_start = self.entries[higher].start_offset;
        if higher == 0 {
            (requested_epoch, higher_start)
        } else {
            (self.entries[higher - 1].epoch, higher_start)
        }
    }

    /// Removes every entry whose start offset is `>= end_offset` (Kafka's `truncateFromEnd`,
    /// used when the log is truncated to `end_offset`). A negative `end_offset` does nothing.
    pub fn truncate_from_end(&mut self, end_offset: i64) {
        if end_offset < 0 {
            return;
        }
        let keep = self.entries.partition_point(|e| e.start_offset < end_offset);
        self.entries.truncate(keep);
        self.debug_check_invariants();
    }

    /// Kafka's `truncateFromStart`, used when the log start offset moves to `start_offset`:
    /// removes every entry whose start offset is `<= start_offset`, then puts back the last of
    /// them with its start offset raised to `start_offset` — the epoch that was current at the
    /// new log start. An entry starting exactly at `start_offset` is therefore kept as it was.
    pub fn truncate_from_start(&mut self, start_offset: i64) {
        let removed = self.entries.partition_point(|e| e.start_offset <= start_offset);
        if removed == 0 {
            return;
        }
        let current = self.entries[removed - 1];
        self.entries.drain(..removed - 1);
        self.entries[0] = EpochEntry { epoch: current.epoch, start_offset };
        self.debug_check_invariants();
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The `leader-epoch-checkpoint` text: `0\n<count>\n` then `<epoch> <start_offset>\n` per entry.
    pub fn encode(&self) -> String {
        let mut out = format!("{CHECKPOINT_VERSION}\n{}\n", self.entries.len());
        for entry in &self.entries {
            out.push_str(&format!("{} {}\n", entry.epoch, entry.start_offset));
        }
        out
    }

    /// Parses `leader-epoch-checkpoint` text.
    ///
    /// As Kafka's `CheckpointFile.CheckpointReadBuffer` does, empty text or a version line alone
    /// is an empty cache, lines may end in `\n` or `\r\n` (the last one may lack it), and fields
    /// are separated by whitespace. Rejected: a version other than 0, a count line that is not a
    /// number or disagrees with the entry lines, an entry line that is not exactly two numbers,
    /// and entries that are negative or do not strictly increase in epoch and start offset.
    pub fn decode(text: &str) -> Result<LeaderEpochCache, CheckpointError> {
        let mut lines = checkpoint_lines(text);
        let Some((_, version_line)) = lines.next() else {
            return Ok(LeaderEpochCache::new());
        };
        parse_version(version_line)?;
        let Some((count_line_number, count_line)) = lines.next() else {
            return Ok(LeaderEpochCache::new());
        };
        let expected: i64 = count_line.parse().map_err(|_| malformed(count_line_number, count_line))?;
        if expected > MAX_EPOCH_ENTRIES as i64 {
            return Err(CheckpointError::TooManyEntries { count: expected });
        }
        let mut entries: Vec<EpochEntry> = Vec::with_capacity(expected.clamp(0, 1024) as usize);
        for (line_number, line) in lines {
            if entries.len() >= MAX_EPOCH_ENTRIES {
                return Err(CheckpointError::TooManyEntries { count: expected });
            }
            let mut fields = line.split_ascii_whitespace();
            let (Some(epoch), Some(start_offset), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(malformed(line_number, line));
            };
            let (Ok(epoch), Ok(start_offset)) = (epoch.parse::<i32>(), start_offset.parse::<i64>()) else {
                return Err(malformed(line_number, line));
            };
            let entry = EpochEntry { epoch, start_offset };
            let previous = entries.last().copied();
            let valid = epoch >= 0
                && start_offset >= 0
                && previous.is_none_or(|p| epoch > p.epoch && start_offset > p.start_offset);
            if !valid {
                return Err(CheckpointError::InvalidEntry { index: entries.len(), entry, previous });
            }
            entries.push(entry);
        }
        if expected < 0 || entries.len() as i64 != expected {
            return Err(CheckpointError::CountMismatch { expected, found: entries.len() });
        }
        let cache = LeaderEpochCache { entries };
        cache.debug_check_invariants();
        Ok(cache)
    }

    fn debug_check_invariants(&self) {
        debug_assert!(self.entries.iter().all(|e| e.epoch >= 0 && e.start_offset >= 0));
        debug_assert!(self
            .entries
            .windows(2)
            .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset < w[1].start_offset));
    }
}

/// The lines of `text` with 1-based numbers, each without its `\n` / `\r\n` terminator, like
/// Java's `BufferedReader.readLine`: empty text has no lines, and a final terminator does not
/// start another line.
fn checkpoint_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let lines = if text.is_empty() { None } else { Some(body.split('\n')) };
    lines
        .into_iter()
        .flatten()
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .enumerate()
        .map(|(index, line)| (index + 1, line))
}

fn parse_version(line: &str) -> Result<(), CheckpointError> {
    let version: i64 = line.parse().map_err(|_| malformed(1, line))?;
    if version != i64::from(CHECKPOINT_VERSION) {
        return Err(CheckpointError::UnsupportedVersion { found: version });
    }
    Ok(())
}

/// Text of a single-offset checkpoint (recovery point, log start offset): `0\n<value>\n`, the
/// version line then the offset. Sluice's own format; Kafka keeps these offsets in per-directory
/// multi-partition files instead.
pub fn encode_offset_checkpoint(value: i64) -> String {
    assert!(value >= 0, "checkpointed offsets are never negative: {value}");
    format!("{CHECKPOINT_VERSION}\n{value}\n")
}

/// Parses `encode_offset_checkpoint` text: exactly a version line of 0 and one non-negative
/// offset line (each may end in `\n` or `\r\n`; the last may lack it). Empty text is an error:
/// a missing offset has no safe default here.
pub fn decode_offset_checkpoint(text: &str) -> Result<i64, CheckpointError> {
    let mut lines = checkpoint_lines(text);
    let Some((_, version_line)) = lines.next() else {
        return Err(malformed(1, ""));
    };
    parse_version(version_line)?;
    let Some((line_number, value_line)) = lines.next() else {
        return Err(malformed(2, ""));
    };
    let value: i64 = value_line.parse().map_err(|_| malformed(line_number, value_line))?;
    if let Some((extra_number, extra)) = lines.next() {
        return Err(malformed(extra_number, extra));
    }
    if value < 0 {
        return Err(CheckpointError::NegativeOffset { value });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cache_of(pairs: &[(i32, i64)]) -> LeaderEpochCache {
        let mut cache = LeaderEpochCache::new();
        for &(epoch, start_offset) in pairs {
            assert!(cache.assign(epoch, start_offset), "assign({epoch}, {start_offset})");
        }
        cache
    }

    fn pairs(cache: &LeaderEpochCache) -> Vec<(i32, i64)> {
        cache.entries().iter().map(|e| (e.epoch, e.start_offset)).collect()
    }

    #[test]
    fn assign_appends_new_epochs() {
        let mut cache = LeaderEpochCache::new();
        assert_eq!(cache.latest_epoch(), None);
        assert!(cache.assign(2, 6));
        assert!(cache.assign(3, 8));
        assert_eq!(cache.latest_epoch(), Some(3));
        assert_eq!(pairs(&cache), vec![(2, 6), (3, 8)]);
    }

    #[test]
    fn assign_same_epoch_keeps_first_offset() {
        let mut cache = cache_of(&[(2, 6)]);
        assert!(!cache.assign(2, 10));
        assert!(!cache.assign(2, 6));
        assert_eq!(pairs(&cache), vec![(2, 6)]);
    }

    #[test]
    fn assign_same_epoch_earlier_offset_truncates() {
        // Kafka: shouldTruncateIfMatchingEpochButEarlierStartingOffset.
        let mut cache = cache_of(&[(5, 11), (6, 12), (7, 13)]);
        assert!(cache.assign(7, 12));
        assert_eq!(pairs(&cache), vec![(5, 11), (7, 12)]);
        assert_eq!(cache.end_offset_for(5, 0), (5, 12));
        assert_eq!(cache.end_offset_for(6, 0), (5, 12));
    }

    #[test]
    fn assign_lower_epoch_truncates_later_epochs() {
        // Kafka: shouldEnforceMonotonicallyIncreasingEpochs.
        let mut cache = cache_of(&[(1, 5), (2, 6)]);
        assert!(cache.assign(1, 7));
        assert_eq!(cache.latest_epoch(), Some(1));
        assert_eq!(pairs(&cache), vec![(1, 7)]);
        assert_eq!(cache.end_offset_for(1, 8), (1, 8));
        assert_eq!(cache.end_offset_for(2, 8), (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET));
    }

    #[test]
    fn assign_higher_epoch_lower_offset_removes_conflicts() {
        // Kafka: shouldEnforceOffsetsIncreaseMonotonically.
        let mut cache = cache_of(&[(2, 6)]);
        assert!(cache.assign(3, 5));
        assert_eq!(pairs(&cache), vec![(3, 5)]);
        // Same start offset as the latest: the older epoch wrote nothing and is replaced.
        let mut cache = cache_of(&[(0, 0)]);
        assert!(cache.assign(1, 0));
        assert_eq!(pairs(&cache), vec![(1, 0)]);
        assert_eq!(cache.end_offset_for(1, 0), (1, 0));
    }

    #[test]
    fn assign_rejects_negative_values() {
        let mut cache = cache_of(&[(1, 5)]);
        assert!(!cache.assign(-1, 10));
        assert!(!cache.assign(2, -1));
        assert_eq!(pairs(&cache), vec![(1, 5)]);
    }

    #[test]
    fn epoch_for_offset() {
        let cache = cache_of(&[(2, 6), (3, 8), (5, 11)]);
        assert_eq!(cache.epoch_for_offset(0), None);
        assert_eq!(cache.epoch_for_offset(5), None);
        assert_eq!(cache.epoch_for_offset(6), Some(2));
        assert_eq!(cache.epoch_for_offset(7), Some(2));
        assert_eq!(cache.epoch_for_offset(8), Some(3));
        assert_eq!(cache.epoch_for_offset(10), Some(3));
        assert_eq!(cache.epoch_for_offset(11), Some(5));
        assert_eq!(cache.epoch_for_offset(i64::MAX), Some(5));
        assert_eq!(LeaderEpochCache::new().epoch_for_offset(3), None);
    }

    #[test]
    fn end_offset_for_follows_kafka() {
        let empty = LeaderEpochCache::new();
        assert_eq!(empty.end_offset_for(0, 0), (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET));
        assert_eq!(empty.end_offset_for(UNDEFINED_EPOCH, 73), (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET));

        let cache = cache_of(&[(5, 11), (6, 12), (8, 20)]);
        // Undefined epoch requested.
        assert_eq!(cache.end_offset_for(UNDEFINED_EPOCH, 30), (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET));
        // Latest epoch → log end offset.
        assert_eq!(cache.end_offset_for(8, 30), (8, 30));
        // Before the first epoch → requested epoch with the first start offset.
        assert_eq!(cache.end_offset_for(4, 30), (4, 11));
        assert_eq!(cache.end_offset_for(0, 30), (0, 11));
        // Exact earlier epochs.
        assert_eq!(cache.end_offset_for(5, 30), (5, 12));
        assert_eq!(cache.end_offset_for(6, 30), (6, 20));
        // Gap between epochs → the floor epoch, ending where the next begins.
        assert_eq!(cache.end_offset_for(7, 30), (6, 20));
        // Above the latest.
        assert_eq!(cache.end_offset_for(9, 30), (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET));
        assert_eq!(cache.end_offset_for(i32::MAX, 30), (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET));
        // Other negative epochs are just below the first.
        assert_eq!(cache.end_offset_for(-2, 30), (-2, 11));
    }

    #[test]
    fn truncate_from_end() {
        let base = cache_of(&[(2, 6), (3, 8), (4, 11)]);
        let mut at = base.clone();
        at.truncate_from_end(8);
        assert_eq!(pairs(&at), vec![(2, 6)]);
        let mut inside = base.clone();
        inside.truncate_from_end(9);
        assert_eq!(pairs(&inside), vec![(2, 6), (3, 8)]);
        let mut after = base.clone();
        after.truncate_from_end(12);
        assert_eq!(after, base);
        let mut all = base.clone();
        all.truncate_from_end(0);
        assert!(all.is_empty());
        let mut negative = base.clone();
        negative.truncate_from_end(UNDEFINED_EPOCH_OFFSET);
        assert_eq!(negative, base);
        LeaderEpochCache::new().truncate_from_end(7);
    }

    #[test]
    fn truncate_from_start() {
        let base = cache_of(&[(2, 6), (3, 8), (4, 11)]);
        // Kafka: shouldNotClearAnythingIfOffsetToFirstOffset.
        let mut first = base.clone();
        first.truncate_from_start(6);
        assert_eq!(first, base);
        let mut before = base.clone();
        before.truncate_from_start(3);
        assert_eq!(before, base);
        // Kafka: shouldUpdateOffsetBetweenEpochBoundariesOnClearEarliest.
        let mut between = base.clone();
        between.truncate_from_start(9);
        assert_eq!(pairs(&between), vec![(3, 9), (4, 11)]);
        // Kafka: shouldRetainLatestEpochOnClearAllEarliest.
        let mut on_last = base.clone();
        on_last.truncate_from_start(11);
        assert_eq!(pairs(&on_last), vec![(4, 11)]);
        // Kafka: shouldRetainLatestEpochOnClearAllEarliestAndUpdateItsOffset.
        let mut beyond = base;
        beyond.truncate_from_start(15);
        assert_eq!(pairs(&beyond), vec![(4, 15)]);
        // Kafka: shouldUpdateOffsetBetweenEpochBoundariesOnClearEarliest2.
        let mut zero = cache_of(&[(0, 0), (1, 7), (2, 10)]);
        zero.truncate_from_start(5);
        assert_eq!(pairs(&zero), vec![(0, 5), (1, 7), (2, 10)]);
        LeaderEpochCache::new().truncate_from_start(7);
    }

    #[test]
    fn checkpoint_text_format() {
        let cache = cache_of(&[(0, 0), (3, 120), (7, 4000)]);
        assert_eq!(cache.encode(), "0\n3\n0 0\n3 120\n7 4000\n");
        assert_eq!(LeaderEpochCache::decode(&cache.encode()).unwrap(), cache);
        assert_eq!(LeaderEpochCache::new().encode(), "0\n0\n");
        assert!(LeaderEpochCache::decode("0\n0\n").unwrap().is_empty());
    }

    #[test]
    fn checkpoint_decode_accepts_what_kafka_accepts() {
        // An empty file (Kafka creates the file empty) and a version line alone.
        assert!(LeaderEpochCache::decode("").unwrap().is_empty());
        assert!(LeaderEpochCache::decode("0\n").unwrap().is_empty());
        assert!(LeaderEpochCache::decode("0").unwrap().is_empty());
        // CRLF, missing final newline, runs of whitespace between fields.
        let expected = cache_of(&[(1, 5), (2, 9)]);
        assert_eq!(LeaderEpochCache::decode("0\r\n2\r\n1 5\r\n2 9\r\n").unwrap(), expected);
        assert_eq!(LeaderEpochCache::decode("0\n2\n1 5\n2 9").unwrap(), expected);
        assert_eq!(LeaderEpochCache::decode("0\n2\n1\t 5\n2  9\n").unwrap(), expected);
    }

    #[test]
    fn checkpoint_decode_rejects_bad_text() {
        let cases = [
            ("1\n0\n", "version"),
            ("x\n0\n", "version not a number"),
            ("0\nx\n", "count not a number"),
            ("0\n2\n1 5\n", "too few entries"),
            ("0\n1\n1 5\n2 9\n", "too many entries"),
            ("0\n-1\n", "negative count"),
            ("0\n1\n1\n", "one field"),
            ("0\n1\n1 5 6\n", "three fields"),
            ("0\n1\n1 x\n", "offset not a number"),
            ("0\n1\n99999999999 5\n", "epoch overflows an int"),
            ("0\n2\n1 5\n\n", "blank line"),
            ("0\n2\n2 5\n1 9\n", "epochs decrease"),
            ("0\n2\n1 5\n1 9\n", "epochs repeat"),
            ("0\n2\n1 9\n2 5\n", "offsets decrease"),
            ("0\n2\n1 5\n2 5\n", "offsets repeat"),
            ("0\n1\n-1 5\n", "negative epoch"),
            ("0\n1\n1 -5\n", "negative offset"),
            ("0\n99999999999\n", "count too large"),
            ("\n", "empty version line"),
        ];
        for (text, what) in cases {
            assert!(LeaderEpochCache::decode(text).is_err(), "{what}: {text:?}");
        }
        assert_eq!(LeaderEpochCache::decode("3\n0\n"), Err(CheckpointError::UnsupportedVersion { found: 3 }));
        assert_eq!(
            LeaderEpochCache::decode("0\n2\n1 5\n"),
            Err(CheckpointError::CountMismatch { expected: 2, found: 1 })
        );
        let long = format!("0\n1\n{}\n", "9".repeat(10_000));
        match LeaderEpochCache::decode(&long) {
            Err(CheckpointError::Malformed { line_number: 3, line }) => assert!(line.len() <= 128),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn offset_checkpoint() {
        assert_eq!(encode_offset_checkpoint(0), "0\n0\n");
        assert_eq!(encode_offset_checkpoint(1234), "0\n1234\n");
        for value in [0, 1, 1234, i64::MAX] {
            assert_eq!(decode_offset_checkpoint(&encode_offset_checkpoint(value)), Ok(value));
        }
        assert_eq!(decode_offset_checkpoint("0\r\n77"), Ok(77));
        for bad in ["", "0\n", "0", "1\n5\n", "0\nx\n", "0\n5\n6\n", "0\n5\n\n", "0\n-5\n", "0\n 5\n", "\n5\n"] {
            assert!(decode_offset_checkpoint(bad).is_err(), "{bad:?}");
        }
    }

    /// Naive model of Kafka's TreeMap-based cache, written independently of the Vec code.
    #[derive(Default)]
    struct Model(std::collections::BTreeMap<i32, i64>);

    impl Model {
        fn assign(&mut self, epoch: i32, start_offset: i64) {
            if epoch < 0 || start_offset < 0 {
                return;
            }
            if let Some((&latest_epoch, &latest_start)) = self.0.iter().next_back() {
                if epoch == latest_epoch && start_offset >= latest_start {
                    return;
                }
            }
            while let Some((&e, &s)) = self.0.iter().next_back() {
                if e >= epoch || s >= start_offset {
                    self.0.remove(&e);
                } else {
                    break;
                }
            }
            self.0.insert(epoch, start_offset);
        }

        fn end_offset_for(&self, requested: i32, leo: i64) -> (i32, i64) {
            if requested == UNDEFINED_EPOCH {
                return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
            }
            if self.0.keys().next_back() == Some(&requested) {
                return (requested, leo);
            }
            let higher = self.0.range(requested.saturating_add(1)..).next();
            let floor = self.0.range(..=requested).next_back();
            match (higher, floor) {
                (None, _) => (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET),
                (Some((_, &hs)), None) => (requested, hs),
                (Some((_, &hs)), Some((&fe, _))) => (fe, hs),
            }
        }
    }

    proptest! {
        #[test]
        fn prop_matches_model_and_round_trips(
            ops in prop::collection::vec((0u8..4, -2i32..12, -2i64..60), 0..60),
            queries in prop::collection::vec((-2i32..14, -2i64..70), 1..20),
        ) {
            let mut cache = LeaderEpochCache::new();
            let mut model = Model::default();
            for (op, epoch, offset) in ops {
                match op {
                    0 | 1 => {
                        cache.assign(epoch, offset);
                        model.assign(epoch, offset);
                    }
                    2 => {
                        cache.truncate_from_end(offset);
                        if offset >= 0 {
                            model.0.retain(|_, s| *s < offset);
                        }
                    }
                    _ => {
                        cache.truncate_from_start(offset);
                        let removed: Vec<(i32, i64)> =
                            model.0.iter().filter(|(_, s)| **s <= offset).map(|(e, s)| (*e, *s)).collect();
                        if let Some(&(last_epoch, _)) = removed.last() {
                            for (e, _) in &removed {
                                model.0.remove(e);
                            }
                            model.0.insert(last_epoch, offset);
                        }
                    }
                }
                let model_pairs: Vec<(i32, i64)> = model.0.iter().map(|(e, s)| (*e, *s)).collect();
                prop_assert_eq!(pairs(&cache), model_pairs);
            }
            for (epoch, offset) in queries {
                prop_assert_eq!(cache.end_offset_for(epoch, 1000), model.end_offset_for(epoch, 1000));
                let expected = model.0.iter().filter(|(_, s)| **s <= offset).map(|(e, _)| *e).next_back();
                prop_assert_eq!(cache.epoch_for_offset(offset), expected);
            }
            prop_assert_eq!(LeaderEpochCache::decode(&cache.encode()), Ok(cache));
        }

        #[test]
        fn prop_decode_never_panics(text in "[0-9 \\-\\r\\nx]{0,64}") {
            if let Ok(cache) = LeaderEpochCache::decode(&text) {
                prop_assert_eq!(LeaderEpochCache::decode(&cache.encode()), Ok(cache));
            }
            let _ = decode_offset_checkpoint(&text);
        }

        #[test]
        fn prop_decode_arbitrary_unicode_never_panics(text in any::<String>()) {
            let _ = LeaderEpochCache::decode(&text);
            let _ = decode_offset_checkpoint(&text);
        }
    }
}
