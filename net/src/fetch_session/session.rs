//! One incremental fetch session (KIP-227): the partitions a fetcher follows, in the order they
//! are read, with what the fetcher last asked of each (its request parameters) and what it was
//! last told (high watermark, last stable offset, log start offset), and the epoch the next
//! request must carry.
//!
//! Owns: applying an incremental request to the partition set ([`FetchSession::update`]) and
//! deciding which partitions an incremental response carries ([`FetchSession::respond`]): those
//! with records, a changed high watermark / last stable offset / log start offset, an error, a
//! diverging epoch or a preferred read replica — Kafka's rules (`CachedPartition`), plus the
//! last stable offset (read_committed consumers track it). Partitions that returned records move
//! to the end of the order, so a response budget (`max_bytes`) cannot starve the later ones:
//! incremental requests do not re-list partitions, so the broker rotates them, as Kafka does.
//!
//! Must never: do I/O, read a clock (time is an argument) or know about the wire format.

use std::collections::HashMap;
use std::rc::Rc;

use uuid::Uuid;

/// How a fetch names a topic: by id (Fetch v13+) or by name (v12 and older). A session uses one
/// or the other for its whole life.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TopicKey {
    Id(Uuid),
    /// Shared: a session's partitions of one topic hold one copy.
    Name(Rc<str>),
}

/// One partition of a fetch, as the fetcher names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PartitionKey {
    pub topic: TopicKey,
    pub partition: i32,
}

/// What a fetcher asks of one partition (the request fields a session remembers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionRequest {
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
    pub current_leader_epoch: i32,
    /// The epoch of the last batch the fetcher has (KIP-320; -1: none).
    pub last_fetched_epoch: i32,
    /// The fetcher's log start offset (followers; -1 from consumers).
    pub log_start_offset: i64,
}

/// What reading one partition produced, as far as deciding whether to answer it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionOutcome {
    /// Bytes of records in the response for it (after the response budget).
    pub records_bytes: usize,
    pub error: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// It is answered with a diverging epoch (KIP-320) or a preferred read replica (KIP-392).
    pub redirect: bool,
}

/// What the fetcher was last told about a partition. -1 everywhere: nothing yet (a partition
/// just added is always answered).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Told {
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
}

const TOLD_NOTHING: Told = Told { high_watermark: -1, last_stable_offset: -1, log_start_offset: -1 };

#[derive(Clone, Debug)]
struct CachedPartition {
    key: PartitionKey,
    request: PartitionRequest,
    told: Told,
}

