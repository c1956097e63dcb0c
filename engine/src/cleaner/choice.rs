//! Which part of a compacted log the cleaner may clean, and which log it cleans next (Kafka's
//! `LogCleanerManager.cleanableOffsets` and `grabFilthiestCompactedLog`).
//!
//! Owns: the dirty section `[first dirty offset, first uncleanable offset)` — never the active
//! segment, nothing at or past the last stable offset, no segment younger than
//! `min.compaction.lag.ms` — its dirty ratio, the `max.compaction.lag.ms` override, and the
//! choice of the dirtiest log. Must never: do I/O or read a clock (time comes in), or return a
//! range reaching into the active segment.

/// What the choice needs to know about one segment, oldest first; the last one is active.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentExtent {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size_bytes: u64,
    /// Largest batch timestamp (-1 when none).
    pub max_timestamp_ms: i64,
    /// Timestamp of the first batch (-1 when empty).
    pub first_timestamp_ms: i64,
}

/// The log's state and settings besides its segments.
#[derive(Clone, Copy, Debug)]
pub struct LogInputs {
    pub now_ms: i64,
    pub log_start_offset: i64,
    /// The cleaner's checkpoint: where the last cleaning stopped (`None`: never cleaned).
    pub checkpointed_dirty_offset: Option<i64>,
    /// Offsets from here on may still be aborted or are not replicated (Kafka's first
    /// unstable offset): never cleaned.
    pub last_stable_offset: i64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
}

/// The cleanable part of one log.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cleanable {
    pub first_dirty_offset: i64,
    pub first_uncleanable_offset: i64,
    /// Bytes of segments below the first dirty offset (cleaned before).
    pub clean_bytes: u64,
    /// Bytes of segments in `[first dirty, first uncleanable)`.
    pub cleanable_bytes: u64,
    /// `max.compaction.lag.ms` passed for the oldest dirty record: clean whatever the ratio.
    pub must_clean: bool,
}

impl Cleanable {
    pub fn dirty_ratio(&self) -> f64 {
        let total = self.clean_bytes + self.cleanable_bytes;
        if total == 0 {
            0.0
        } else {
            self.cleanable_bytes as f64 / total as f64
        }
    }

    /// Worth cleaning now, by Kafka's rule.
    pub fn is_due(&self, min_cleanable_dirty_ratio: f64) -> bool {
        self.cleanable_bytes > 0 && (self.must_clean || self.dirty_ratio() >= min_cleanable_dirty_ratio)
    }
}

/// The cleanable section of a log. `segments` oldest first, the last one active.
pub fn cleanable(segments: &[SegmentExtent], inputs: &LogInputs) -> Cleanable {
    let Some(active) = segments.last() else {
        return Cleanable {
            first_dirty_offset: inputs.log_start_offset,
            first_uncleanable_offset: inputs.log_start_offset,
            clean_bytes: 0,
            cleanable_bytes: 0,
            must_clean: false,
        };
    };
    // A checkpoint outside the log (truncated, or records deleted below it) starts over.
    let first_dirty_offset = match inputs.checkpointed_dirty_offset {
        Some(o) if o >= inputs.log_start_offset && o <= active.base_offset => o,
        _ => inputs.log_start_offset,
    };
    let mut first_uncleanable = active.base_offset.min(inputs.last_stable_offset.max(first_dirty_offset));
    if inputs.min_compaction_lag_ms > 0 {
        let newest_allowed_ms = inputs.now_ms.saturating_sub(inputs.min_compaction_lag_ms);
        if let Some(young) = segments
            .iter()
            .filter(|s| s.next_offset > first_dirty_offset)
            .find(|s| s.max_timestamp_ms > newest_allowed_ms)
        {
            first_uncleanable = first_uncleanable.min(young.base_offset.max(first_dirty_offset));
        }
    }
    let sealed = &segments[..segments.len() - 1];
    // A segment counts as dirty from the one holding the first dirty offset; it is cleanable
    // only whole (the cleaner rewrites whole segments).
    let clean_bytes: u64 = sealed.iter().filter(|s| s.next_offset <= first_dirty_offset).map(|s| s.size_bytes).sum();
    let cleanable_bytes: u64 = sealed
        .iter()
        .filter(|s| s.next_offset > first_dirty_offset && s.next_offset <= first_uncleanable)
        .map(|s| s.size_bytes)
        .sum();
    let oldest_dirty_ms = sealed
        .iter()
        .find(|s| s.next_offset > first_dirty_offset && s.first_timestamp_ms >= 0)
        .map(|s| s.first_timestamp_ms);
    let must_clean = inputs.max_compaction_lag_ms < i64::MAX
        && oldest_dirty_ms.is_some_and(|t| inputs.now_ms.saturating_sub(t) > inputs.max_compaction_lag_ms);
    assert!(first_uncleanable <= active.base_offset, "the active segment is never cleanable");
    Cleanable {
        first_dirty_offset,
        first_uncleanable_offset: first_uncleanable.max(first_dirty_offset),
        clean_bytes,
        cleanable_bytes,
        must_clean,
    }
}

