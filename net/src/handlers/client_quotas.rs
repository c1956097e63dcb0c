//! DescribeClientQuotas (v0–1) and AlterClientQuotas (v0–1, KIP-546) with Kafka's semantics:
//! entity types `user`, `client-id`, `ip` (a null name is the default entity), the filter's
//! match types and `strict`, per-entry validation errors (INVALID_REQUEST; see
//! [`crate::quota::image`]) and `validate_only`. Valid alterations of one request are committed
//! as one metadata command, so they reach every broker and survive restarts; an entry that
//! fails validation changes nothing and does not stop the others. Authorization
//! (DESCRIBE_CONFIGS / ALTER_CONFIGS on the cluster) is in
//! [`crate::security::request_authorization`].
//!
//! Owns: the request/response mapping. Must never: change quotas other than through
//! [`controller::submit`].

use std::rc::Rc;

use kafka_protocol::messages::{
    alter_client_quotas_response, describe_client_quotas_response, AlterClientQuotasRequest, AlterClientQuotasResponse,
    DescribeClientQuotasRequest, DescribeClientQuotasResponse,
};

use crate::controller;
use crate::handlers::{codes, str_bytes};
use crate::metadata_image::{MetadataCommand, MetadataError};
use crate::quota::image::{QuotaAlteration, QuotaCommand, QuotaEntity};
use crate::shard_context::ShardContext;

pub async fn describe(
    ctx: &Rc<ShardContext>,
    request: DescribeClientQuotasRequest,
    _version: i16,
) -> DescribeClientQuotasResponse {
    let components: Vec<(String, i8, Option<String>)> = request
        .components
        .iter()
        .map(|c| (c.entity_type.to_string(), c.match_type, c._match.as_ref().map(|m| m.to_string())))
        .collect();
    let image = ctx.image.borrow();
    match image.client_quotas.describe(&components, request.strict) {
        Ok(matches) => {
            let entries = matches
                .into_iter()
                .map(|(entity, values)| {
                    describe_client_quotas_response::EntryData::default()
                        .with_entity(
                            entity
                                .pairs()
                                .into_iter()
                                .map(|(t, n)| {
                                    describe_client_quotas_response::EntityData::default()
                                        .with_entity_type(str_bytes(t))
                                        .with_entity_name(n.map(str_bytes))
                                })
                                .collect(),
                        )
                        .with_values(
                            values
                                .iter()
                                .map(|(k, v)| {
                                    describe_client_quotas_response::ValueData::default()
                                        .with_key(str_bytes(k.as_str()))
                                        .with_value(v.0)
                                })
                                .collect(),
                        )
                })
                .collect();
            DescribeClientQuotasResponse::default().with_error_code(codes::NONE).with_entries(Some(entries))
        }
        Err((code, message)) => DescribeClientQuotasResponse::default()
            .with_error_code(code)
            .with_error_message(Some(str_bytes(message)))
            .with_entries(None),
    }
}

pub async fn alter(
    _ctx: &Rc<ShardContext>,
    request: AlterClientQuotasRequest,
    _version: i16,
) -> AlterClientQuotasResponse {
    // Per entry, in request order: its validated alteration or its error.
    let mut outcomes: Vec<Result<QuotaAlteration, MetadataError>> = Vec::with_capacity(request.entries.len());
    let mut seen: std::collections::HashSet<QuotaEntity> = std::collections::HashSet::new();
    for entry in &request.entries {
        let pairs = entry.entity.iter().map(|e| (e.entity_type.as_str(), e.entity_name.as_deref()));
        let outcome = QuotaEntity::from_pairs(pairs).and_then(|entity| {
            if seen.contains(&entity) {
                return Err(MetadataError::new(
                    codes::INVALID_REQUEST,
                    format!("Ignoring duplicate entity {:?}", entity.pairs()),
                ));
            }
            seen.insert(entity.clone());
            let ops: Vec<(String, f64, bool)> =
                entry.ops.iter().map(|op| (op.key.to_string(), op.value, op.remove)).collect();
            QuotaAlteration::new(entity, &ops)
        });
        outcomes.push(outcome);
    }
    let alterations: Vec<QuotaAlteration> = outcomes.iter().filter_map(|o| o.as_ref().ok().cloned()).collect();
    let committed = if request.validate_only || alterations.is_empty() {
        Ok(())
    } else {
        controller::submit(MetadataCommand::ClientQuotas(QuotaCommand::Alter { alterations })).await
    };
    let entries = request
        .entries
        .iter()
        .zip(outcomes)
        .map(|(entry, outcome)| {
            let entity = entry
                .entity
                .iter()
                .map(|e| {
                    alter_client_quotas_response::EntityData::default()
                        .with_entity_type(e.entity_type.clone())
                        .with_entity_name(e.entity_name.clone())
                })
                .collect();
            let result = alter_client_quotas_response::EntryData::default().with_entity(entity);
            match outcome.and_then(|_| committed.clone()) {
                Ok(()) => result.with_error_code(codes::NONE),
                Err(e) => result.with_error_code(e.code).with_error_message(Some(str_bytes(e.message))),
            }
        })
        .collect();
    AlterClientQuotasResponse::default().with_entries(entries)
}
