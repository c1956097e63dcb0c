//! The authorization decision (Kafka's `StandardAuthorizer`): may `principal`, connecting from
//! `host`, perform `operation` on a resource? Pure, plus a per-shard cache so a request's
//! checks cost a hash lookup while the ACLs do not change.
//!
//! Kafka's rules: super users may do anything; a DENY binding that covers the resource, the
//! principal (or `User:*`) and the host (or `*`) for the operation (or ALL) wins; else an ALLOW
//! binding whose operation allows the wanted one (with Kafka's implications, see
//! [`Operation::allows`]) allows; a resource no binding covers at all is allowed only with
//! `allow.everyone.if.no.acl.found`; everything else is denied.
//!
//! Owns: [`AuthorizerConfig`], [`authorize`] and [`DecisionCache`]. Must never: allow what a
//! covering DENY forbids, or answer from a cache filled under another ACL version.

use std::collections::HashMap;

use super::acl::{AclBinding, Operation, Permission, ResourceType};

/// Every authenticated connection without another identity (Kafka's `User:ANONYMOUS`).
pub const ANONYMOUS: &str = "User:ANONYMOUS";
/// The most decisions one shard caches before it starts over.
const MAX_CACHED_DECISIONS: usize = 16_384;

/// Kafka's authorizer settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// `authorizer.class.name` is set: requests are authorized.
    pub enabled: bool,
    /// `super.users` (`User:admin;User:ops`).
    pub super_users: Vec<String>,
    /// `allow.everyone.if.no.acl.found` (Kafka default false).
    pub allow_everyone_if_no_acl_found: bool,
}

impl AuthorizerConfig {
    /// Parses `super.users`: principals separated by `;`.
    pub fn parse_super_users(value: &str) -> Result<Vec<String>, String> {
        value
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|p| match p.split_once(':') {
                Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(p.to_string()),
                _ => Err(format!("super.users: {p:?} is not a principal (expected User:name)")),
            })
            .collect()
    }
}

/// Whether `principal` from `host` may perform `operation` on the `resource_type` resource
/// `name`, under `acls`.
pub fn authorize<'a>(
    config: &AuthorizerConfig,
    acls: impl IntoIterator<Item = &'a AclBinding>,
    principal: &str,
    host: &str,
    operation: Operation,
    resource_type: ResourceType,
    name: &str,
) -> bool {
    if !config.enabled || config.super_users.iter().any(|s| s == principal) {
        return true;
    }
    let mut any_covering = false;
    let mut allowed = false;
    for acl in acls.into_iter().filter(|a| a.resource_type == resource_type && a.covers(name)) {
        any_covering = true;
        let applies =
            (acl.principal == principal || acl.principal == "User:*") && (acl.host == host || acl.host == "*");
        if !applies {
            continue;
        }
        match acl.permission {
            Permission::Deny if acl.operation.denies(operation) => return false,
            Permission::Allow if acl.operation.allows(operation) => allowed = true,
            _ => {}
        }
    }
    allowed || (!any_covering && config.allow_everyone_if_no_acl_found)
}

/// One shard's remembered decisions, valid for one ACL version.
#[derive(Default)]
pub struct DecisionCache {
    acl_version: u64,
    decisions: HashMap<(String, String, Operation, ResourceType, String), bool>,
}

impl DecisionCache {
    /// [`authorize`], remembered until the ACLs change (`acl_version`). `acls` is only
    /// iterated on a miss.
    #[allow(clippy::too_many_arguments)]
    pub fn authorize<'a>(
        &mut self,
        config: &AuthorizerConfig,
        acl_version: u64,
        acls: impl IntoIterator<Item = &'a AclBinding>,
        principal: &str,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if !config.enabled {
            return true;
        }
        if self.acl_version != acl_version || self.decisions.len() >= MAX_CACHED_DECISIONS {
            self.decisions.clear();
            self.acl_version = acl_version;
        }
        let key = (principal.to_string(), host.to_string(), operation, resource_type, name.to_string());
        if let Some(decision) = self.decisions.get(&key) {
            return *decision;
        }
        let decision = authorize(config, acls, principal, host, operation, resource_type, name);
        self.decisions.insert(key, decision);
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::super::acl::PatternType;
    use super::*;
    use proptest::prelude::*;

