//! Which old segments a partition may delete, by Kafka's three rules (UnifiedLog's
//! `deleteRetentionMsBreachedSegments`, `deleteRetentionSizeBreachedSegments`,
//! `deleteLogStartOffsetBreachedSegments`).
//!
//! Owns: the decision only, as a pure function over segment summaries, so every boundary is
//! unit-tested without files. Must never: delete a segment holding offsets at or above the high
//! watermark, or an empty active segment (Kafka's `deletableSegments` guards).

/// What retention needs to know about one segment, oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    pub base_offset: i64,
    pub size_bytes: u64,
    /// Largest batch timestamp in the segment (-1 when it has none).
    pub max_timestamp_ms: i64,
}

/// Why segments were chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetentionReason {
    Time,
    Size,
    LogStartOffset,
}

/// The outcome: delete the first `count` segments (oldest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionDecision {
    pub count: usize,
    pub reason: Option<RetentionReason>,
    /// Every segment, the active one included, is deletable: the caller must roll a new active
    /// segment before deleting (Kafka does the same).
    pub needs_roll: bool,
}

/// Inputs besides the segments.
#[derive(Clone, Copy, Debug)]
pub struct RetentionInputs {
    pub now_ms: i64,
    /// `retention.ms`; negative = unlimited.
    pub retention_ms: i64,
    /// `retention.bytes`; negative = unlimited.
    pub retention_bytes: i64,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
}

/// Applies Kafka's rules in Kafka's order (time, then size, then log start offset) and returns
/// the first rule that deletes anything.
pub fn deletable_segments(segments: &[SegmentSummary], inputs: &RetentionInputs) -> RetentionDecision {
    let none = RetentionDecision { count: 0, reason: None, needs_roll: false };
    if segments.is_empty() {
        return none;
    }
    let by_time = if inputs.retention_ms >= 0 {
        count_while(segments, inputs, |s, _| inputs.now_ms.saturating_sub(s.max_timestamp_ms) > inputs.retention_ms)
    } else {
        0
    };
    if by_time > 0 {
        return decision(segments, by_time, RetentionReason::Time);
    }
    let total_bytes: u64 = segments.iter().map(|s| s.size_bytes).sum();
    if inputs.retention_bytes >= 0 && total_bytes >= inputs.retention_bytes as u64 {
        let mut excess = (total_bytes - inputs.retention_bytes as u64) as i128;
        let by_size = count_while(segments, inputs, |s, _| {
            if excess - s.size_bytes as i128 >= 0 {
                excess -= s.size_bytes as i128;
                true
            } else {
                false
            }
        });
        if by_size > 0 {
            return decision(segments, by_size, RetentionReason::Size);
        }
    }
    let by_start =
        count_while(segments, inputs, |_, next| next.is_some_and(|n| n.base_offset <= inputs.log_start_offset));
    if by_start > 0 {
        return decision(segments, by_start, RetentionReason::LogStartOffset);
    }
    none
}

fn decision(segments: &[SegmentSummary], count: usize, reason: RetentionReason) -> RetentionDecision {
    RetentionDecision { count, reason: Some(reason), needs_roll: count == segments.len() }
}

/// Kafka's `deletableSegments`: oldest first, while the predicate holds, the segment lies
/// wholly below the high watermark, and it is not an empty last segment.
fn count_while(
    segments: &[SegmentSummary],
    inputs: &RetentionInputs,
    mut predicate: impl FnMut(&SegmentSummary, Option<&SegmentSummary>) -> bool,
) -> usize {
    let mut count = 0;
    for (i, segment) in segments.iter().enumerate() {
        let next = segments.get(i + 1);
        let upper_bound_offset = next.map_or(inputs.log_end_offset, |n| n.base_offset);
        let is_last_and_empty = next.is_none() && segment.size_bytes == 0;
        if inputs.high_watermark >= upper_bound_offset && !is_last_and_empty && predicate(segment, next) {
            count += 1;
        } else {
            break;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: i64, size: u64, ts: i64) -> SegmentSummary {
        SegmentSummary { base_offset: base, size_bytes: size, max_timestamp_ms: ts }
    }

    fn inputs() -> RetentionInputs {
        RetentionInputs {
            now_ms: 10_000,
            retention_ms: -1,
            retention_bytes: -1,
            log_start_offset: 0,
            high_watermark: 300,
            log_end_offset: 300,
        }
    }

    #[test]
    fn nothing_when_unlimited() {
        let segs = [seg(0, 100, 1), seg(100, 100, 2), seg(200, 100, 3)];
        assert_eq!(deletable_segments(&segs, &inputs()).count, 0);
        assert_eq!(deletable_segments(&[], &inputs()).count, 0);
    }

    #[test]
    fn time_boundary_is_strictly_greater() {
        let segs = [seg(0, 100, 1_000), seg(100, 100, 2_000), seg(200, 100, 9_000)];
        let mut i = inputs();
        i.retention_ms = 8_000; // 10_000 - 2_000 = 8_000 is not > 8_000
        let d = deletable_segments(&segs, &i);
        assert_eq!((d.count, d.reason, d.needs_roll), (1, Some(RetentionReason::Time), false));
        i.retention_ms = 0;
        let d = deletable_segments(&segs, &i);
        assert_eq!((d.count, d.needs_roll), (3, true), "active segment too, after a roll");
    }

    #[test]
    fn never_past_high_watermark() {
        let segs = [seg(0, 100, 1), seg(100, 100, 2), seg(200, 100, 3)];
        let mut i = inputs();
        i.retention_ms = 0;
        i.high_watermark = 150; // second segment holds offsets >= HW
        assert_eq!(deletable_segments(&segs, &i).count, 1);
        i.high_watermark = 99;
        assert_eq!(deletable_segments(&segs, &i).count, 0);
    }

    #[test]
    fn empty_active_segment_is_kept() {
        let segs = [seg(0, 100, 1), seg(100, 0, -1)];
        let mut i = inputs();
        i.retention_ms = 0;
        i.high_watermark = 100;
        i.log_end_offset = 100;
        let d = deletable_segments(&segs, &i);
        assert_eq!((d.count, d.needs_roll), (1, false));
    }

    #[test]
    fn size_deletes_only_whole_excess() {
        let segs = [seg(0, 100, 1), seg(100, 100, 2), seg(200, 100, 3)];
        let mut i = inputs();
        i.retention_bytes = 250; // excess 50: less than one segment
        assert_eq!(deletable_segments(&segs, &i).count, 0);
        i.retention_bytes = 200; // excess exactly one segment
        let d = deletable_segments(&segs, &i);
        assert_eq!((d.count, d.reason), (1, Some(RetentionReason::Size)));
        i.retention_bytes = 0;
        assert_eq!(deletable_segments(&segs, &i).count, 3);
    }

    #[test]
    fn log_start_offset_deletes_segments_wholly_below() {
        let segs = [seg(0, 100, 1), seg(100, 100, 2), seg(200, 100, 3)];
        let mut i = inputs();
        i.log_start_offset = 99;
        assert_eq!(deletable_segments(&segs, &i).count, 0);
        i.log_start_offset = 100;
        let d = deletable_segments(&segs, &i);
        assert_eq!((d.count, d.reason), (1, Some(RetentionReason::LogStartOffset)));
        i.log_start_offset = 250;
        assert_eq!(deletable_segments(&segs, &i).count, 2, "never the last segment by start offset");
    }
}
