//! One consumer: fetches the partitions it owns in a loop (one request per partition leader, in
//! parallel); every record is checked by the partition's tracker and, in e2e runs, its
//! end-to-end latency (receive time − the intended send time in its payload) recorded.
//!
//! Without a group it owns a fixed set of partitions (static assignment, one leader),
//! positioned at the earliest or latest offset. With a group ([`GroupMember`]) it owns what the
//! group's leader assigned: each partition starts at the group's committed offset (else
//! earliest/latest), and between fetches it heartbeats and commits its positions about once a
//! second. On a rebalance it commits, drops every partition (closing their tracker segments)
//! and only then rejoins; at the end it commits and leaves the group.
//!
//! Owns: its fetch positions, one tracker segment per partition per stretch of ownership, its
//! connections to partition leaders. Must never: read a partition it does not own under the
//! current assignment, skip a partition error (each is counted under the broker's error name),
//! or stop early in an e2e run while messages of the partitions it may read are acknowledged but
//! not yet read by anyone (it waits up to `drain_timeout_secs` after producers finish).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse};

use crate::bench::admin::{list_offsets, topic_name};
use crate::bench::clock::now_ns;
use crate::bench::group_member::{GroupMember, Outcome, COMMIT_INTERVAL, HEARTBEAT_INTERVAL};
use crate::bench::kafka_client::KafkaConnection;
use crate::bench::payload::PayloadHeader;
use crate::bench::plan::ConsumerPlan;
use crate::bench::record_set::walk_record_set;
use crate::bench::run_state::{error_name, RunShared, ShardResult};
use crate::bench::verify::PartitionTracker;
use crate::bench::workload::{StartOffset, WorkloadKind};

/// Pause after a fetch that returned a partition error, so a persistent error does not spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// Pause of a group member that owns no partition, between checks of its group and the run.
const IDLE_POLL: Duration = Duration::from_millis(50);

pub async fn run_consumer(plan: ConsumerPlan, run: Arc<RunShared>, shard: usize, result: Rc<RefCell<ShardResult>>) {
    let mut c = Consumer::new(&plan, &run, shard, &result);
    let outcome = c.consume().await;
    let finished = c.finish(outcome.is_ok()).await;
    let failed = outcome.is_err() || finished.is_err();
    for e in [outcome.err(), finished.err()].into_iter().flatten() {
        c.error(format!("consumer {} ({}): {e}", plan.consumer_id, c.describe()));
    }
    if failed && !c.ready_reported {
        // Producers wait for every consumer: a consumer that cannot start stops the run.
        run.abort.store(true, Relaxed);
    }
}

/// A partition this consumer owns now.
struct Owned<'a> {
    leader: String,
    /// The run's count of this partition's messages consumed (by any consumer).
    consumed: Option<&'a AtomicU64>,
    /// Next offset to fetch.
    offset: i64,
    tracker: PartitionTracker,
    /// Reading starts where this run's producers started (see `PartitionTracker::observe`).
    first_sequence_known: bool,
}

struct Consumer<'a> {
    plan: &'a ConsumerPlan,
    run: &'a Arc<RunShared>,
    shard: usize,
    result: &'a Rc<RefCell<ShardResult>>,
    /// Leader of every partition it may read.
    leaders: HashMap<i32, String>,
    conns: HashMap<String, Rc<KafkaConnection>>,
    owned: BTreeMap<i32, Owned<'a>>,
    member: Option<GroupMember>,
    /// Positions the group has committed for owned partitions (skipped by the next commit).
    committed: HashMap<i32, i64>,
    next_heartbeat: Instant,
    next_commit: Instant,
    ready_reported: bool,
    warmup_end_ns: u64,
    scratch: Vec<u8>,
}