    fn acl(name: &str, pattern: PatternType, principal: &str, op: Operation, permission: Permission) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission,
        }
    }

    const NONE: &[AclBinding] = &[];

    fn on() -> AuthorizerConfig {
        AuthorizerConfig {
            enabled: true,
            super_users: vec!["User:admin".into()],
            allow_everyone_if_no_acl_found: false,
        }
    }

    fn may(acls: &[AclBinding], principal: &str, op: Operation, topic: &str) -> bool {
        authorize(&on(), acls, principal, "10.0.0.1", op, ResourceType::Topic, topic)
    }

    #[test]
    fn a_prefixed_read_allows_reading_and_describing_those_topics_only() {
        let acls = [acl("orders-", PatternType::Prefixed, "User:alice", Operation::Read, Permission::Allow)];
        assert!(may(&acls, "User:alice", Operation::Read, "orders-eu"));
        assert!(may(&acls, "User:alice", Operation::Describe, "orders-eu"));
        assert!(!may(&acls, "User:alice", Operation::Write, "orders-eu"));
        assert!(!may(&acls, "User:alice", Operation::Read, "payments"));
        assert!(!may(&acls, "User:bob", Operation::Read, "orders-eu"));
    }

    #[test]
    fn deny_wins_super_users_bypass_and_no_acl_follows_the_setting() {
        let acls = [
            acl("*", PatternType::Literal, "User:*", Operation::All, Permission::Allow),
            acl("secret", PatternType::Literal, "User:alice", Operation::Read, Permission::Deny),
        ];
        assert!(may(&acls, "User:alice", Operation::Read, "public"));
        assert!(!may(&acls, "User:alice", Operation::Read, "secret"));
        assert!(may(&acls, "User:alice", Operation::Describe, "secret"), "a DENY of READ does not deny DESCRIBE");
        assert!(may(&acls, "User:admin", Operation::Read, "secret"));
        let mut config = on();
        assert!(!authorize(&config, NONE, "User:bob", "h", Operation::Read, ResourceType::Group, "g"));
        config.allow_everyone_if_no_acl_found = true;
        assert!(authorize(&config, NONE, "User:bob", "h", Operation::Read, ResourceType::Group, "g"));
        // A resource some binding covers is not "no ACL found", even for another principal.
        let other = [acl("t", PatternType::Literal, "User:carol", Operation::Read, Permission::Allow)];
        assert!(!authorize(&config, &other, "User:bob", "h", Operation::Read, ResourceType::Topic, "t"));
    }

    #[test]
    fn hosts_must_match_unless_star() {
        let mut a = acl("t", PatternType::Literal, "User:alice", Operation::Read, Permission::Allow);
        a.host = "10.0.0.2".into();
        assert!(!may(&[a.clone()], "User:alice", Operation::Read, "t"));
        a.host = "10.0.0.1".into();
        assert!(may(&[a], "User:alice", Operation::Read, "t"));
    }

    #[test]
    fn the_cache_forgets_on_a_new_acl_version() {
        let mut cache = DecisionCache::default();
        let allow = [acl("t", PatternType::Literal, "User:alice", Operation::Read, Permission::Allow)];
        let c = on();
        assert!(cache.authorize(&c, 1, &allow, "User:alice", "h", Operation::Read, ResourceType::Topic, "t"));
        assert!(cache.authorize(&c, 1, NONE, "User:alice", "h", Operation::Read, ResourceType::Topic, "t"), "cached");
        assert!(!cache.authorize(&c, 2, NONE, "User:alice", "h", Operation::Read, ResourceType::Topic, "t"));
    }

    proptest! {
        #[test]
        fn a_covering_deny_always_wins(
            ops in proptest::collection::vec(0usize..13, 1..6),
            wanted in 2i8..15,
            prefix_len in 0usize..4,
        ) {
            let wanted = Operation::from_code(wanted).unwrap();
            let mut acls: Vec<AclBinding> = ops
                .iter()
                .map(|o| acl("*", PatternType::Literal, "User:*", Operation::from_code(*o as i8 + 2).unwrap(), Permission::Allow))
                .collect();
            acls.push(acl(&"topic"[..prefix_len], PatternType::Prefixed, "User:alice", wanted, Permission::Deny));
            if prefix_len == 0 {
                acls.pop(); // an empty prefix is not a valid binding
                acls.push(acl("topic", PatternType::Literal, "User:alice", Operation::All, Permission::Deny));
            }
            prop_assert!(!may(&acls, "User:alice", wanted, "topic"));
        }
    }
}
