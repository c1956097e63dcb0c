//! Security (issue #18): who a connection is (SASL: PLAIN, SCRAM-SHA-256/512) and what it may
//! do (ACLs with Kafka's semantics). The decisions are pure: [`acl`] (bindings and filters),
//! [`authorizer`] (allow or deny, and a per-shard cache), [`scram`] (credentials and the
//! server's exchange), [`sasl`] (one connection's authentication); [`image`] is their part of
//! the cluster metadata (changed only by committed commands, so every node agrees);
//! [`request_authorization`] applies the authorizer to requests.
//!
//! Must never: keep a password, log a secret, or let a request through that a covering DENY
//! forbids.

pub mod acl;
pub mod authorizer;
pub mod image;
pub mod sasl;
pub mod scram;
