//! Server-side assignors of the consumer protocol (`group.consumer.assignors`): `uniform`
//! (Kafka's default: balanced and sticky) and `range` (contiguous ranges per topic, like the
//! client-side RangeAssignor).
//!
//! Owns: the target assignment as a pure function of the members' subscriptions, their
//! previous targets and the topics' partition counts. Must never: give one partition to two
//! members, give a member a partition of a topic it does not subscribe to, or depend on
//! anything but its inputs (same inputs, same answer).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::topics::{Assignment, TopicId};
use crate::group::config::AssignorName;

/// What an assignor knows of one member.
#[derive(Clone, Debug, Default)]
pub struct MemberSpec {
    /// Subscribed topics that exist.
    pub subscribed: BTreeSet<TopicId>,
    /// Its previous target (kept where possible by `uniform`).
    pub previous: Assignment,
}

/// The target assignment: one entry per member (empty ones too).
pub fn assign(
    assignor: AssignorName,
    members: &BTreeMap<String, MemberSpec>,
    partitions: &BTreeMap<TopicId, i32>,
) -> BTreeMap<String, Assignment> {
    let target = match assignor {
        AssignorName::Uniform => uniform(members, partitions),
        AssignorName::Range => range(members, partitions),
    };
    debug_assert!(is_valid(&target, members, partitions));
    target
}

/// Balanced and sticky: members keep the partitions of their previous target while that stays
/// balanced; unassigned partitions go to the least-loaded eligible member; then partitions
/// move from the most to the least loaded eligible members until no move narrows the gap.
fn uniform(
    members: &BTreeMap<String, MemberSpec>,
    partitions: &BTreeMap<TopicId, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members.keys().map(|m| (m.clone(), Assignment::new())).collect();
    let mut count: HashMap<&str, usize> = members.keys().map(|m| (m.as_str(), 0)).collect();
    let mut owner: HashMap<(TopicId, i32), &str> = HashMap::new();
    let eligible = |topic: &TopicId| -> Vec<&str> {
        members.iter().filter(|(_, s)| s.subscribed.contains(topic)).map(|(m, _)| m.as_str()).collect()
    };
    let eligible_by_topic: BTreeMap<TopicId, Vec<&str>> = partitions.keys().map(|t| (*t, eligible(t))).collect();
    // A fair share bounds what a member may keep: total eligible partitions over members,
    // rounded up (exact for equal subscriptions; the balancing pass fixes the rest).
    let subscribed_partitions =
        |m: &MemberSpec| -> usize { m.subscribed.iter().filter_map(|t| partitions.get(t)).map(|n| *n as usize).sum() };
    let total: usize =
        eligible_by_topic.iter().filter(|(_, e)| !e.is_empty()).map(|(t, _)| partitions[t] as usize).sum();
    let share = |m: &MemberSpec| -> usize {
        let mine = subscribed_partitions(m).min(total);
        let n = members.len().max(1);
        mine.min(total.div_ceil(n))
    };
    // 1. Stickiness.
    for (id, spec) in members {
        let cap = share(spec);
        for (topic, ps) in &spec.previous {
            let Some(&n) = partitions.get(topic) else { continue };
            if !spec.subscribed.contains(topic) {
                continue;
            }
            for &p in ps {
                if p < n && count[id.as_str()] < cap && !owner.contains_key(&(*topic, p)) {
                    owner.insert((*topic, p), id.as_str());
                    *count.get_mut(id.as_str()).unwrap() += 1;
                }
            }
        }
    }
    // 2. The rest, topics with the fewest eligible members first.
    let mut order: Vec<(&TopicId, &Vec<&str>)> = eligible_by_topic.iter().filter(|(_, e)| !e.is_empty()).collect();
    order.sort_by_key(|(t, e)| (e.len(), **t));
    for (topic, candidates) in &order {
        for p in 0..partitions[*topic] {
            if owner.contains_key(&(**topic, p)) {
                continue;
            }
            let best = candidates.iter().min_by_key(|m| (count[**m], **m)).copied().unwrap();
            owner.insert((**topic, p), best);
            *count.get_mut(best).unwrap() += 1;
        }
    }
    // 3. Balance.
    let mut moved = true;
    let mut rounds = 0;
    while moved && rounds < 10_000 {
        moved = false;
        rounds += 1;
        let mut keys: Vec<(TopicId, i32)> = owner.keys().copied().collect();
        keys.sort();
        for key in keys {
            let from = owner[&key];
            let Some(candidates) = eligible_by_topic.get(&key.0) else { continue };
            let to = candidates.iter().min_by_key(|m| (count[**m], **m)).copied().unwrap();
            if count[to] + 1 < count[from] {
                owner.insert(key, to);
                *count.get_mut(from).unwrap() -= 1;
                *count.get_mut(to).unwrap() += 1;
                moved = true;
            }
        }
    }
    for ((topic, p), m) in owner {
        out.get_mut(m).unwrap().entry(topic).or_default().insert(p);
    }
    out
}

/// Per topic, its subscribers in member-id order get contiguous ranges; the first
/// `partitions % subscribers` get one more.
fn range(members: &BTreeMap<String, MemberSpec>, partitions: &BTreeMap<TopicId, i32>) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members.keys().map(|m| (m.clone(), Assignment::new())).collect();
    for (topic, &n) in partitions {
        let subscribers: Vec<&String> =
            members.iter().filter(|(_, s)| s.subscribed.contains(topic)).map(|(m, _)| m).collect();
        if subscribers.is_empty() {
            continue;
        }
        let per = n as usize / subscribers.len();
        let extra = n as usize % subscribers.len();
        let mut next = 0i32;
        for (i, m) in subscribers.iter().enumerate() {
            let take = per + usize::from(i < extra);
            let ps: BTreeSet<i32> = (next..next + take as i32).collect();
            next += take as i32;
            if !ps.is_empty() {
                out.get_mut(*m).unwrap().insert(*topic, ps);
            }
        }
    }
    out
}

/// Every partition at most once, only to subscribers, only existing ones.
pub fn is_valid(
    target: &BTreeMap<String, Assignment>,
    members: &BTreeMap<String, MemberSpec>,
    partitions: &BTreeMap<TopicId, i32>,
) -> bool {
    let mut seen = BTreeSet::new();
    for (m, a) in target {
        let Some(spec) = members.get(m) else { return false };
        for (t, ps) in a {
            if !spec.subscribed.contains(t) {
                return false;
            }
            let Some(&n) = partitions.get(t) else { return false };
            for &p in ps {
                if p < 0 || p >= n || !seen.insert((*t, p)) {
                    return false;
                }
            }
        }
    }
    true
}
