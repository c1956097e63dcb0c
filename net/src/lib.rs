//! sluice's Kafka protocol server.
//!
//! Owns: framing ([`frame`]), one connection's request loop ([`connection`]), the per-shard
//! listener ([`server`]), the table of supported APIs ([`supported_apis`]), request handlers
//! ([`handlers`]), the cluster metadata image ([`metadata_image`]) and the controller that
//! changes it ([`controller`]), each shard's context ([`shard_context`]), and the transaction
//! coordinator ([`txn`]).
//!
//! Must never: store record data itself (that is the engine's), keep mutable state shared
//! between shards, or block a shard thread.

pub mod broker_client;
pub mod broker_config;
pub mod connection;
pub mod controller;
pub mod controller_quorum;
pub mod fetch_session;
pub mod frame;
pub mod frame_buffers;
pub mod group;
pub mod handlers;
pub mod internal_topic;
pub mod kafka_client;
pub mod leader_election;
pub mod metadata_image;
pub mod metrics;
pub mod placement;
pub mod produce_placement;
pub mod quota;
pub mod reassignment;
pub mod replication;
pub mod response_buf;
pub mod security;
pub mod server;
pub mod shard_context;
pub mod supported_apis;
pub mod topic_name;
pub mod txn;
pub mod txn_markers;
