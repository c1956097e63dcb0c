//! What a consumer-protocol group sees of the cluster's topics, and how a member's subscription
//! (topic names and an RE2-style regex, KIP-848's `subscribed_topic_regex`) resolves against it.
//!
//! Owns: the [`TopicsImage`] input (names, ids, partition counts; built by the edge from the
//! shard's metadata image) and regex compilation/matching. Must never: read the metadata image
//! itself or do I/O: the edge passes the topics in.

use std::collections::{BTreeMap, BTreeSet};

/// Kafka topic id (UUID bytes).
pub type TopicId = [u8; 16];

/// Partitions by topic id: a member's assigned or pending partitions, a target assignment.
pub type Assignment = BTreeMap<TopicId, BTreeSet<i32>>;

/// One topic as the group sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    pub id: TopicId,
    pub partitions: i32,
}

/// The topics a group may subscribe to (internal topics left out by the edge). `version`
/// changes whenever any topic does, so a group re-resolves its subscriptions only then.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicsImage {
    pub version: u64,
    pub topics: BTreeMap<String, TopicInfo>,
}

impl TopicsImage {
    pub fn name_of(&self, id: &TopicId) -> Option<&str> {
        self.topics.iter().find(|(_, t)| &t.id == id).map(|(n, _)| n.as_str())
    }
}

/// Compiles a subscription regex (the `regex` crate's syntax is RE2's, as Kafka requires).
/// Matches whole topic names, like Java's `Pattern.matcher(name).matches()`.
pub fn compile_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| e.to_string())
}

/// Topic names of `topics` that `pattern` matches (none if it does not compile).
pub fn resolve_regex(pattern: &str, topics: &TopicsImage) -> BTreeSet<String> {
    match compile_regex(pattern) {
        Ok(re) => topics.topics.keys().filter(|n| re.is_match(n)).cloned().collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// Number of partitions in an assignment.
pub fn partition_count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

/// Whether two assignments share a partition.
pub fn overlaps(a: &Assignment, b: &Assignment) -> bool {
    a.iter().any(|(t, ps)| b.get(t).is_some_and(|other| !ps.is_disjoint(other)))
}