/// The epoch after `epoch` (Kafka's `FetchMetadata.nextEpoch`): wraps to 1, never to 0 (the
/// "create a session" epoch); a negative epoch stays final (-1).
pub fn next_epoch(epoch: i32) -> i32 {
    if epoch < 0 {
        -1
    } else if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// A response was computed for a session state that is gone.
#[derive(Debug, PartialEq, Eq)]
pub struct SessionMovedOn;

/// An incremental fetch session.
#[derive(Debug)]
pub struct FetchSession {
    pub id: i32,
    /// Created by a follower (a replica id ≥ 0): only another follower's session may evict it
    /// while it is young.
    pub privileged: bool,
    /// Names topics by id (created by Fetch v13+); requests of the other kind are refused.
    pub uses_topic_ids: bool,
    pub created_ms: u64,
    pub last_used_ms: u64,
    /// The epoch the next incremental request must carry.
    pub epoch: i32,
    /// The partitions, in the order they were added (rebuilt when some are forgotten).
    partitions: Vec<CachedPartition>,
    /// Read order: indices into `partitions`.
    order: Vec<usize>,
    index: HashMap<PartitionKey, usize>,
    /// Changes with every change to the partitions or their order, so a response computed for
    /// an older state is refused.
    generation: u64,
}

impl FetchSession {
    /// A session following `partitions` (in that order; a repeated key keeps its last request),
    /// told `outcomes` (one per partition) by the full fetch that created it.
    pub fn new(
        id: i32,
        privileged: bool,
        uses_topic_ids: bool,
        now_ms: u64,
        partitions: &[(PartitionKey, PartitionRequest)],
        outcomes: &[PartitionOutcome],
    ) -> FetchSession {
        assert_eq!(partitions.len(), outcomes.len(), "one outcome per partition");
        let mut session = FetchSession {
            id,
            privileged,
            uses_topic_ids,
            created_ms: now_ms,
            last_used_ms: now_ms,
            epoch: next_epoch(0),
            partitions: Vec::with_capacity(partitions.len()),
            order: Vec::with_capacity(partitions.len()),
            index: HashMap::with_capacity(partitions.len()),
            generation: 0,
        };
        for ((key, request), outcome) in partitions.iter().zip(outcomes) {
            let told = told_after(TOLD_NOTHING, outcome);
            match session.index.get(key) {
                Some(&i) => session.partitions[i] = CachedPartition { key: key.clone(), request: *request, told },
                None => session.push(CachedPartition { key: key.clone(), request: *request, told }),
            }
        }
        session
    }

    pub fn len(&self) -> usize {
        self.partitions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    /// Applies an incremental request: each listed partition is added (answered next whatever
    /// its state) or has its request parameters replaced; then the forgotten ones are removed
    /// (Kafka's order: a partition both listed and forgotten is gone).
    pub fn update(&mut self, listed: &[(PartitionKey, PartitionRequest)], forgotten: &[PartitionKey]) {
        self.generation += 1;
        for (key, request) in listed {
            match self.index.get(key) {
                Some(&i) => self.partitions[i].request = *request,
                None => self.push(CachedPartition { key: key.clone(), request: *request, told: TOLD_NOTHING }),
            }
        }
        if forgotten.iter().any(|k| self.index.contains_key(k)) {
            let forgotten: std::collections::HashSet<&PartitionKey> = forgotten.iter().collect();
            let kept: Vec<CachedPartition> = self
                .order
                .iter()
                .map(|&i| &self.partitions[i])
                .filter(|p| !forgotten.contains(&p.key))
                .cloned()
                .collect();
            self.partitions.clear();
            self.order.clear();
            self.index.clear();
            for p in kept {
                self.push(p);
            }
        }
    }

    fn push(&mut self, p: CachedPartition) {
        let i = self.partitions.len();
        self.index.insert(p.key.clone(), i);
        self.order.push(i);
        self.partitions.push(p);
    }

    /// The partitions to read for an incremental fetch, in session order.
    pub fn partitions(&self) -> Vec<(PartitionKey, PartitionRequest)> {
        self.order.iter().map(|&i| &self.partitions[i]).map(|p| (p.key.clone(), p.request)).collect()
    }

    /// The state [`FetchSession::respond`] expects (see there).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Decides which partitions of an incremental response to send, given `outcomes` in the
    /// order of [`FetchSession::partitions`] when the request began (at `expected_epoch` and
    /// `expected_generation`), and records what they are told. [`SessionMovedOn`] if another
    /// request was applied meanwhile: the caller answers INVALID_FETCH_SESSION_EPOCH.
    pub fn respond(
        &mut self,
        expected_epoch: i32,
        expected_generation: u64,
        outcomes: &[PartitionOutcome],
    ) -> Result<Vec<bool>, SessionMovedOn> {
        if self.epoch != expected_epoch || self.generation != expected_generation {
            return Err(SessionMovedOn);
        }
        assert_eq!(self.order.len(), outcomes.len(), "one outcome per partition read");
        let mut include = Vec::with_capacity(outcomes.len());
        for (&i, outcome) in self.order.iter().zip(outcomes) {
            let p = &mut self.partitions[i];
            let told = told_after(p.told, outcome);
            let must_respond = outcome.records_bytes > 0 || outcome.error != 0 || outcome.redirect || told != p.told;
            p.told = told;
            include.push(must_respond);
        }
        // Fairness: partitions that returned records go to the back of the order.
        if outcomes.iter().any(|o| o.records_bytes > 0) {
            let (mut quiet, served): (Vec<_>, Vec<_>) =
                self.order.iter().zip(outcomes).partition(|(_, o)| o.records_bytes == 0);
            quiet.extend(served);
            self.order = quiet.into_iter().map(|(&i, _)| i).collect();
            self.generation += 1;
        }
        Ok(include)
    }
}

/// What the fetcher knows after being answered `outcome`. An error forgets the high watermark,
/// so the partition is answered again once the error clears (Kafka's rule).
fn told_after(before: Told, outcome: &PartitionOutcome) -> Told {
    if outcome.error != 0 {
        return Told { high_watermark: -1, ..before };
    }
    Told {
        high_watermark: outcome.high_watermark,
        last_stable_offset: outcome.last_stable_offset,
        log_start_offset: outcome.log_start_offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(topic: &str, partition: i32) -> PartitionKey {
        PartitionKey { topic: TopicKey::Name(Rc::from(topic)), partition }
    }

    fn request(fetch_offset: i64) -> PartitionRequest {
        PartitionRequest {
            fetch_offset,
            partition_max_bytes: 1 << 20,
            current_leader_epoch: -1,
            last_fetched_epoch: -1,
            log_start_offset: -1,
        }
    }

    fn quiet(high_watermark: i64) -> PartitionOutcome {
        PartitionOutcome {
            records_bytes: 0,
            error: 0,
            high_watermark,
            last_stable_offset: high_watermark,
            log_start_offset: 0,
            redirect: false,
        }
    }

    fn session(n: i32) -> FetchSession {
        let partitions: Vec<_> = (0..n).map(|p| (key("t", p), request(0))).collect();
        let outcomes: Vec<_> = (0..n).map(|_| quiet(10)).collect();
        FetchSession::new(7, false, false, 1_000, &partitions, &outcomes)
    }

    fn keys(s: &FetchSession) -> Vec<PartitionKey> {
        s.partitions().into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn epochs_start_at_one_wrap_to_one_and_stay_final() {
        assert_eq!(session(1).epoch, 1);
        assert_eq!(next_epoch(1), 2);
        assert_eq!(next_epoch(i32::MAX), 1);
        assert_eq!(next_epoch(-1), -1);
    }

    #[test]
    fn unchanged_partitions_are_left_out_and_changes_are_answered_once() {
        let mut s = session(3);
        let include = s.respond(1, s.generation(), &[quiet(10), quiet(12), quiet(10)]).unwrap();
        assert_eq!(include, vec![false, true, false], "only the moved high watermark");
        let include = s.respond(1, s.generation(), &[quiet(10), quiet(12), quiet(10)]).unwrap();
        assert_eq!(include, vec![false, false, false], "already told");
    }

    #[test]
    fn records_errors_redirects_and_start_offsets_are_answered() {
        let mut s = session(4);
        let with_records = PartitionOutcome { records_bytes: 100, ..quiet(10) };
        let failed = PartitionOutcome { error: 6, ..quiet(-1) };
        let redirect = PartitionOutcome { redirect: true, ..quiet(10) };
        let truncated = PartitionOutcome { log_start_offset: 5, ..quiet(10) };
        let include = s.respond(1, s.generation(), &[with_records, failed, redirect, truncated]).unwrap();
        assert_eq!(include, vec![true, true, true, true]);
        // The error cleared: answered again although its high watermark is what it was.
        // (Partition 0 returned records: it is now last.)
        assert_eq!(keys(&s), vec![key("t", 1), key("t", 2), key("t", 3), key("t", 0)]);
        let include = s.respond(1, s.generation(), &[quiet(10), quiet(10), truncated, quiet(10)]).unwrap();
        let answered: Vec<_> = keys(&s).into_iter().zip(include).filter(|(_, i)| *i).map(|(k, _)| k).collect();
        assert_eq!(answered, vec![key("t", 1)]);
    }

    #[test]
    fn partitions_with_records_rotate_to_the_back() {
        let mut s = session(3);
        s.respond(1, s.generation(), &[PartitionOutcome { records_bytes: 1, ..quiet(10) }, quiet(10), quiet(10)])
            .unwrap();
        assert_eq!(keys(&s), vec![key("t", 1), key("t", 2), key("t", 0)]);
    }

    #[test]
    fn update_adds_replaces_and_forgets() {
        let mut s = session(2);
        s.update(&[(key("t", 1), request(5)), (key("u", 0), request(0))], &[key("t", 0), key("x", 9)]);
        let partitions = s.partitions();
        assert_eq!(partitions.len(), 2);
        assert_eq!(partitions[0], (key("t", 1), request(5)));
        assert_eq!(partitions[1].0, key("u", 0));
        // The added partition is answered even with nothing new.
        let include = s.respond(1, s.generation(), &[quiet(10), quiet(10)]).unwrap();
        assert_eq!(include, vec![false, true]);
        // Listed and forgotten in one request: gone.
        s.update(&[(key("v", 0), request(0))], &[key("v", 0)]);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn a_response_for_a_session_that_moved_on_is_refused() {
        let mut s = session(2);
        let generation = s.generation();
        assert!(s.respond(2, generation, &[quiet(10), quiet(10)]).is_err(), "wrong epoch");
        s.update(&[], &[key("t", 0)]);
        assert!(s.respond(1, generation, &[quiet(10), quiet(10)]).is_err(), "partitions changed");
    }

    #[test]
    fn a_repeated_partition_in_the_creating_request_is_one_entry() {
        let partitions = vec![(key("t", 0), request(0)), (key("t", 0), request(3))];
        let s = FetchSession::new(1, false, false, 0, &partitions, &[quiet(1), quiet(1)]);
        assert_eq!(s.partitions(), vec![(key("t", 0), request(3))]);
    }
}
