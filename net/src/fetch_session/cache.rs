//! One shard's fetch session cache (Kafka's `FetchSessionCache` / `FetchManager.newContext`):
//! which kind of fetch a request is (sessionless, full, incremental, or a session error),
//! creating sessions within this shard's share of the broker's slots, and evicting by Kafka's
//! rules when full.
//!
//! Eviction (Kafka's `tryEvict`): a new session may take the slot of (1) the least recently used
//! session if it was unused for more than `min.incremental.fetch.session.eviction.ms`, else (2)
//! the least valuable evictable session — ordered by (privileged, partition count) — if the
//! new one is worth more: a session is evictable by anyone once it is older than the eviction
//! time, and a young consumer session is evictable by a follower's (privileged) one. Kafka keeps
//! these orders in trees updated on every use; this cache scans its sessions when it is full
//! and a session is to be created (at most its slot share, a few hundred), and computes the
//! ages at that moment rather than at each session's last use.
//!
//! Session ids encode the shard: shard `s` of `n` hands out ids in
//! `[s·⌊i32::MAX/n⌋ + 1, (s+1)·⌊i32::MAX/n⌋)`, random within (Kafka's sharded cache does the
//! same), so [`shard_of_session`] tells which shard a session lives on.
//!
//! Must never: do I/O or read a clock (time is an argument), or hold more sessions than its
//! share of slots.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::session::{next_epoch, FetchSession, PartitionKey, PartitionOutcome, PartitionRequest};
use crate::handlers::codes;

/// Kafka's `FetchMetadata` constants.
pub const INVALID_SESSION_ID: i32 = 0;
pub const INITIAL_EPOCH: i32 = 0;
pub const FINAL_EPOCH: i32 = -1;

/// The session settings (broker-wide values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchSessionConfig {
    /// `max.incremental.fetch.session.cache.slots` (Kafka default 1000; 0 disables sessions).
    pub cache_slots: usize,
    /// `min.incremental.fetch.session.eviction.ms` (Kafka default 120000).
    pub eviction_ms: u64,
}

impl Default for FetchSessionConfig {
    fn default() -> Self {
        FetchSessionConfig { cache_slots: 1000, eviction_ms: 120_000 }
    }
}

/// Shard `shard`'s share of `slots` among `shard_count` shards: equal shares, the remainder one
/// each to the lowest shards, so the shares add up to `slots` exactly.
pub fn slots_of_shard(slots: usize, shard: usize, shard_count: usize) -> usize {
    assert!(shard < shard_count, "shard {shard} of {shard_count}");
    slots / shard_count + usize::from(shard < slots % shard_count)
}

/// The width of each shard's id range.
fn id_range(shard_count: usize) -> i32 {
    assert!(shard_count >= 1 && shard_count <= i32::MAX as usize / 2, "shard count {shard_count}");
    i32::MAX / shard_count as i32
}

/// The shard that created session `session_id`, if the id could be one this broker handed out.
pub fn shard_of_session(session_id: i32, shard_count: usize) -> Option<usize> {
    if session_id <= INVALID_SESSION_ID {
        return None;
    }
    let shard = (session_id / id_range(shard_count)) as usize;
    (shard < shard_count).then_some(shard)
}

/// The session fields of a Fetch request, and its partitions as the fetcher names them.
pub struct SessionRequest<'a> {
    pub session_id: i32,
    pub epoch: i32,
    /// Fetch v13+ (topics by id).
    pub uses_topic_ids: bool,
    /// From a follower (a replica id ≥ 0).
    pub privileged: bool,
    pub listed: &'a [(PartitionKey, PartitionRequest)],
    pub forgotten: &'a [PartitionKey],
}

/// What kind of fetch a request is (Kafka's `FetchContext`s).
pub enum FetchContext {
    /// Read and answer the listed partitions; no session (session id 0).
    Sessionless,
    /// Read and answer the listed partitions, then try to create a session of them
    /// ([`FetchSessionCache::create`]).
    Full,
    /// Read the session's `partitions` (in this order) and answer only those that changed
    /// ([`FetchSession::respond`] with `epoch` and `generation`).
    Incremental {
        session: Rc<RefCell<FetchSession>>,
        epoch: i32,
        generation: u64,
        partitions: Vec<(PartitionKey, PartitionRequest)>,
    },
    /// Answer this error, with no partitions and session id 0.
    Error(i16),
}

