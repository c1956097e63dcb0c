//! Access control lists with Kafka's model and wire codes: a binding says that a principal
//! from a host may (ALLOW) or may not (DENY) perform an operation on the resources a pattern
//! names (LITERAL: that name, `*` for every one; PREFIXED: every name starting with it).
//! Filters (DescribeAcls, DeleteAcls) add ANY and MATCH.
//!
//! Owns: the types, their Kafka codes, validation of a binding to create, and filter matching.
//! Must never: accept a binding Kafka would refuse (ANY or UNKNOWN in a binding, a cluster
//! resource not named `kafka-cluster`, a principal without a type).

use serde::{Deserialize, Serialize};

/// The one cluster resource's name (Kafka's `Resource.CLUSTER_NAME`).
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The literal name that matches every resource of its type.
pub const WILDCARD: &str = "*";

/// Kafka's `ResourceType` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
    DelegationToken,
    User,
}

impl ResourceType {
    pub const ANY_CODE: i8 = 1;

    pub fn from_code(code: i8) -> Option<ResourceType> {
        Some(match code {
            2 => ResourceType::Topic,
            3 => ResourceType::Group,
            4 => ResourceType::Cluster,
            5 => ResourceType::TransactionalId,
            6 => ResourceType::DelegationToken,
            7 => ResourceType::User,
            _ => return None,
        })
    }

    pub fn code(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
            ResourceType::DelegationToken => 6,
            ResourceType::User => 7,
        }
    }
}

/// Kafka's `PatternType` of a binding (filters also have ANY = 1 and MATCH = 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PatternType {
    Literal,
    Prefixed,
}

impl PatternType {
    pub fn code(self) -> i8 {
        match self {
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }
}

/// Kafka's `AclOperation` codes (ALL = 2 .. DESCRIBE_TOKENS = 14; ANY = 1 only in filters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
    CreateTokens,
    DescribeTokens,
}

impl Operation {
    pub const ANY_CODE: i8 = 1;
    const ALL: [Operation; 13] = [
        Operation::All,
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
        Operation::CreateTokens,
        Operation::DescribeTokens,
    ];

    pub fn from_code(code: i8) -> Option<Operation> {
        Operation::ALL.get(usize::try_from(code).ok()?.checked_sub(2)?).copied()
    }

    pub fn code(self) -> i8 {
        Operation::ALL.iter().position(|o| *o == self).expect("listed") as i8 + 2
    }

    /// Whether an ALLOW binding for `self` allows `wanted` (Kafka: ALL allows everything;
    /// READ, WRITE, DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS).
    pub fn allows(self, wanted: Operation) -> bool {
        self == wanted
            || self == Operation::All
            || (wanted == Operation::Describe
                && matches!(self, Operation::Read | Operation::Write | Operation::Delete | Operation::Alter))
            || (wanted == Operation::DescribeConfigs && self == Operation::AlterConfigs)
    }

    /// Whether a DENY binding for `self` denies `wanted` (no implication: only itself and ALL).
    pub fn denies(self, wanted: Operation) -> bool {
        self == wanted || self == Operation::All
    }
}

/// Kafka's `AclPermissionType` (DENY = 2, ALLOW = 3; ANY = 1 only in filters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    Deny,
    Allow,
}

impl Permission {
    pub const ANY_CODE: i8 = 1;

    pub fn from_code(code: i8) -> Option<Permission> {
        match code {
            2 => Some(Permission::Deny),
            3 => Some(Permission::Allow),
            _ => None,
        }
    }

    pub fn code(self) -> i8 {
        match self {
            Permission::Deny => 2,
            Permission::Allow => 3,
        }
    }
}

/// One ACL (Kafka's `AclBinding`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    /// `Type:name`, e.g. `User:alice`; `User:*` is every user.
    pub principal: String,
    /// A client address, or `*` for any.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    /// A binding from CreateAcls' fields, or why Kafka refuses it.
    #[allow(clippy::too_many_arguments)]
    pub fn from_wire(
        resource_type: i8,
        resource_name: &str,
        pattern_type: i8,
        principal: &str,
        host: &str,
        operation: i8,
        permission: i8,
    ) -> Result<AclBinding, String> {
        let resource_type =
            ResourceType::from_code(resource_type).ok_or_else(|| format!("invalid resource type {resource_type}"))?;
        let pattern_type = match pattern_type {
            3 => PatternType::Literal,
            4 => PatternType::Prefixed,
            other => return Err(format!("invalid pattern type {other} (LITERAL or PREFIXED)")),
        };
        let operation = Operation::from_code(operation).ok_or_else(|| format!("invalid operation {operation}"))?;
        let permission =
            Permission::from_code(permission).ok_or_else(|| format!("invalid permission type {permission}"))?;
        if resource_name.is_empty() {
            return Err("the resource name must not be empty".into());
        }
        if resource_type == ResourceType::Cluster && resource_name != CLUSTER_NAME {
            return Err(format!("the cluster resource must be named {CLUSTER_NAME}"));
        }
        match principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => return Err(format!("invalid principal {principal:?} (expected Type:name, e.g. User:alice)")),
        }
        if host.is_empty() {
            return Err("the host must not be empty (use * for any)".into());
        }
        Ok(AclBinding {
            resource_type,
            resource_name: resource_name.to_string(),
            pattern_type,
            principal: principal.to_string(),
            host: host.to_string(),
            operation,
            permission,
        })
    }

    /// Whether this binding's pattern covers the resource `name` of its type.
    pub fn covers(&self, name: &str) -> bool {
        match self.pattern_type {
            PatternType::Literal => self.resource_name == name || self.resource_name == WILDCARD,
            PatternType::Prefixed => name.starts_with(&self.resource_name),
        }
    }
}

