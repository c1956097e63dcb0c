//! One consumer: a connection to one partition leader, its assigned partitions (no group:
//! static assignment), positioned at the earliest or latest offset, fetching in a loop; every
//! record is checked by the partition's tracker and, in e2e runs, its end-to-end latency
//! (receive time − the intended send time in its payload) recorded.
//!
//! Owns: its fetch positions and trackers. Must never: skip a partition error (each is counted
//! under the broker's error name), or stop early in an e2e run while messages it should see are
//! acknowledged but not yet read (it waits up to `drain_timeout_secs` after producers finish).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest};

use crate::bench::admin::{list_offsets, topic_name};
use crate::bench::clock::now_ns;
use crate::bench::kafka_client::KafkaConnection;
use crate::bench::payload::PayloadHeader;
use crate::bench::plan::ConsumerPlan;
use crate::bench::record_set::walk_record_set;
use crate::bench::run_state::{error_name, RunShared, ShardResult};
use crate::bench::verify::PartitionTracker;
use crate::bench::workload::{StartOffset, WorkloadKind};

/// Pause after a fetch that returned a partition error, so a persistent error does not spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(50);

pub async fn run_consumer(plan: ConsumerPlan, run: Arc<RunShared>, shard: usize, result: Rc<RefCell<ShardResult>>) {
    let mut ready_reported = false;
    if let Err(e) = consume(&plan, &run, shard, &result, &mut ready_reported).await {
        result.borrow_mut().error(format!("consumer {} ({}): {e}", plan.consumer_id, plan.leader), 1);
        run.live[shard].errors.fetch_add(1, Relaxed);
        if !ready_reported {
            // Producers wait for every consumer: a consumer that cannot start stops the run.
            run.abort.store(true, Relaxed);
        }
    }
}

async fn consume(
    plan: &ConsumerPlan,
    run: &Arc<RunShared>,
    shard: usize,
    result: &Rc<RefCell<ShardResult>>,
    ready_reported: &mut bool,
) -> Result<(), String> {
    let w = &run.workload;
    let conn = KafkaConnection::connect(&plan.leader, &format!("sluice-bench-c{}", plan.consumer_id)).await?;
    // Fails early if the broker's Fetch range and ours do not overlap.
    conn.version_for(ApiKey::Fetch)?;
    let timestamp = match w.start {
        StartOffset::Earliest => -2,
        StartOffset::Latest => -1,
    };
    let mut offsets: HashMap<i32, i64> = list_offsets(&conn, &plan.topic, &plan.partitions, timestamp).await?;
    run.consumers_ready.fetch_add(1, Relaxed);
    *ready_reported = true;
    let Some(start_ns) = run.wait_for_start().await else { return Ok(()) };
    let warmup_end_ns = run.warmup_end_ns(start_ns);
    result.borrow_mut().set_warmup_end_ns(warmup_end_ns);
    let end_ns = run.end_ns(start_ns);
    let first_sequence_known =
        w.kind == WorkloadKind::E2e && w.start == StartOffset::Earliest && w.topic_names.is_none();
    let mut trackers: BTreeMap<i32, PartitionTracker> =
        plan.partitions.iter().map(|p| (*p, PartitionTracker::default())).collect();
    let mut scratch = Vec::new();
    let live = &run.live[shard];
    let result_key = |p: i32| (plan.topic.clone(), p);
    loop {
        if run.aborted() {
            break;
        }
        let now = now_ns();
        match w.kind {
            WorkloadKind::E2e => {
                let done_ns = run.producers_done_ns.load(Relaxed);
                if run.producers_running.load(Relaxed) == 0 && done_ns != 0 {
                    let caught_up = trackers.iter().all(|(p, t)| {
                        let acked = run.acked_by_partition.get(&result_key(*p)).map_or(0, |a| a.load(Relaxed));
                        t.consumed_this_run >= acked
                    });
                    if caught_up || now >= done_ns + (w.drain_timeout_secs * 1e9) as u64 {
                        break;
                    }
                }
            }
            _ => {
                if end_ns.is_some_and(|e| now >= e)
                    || w.message_count.is_some_and(|c| run.consumed_total.load(Relaxed) >= c)
                {
                    break;
                }
            }
        }
        let request = FetchRequest::default()
            .with_max_wait_ms(w.fetch_max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(w.fetch_max_bytes as i32)
            .with_topics(vec![FetchTopic::default().with_topic(topic_name(&plan.topic)).with_partitions(
                plan.partitions
                    .iter()
                    .map(|p| {
                        FetchPartition::default()
                            .with_partition(*p)
                            .with_fetch_offset(offsets[p])
                            .with_partition_max_bytes(w.partition_fetch_max_bytes as i32)
                    })
                    .collect(),
            )]);
        let response = conn.call(&request).await?;
        let received_ns = now_ns();
        let mut errored = response.error_code != 0;
        if response.error_code != 0 {
            let mut r = result.borrow_mut();
            r.error(format!("fetch {}: {}", plan.topic, error_name(response.error_code)), 1);
            live.errors.fetch_add(1, Relaxed);
        }
        {
            let mut r = result.borrow_mut();
            r.fetch_requests += 1;
            for t in &response.responses {
                for p in &t.partitions {
                    let partition = p.partition_index;
                    if p.error_code != 0 {
                        r.error(format!("fetch {}/{partition}: {}", plan.topic, error_name(p.error_code)), 1);
                        live.errors.fetch_add(1, Relaxed);
                        errored = true;
                        continue;
                    }
                    let (Some(records), Some(tracker), Some(offset)) =
                        (p.records.as_ref(), trackers.get_mut(&partition), offsets.get_mut(&partition))
                    else {
                        continue;
                    };
                    let mut msgs = 0u64;
                    let mut measured = 0u64;
                    let mut measured_bytes = 0u64;
                    let mut bytes = 0u64;
                    let mut e2e_samples: Vec<u64> = Vec::new();
                    let walked = walk_record_set(records, *offset, &mut scratch, |record_offset, value| {
                        let header = PayloadHeader::read(value);
                        tracker.observe(record_offset, header, run.run_id, first_sequence_known);
                        msgs += 1;
                        bytes += value.len() as u64;
                        match header {
                            Some(h) if h.run_id == run.run_id => {
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
                                *offset = (*offset).max(next);
                            }
                        }
                        Err(e) => {
                            r.error(format!("fetch {}/{partition}: bad record set: {e}", plan.topic), 1);
                            live.errors.fetch_add(1, Relaxed);
                            return Err(format!("{}/{partition} at offset {}: {e}", plan.topic, offset));
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
                    run.consumed_total.fetch_add(msgs, Relaxed);
                    live.consumed_msgs.fetch_add(msgs, Relaxed);
                    live.consumed_bytes.fetch_add(bytes, Relaxed);
                }
            }
        }
        if errored {
            glommio::timer::sleep(ERROR_BACKOFF).await;
        }
    }
    let mut r = result.borrow_mut();
    for (p, t) in trackers {
        r.trackers.insert(result_key(p), t);
    }
    Ok(())
}