pub struct FetchSessionCache {
    shard: usize,
    shard_count: usize,
    max_sessions: usize,
    eviction_ms: u64,
    sessions: HashMap<i32, Rc<RefCell<FetchSession>>>,
    /// xorshift64* state for session ids.
    random: u64,
}

impl FetchSessionCache {
    /// Shard `shard`'s cache, holding its share of `config.cache_slots`; `seed` seeds the
    /// session ids (any value; 0 is replaced).
    pub fn new(config: FetchSessionConfig, shard: usize, shard_count: usize, seed: u64) -> FetchSessionCache {
        FetchSessionCache {
            shard,
            shard_count,
            max_sessions: slots_of_shard(config.cache_slots, shard, shard_count),
            eviction_ms: config.eviction_ms,
            sessions: HashMap::new(),
            random: seed.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// This shard's share of the broker's slots.
    pub fn max_sessions(&self) -> usize {
        self.max_sessions
    }

    pub fn get(&self, session_id: i32) -> Option<Rc<RefCell<FetchSession>>> {
        self.sessions.get(&session_id).cloned()
    }

    pub fn remove(&mut self, session_id: i32) -> bool {
        self.sessions.remove(&session_id).is_some()
    }

    /// Decides what kind of fetch `request` is (Kafka's `FetchManager.newContext`). A full
    /// request (epoch 0 or -1) closes the session it names, if this shard holds it (the caller
    /// closes one living on another shard: [`shard_of_session`]); epoch -1 creates none. An
    /// incremental one must name a session of this shard at its current epoch, of the same
    /// topic naming; it is applied to the session, whose epoch moves on.
    pub fn begin(&mut self, request: &SessionRequest<'_>, now_ms: u64) -> FetchContext {
        if request.epoch == INITIAL_EPOCH || request.epoch == FINAL_EPOCH {
            if request.session_id != INVALID_SESSION_ID {
                self.remove(request.session_id);
            }
            return if request.epoch == FINAL_EPOCH || self.max_sessions == 0 {
                FetchContext::Sessionless
            } else {
                FetchContext::Full
            };
        }
        let Some(session) = self.get(request.session_id) else {
            return FetchContext::Error(codes::FETCH_SESSION_ID_NOT_FOUND);
        };
        let mut s = session.borrow_mut();
        if s.epoch != request.epoch {
            return FetchContext::Error(codes::INVALID_FETCH_SESSION_EPOCH);
        }
        if s.uses_topic_ids != request.uses_topic_ids {
            return FetchContext::Error(codes::FETCH_SESSION_TOPIC_ID_ERROR);
        }
        s.update(request.listed, request.forgotten);
        if s.is_empty() {
            drop(s);
            self.remove(request.session_id);
            return FetchContext::Sessionless;
        }
        s.last_used_ms = now_ms;
        s.epoch = next_epoch(s.epoch);
        let (epoch, generation, partitions) = (s.epoch, s.generation(), s.partitions());
        drop(s);
        FetchContext::Incremental { session, epoch, generation, partitions }
    }

    /// After a full fetch: creates a session of `partitions`, told `outcomes`, if a slot is free
    /// or can be freed (see the module docs). Returns its id, or 0 (no session).
    pub fn create(
        &mut self,
        privileged: bool,
        uses_topic_ids: bool,
        partitions: &[(PartitionKey, PartitionRequest)],
        outcomes: &[PartitionOutcome],
        now_ms: u64,
    ) -> i32 {
        if self.max_sessions == 0 {
            return INVALID_SESSION_ID;
        }
        if self.sessions.len() >= self.max_sessions && !self.try_evict(privileged, partitions.len(), now_ms) {
            return INVALID_SESSION_ID;
        }
        let id = self.new_session_id();
        let session = FetchSession::new(id, privileged, uses_topic_ids, now_ms, partitions, outcomes);
        self.sessions.insert(id, Rc::new(RefCell::new(session)));
        id
    }

    /// Frees one slot for a new session of `size` partitions, if Kafka's rules allow.
    fn try_evict(&mut self, privileged: bool, size: usize, now_ms: u64) -> bool {
        let age = |since: u64| now_ms.saturating_sub(since);
        let stalest = self
            .sessions
            .values()
            .map(|s| {
                let s = s.borrow();
                (s.last_used_ms, s.id)
            })
            .min();
        if let Some((last_used_ms, id)) = stalest {
            if age(last_used_ms) > self.eviction_ms {
                return self.remove(id);
            }
        }
        let cheapest = self
            .sessions
            .values()
            .map(|s| s.borrow())
            .filter(|s| age(s.created_ms) > self.eviction_ms || (privileged && !s.privileged))
            .map(|s| (s.privileged, s.len(), s.id))
            .min();
        match cheapest {
            Some((their_privileged, their_size, id)) if (privileged, size) > (their_privileged, their_size) => {
                self.remove(id)
            }
            _ => false,
        }
    }

    fn new_session_id(&mut self) -> i32 {
        let range = id_range(self.shard_count);
        let base = self.shard as i32 * range;
        loop {
            // xorshift64*
            self.random ^= self.random >> 12;
            self.random ^= self.random << 25;
            self.random ^= self.random >> 27;
            let r = self.random.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33;
            let id = base + 1 + (r % (range as u64 - 1)) as i32;
            if !self.sessions.contains_key(&id) {
                debug_assert_eq!(shard_of_session(id, self.shard_count), Some(self.shard));
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::session::TopicKey;
    use super::*;
    use proptest::prelude::*;

    fn key(partition: i32) -> PartitionKey {
        PartitionKey { topic: TopicKey::Name(std::rc::Rc::from("t")), partition }
    }

    fn partitions(n: i32) -> Vec<(PartitionKey, PartitionRequest)> {
        let request = PartitionRequest {
            fetch_offset: 0,
            partition_max_bytes: 1 << 20,
            current_leader_epoch: -1,
            last_fetched_epoch: -1,
            log_start_offset: -1,
        };
        (0..n).map(|p| (key(p), request)).collect()
    }

    fn outcomes(n: i32) -> Vec<PartitionOutcome> {
        let quiet = PartitionOutcome {
            records_bytes: 0,
            error: 0,
            high_watermark: 0,
            last_stable_offset: 0,
            log_start_offset: 0,
            redirect: false,
        };
        vec![quiet; n as usize]
    }

    fn cache(slots: usize) -> FetchSessionCache {
        FetchSessionCache::new(FetchSessionConfig { cache_slots: slots, eviction_ms: 1_000 }, 0, 1, 42)
    }

    fn create(c: &mut FetchSessionCache, privileged: bool, n: i32, now_ms: u64) -> i32 {
        c.create(privileged, false, &partitions(n), &outcomes(n), now_ms)
    }

    fn request(session_id: i32, epoch: i32) -> SessionRequest<'static> {
        SessionRequest { session_id, epoch, uses_topic_ids: false, privileged: false, listed: &[], forgotten: &[] }
    }

    #[test]
    fn full_incremental_and_final_requests() {
        let mut c = cache(10);
        assert!(matches!(c.begin(&request(0, 0), 0), FetchContext::Full));
        assert!(matches!(c.begin(&request(0, -1), 0), FetchContext::Sessionless));
        let id = create(&mut c, false, 2, 0);
        assert_ne!(id, 0);
        let FetchContext::Incremental { epoch, partitions, .. } = c.begin(&request(id, 1), 5) else {
            panic!("incremental")
        };
        assert_eq!((epoch, partitions.len()), (2, 2));
        assert!(matches!(c.begin(&request(id, 1), 5), FetchContext::Error(codes::INVALID_FETCH_SESSION_EPOCH)));
        assert!(matches!(c.begin(&request(id + 1, 2), 5), FetchContext::Error(codes::FETCH_SESSION_ID_NOT_FOUND)));
        let by_id = SessionRequest { uses_topic_ids: true, ..request(id, 2) };
        assert!(matches!(c.begin(&by_id, 5), FetchContext::Error(codes::FETCH_SESSION_TOPIC_ID_ERROR)));
        // Epoch -1 closes it and answers sessionless.
        assert!(matches!(c.begin(&request(id, -1), 5), FetchContext::Sessionless));
        assert!(c.get(id).is_none());
    }

    #[test]
    fn a_session_forgetting_everything_closes() {
        let mut c = cache(10);
        let id = create(&mut c, false, 1, 0);
        let forgotten = [key(0)];
        let r = SessionRequest { forgotten: &forgotten, ..request(id, 1) };
        assert!(matches!(c.begin(&r, 1), FetchContext::Sessionless));
        assert!(c.is_empty());
    }

    #[test]
    fn zero_slots_disable_sessions() {
        let mut c = cache(0);
        assert!(matches!(c.begin(&request(0, 0), 0), FetchContext::Sessionless));
        assert_eq!(create(&mut c, true, 5, 0), 0);
    }

    #[test]
    fn a_full_cache_evicts_a_stale_session_first() {
        let mut c = cache(2);
        let old = create(&mut c, false, 100, 0);
        let busy = create(&mut c, false, 1, 0);
        c.get(busy).unwrap().borrow_mut().last_used_ms = 1_500;
        // Both are young by creation until 1000; `old` was unused for 1001 ms at 1001.
        let new = create(&mut c, false, 1, 1_001);
        assert_ne!(new, 0);
        assert!(c.get(old).is_none() && c.get(busy).is_some());
    }

    #[test]
    fn young_sessions_are_kept_and_bigger_ones_win_over_old_smaller_ones() {
        let mut c = cache(2);
        let small = create(&mut c, false, 1, 0);
        let big = create(&mut c, false, 50, 0);
        for id in [small, big] {
            c.get(id).unwrap().borrow_mut().last_used_ms = 900;
        }
        assert_eq!(create(&mut c, false, 100, 500), 0, "both are young");
        assert_eq!(create(&mut c, false, 1, 1_500), 0, "not worth more than the smallest");
        let new = create(&mut c, false, 2, 1_500);
        assert_ne!(new, 0);
        assert!(c.get(small).is_none() && c.get(big).is_some());
    }

    #[test]
    fn a_follower_may_evict_a_young_consumer_session_but_not_a_young_follower_one() {
        let mut c = cache(1);
        let consumer = create(&mut c, false, 1_000, 0);
        let follower = create(&mut c, true, 1, 10);
        assert_ne!(follower, 0);
        assert!(c.get(consumer).is_none());
        assert_eq!(create(&mut c, true, 1_000, 20), 0);
        assert_eq!(create(&mut c, false, 1_000, 20), 0);
    }

    #[test]
    fn shares_add_up_to_the_broker_slots() {
        for (slots, shards) in [(1000, 3), (1, 4), (0, 2), (7, 7), (1000, 1)] {
            let total: usize = (0..shards).map(|s| slots_of_shard(slots, s, shards)).sum();
            assert_eq!(total, slots);
        }
    }

    proptest! {
        #[test]
        fn ids_are_positive_unique_and_name_their_shard(shards in 1usize..64, seed in any::<u64>()) {
            let shard = (seed as usize) % shards;
            let config = FetchSessionConfig { cache_slots: 64 * shards, eviction_ms: 1 };
            let mut c = FetchSessionCache::new(config, shard, shards, seed);
            let mut seen = std::collections::HashSet::new();
            for _ in 0..40 {
                let id = create(&mut c, false, 1, 0);
                prop_assert!(id > 0);
                prop_assert_eq!(shard_of_session(id, shards), Some(shard));
                prop_assert!(seen.insert(id));
            }
            prop_assert_eq!(shard_of_session(0, shards), None);
            prop_assert_eq!(shard_of_session(-5, shards), None);
        }
    }
}
