//! Log divergence (KIP-320), both halves, as pure functions: the leader's answer to a
//! follower's fetch that names the epoch of its last fetched batch, and the offset a follower
//! truncates to when the leader says its log diverged (Kafka's
//! `Partition.validateFetchOffsetAndMaybeGetDivergingEpoch` and
//! `AbstractFetcherThread.getOffsetTruncationState`).
//!
//! Owns: the decisions only. Must never: do I/O, or send a follower below its log start.

/// Kafka's "no such epoch" / "no such offset".
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_OFFSET: i64 = -1;

/// An epoch and the offset it ends at (exclusive), as the leader's log has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEnd {
    pub epoch: i32,
    pub end_offset: i64,
}

/// Leader side: Kafka's `lastOffsetForLeaderEpoch` on a leader. A Kafka leader writes its
/// epoch's start (its log end) into its epoch cache when it becomes leader; sluice's cache
/// gains it then too, but in a task of its own (see `reconcile`), so an answer may come before
/// the entry (or the epoch's first batch) is there. `cache_answer` is the log's
/// `end_offset_for_epoch(requested_epoch)` (the cache alone), and this answers as if that
/// entry were there: the current epoch, or an epoch no cached one follows, ends at the log end.
pub fn leader_end_for_epoch(
    requested_epoch: i32,
    cache_answer: EpochEnd,
    latest_cached_epoch: Option<i32>,
    leader_epoch: i32,
    log_end_offset: i64,
) -> EpochEnd {
    if requested_epoch == UNDEFINED_EPOCH || requested_epoch > leader_epoch {
        return EpochEnd { epoch: UNDEFINED_EPOCH, end_offset: UNDEFINED_OFFSET };
    }
    if requested_epoch == leader_epoch {
        return EpochEnd { epoch: leader_epoch, end_offset: log_end_offset };
    }
    if cache_answer.epoch == UNDEFINED_EPOCH {
        // No cached epoch above the requested one: the next is the leader's own, at the end.
        let epoch = latest_cached_epoch.filter(|e| *e <= requested_epoch).unwrap_or(requested_epoch);
        return EpochEnd { epoch, end_offset: log_end_offset };
    }
    cache_answer
}

/// Leader side: a follower fetching at `fetch_offset` whose last fetched batch was in
/// `last_fetched_epoch`; `leader_end_for_epoch` is the leader's `end_offset_for_epoch` of it
/// (the largest epoch ≤ it the leader knows, and where that ends). The follower's log
/// diverged when that epoch is older than its own or ends before its fetch offset: the answer
/// is the epoch and end it must truncate towards. `None`: go on reading.
pub fn diverging_epoch(last_fetched_epoch: i32, fetch_offset: i64, leader_end_for_epoch: EpochEnd) -> Option<EpochEnd> {
    if last_fetched_epoch < 0 {
        return None; // the follower did not say (an empty log, or an old client)
    }
    let diverged = leader_end_for_epoch.end_offset < fetch_offset || leader_end_for_epoch.epoch < last_fetched_epoch;
    diverged.then_some(leader_end_for_epoch)
}

/// Follower side: where to truncate after the leader answered with `diverging`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truncation {
    pub offset: i64,
    /// False when the follower did not know the leader's epoch: it truncated to where its own
    /// older epoch ends, and the next fetch (naming that epoch) may truncate further.
    pub complete: bool,
}

