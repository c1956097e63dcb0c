//! Incremental fetch sessions (KIP-227), sans-I/O: a fetcher's first (full) fetch creates a
//! session holding its partitions; later requests list only what changed (new fetch offsets,
//! added partitions, `forgotten_topics_data`) and their responses carry only partitions with
//! something new. [`session`] is one session, [`cache`] a shard's set of them and the decision
//! of what kind of fetch a request is. The Fetch handler (`handlers::fetch`) drives both.
//!
//! Where sessions live: on the shard that created them, in its [`cache::FetchSessionCache`]
//! (`ShardContext::fetch_sessions`). A session is state the connection's own requests read and
//! update on every fetch, so it belongs next to the connection: a client sends its fetches to a
//! broker over one connection (librdkafka and the Java client both do), and a connection stays
//! on the shard that accepted it. Session ids encode their shard (each shard hands out ids from
//! its own slice of the id space, as Kafka's sharded cache does), so ids are unique per broker.
//! An incremental request naming another shard's session — a client that reconnected and
//! landed elsewhere, or one spreading fetches over connections — is answered
//! FETCH_SESSION_ID_NOT_FOUND rather than routed: routing would cost two cross-shard calls per
//! fetch for a case clients recover from with one full fetch (which creates a session on the new
//! shard); the old session is closed by a full request naming it (the handler asks its shard)
//! or evicted once stale. The slot limit `max.incremental.fetch.session.cache.slots` is per
//! broker, as in Kafka: it is split across shards ([`cache::slots_of_shard`]: equal shares,
//! the remainder to the lowest shards), each shard enforcing its share, so a broker never holds
//! more sessions than the setting, but one shard can refuse a session (answering sessionless
//! fetches) while another has free slots.
//!
//! Followers (`crate::replication`) do not use sessions: they send epoch -1 (full, sessionless
//! fetches). A follower that asks for one gets a privileged session, as in Kafka.
//!
//! Must never: do I/O or read a clock; hand out a session id of another shard's slice.

pub mod cache;
pub mod session;
