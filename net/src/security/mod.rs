//! Security (issue #18). Transport: listeners' security protocols ([`protocol`]), TLS with
//! rustls ([`tls_config`], [`tls_stream`], [`transport`]) and the mTLS principal
//! ([`principal`]). Who a connection is (SASL: PLAIN, SCRAM-SHA-256/512) and what it may do
//! (ACLs with Kafka's semantics): the decisions are pure: [`acl`] (bindings and filters),
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
pub mod principal;
pub mod protocol;
pub mod request_authorization;
pub mod sasl;
pub mod sasl_connection;
pub mod scram;
pub mod tls_config;
pub mod tls_stream;
pub mod transport;

use authorizer::AuthorizerConfig;
use sasl::SaslMechanism;

/// Kafka's security settings sluice serves (listeners and TLS are in the listener settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityConfig {
    pub authorizer: AuthorizerConfig,
    /// `sasl.enabled.mechanisms` (Kafka's default is GSSAPI, which sluice does not serve: here
    /// every mechanism it does).
    pub sasl_enabled_mechanisms: Vec<SaslMechanism>,
    /// `connection.failed.authentication.delay.ms` (Kafka default 100): a failed
    /// authentication is answered and closed only after this long.
    pub failed_authentication_delay_ms: u64,
    /// `connections.max.reauth.ms` (Kafka default 0: never): KIP-368's session lifetime.
    pub max_reauth_ms: i64,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            authorizer: AuthorizerConfig::default(),
            sasl_enabled_mechanisms: vec![
                SaslMechanism::Plain,
                SaslMechanism::Scram(scram::Mechanism::Sha256),
                SaslMechanism::Scram(scram::Mechanism::Sha512),
            ],
            failed_authentication_delay_ms: 100,
            max_reauth_ms: 0,
        }
    }
}

/// The keys [`SecurityConfig::set`] takes.
pub const SECURITY_KEYS: &[&str] = &[
    "authorizer.class.name",
    "super.users",
    "allow.everyone.if.no.acl.found",
    "sasl.enabled.mechanisms",
    "connection.failed.authentication.delay.ms",
    "connections.max.reauth.ms",
];

impl SecurityConfig {
    /// Sets one key of [`SECURITY_KEYS`]; a bad value is an error naming the key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let number = |max: i64| -> Result<i64, String> {
            value
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|n| (0..=max).contains(n))
                .ok_or_else(|| format!("{key}: expected a number in 0..={max}, got {value:?}"))
        };
        match key {
            // Any authorizer class turns authorization on (Kafka's StandardAuthorizer, or the
            // older AclAuthorizer name); empty turns it off.
            "authorizer.class.name" => self.authorizer.enabled = !value.trim().is_empty(),
            "super.users" => self.authorizer.super_users = AuthorizerConfig::parse_super_users(value)?,
            "allow.everyone.if.no.acl.found" => {
                self.authorizer.allow_everyone_if_no_acl_found = match value.trim() {
                    "true" => true,
                    "false" => false,
                    other => return Err(format!("{key}: expected true or false, got {other:?}")),
                }
            }
            "sasl.enabled.mechanisms" => self.sasl_enabled_mechanisms = sasl::parse_enabled_mechanisms(value)?,
            "connection.failed.authentication.delay.ms" => self.failed_authentication_delay_ms = number(60_000)? as u64,
            "connections.max.reauth.ms" => self.max_reauth_ms = number(i64::from(i32::MAX))?,
            _ => return Err(format!("unknown security setting {key:?}")),
        }
        Ok(())
    }
}