/// `follower_end_for_epoch`: the follower's own `end_offset_for_epoch(diverging.epoch)`
/// (`None` when its epoch cache is empty); `log_end_offset` and `high_watermark` are its own.
/// Never above the follower's log end, never below `log_start_offset`.
pub fn truncation_offset(
    diverging: EpochEnd,
    follower_end_for_epoch: Option<EpochEnd>,
    log_start_offset: i64,
    log_end_offset: i64,
    high_watermark: i64,
) -> Truncation {
    let truncation = if diverging.end_offset == UNDEFINED_OFFSET {
        // The leader knows nothing of the epoch: keep what is committed.
        Truncation { offset: high_watermark, complete: true }
    } else if diverging.epoch == UNDEFINED_EPOCH {
        Truncation { offset: diverging.end_offset.min(log_end_offset), complete: true }
    } else {
        match follower_end_for_epoch {
            Some(own) if own.epoch != diverging.epoch && own.epoch != UNDEFINED_EPOCH => {
                Truncation { offset: own.end_offset.min(log_end_offset), complete: false }
            }
            Some(own) if own.epoch == diverging.epoch => {
                Truncation { offset: own.end_offset.min(diverging.end_offset).min(log_end_offset), complete: true }
            }
            _ => Truncation { offset: diverging.end_offset.min(log_end_offset), complete: true },
        }
    };
    Truncation { offset: truncation.offset.clamp(log_start_offset, log_end_offset.max(log_start_offset)), ..truncation }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: i32, end_offset: i64) -> EpochEnd {
        EpochEnd { epoch, end_offset }
    }

    #[test]
    fn the_leader_answers_with_the_diverging_epoch_only_when_the_logs_differ() {
        assert_eq!(diverging_epoch(-1, 50, at(-1, -1)), None, "no epoch named");
        assert_eq!(diverging_epoch(3, 50, at(3, 80)), None, "epoch 3 goes on past the fetch offset");
        assert_eq!(diverging_epoch(3, 80, at(3, 80)), None, "the fetch offset is its end: fine");
        assert_eq!(diverging_epoch(3, 90, at(3, 80)), Some(at(3, 80)), "the follower has more of epoch 3");
        assert_eq!(diverging_epoch(4, 90, at(3, 80)), Some(at(3, 80)), "the leader never had epoch 4");
        assert_eq!(diverging_epoch(4, 90, at(-1, -1)), Some(at(-1, -1)), "an unknown epoch");
    }

    #[test]
    fn a_leader_answers_as_if_its_epoch_started_at_its_log_end() {
        // Cache [0@0, 2@40], leader at epoch 5, log end 90.
        let latest = Some(2);
        assert_eq!(leader_end_for_epoch(5, at(-1, -1), latest, 5, 90), at(5, 90), "the current epoch");
        assert_eq!(leader_end_for_epoch(6, at(-1, -1), latest, 5, 90), at(-1, -1), "a future epoch");
        assert_eq!(leader_end_for_epoch(3, at(-1, -1), latest, 5, 90), at(2, 90), "epoch 2 runs to the end");
        assert_eq!(leader_end_for_epoch(2, at(2, 90), latest, 5, 90), at(2, 90));
        assert_eq!(leader_end_for_epoch(1, at(0, 40), latest, 5, 90), at(0, 40), "the cache knows");
        assert_eq!(leader_end_for_epoch(3, at(-1, -1), None, 5, 0), at(3, 0), "an empty log");
        assert_eq!(leader_end_for_epoch(-1, at(-1, -1), latest, 5, 90), at(-1, -1));
    }

    #[test]
    fn the_follower_truncates_like_kafka() {
        // Same epoch on both: the smaller end.
        assert_eq!(
            truncation_offset(at(3, 80), Some(at(3, 95)), 0, 100, 60),
            Truncation { offset: 80, complete: true }
        );
        // The follower does not know the leader's epoch 3 (it has 2 then 4): where its 2 ends.
        assert_eq!(
            truncation_offset(at(3, 80), Some(at(2, 70)), 0, 100, 60),
            Truncation { offset: 70, complete: false }
        );
        // The leader knows nothing: back to the high watermark.
        assert_eq!(
            truncation_offset(at(-1, -1), Some(at(2, 70)), 0, 100, 60),
            Truncation { offset: 60, complete: true }
        );
        // An empty epoch cache: the leader's end.
        assert_eq!(truncation_offset(at(3, 80), None, 0, 100, 0), Truncation { offset: 80, complete: true });
        // Never above its own end, never below its start.
        assert_eq!(truncation_offset(at(3, 500), Some(at(3, 600)), 0, 100, 0).offset, 100);
        assert_eq!(truncation_offset(at(3, 5), Some(at(3, 5)), 20, 100, 20).offset, 20);
    }

    proptest::proptest! {
        #[test]
        fn truncation_stays_within_the_log(epoch in -1i32..6, end in -1i64..200, own_epoch in -1i32..6, own_end in -1i64..200,
                                           start in 0i64..50, len in 0i64..150, hw_back in 0i64..150) {
            let log_end = start + len;
            let hw = (log_end - hw_back).max(start);
            let own = (own_epoch >= 0).then_some(at(own_epoch, own_end));
            let t = truncation_offset(at(epoch, end), own, start, log_end, hw);
            proptest::prop_assert!(t.offset >= start && t.offset <= log_end);
        }
    }
}