impl<'a> Consumer<'a> {
    fn new(
        plan: &'a ConsumerPlan,
        run: &'a Arc<RunShared>,
        shard: usize,
        result: &'a Rc<RefCell<ShardResult>>,
    ) -> Consumer<'a> {
        let client_id = format!("sluice-bench-c{}", plan.consumer_id);
        Consumer {
            plan,
            run,
            shard,
            result,
            leaders: plan.partitions.iter().cloned().collect(),
            conns: HashMap::new(),
            owned: BTreeMap::new(),
            member: plan
                .group
                .as_ref()
                .map(|g| GroupMember::new(g, &client_id, &run.workload.bootstrap, vec![plan.topic.clone()])),
            committed: HashMap::new(),
            next_heartbeat: Instant::now(),
            next_commit: Instant::now(),
            ready_reported: false,
            warmup_end_ns: 0,
            scratch: Vec::new(),
        }
    }

    fn describe(&self) -> String {
        match &self.member {
            Some(m) => format!("group {}", m.group_id),
            None => self.plan.partitions.first().map(|(_, l)| l.clone()).unwrap_or_default(),
        }
    }

    fn error(&self, what: String) {
        self.result.borrow_mut().error(what, 1);
        self.run.live[self.shard].errors.fetch_add(1, Relaxed);
    }

    /// The connection to `leader`, opened (and its Fetch version checked) on first use.
    async fn conn(&mut self, leader: &str) -> Result<Rc<KafkaConnection>, String> {
        if let Some(c) = self.conns.get(leader) {
            return Ok(c.clone());
        }
        let conn =
            crate::bench::kafka_client::connect(leader, &format!("sluice-bench-c{}", self.plan.consumer_id)).await?;
        // Fails early if the broker's Fetch range and ours do not overlap.
        conn.version_for(ApiKey::Fetch)?;
        let conn = Rc::new(conn);
        self.conns.insert(leader.to_string(), conn.clone());
        Ok(conn)
    }

    /// Takes ownership of `partitions`, each at its committed offset or, without one, at the
    /// workload's earliest/latest.
    async fn take(&mut self, partitions: &[i32], committed: &HashMap<i32, Option<i64>>) -> Result<(), String> {
        let run = self.run;
        let w = &run.workload;
        let timestamp = match w.start {
            StartOffset::Earliest => -2,
            StartOffset::Latest => -1,
        };
        let fresh_run_start =
            w.kind == WorkloadKind::E2e && w.start == StartOffset::Earliest && w.topic_names.is_none();
        let mut by_leader: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for p in partitions {
            let leader =
                self.leaders.get(p).ok_or_else(|| format!("{}/{p}: partition not in the run", self.plan.topic))?;
            by_leader.entry(leader.clone()).or_default().push(*p);
        }
        for (leader, parts) in by_leader {
            let reset: Vec<i32> =
                parts.iter().copied().filter(|p| committed.get(p).copied().flatten().is_none()).collect();
            let conn = self.conn(&leader).await?;
            let reset_offsets = if reset.is_empty() {
                HashMap::new()
            } else {
                list_offsets(&conn, &self.plan.topic, &reset, timestamp).await?
            };
            for p in parts {
                let (offset, from_reset) = match committed.get(&p).copied().flatten() {
                    Some(o) => {
                        self.committed.insert(p, o);
                        (o, false)
                    }
                    None => (reset_offsets[&p], true),
                };
                let first_sequence_known = fresh_run_start && from_reset;
                let consumed = run.consumed_by_partition.get(&(self.plan.topic.clone(), p));
                self.owned.insert(
                    p,
                    Owned {
                        leader: leader.clone(),
                        consumed,
                        offset,
                        tracker: PartitionTracker::default(),
                        first_sequence_known,
                    },
                );
            }
        }
        Ok(())
    }

    /// Joins (or rejoins) the group and takes what it assigns; commits the starting positions
    /// so a later owner starts exactly there.
    async fn join_group(&mut self) -> Result<(), String> {
        let all = self.run.topic_partitions();
        let member = self.member.as_mut().expect("a group consumer");
        let group_id = member.group_id.clone();
        let assignment = member.join(&all).await?;
        let mut mine = Vec::new();
        for (topic, parts) in assignment {
            if topic == self.plan.topic {
                mine = parts;
            } else {
                self.error(format!("group {group_id}: assigned {topic}, which this consumer does not read"));
            }
        }
        let member = self.member.as_mut().expect("a group consumer");
        let committed = member.committed(&self.plan.topic, &mine).await?;
        self.take(&mine, &committed).await?;
        self.commit().await?;
        let now = Instant::now();
        self.next_heartbeat = now + HEARTBEAT_INTERVAL;
        self.next_commit = now + COMMIT_INTERVAL;
        Ok(())
    }

    /// Commits the positions that moved since the last commit.
    async fn commit(&mut self) -> Result<Outcome, String> {
        let Some(member) = self.member.as_mut() else { return Ok(Outcome::Ok) };
        let moved: Vec<(i32, i64)> = self
            .owned
            .iter()
            .filter(|(p, o)| self.committed.get(p) != Some(&o.offset))
            .map(|(p, o)| (*p, o.offset))
            .collect();
        let group_id = member.group_id.clone();
        let outcome = member.commit(&self.plan.topic, &moved).await?;
        match &outcome {
            Outcome::Ok => self.committed.extend(moved),
            Outcome::Rejoin { error: Some(e) } => self.error(format!("group {group_id}: {e}")),
            Outcome::Rejoin { error: None } => {}
        }
        Ok(outcome)
    }

    /// Drops every partition, keeping what its tracker saw as a segment of the run's result.
    fn release(&mut self) {
        let mut r = self.result.borrow_mut();
        for (p, o) in std::mem::take(&mut self.owned) {
            r.trackers.entry((self.plan.topic.clone(), p)).or_default().push(o.tracker);
        }
        self.committed.clear();
    }

    /// A rebalance: commit, drop every partition, join again.
    async fn rebalance(&mut self) -> Result<(), String> {
        self.commit().await?;
        self.release();
        self.join_group().await
    }

    /// A group member's heartbeat and commit when due; a rebalance when the group asks.
    async fn upkeep(&mut self) -> Result<(), String> {
        let Some(member) = self.member.as_mut() else { return Ok(()) };
        let now = Instant::now();
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + HEARTBEAT_INTERVAL;
            let group_id = member.group_id.clone();
            if let Outcome::Rejoin { error } = member.heartbeat().await? {
                if let Some(e) = error {
                    self.error(format!("group {group_id}: {e}"));
                }
                return self.rebalance().await;
            }
        }
        if now >= self.next_commit {
            self.next_commit = now + COMMIT_INTERVAL;
            if let Outcome::Rejoin { .. } = self.commit().await? {
                return self.rebalance().await;
            }
        }
        Ok(())
    }

    /// Waits for the run's start (every consumer positioned); a group member keeps up its
    /// membership meanwhile. `None` if the run was aborted first.
    async fn wait_for_start(&mut self) -> Result<Option<u64>, String> {
        if self.member.is_none() {
            return Ok(self.run.wait_for_start().await);
        }
        loop {
            if let Some(start_ns) = self.run.start_ns() {
                return Ok(Some(start_ns));
            }
            if self.run.aborted() {
                return Ok(None);
            }
            self.upkeep().await?;
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Whether the run is over for this consumer.
    fn done(&self, end_ns: Option<u64>) -> bool {
        let (run, w) = (self.run, &self.run.workload);
        let now = now_ns();
        match w.kind {
            WorkloadKind::E2e => {
                let done_ns = run.producers_done_ns.load(Relaxed);
                if run.producers_running.load(Relaxed) != 0 || done_ns == 0 {
                    return false;
                }
                // Every partition it may read, whoever in the group reads it.
                let caught_up = self.plan.partitions.iter().all(|(p, _)| run.caught_up(&self.plan.topic, *p));
                caught_up || now >= done_ns + (w.drain_timeout_secs * 1e9) as u64
            }
            _ => {
                end_ns.is_some_and(|e| now >= e)
                    || w.message_count.is_some_and(|c| run.consumed_total.load(Relaxed) >= c)
            }
        }
    }

    async fn consume(&mut self) -> Result<(), String> {
        if self.member.is_some() {
            self.join_group().await?;
        } else {
            let parts: Vec<i32> = self.plan.partitions.iter().map(|(p, _)| *p).collect();
            self.take(&parts, &HashMap::new()).await?;
        }
        self.run.consumers_ready.fetch_add(1, Relaxed);
        self.ready_reported = true;
        let Some(start_ns) = self.wait_for_start().await? else { return Ok(()) };
        self.warmup_end_ns = self.run.warmup_end_ns(start_ns);
        self.result.borrow_mut().set_warmup_end_ns(self.warmup_end_ns);
        let end_ns = self.run.end_ns(start_ns);
        loop {
            if self.run.aborted() || self.done(end_ns) {
                return Ok(());
            }
            self.upkeep().await?;
            if self.owned.is_empty() {
                glommio::timer::sleep(IDLE_POLL).await;
                continue;
            }
            if self.fetch_round().await? {
                glommio::timer::sleep(ERROR_BACKOFF).await;
            }
        }
    }

    /// The end: a group member commits (if it ended well) and leaves; every tracker's segment
    /// goes into the result.
    async fn finish(&mut self, ended_well: bool) -> Result<(), String> {
        let mut outcome = Ok(());
        if let Some(member) = self.member.as_ref() {
            let group_id = member.group_id.clone();
            // A refused commit was counted as an error by `commit`.
            if ended_well {
                if let Err(e) = self.commit().await {
                    outcome = Err(format!("group {group_id}: final commit: {e}"));
                }
            }
            if let Err(e) = self.member.as_mut().expect("a group consumer").leave().await {
                outcome = outcome.and(Err(e));
            }
        }
        self.release();
        outcome
    }

    /// One fetch from every leader of owned partitions, in parallel; returns whether a
    /// partition answered with an error.
    async fn fetch_round(&mut self) -> Result<bool, String> {
        let run = self.run;
        let w = &run.workload;
        let mut by_leader: BTreeMap<String, Vec<FetchPartition>> = BTreeMap::new();
        for (p, o) in &self.owned {
            by_leader.entry(o.leader.clone()).or_default().push(
                FetchPartition::default()
                    .with_partition(*p)
                    .with_fetch_offset(o.offset)
                    .with_partition_max_bytes(w.partition_fetch_max_bytes as i32),
            );
        }
        let mut requests = Vec::with_capacity(by_leader.len());
        for (leader, partitions) in by_leader {
            let conn = self.conn(&leader).await?;
            // Transactional runs read committed data only, as their consumers would.
            let isolation_level = i8::from(w.transaction.is_some());
            let request = FetchRequest::default()
                .with_isolation_level(isolation_level)
                .with_max_wait_ms(w.fetch_max_wait_ms)
                .with_min_bytes(1)
                .with_max_bytes(w.fetch_max_bytes as i32)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic_name(&self.plan.topic))
                    .with_partitions(partitions)]);
            requests.push(async move { conn.call(&request).await });
        }
        let responses = futures::future::join_all(requests).await;
        let received_ns = now_ns();
        let mut errored = false;
        for response in responses {
            errored |= self.absorb(response?, received_ns)?;
        }
        Ok(errored)
    }

    /// Checks and counts what one fetch returned; returns whether it carried an error.
    fn absorb(&mut self, response: FetchResponse, received_ns: u64) -> Result<bool, String> {
        let (run, topic, warmup_end_ns) = (self.run, &self.plan.topic, self.warmup_end_ns);
        let live = &run.live[self.shard];
        let mut r = self.result.borrow_mut();
        let mut errored = false;
        if response.error_code != 0 {
            r.error(format!("fetch {topic}: {}", error_name(response.error_code)), 1);
            live.errors.fetch_add(1, Relaxed);
            errored = true;
        }
        r.fetch_requests += 1;
        for t in &response.responses {
            for p in &t.partitions {
                let partition = p.partition_index;
                if p.error_code != 0 {
                    r.error(format!("fetch {topic}/{partition}: {}", error_name(p.error_code)), 1);
                    live.errors.fetch_add(1, Relaxed);
                    errored = true;
                    continue;
                }
                let (Some(records), Some(owned)) = (p.records.as_ref(), self.owned.get_mut(&partition)) else {
                    continue;
                };
                let (mut msgs, mut this_run, mut measured, mut measured_bytes, mut bytes) =
                    (0u64, 0u64, 0u64, 0u64, 0u64);
                let mut e2e_samples: Vec<u64> = Vec::new();
                let tracker = &mut owned.tracker;
                let first_sequence_known = owned.first_sequence_known;
                let walked = walk_record_set(records, owned.offset, &mut self.scratch, |record_offset, value| {
                    let header = PayloadHeader::read(value);
                    tracker.observe(record_offset, header, run.run_id, first_sequence_known);
                    msgs += 1;
                    bytes += value.len() as u64;
                    match header {
                        Some(h) if h.run_id == run.run_id => {
                            this_run += 1;
                            if h.intended_ns >= warmup_end_ns {
                                measured += 1;
                                measured_bytes += value.len() as u64;
                            }
                            e2e_samples.push(h.intended_ns);
                        }
                        _ => {
                            if received_ns >= warmup_end_ns {
                                measured += 1;
                                measured_bytes += value.len() as u64;
                            }
                        }
                    }
                });
                match walked {
                    Ok(summary) => {
                        if let Some(next) = summary.next_offset {
                            owned.offset = owned.offset.max(next);
                        }
                    }
                    Err(e) => {
                        r.error(format!("fetch {topic}/{partition}: bad record set: {e}"), 1);
                        live.errors.fetch_add(1, Relaxed);
                        return Err(format!("{topic}/{partition} at offset {}: {e}", owned.offset));
                    }
                }
                for intended in e2e_samples {
                    r.e2e_latency.record(intended, received_ns);
                }
                r.consumed_msgs += msgs;
                r.consumed_bytes += bytes;
                r.consumed_measured_msgs += measured;
                r.consumed_measured_bytes += measured_bytes;
                if msgs > 0 {
                    r.last_consume_ns = r.last_consume_ns.max(received_ns);
                }
                if let Some(c) = owned.consumed {
                    c.fetch_add(this_run, Relaxed);
                }
                run.consumed_total.fetch_add(msgs, Relaxed);
                live.consumed_msgs.fetch_add(msgs, Relaxed);
                live.consumed_bytes.fetch_add(bytes, Relaxed);
            }
        }
        Ok(errored)
    }
}
