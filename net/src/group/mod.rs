//! Consumer groups and committed offsets: Kafka's classic group protocol and the consumer
//! protocol of KIP-848.
//!
//! Owns: the sans-I/O group state machines ([`coordinator`] for classic groups,
//! [`consumer_group`] for consumer-protocol ones), the `__consumer_offsets` log
//! format and replay ([`offsets_log`]), transactional offsets waiting for their transaction
//! ([`pending_txn_offsets`]), and the per-shard glommio edge that runs groups on the
//! shard owning their offsets partition ([`service`]). The request handlers in
//! `crate::handlers` decode requests, route them with [`service::on_group_shard`] and encode
//! responses. Must never: keep a group on two shards, or share group state between shards.

pub mod config;
pub mod consumer_group;
pub mod coordinator;
pub mod offsets_log;
pub mod pending_txn_offsets;
pub mod service;

pub use coordinator::{codes, GroupConfig};

use kafka_protocol::protocol::StrBytes;

/// An optional protocol string as an owned `String`.
pub fn opt_string(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

/// Topics in a `consumer` protocol subscription (ConsumerProtocolSubscription, any version).
pub fn consumer_subscription_topics(metadata: &bytes::Bytes) -> Option<Vec<String>> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    let mut buf = metadata.clone();
    if buf.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    let _ = bytes::Buf::get_i16(&mut buf);
    let version = version.clamp(0, 3);
    let sub = ConsumerProtocolSubscription::decode(&mut buf, version).ok()?;
    Some(sub.topics.iter().map(|t| t.to_string()).collect())
}
