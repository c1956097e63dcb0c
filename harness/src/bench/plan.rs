//! Who does what in a run: producers and consumers per topic, the partitions and leader each
//! one talks to, its share of the target rate and message count, and the client shard it runs
//! on (round-robin, producers first, consumers continuing the count — so with two shards an
//! e2e run with one producer and one consumer puts them on different cores).
//!
//! With a consumer group, consumers are planned per topic but not given partitions: each may
//! read any partition of its topic, and the group's leader assigns them at run time
//! (`group_member`).
//!
//! Owns: the assignment arithmetic (plain data, unit-tested). Must never: give one partition to
//! two consumers (without a group), or lose a remainder of the message count.

use crate::bench::admin::ClusterLayout;
use crate::bench::workload::Workload;

#[derive(Clone, Debug, PartialEq)]
pub struct ProducerPlan {
    /// Unique in the run; written into every payload.
    pub producer_id: u32,
    pub shard: usize,
    pub topic: String,
    pub leader: String,
    pub partitions: Vec<i32>,
    pub rate_per_sec: Option<f64>,
    pub message_count: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConsumerPlan {
    pub consumer_id: u32,
    pub shard: usize,
    pub topic: String,
    /// (partition, leader address). Without a group: exactly the partitions it reads, all on
    /// one leader. With a group: every partition of the topic; the group assigns which it reads.
    pub partitions: Vec<(i32, String)>,
    pub group: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunPlan {
    pub producers: Vec<ProducerPlan>,
    pub consumers: Vec<ConsumerPlan>,
}

/// Partitions grouped by leader, in partition order.
fn by_leader(parts: &[(i32, String)]) -> Vec<(String, Vec<i32>)> {
    let mut groups: Vec<(String, Vec<i32>)> = Vec::new();
    for (p, leader) in parts {
        match groups.iter_mut().find(|(l, _)| l == leader) {
            Some((_, ps)) => ps.push(*p),
            None => groups.push((leader.clone(), vec![*p])),
        }
    }
    groups
}

pub fn plan(w: &Workload, layout: &ClusterLayout) -> RunPlan {
    let mut out = RunPlan::default();
    let mut next_shard = 0usize;
    let mut shard = || {
        let s = next_shard % w.cores;
        next_shard += 1;
        s
    };
    let total_partitions: usize = layout.leaders.values().map(Vec::len).sum();
    if w.kind.produces() {
        // Every producer writes to every partition of its topic, like a Kafka producer; a
        // producer whose topic has several leaders is one connection (plan) per leader.
        for parts in layout.leaders.values() {
            for _ in 0..w.producers_per_topic {
                for (leader, partitions) in by_leader(parts) {
                    let share = partitions.len() as f64 / (total_partitions * w.producers_per_topic) as f64;
                    out.producers.push(ProducerPlan {
                        producer_id: out.producers.len() as u32,
                        shard: shard(),
                        topic: String::new(),
                        leader,
                        partitions,
                        rate_per_sec: w.producer_rate_per_sec.map(|r| r * share),
                        message_count: None,
                    });
                }
            }
        }
        let topics: Vec<&String> = layout.leaders.keys().collect();
        // Fill in topic names in the same order as above.
        let mut i = 0;
        for t in &topics {
            let groups = by_leader(&layout.leaders[*t]).len();
            for _ in 0..w.producers_per_topic * groups {
                out.producers[i].topic = (*t).clone();
                i += 1;
            }
        }
        if let Some(count) = w.message_count {
            let n = out.producers.len() as u64;
            for (i, p) in out.producers.iter_mut().enumerate() {
                p.message_count = Some(count / n + u64::from((i as u64) < count % n));
            }
        }
    }
    if w.kind.consumes() && w.group.is_some() {
        for (topic, parts) in &layout.leaders {
            for _ in 0..w.consumers_per_topic {
                out.consumers.push(ConsumerPlan {
                    consumer_id: out.consumers.len() as u32,
                    shard: shard(),
                    topic: topic.clone(),
                    partitions: parts.clone(),
                    group: w.group.clone(),
                });
            }
        }
    } else if w.kind.consumes() {
        for (topic, parts) in &layout.leaders {
            for c in 0..w.consumers_per_topic {
                let mine: Vec<(i32, String)> =
                    parts.iter().filter(|(p, _)| *p as usize % w.consumers_per_topic == c).cloned().collect();
                for (leader, partitions) in by_leader(&mine) {
                    out.consumers.push(ConsumerPlan {
                        consumer_id: out.consumers.len() as u32,
                        shard: shard(),
                        topic: topic.clone(),
                        partitions: partitions.into_iter().map(|p| (p, leader.clone())).collect(),
                        group: None,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::workload::WorkloadFile;

    fn layout(topics: &[(&str, usize)], leaders: &[&str]) -> ClusterLayout {
        let mut l = ClusterLayout::default();
        for (t, n) in topics {
            l.leaders.insert(
                t.to_string(),
                (0..*n as i32).map(|p| (p, leaders[p as usize % leaders.len()].to_string())).collect(),
            );
        }
        l
    }

    fn workload(toml: &str) -> Workload {
        WorkloadFile::parse_toml(toml).unwrap().resolve(2).unwrap()
    }

    #[test]
    fn e2e_puts_producer_and_consumer_on_different_shards() {
        let w =
            workload("kind = \"e2e\"\npartitions_per_topic = 4\nproducer_rate_per_sec = 1000\nmessage_count = 1001");
        let p = plan(&w, &layout(&[("t", 4)], &["b:1"]));
        assert_eq!(p.producers.len(), 1);
        assert_eq!(p.producers[0].partitions, vec![0, 1, 2, 3]);
        assert_eq!(p.producers[0].rate_per_sec, Some(1000.0));
        assert_eq!(p.producers[0].message_count, Some(1001));
        assert_eq!(p.consumers.len(), 1);
        assert_ne!(p.producers[0].shard, p.consumers[0].shard);
    }

    #[test]
    fn rates_counts_and_partitions_are_split_without_loss() {
        let w = workload("kind = \"e2e\"\ntopics = 2\npartitions_per_topic = 6\nproducers_per_topic = 2\nconsumers_per_topic = 4\nproducer_rate_per_sec = 1200\nmessage_count = 10");
        let p = plan(&w, &layout(&[("a", 6), ("b", 6)], &["x:1", "y:2"]));
        // 2 topics × 2 producers × 2 leaders.
        assert_eq!(p.producers.len(), 8);
        let rate: f64 = p.producers.iter().filter_map(|p| p.rate_per_sec).sum();
        assert!((rate - 1200.0).abs() < 1e-6);
        assert_eq!(p.producers.iter().filter_map(|p| p.message_count).sum::<u64>(), 10);
        assert!(p
            .producers
            .iter()
            .all(|pp| pp.partitions.iter().all(|part| (*part as usize).is_multiple_of(2) == (pp.leader == "x:1"))));
        assert_eq!(p.producers.iter().filter(|pp| pp.topic == "a").count(), 4);
        // Every partition consumed exactly once.
        for t in ["a", "b"] {
            let mut parts: Vec<i32> = p
                .consumers
                .iter()
                .filter(|c| c.topic == t)
                .flat_map(|c| c.partitions.iter().map(|(p, _)| *p))
                .collect();
            parts.sort();
            assert_eq!(parts, (0..6).collect::<Vec<_>>());
        }
        let ids: std::collections::HashSet<u32> = p.producers.iter().map(|p| p.producer_id).collect();
        assert_eq!(ids.len(), 8);
    }

    #[test]
    fn group_consumers_may_read_every_partition_of_their_topic() {
        let w =
            workload("kind = \"e2e\"\ntopics = 2\npartitions_per_topic = 3\nconsumers_per_topic = 2\ngroup = \"g\"");
        let p = plan(&w, &layout(&[("a", 3), ("b", 3)], &["x:1", "y:2"]));
        assert_eq!(p.consumers.len(), 4, "consumers_per_topic per topic, whatever the leaders");
        for c in &p.consumers {
            assert_eq!(c.group.as_deref(), Some("g"));
            assert_eq!(c.partitions, vec![(0, "x:1".into()), (1, "y:2".into()), (2, "x:1".into())]);
        }
        assert_eq!(p.consumers.iter().filter(|c| c.topic == "a").count(), 2);
        let shards: std::collections::HashSet<usize> = p.consumers.iter().map(|c| c.shard).collect();
        assert_eq!(shards.len(), 2, "spread over both shards");
    }
}
