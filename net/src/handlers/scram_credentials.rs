//! DescribeUserScramCredentials and AlterUserScramCredentials (v0, KIP-554) with Kafka's
//! semantics: a user named twice in one request is DUPLICATE_RESOURCE; an unknown mechanism
//! UNSUPPORTED_SASL_MECHANISM; iterations outside 4096..=16384 UNACCEPTABLE_CREDENTIAL;
//! describing or deleting what does not exist RESOURCE_NOT_FOUND. Upsertions carry the salted
//! password (the client salts and iterates); the broker keeps only SCRAM's derived keys.
//!
//! Owns: turning these requests into security commands and answers. Must never: keep or echo a
//! salted password, or change credentials other than through [`controller::submit`].

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
};

use crate::controller;
use crate::handlers::{codes, str_bytes};
use crate::metadata_image::{MetadataCommand, MetadataError};
use crate::security::image::SecurityCommand;
use crate::security::scram::{Mechanism, ScramCredential, MAX_ITERATIONS, MIN_ITERATIONS};
use crate::shard_context::ShardContext;

pub async fn describe(
    ctx: &Rc<ShardContext>,
    request: DescribeUserScramCredentialsRequest,
    _version: i16,
) -> DescribeUserScramCredentialsResponse {
    let image = ctx.image.borrow();
    let scram = &image.security.scram;
    let described = |user: &str| {
        let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(user));
        match scram.get(user) {
            Some(by_mechanism) => result.with_error_code(codes::NONE).with_credential_infos(
                by_mechanism
                    .iter()
                    .map(|(m, c)| {
                        CredentialInfo::default().with_mechanism(m.code()).with_iterations(c.iterations as i32)
                    })
                    .collect(),
            ),
            None => result.with_error_code(codes::RESOURCE_NOT_FOUND).with_error_message(Some(str_bytes(format!(
                "Attempt to describe a user credential that does not exist: {user}"
            )))),
        }
    };
    let results = match request.users.as_deref() {
        None | Some([]) => scram.keys().map(|u| described(u)).collect(),
        Some(users) => {
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for u in users {
                *counts.entry(&u.name).or_default() += 1;
            }
            let mut seen = std::collections::HashSet::new();
            users
                .iter()
                .filter(|u| seen.insert(u.name.as_str()))
                .map(|u| match counts[u.name.as_str()] {
                    1 => described(&u.name),
                    _ => DescribeUserScramCredentialsResult::default()
                        .with_user(u.name.clone())
                        .with_error_code(codes::DUPLICATE_RESOURCE)
                        .with_error_message(Some(str_bytes(format!(
                            "Cannot describe SCRAM credentials for the same user twice in a single request: {}",
                            &*u.name
                        )))),
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_error_code(codes::NONE).with_results(results)
}

pub async fn alter(
    _ctx: &Rc<ShardContext>,
    request: AlterUserScramCredentialsRequest,
    _version: i16,
) -> AlterUserScramCredentialsResponse {
    // Per user, in request order: the commands to apply, or the first error.
    let mut per_user: BTreeMap<String, Result<Vec<SecurityCommand>, MetadataError>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut seen: HashMap<(String, i8), usize> = HashMap::new();
    let refuse = |code: i16, message: String| Err(MetadataError { code, message });
    let deletions = request.deletions.iter().map(|d| (d.name.to_string(), d.mechanism, None));
    let upsertions = request.upsertions.iter().map(|u| (u.name.to_string(), u.mechanism, Some(u)));
    for (user, mechanism_code, upsertion) in deletions.chain(upsertions) {
        if !per_user.contains_key(&user) {
            order.push(user.clone());
        }
        *seen.entry((user.clone(), mechanism_code)).or_default() += 1;
        let entry = per_user.entry(user.clone()).or_insert(Ok(Vec::new()));
        let Ok(commands) = entry else { continue };
        let command = match (Mechanism::from_code(mechanism_code), upsertion) {
            _ if user.is_empty() => refuse(codes::UNACCEPTABLE_CREDENTIAL, "Username must not be empty".into()),
            _ if seen[&(user.clone(), mechanism_code)] > 1 => refuse(
                codes::DUPLICATE_RESOURCE,
                format!("A user credential cannot be altered twice in the same request: {user}"),
            ),
            (None, _) => refuse(codes::UNSUPPORTED_SASL_MECHANISM, format!("Unknown SCRAM mechanism {mechanism_code}")),
            (Some(mechanism), None) => Ok(SecurityCommand::DeleteScram { user: user.clone(), mechanism }),
            (Some(mechanism), Some(u)) => {
                let iterations = u32::try_from(u.iterations).unwrap_or(0);
                if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
                    refuse(
                        codes::UNACCEPTABLE_CREDENTIAL,
                        format!("Iterations {} not in {MIN_ITERATIONS}..={MAX_ITERATIONS}", u.iterations),
                    )
                } else if u.salt.is_empty() || u.salted_password.is_empty() {
                    refuse(codes::UNACCEPTABLE_CREDENTIAL, "Salt and salted password must not be empty".into())
                } else {
                    let credential =
                        ScramCredential::from_salted_password(mechanism, &u.salt, &u.salted_password, iterations);
                    Ok(SecurityCommand::UpsertScram { user: user.clone(), mechanism, credential })
                }
            }
        };
        match command {
            Ok(c) => commands.push(c),
            Err(e) => *entry = Err(e),
        }
    }
    let mut results = Vec::with_capacity(order.len());
    for user in order {
        let outcome = match per_user.remove(&user).expect("listed") {
            Err(e) => Err(e),
            Ok(commands) => {
                let mut outcome = Ok(());
                for command in commands {
                    if let Err(e) = controller::submit(MetadataCommand::Security(command)).await {
                        outcome = Err(e);
                        break;
                    }
                }
                outcome
            }
        };
        let result = AlterUserScramCredentialsResult::default().with_user(str_bytes(user));
        results.push(match outcome {
            Ok(()) => result.with_error_code(codes::NONE),
            Err(e) => result.with_error_code(e.code).with_error_message(Some(str_bytes(e.message))),
        });
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}