/// The index of the log to clean next: the dirtiest of those due (`None`: nothing is).
pub fn dirtiest(logs: &[(Cleanable, f64)]) -> Option<usize> {
    logs.iter()
        .enumerate()
        .filter(|(_, (c, min_ratio))| c.is_due(*min_ratio))
        .max_by(|(_, (a, _)), (_, (b, _))| {
            (a.must_clean, a.dirty_ratio()).partial_cmp(&(b.must_clean, b.dirty_ratio())).expect("ratios are finite")
        })
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: i64, next: i64, size: u64, ts: i64) -> SegmentExtent {
        SegmentExtent {
            base_offset: base,
            next_offset: next,
            size_bytes: size,
            max_timestamp_ms: ts,
            first_timestamp_ms: ts,
        }
    }

    fn inputs() -> LogInputs {
        LogInputs {
            now_ms: 1_000_000,
            log_start_offset: 0,
            checkpointed_dirty_offset: None,
            last_stable_offset: i64::MAX,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
        }
    }

    /// Three sealed segments of 100 bytes and an active one.
    fn log() -> Vec<SegmentExtent> {
        vec![seg(0, 10, 100, 1000), seg(10, 20, 100, 2000), seg(20, 30, 100, 3000), seg(30, 35, 50, 4000)]
    }

    #[test]
    fn never_cleaned_everything_sealed_is_dirty_and_the_active_segment_never() {
        let c = cleanable(&log(), &inputs());
        assert_eq!((c.first_dirty_offset, c.first_uncleanable_offset), (0, 30));
        assert_eq!((c.clean_bytes, c.cleanable_bytes), (0, 300));
        assert_eq!(c.dirty_ratio(), 1.0);
        assert!(c.is_due(0.5));
    }

    #[test]
    fn the_checkpoint_splits_clean_from_dirty_and_a_bad_one_starts_over() {
        let c = cleanable(&log(), &LogInputs { checkpointed_dirty_offset: Some(20), ..inputs() });
        assert_eq!((c.first_dirty_offset, c.clean_bytes, c.cleanable_bytes), (20, 200, 100));
        assert!((c.dirty_ratio() - 1.0 / 3.0).abs() < 1e-9);
        assert!(!c.is_due(0.5) && c.is_due(0.3));
        for bad in [-5, 31, 1_000] {
            let c = cleanable(&log(), &LogInputs { checkpointed_dirty_offset: Some(bad), ..inputs() });
            assert_eq!(c.first_dirty_offset, 0, "checkpoint {bad}");
        }
        let c = cleanable(&log(), &LogInputs { log_start_offset: 10, checkpointed_dirty_offset: Some(5), ..inputs() });
        assert_eq!(c.first_dirty_offset, 10, "below the log start");
    }

    #[test]
    fn unstable_and_young_segments_are_not_cleanable() {
        let c = cleanable(&log(), &LogInputs { last_stable_offset: 15, ..inputs() });
        assert_eq!((c.first_uncleanable_offset, c.cleanable_bytes), (15, 100), "only the segment wholly below the LSO");
        // min.compaction.lag: segments with records newer than now - lag stay dirty but uncleanable.
        let c = cleanable(&log(), &LogInputs { min_compaction_lag_ms: 1_000_000 - 1500, ..inputs() });
        assert_eq!((c.first_uncleanable_offset, c.cleanable_bytes), (10, 100));
    }

    #[test]
    fn max_compaction_lag_forces_a_cleaning_below_the_ratio() {
        let base = LogInputs { checkpointed_dirty_offset: Some(20), ..inputs() };
        assert!(!cleanable(&log(), &base).is_due(0.9));
        let lagging = cleanable(&log(), &LogInputs { max_compaction_lag_ms: 1_000_000 - 3500, ..base });
        assert!(lagging.must_clean && lagging.is_due(0.9));
    }

    #[test]
    fn the_dirtiest_due_log_is_picked_and_a_forced_one_first() {
        let make = |clean, cleanable, must_clean| Cleanable {
            first_dirty_offset: 0,
            first_uncleanable_offset: 1,
            clean_bytes: clean,
            cleanable_bytes: cleanable,
            must_clean,
        };
        let logs = [(make(100, 100, false), 0.5), (make(10, 90, false), 0.5), (make(90, 10, false), 0.5)];
        assert_eq!(dirtiest(&logs), Some(1));
        let logs = [(make(100, 100, false), 0.5), (make(90, 10, true), 0.5)];
        assert_eq!(dirtiest(&logs), Some(1));
        assert_eq!(dirtiest(&[(make(100, 0, true), 0.0), (make(90, 10, false), 0.5)]), None);
    }
}
