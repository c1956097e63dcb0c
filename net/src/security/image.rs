//! The security part of the cluster metadata: ACLs and SCRAM credentials, changed only by
//! committed [`SecurityCommand`]s, so every node (and a restarted one) has the same.
//!
//! Owns: [`SecurityImage`] and the validation and application of [`SecurityCommand`]s. Must
//! never: hold a password (only SCRAM's salted, derived keys), or apply a command its
//! validation refused.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::acl::AclBinding;
use super::scram::{Mechanism, ScramCredential};
use crate::metadata_image::{codes, MetadataError};

/// The most ACLs and SCRAM users a cluster keeps (a limit on everything; Kafka has none).
pub const MAX_ACLS: usize = 100_000;
pub const MAX_SCRAM_USERS: usize = 100_000;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityImage {
    pub acls: BTreeSet<AclBinding>,
    /// Bumped by every ACL change (authorization caches key on it).
    pub acl_version: u64,
    /// SCRAM credentials by user, then mechanism.
    pub scram: BTreeMap<String, BTreeMap<Mechanism, ScramCredential>>,
}

/// A change to the security metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecurityCommand {
    /// CreateAcls: adds the bindings (one already there stays once).
    CreateAcls { acls: Vec<AclBinding> },
    /// DeleteAcls: removes exactly these bindings (the handler resolved the filters).
    DeleteAcls { acls: Vec<AclBinding> },
    /// AlterUserScramCredentials' upsertion, or `storage format --add-scram`.
    UpsertScram { user: String, mechanism: Mechanism, credential: ScramCredential },
    /// AlterUserScramCredentials' deletion: RESOURCE_NOT_FOUND if there is none.
    DeleteScram { user: String, mechanism: Mechanism },
}

impl SecurityImage {
    pub fn credential(&self, user: &str, mechanism: Mechanism) -> Option<ScramCredential> {
        self.scram.get(user).and_then(|m| m.get(&mechanism)).cloned()
    }

    pub fn validate(&self, command: &SecurityCommand) -> Result<(), MetadataError> {
        match command {
            SecurityCommand::CreateAcls { acls } if self.acls.len() + acls.len() > MAX_ACLS => {
                Err(MetadataError::new(codes::INVALID_REQUEST, format!("more than {MAX_ACLS} ACLs")))
            }
            SecurityCommand::UpsertScram { user, .. }
                if !self.scram.contains_key(user) && self.scram.len() >= MAX_SCRAM_USERS =>
            {
                Err(MetadataError::new(codes::INVALID_REQUEST, format!("more than {MAX_SCRAM_USERS} SCRAM users")))
            }
            SecurityCommand::UpsertScram { user, credential, .. } => {
                if user.is_empty() {
                    return Err(MetadataError::new(codes::UNACCEPTABLE_CREDENTIAL, "empty user name"));
                }
                if !(super::scram::MIN_ITERATIONS..=super::scram::MAX_ITERATIONS).contains(&credential.iterations) {
                    return Err(MetadataError::new(
                        codes::UNACCEPTABLE_CREDENTIAL,
                        format!(
                            "iterations {} outside {}..={}",
                            credential.iterations,
                            super::scram::MIN_ITERATIONS,
                            super::scram::MAX_ITERATIONS
                        ),
                    ));
                }
                Ok(())
            }
            SecurityCommand::DeleteScram { user, mechanism } if self.credential(user, *mechanism).is_none() => {
                Err(MetadataError::new(
                    codes::RESOURCE_NOT_FOUND,
                    format!("attempt to delete a user credential that does not exist: {user} {}", mechanism.name()),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Applies a validated command.
    pub fn apply(&mut self, command: SecurityCommand) {
        match command {
            SecurityCommand::CreateAcls { acls } => {
                self.acls.extend(acls);
                self.acl_version += 1;
            }
            SecurityCommand::DeleteAcls { acls } => {
                for acl in &acls {
                    self.acls.remove(acl);
                }
                self.acl_version += 1;
            }
            SecurityCommand::UpsertScram { user, mechanism, credential } => {
                self.scram.entry(user).or_default().insert(mechanism, credential);
            }
            SecurityCommand::DeleteScram { user, mechanism } => {
                if let Some(by_mechanism) = self.scram.get_mut(&user) {
                    by_mechanism.remove(&mechanism);
                    if by_mechanism.is_empty() {
                        self.scram.remove(&user);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::acl::{Operation, PatternType, Permission, ResourceType};
    use super::*;

    #[test]
    fn survives_a_json_round_trip_and_hides_secrets_from_debug() {
        let mut image = SecurityImage::default();
        let credential = ScramCredential::from_password(Mechanism::Sha512, "pw", 4096);
        let upsert = SecurityCommand::UpsertScram { user: "alice".into(), mechanism: Mechanism::Sha512, credential };
        image.validate(&upsert).unwrap();
        assert!(!format!("{upsert:?}").contains("stored_key"));
        image.apply(upsert);
        let acl = AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: "t".into(),
            pattern_type: PatternType::Prefixed,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        };
        image.apply(SecurityCommand::CreateAcls { acls: vec![acl.clone(), acl] });
        assert_eq!((image.acls.len(), image.acl_version), (1, 1));
        let json = serde_json::to_string(&image).unwrap();
        assert_eq!(serde_json::from_str::<SecurityImage>(&json).unwrap(), image);
    }

    #[test]
    fn deleting_a_missing_credential_or_bad_iterations_are_refused() {
        let image = SecurityImage::default();
        let delete = SecurityCommand::DeleteScram { user: "bob".into(), mechanism: Mechanism::Sha256 };
        assert_eq!(image.validate(&delete).unwrap_err().code, codes::RESOURCE_NOT_FOUND);
        let mut credential = ScramCredential::from_password(Mechanism::Sha256, "pw", 4096);
        credential.iterations = 100;
        let upsert = SecurityCommand::UpsertScram { user: "bob".into(), mechanism: Mechanism::Sha256, credential };
        assert_eq!(image.validate(&upsert).unwrap_err().code, codes::UNACCEPTABLE_CREDENTIAL);
    }
}