/// A DescribeAcls / DeleteAcls filter: `None` fields match anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

/// How a filter's pattern type selects bindings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternFilter {
    /// ANY: bindings of either pattern type whose pattern is exactly the filter's name.
    Any,
    /// MATCH: bindings that apply to the filter's resource name (literal, wildcard, prefixes).
    Match,
    Exactly(PatternType),
}

impl AclFilter {
    /// A filter from the wire fields, or why Kafka refuses it.
    #[allow(clippy::too_many_arguments)]
    pub fn from_wire(
        resource_type: i8,
        resource_name: Option<&str>,
        pattern_type: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission: i8,
    ) -> Result<AclFilter, String> {
        let resource_type = match resource_type {
            ResourceType::ANY_CODE => None,
            code => Some(ResourceType::from_code(code).ok_or_else(|| format!("invalid resource type {code}"))?),
        };
        let pattern = match pattern_type {
            1 => PatternFilter::Any,
            2 => PatternFilter::Match,
            3 => PatternFilter::Exactly(PatternType::Literal),
            4 => PatternFilter::Exactly(PatternType::Prefixed),
            other => return Err(format!("invalid pattern type {other}")),
        };
        let operation = match operation {
            Operation::ANY_CODE => None,
            code => Some(Operation::from_code(code).ok_or_else(|| format!("invalid operation {code}"))?),
        };
        let permission = match permission {
            Permission::ANY_CODE => None,
            code => Some(Permission::from_code(code).ok_or_else(|| format!("invalid permission type {code}"))?),
        };
        Ok(AclFilter {
            resource_type,
            resource_name: resource_name.map(str::to_string),
            pattern,
            principal: principal.map(str::to_string),
            host: host.map(str::to_string),
            operation,
            permission,
        })
    }

    pub fn matches(&self, b: &AclBinding) -> bool {
        let name_ok = match (&self.resource_name, self.pattern) {
            (None, PatternFilter::Exactly(p)) => b.pattern_type == p,
            (None, _) => true,
            (Some(name), PatternFilter::Any) => b.resource_name == *name,
            (Some(name), PatternFilter::Exactly(p)) => b.pattern_type == p && b.resource_name == *name,
            (Some(name), PatternFilter::Match) => b.covers(name),
        };
        name_ok
            && self.resource_type.is_none_or(|t| t == b.resource_type)
            && self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && self.operation.is_none_or(|o| o == b.operation)
            && self.permission.is_none_or(|p| p == b.permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(name: &str, pattern: PatternType, op: Operation, permission: Permission) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: op,
            permission,
        }
    }

    #[test]
    fn codes_round_trip() {
        for code in 2..=14 {
            assert_eq!(Operation::from_code(code).unwrap().code(), code);
        }
        assert_eq!(Operation::from_code(1), None);
        assert_eq!(Operation::from_code(15), None);
        for code in 2..=7 {
            assert_eq!(ResourceType::from_code(code).unwrap().code(), code);
        }
    }

    #[test]
    fn kafka_refuses_these_bindings() {
        assert!(AclBinding::from_wire(1, "t", 3, "User:a", "*", 3, 3).is_err(), "ANY resource type");
        assert!(AclBinding::from_wire(2, "t", 2, "User:a", "*", 3, 3).is_err(), "MATCH pattern");
        assert!(AclBinding::from_wire(2, "t", 3, "User:a", "*", 1, 3).is_err(), "ANY operation");
        assert!(AclBinding::from_wire(2, "t", 3, "User:a", "*", 3, 1).is_err(), "ANY permission");
        assert!(AclBinding::from_wire(2, "t", 3, "alice", "*", 3, 3).is_err(), "principal without type");
        assert!(AclBinding::from_wire(4, "c", 3, "User:a", "*", 7, 3).is_err(), "cluster not kafka-cluster");
        assert!(AclBinding::from_wire(4, CLUSTER_NAME, 3, "User:a", "*", 7, 3).is_ok());
    }

    #[test]
    fn implications_allow_describe_but_deny_is_exact() {
        assert!(Operation::Read.allows(Operation::Describe));
        assert!(Operation::AlterConfigs.allows(Operation::DescribeConfigs));
        assert!(!Operation::Describe.allows(Operation::Read));
        assert!(Operation::All.allows(Operation::IdempotentWrite));
        assert!(!Operation::Read.denies(Operation::Describe));
        assert!(Operation::All.denies(Operation::Describe));
    }

    #[test]
    fn filters_any_match_and_exact() {
        let literal = binding("orders", PatternType::Literal, Operation::Read, Permission::Allow);
        let prefixed = binding("ord", PatternType::Prefixed, Operation::Write, Permission::Deny);
        let wildcard = binding(WILDCARD, PatternType::Literal, Operation::Read, Permission::Allow);
        let f = |name: Option<&str>, pattern: i8| AclFilter::from_wire(2, name, pattern, None, None, 1, 1).unwrap();
        let m =
            |filter: &AclFilter| [&literal, &prefixed, &wildcard].iter().map(|b| filter.matches(b)).collect::<Vec<_>>();
        assert_eq!(m(&f(Some("orders"), 2)), vec![true, true, true], "MATCH: all that apply to orders");
        assert_eq!(m(&f(Some("orders"), 1)), vec![true, false, false], "ANY: exactly that name");
        assert_eq!(m(&f(Some("ord"), 4)), vec![false, true, false]);
        assert_eq!(m(&f(None, 3)), vec![true, false, true]);
        assert_eq!(m(&f(None, 1)), vec![true, true, true]);
        let deny_only = AclFilter::from_wire(1, None, 1, Some("User:alice"), None, 1, 2).unwrap();
        assert_eq!(m(&deny_only), vec![false, true, false]);
    }
}
